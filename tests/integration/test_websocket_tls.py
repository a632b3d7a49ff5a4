"""wss:// and SSE over https: the same Apache also listens with mod_ssl on
a second port (a self-signed certificate made for the test); push.conf's
locations apply to that virtual host too."""
import asyncio
import json
import socket
import ssl
import subprocess
import time

import pytest

from conftest import EVENT_TIMEOUT, HOST, HTTPResponseParser, SSEParser, free_port, \
    unique_channel
from test_websocket_util import (
    OP_PING, OP_PONG, OP_TEXT, WS_CONF, arecv_json, arecv_until,
    asend_json, await_subscribed, frame, run, subscribed_raw, ws_connect)


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "cert.pem", d / "key.pem"
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-days", "1", "-keyout", str(key), "-out", str(crt)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return crt, key


@pytest.fixture(scope="module")
def tls(stack_factory, cert, tmp_path_factory):
    crt, key = cert
    port = free_port()
    rundir = tmp_path_factory.mktemp("tls-run")
    conf = WS_CONF + f"""
LoadModule socache_shmcb_module /usr/lib/apache2/modules/mod_socache_shmcb.so
LoadModule ssl_module /usr/lib/apache2/modules/mod_ssl.so
SSLSessionCache shmcb:{rundir}/ssl_scache(512000)
Listen 127.0.0.1:{port}
<VirtualHost 127.0.0.1:{port}>
  ServerName 127.0.0.1
  SSLEngine on
  SSLCertificateFile {crt}
  SSLCertificateKeyFile {key}
  Protocols http/1.1
</VirtualHost>
"""
    s = stack_factory("wstls", extra_conf=conf)
    s.tls_port = port
    yield s
    s.stop()


@pytest.fixture(scope="module")
def ctx(cert):
    c = ssl.create_default_context(cafile=str(cert[0]))
    c.check_hostname = True
    return c


def wss(tls, path, ctx, **kw):
    return ws_connect(tls.tls_port, path, scheme="wss", ssl=ctx, **kw)


class TLSSSE:
    """An SSE subscription over https (conftest's parsers on a TLS socket)."""

    def __init__(self, port, path, ctx):
        raw = socket.create_connection((HOST, port), timeout=EVENT_TIMEOUT)
        self.sock = ctx.wrap_socket(raw, server_hostname=HOST)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                          f"Accept: text/event-stream\r\n\r\n".encode())
        self.http, self.sse, self.events = HTTPResponseParser(), SSEParser(), []
        self.retry_seen = False
        while not self.retry_seen:
            self._read()
        assert self.http.status == 200

    def _read(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("TLS SSE stream closed")
        for kind, val in self.sse.feed(self.http.feed(data)):
            if kind == "retry":
                self.retry_seen = True
            elif kind == "event":
                self.events.append(val)

    def next_event(self):
        while not self.events:
            self._read()
        return self.events.pop(0)

    def close(self):
        self.sock.close()


def test_https_is_tls(tls, ctx):
    """Sanity: the TLS port speaks TLS with our certificate, and push
    locations answer there."""
    import http.client
    conn = http.client.HTTPSConnection(HOST, tls.tls_port, context=ctx, timeout=EVENT_TIMEOUT)
    try:
        conn.request("GET", f"/sub/{unique_channel('tls')}?poll=1")
        r = conn.getresponse()
        assert r.status == 200
        assert json.loads(r.read())["messages"] == []
        assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        conn.close()


def test_wss_round_trip(tls, ctx, channel):
    async def main():
        async with wss(tls, f"/ws/{channel}", ctx) as a, \
                wss(tls, f"/sub/{channel}", ctx, compression=None) as b:
            await await_subscribed(a, channel)
            await await_subscribed(b, channel)
            # HTTP publish -> both
            ack = tls.publish_ok(channel, "over tls")
            for c in (a, b):
                m = await arecv_json(c)
                assert (m["type"], m["id"], m["data"]) == ("message", ack["id"], "over tls")
            # several messages from the socket, answered and delivered in order
            for i in range(10):
                await asend_json(a, {"type": "publish", "channel": channel,
                                     "data": f"msg {i}", "ref": i})
            got = []
            while len([m for m in got if m["type"] == "published"]) < 10 \
                    or len([m for m in got if m["type"] == "message"]) < 10:
                got.append(await arecv_json(a))
            assert [m["ref"] for m in got if m["type"] == "published"] == list(range(10))
            assert [m["data"] for m in got if m["type"] == "message"] == \
                [f"msg {i}" for i in range(10)]
            got_b = [await arecv_json(b) for _ in range(10)]
            assert [m["data"] for m in got_b] == [f"msg {i}" for i in range(10)]
            # several channels on the socket
            other = unique_channel("tls-other")
            await asend_json(b, {"type": "subscribe", "channel": other, "ref": "o"})
            await await_subscribed(b, other)
            tls.publish_ok(other, "other channel")
            assert (await arecv_json(b))["channel"] == other
            await asend_json(b, {"type": "ping", "ref": "p"})
            assert await arecv_json(b) == {"type": "pong", "ref": "p"}
    run(main())


def test_wss_deflate(tls, ctx, channel):
    long_text = "".join(f"{i}: tls and deflate together\n" for i in range(500))

    async def main():
        sse = await asyncio.to_thread(TLSSSE, tls.tls_port, f"/sub/{channel}", ctx)
        try:
            async with wss(tls, f"/ws/{channel}", ctx) as c:
                assert c.extensions, "permessage-deflate not negotiated over TLS"
                assert "server_no_context_takeover" in \
                    c.response_headers["Sec-WebSocket-Extensions"]
                await await_subscribed(c, channel)
                tls.publish_ok(channel, long_text, event="long")
                m = await arecv_json(c)
                assert (m["event"], m["data"]) == ("long", long_text)
                for i in range(3):
                    await asend_json(c, {"type": "publish", "channel": channel,
                                         "data": long_text + str(i), "ref": i})
                    await arecv_until(c, lambda m: m["type"] == "published")
                ev = await asyncio.to_thread(sse.next_event)
                assert (ev.event, ev.data) == ("long", long_text)
                for i in range(3):
                    ev = await asyncio.to_thread(sse.next_event)
                    assert ev.data == long_text + str(i)
        finally:
            sse.close()
    run(main())


def test_sse_over_https(tls, ctx, channel):
    sse = TLSSSE(tls.tls_port, f"/sub/{channel}", ctx)
    try:
        for i in range(5):
            ack = tls.publish_ok(channel, f"line {i}\nsecond", event="e")
            ev = sse.next_event()
            assert (ev.int_id, ev.event, ev.data) == (ack["id"], "e", f"line {i}\nsecond")
    finally:
        sse.close()


def test_wss_raw_socket_frames(tls, ctx, channel):
    """The reactor reads frames through mod_ssl's filters: one byte per TLS
    record, and many frames in one record."""
    with subscribed_raw(tls.tls_port, f"/ws/{channel}", ssl_context=ctx) as w:
        cmds = b"".join(frame(OP_TEXT, json.dumps({"type": "ping", "ref": i}).encode())
                        for i in range(20))
        w.send(cmds)
        assert [w.recv_json()["ref"] for _ in range(20)] == list(range(20))
        one = frame(OP_TEXT, json.dumps({"type": "ping", "ref": "slow"}).encode()) \
            + frame(OP_PING, b"tls")
        for i in range(len(one)):
            w.send(one[i:i + 1])
            time.sleep(0.002)
        assert w.recv_json() == {"type": "pong", "ref": "slow"}
        f = w.recv_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"tls"), f
        w.send_frame(OP_TEXT, b"\xff")
        w.expect_close(1007)


def test_wss_raw_mode(tls, ctx, channel):
    async def main():
        async with wss(tls, f"/ws-raw/{channel}", ctx) as a, \
                wss(tls, f"/ws-raw/{channel}", ctx, compression=None) as b:
            await asyncio.wait_for(await a.ping(), EVENT_TIMEOUT)
            await asyncio.wait_for(await b.ping(), EVENT_TIMEOUT)
            await a.send("text over tls")
            for c in (a, b):
                assert await asyncio.wait_for(c.recv(), EVENT_TIMEOUT) == "text over tls"
            await b.send(bytes(range(256)))
            for c in (a, b):
                assert await asyncio.wait_for(c.recv(), EVENT_TIMEOUT) == bytes(range(256))
    run(main())


def test_plain_port_still_works(tls, channel):
    with subscribed_raw(tls.port, f"/ws/{channel}") as w:
        ack = tls.publish_ok(channel, "plain")
        assert w.recv_json()["id"] == ack["id"]
