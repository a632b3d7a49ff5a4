"""WebSocket transport: the opening handshake (RFC 6455 §4.2) and the
directives that shape it, the JSON channel protocol, publishing over the
socket, permessage-deflate (RFC 7692) with python-websockets, server
pings, and raw mode.

Framing rules on a raw socket are in test_websocket_frames.py, graceful
stop in test_websocket_lifecycle.py, wss:// in test_websocket_tls.py and
2,000 sockets in test_websocket_scale.py."""
import asyncio
import json
import socket
import time

import pytest
import websockets
from websockets.extensions.permessage_deflate import PerMessageDeflate

from conftest import EVENT_TIMEOUT, HOST, HTTPResponseParser, unique_channel
from test_websocket_util import (
    OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, RawWS, ServerClosed, accept_for,
    arecv_json, arecv_until, asend_json, assert_ws_still_works, await_subscribed,
    deflate_message, frame, inflate_message, new_key, run, subscribed_raw, ws_connect,
    ws_stack_fixture)


ws = ws_stack_fixture("ws")


def check_http_error(w, status, code, message=None):
    """A refused handshake: status and the module's JSON error body."""
    assert w.status == status, (w.head, w.body)
    assert w.header("Content-Type") == "application/json", w.head
    assert w.header("Sec-WebSocket-Accept") is None, w.head
    doc = w.json_body()
    assert set(doc) == {"error", "message"}, doc
    assert doc["error"] == code, doc
    assert isinstance(doc["message"], str) and doc["message"]
    if message is not None:
        assert doc["message"] == message, doc
    return doc


def refused(stack, path, **kw):
    w = RawWS(stack.port, path, expect_101=False, **kw)
    w.close()
    return w


def no_time(m):
    return {k: v for k, v in m.items() if k != "time"}


# ---------------------------------------------------------------------------
# the opening handshake
# ---------------------------------------------------------------------------

def test_handshake_101(ws, channel):
    key = new_key()
    with RawWS(ws.port, f"/sub/{channel}", key=key) as w:
        assert w.status == 101
        assert w.http.version == "HTTP/1.1"
        assert w.header("Upgrade").lower() == "websocket"
        assert "upgrade" in w.header("Connection").lower()
        assert w.header("Sec-WebSocket-Accept") == accept_for(key)
        assert w.header("Sec-WebSocket-Protocol") is None
        assert w.header("Sec-WebSocket-Extensions") is None    # not offered
        # the URL's channel is subscribed at once
        assert w.recv_json() == {"type": "subscribed", "channel": channel, "last_id": 0}
        ack = ws.publish_ok(channel, "hello", event="greet")
        m = w.recv_json()
        assert isinstance(m.pop("time"), int)
        assert m == {"type": "message", "channel": channel, "id": ack["id"], "event": "greet",
                     "data": "hello"}


def test_handshake_rfc_example_key(ws, channel):
    """The sample nonce of RFC 6455 §1.3 gets the sample answer."""
    with RawWS(ws.port, f"/sub/{channel}", key="dGhlIHNhbXBsZSBub25jZQ==") as w:
        assert w.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("headers", [
    {"Connection": "keep-alive, Upgrade"},
    {"Connection": "upgrade"},
    {"Connection": "Upgrade, keep-alive"},
    {"Upgrade": "WebSocket"},
    {"Upgrade": "websocket", "Sec-WebSocket-Protocol": "anything"},
], ids=["conn-list", "conn-lower", "conn-list2", "upgrade-case", "unknown-protocol"])
def test_handshake_header_variants(ws, channel, headers):
    with RawWS(ws.port, f"/sub/{channel}", headers) as w:
        assert w.status == 101
        assert w.header("Sec-WebSocket-Protocol") is None
        w.wait_subscribed(channel)


BAD_KEYS = {
    "empty": "",
    "short": "abc",
    "15-bytes": "AAAAAAAAAAAAAAAAAAAA",          # base64 of 15 bytes
    "17-bytes": "AAAAAAAAAAAAAAAAAAAAAAA=",      # base64 of 17 bytes
    "no-padding": "AAAAAAAAAAAAAAAAAAAAAA",      # 22 chars
    "bad-chars": "!!!!!!!!!!!!!!!!!!!!!!==",
    "too-long": "AAAAAAAAAAAAAAAAAAAAAA==AAAA",
    "spaces": "AAAAAAAAAAA AAAAAAAAAA==",
}


@pytest.mark.parametrize("name", ["missing"] + list(BAD_KEYS))
def test_handshake_bad_key(ws, channel, name):
    if name == "missing":
        w = refused(ws, f"/sub/{channel}", omit=["Sec-WebSocket-Key"])
    else:
        w = refused(ws, f"/sub/{channel}", headers={"Sec-WebSocket-Key": BAD_KEYS[name]})
    check_http_error(w, 400, "bad_request")
    assert_ws_still_works(ws)


@pytest.mark.parametrize("version", ["8", "12", "14", "0", "13.0", "abc"])
def test_handshake_bad_version(ws, channel, version):
    w = refused(ws, f"/sub/{channel}", headers={"Sec-WebSocket-Version": version})
    check_http_error(w, 426, "bad_request")
    assert w.header("Sec-WebSocket-Version") == "13", w.head
    assert_ws_still_works(ws)


def test_handshake_missing_version(ws, channel):
    w = refused(ws, f"/sub/{channel}", omit=["Sec-WebSocket-Version"])
    assert w.status in (400, 426), w.head
    check_http_error(w, w.status, "bad_request")
    assert_ws_still_works(ws)


def test_handshake_http10(ws, channel):
    w = refused(ws, f"/sub/{channel}", version="HTTP/1.0")
    check_http_error(w, 400, "bad_request")
    assert_ws_still_works(ws)


@pytest.mark.parametrize("connection", [None, "keep-alive", "close", "upgraded"])
def test_handshake_without_connection_upgrade(ws, channel, connection):
    if connection is None:
        w = refused(ws, f"/sub/{channel}", omit=["Connection"])
    else:
        w = refused(ws, f"/sub/{channel}", headers={"Connection": connection})
    check_http_error(w, 400, "bad_request")
    assert_ws_still_works(ws)


@pytest.mark.parametrize("connection", ["Up", "u", "keep-alive, Upg"])
def test_handshake_connection_token_prefix(ws, channel, connection):
    """"Connection: Up" does not name the upgrade token: no handshake."""
    w = refused(ws, f"/sub/{channel}", headers={"Connection": connection})
    check_http_error(w, 400, "bad_request")
    assert_ws_still_works(ws)


@pytest.mark.parametrize("upgrade", ["web", "w", "websock"])
def test_upgrade_token_prefix_is_not_websocket(ws, channel, upgrade):
    """"Upgrade: web" is not a WebSocket upgrade: the request is served as
    the plain GET it otherwise is (here a short poll)."""
    w = refused(ws, f"/sub/{channel}?poll=1", headers={"Upgrade": upgrade})
    assert w.status == 200, (w.head, w.body)
    assert w.json_body() == {"channel": channel, "messages": [], "last_id": 0}


@pytest.mark.parametrize("path,status,code", [
    ("/sub/bad%20name", 400, "bad_channel"),
    ("/sub/a$b", 400, "bad_channel"),
    ("/sub/" + "x" * 129, 400, "bad_channel"),
    ("/sub/", 404, "not_found"),
    ("/sub/a/b", 404, "not_found"),
    ("/sub/CHANNEL?last_id=abc", 400, "bad_request"),
    ("/sub/CHANNEL?last_id=-1", 400, "bad_request"),
], ids=["space", "dollar", "129", "empty", "two-segments", "cursor-abc", "cursor-neg"])
def test_handshake_bad_url(ws, channel, path, status, code):
    w = refused(ws, path.replace("CHANNEL", channel))
    check_http_error(w, status, code)
    assert_ws_still_works(ws)


def test_handshake_bad_last_event_id_header(ws, channel):
    w = refused(ws, f"/sub/{channel}", headers={"Last-Event-ID": "1x"})
    check_http_error(w, 400, "bad_request")


def test_handshake_post_refused(ws, channel):
    req = (f"POST /sub/{channel} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {new_key()}\r\n"
           f"Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n").encode()
    with socket.create_connection((HOST, ws.port), timeout=EVENT_TIMEOUT) as s:
        s.sendall(req)
        p = HTTPResponseParser()
        while not p.complete:
            data = s.recv(65536)
            if not data:
                break
            p.feed(data)
    assert p.status == 405
    assert "GET" in p.header("Allow")
    assert_ws_still_works(ws)


@pytest.mark.parametrize("origin,status", [
    ("https://good.example", 101),
    ("HTTPS://GOOD.EXAMPLE", 101),          # docs: compared case-insensitively
    ("https://evil.example", 403),
    ("https://good.example.evil.example", 403),
    ("http://good.example", 403),
    ("https://good.example:8443", 403),
    ("null", 403),
    (None, 403),
], ids=["good", "good-upper", "evil", "suffix", "http", "port", "null", "none"])
def test_origins(ws, channel, origin, status):
    offset = ws.apache.log_offset()
    headers = {"Origin": origin} if origin is not None else {}
    w = RawWS(ws.port, f"/ws-origin/{channel}", headers, expect_101=False)
    try:
        if status == 101:
            assert w.status == 101, (w.head, w.body)
            w.wait_subscribed(channel)
            return
        check_http_error(w, 403, "forbidden")
    finally:
        w.close()
    if origin is not None:
        log = ws.apache.error_log_text()[offset:]
        assert "refused (PushWebSocketOrigins)" in log and origin in log, log[-2000:]
    assert_ws_still_works(ws)


def test_origins_not_set_allows_any(ws, channel):
    with RawWS(ws.port, f"/sub/{channel}", {"Origin": "https://anything.example"}) as w:
        w.wait_subscribed(channel)
    with RawWS(ws.port, f"/sub/{channel}") as w:
        w.wait_subscribed(channel)


def test_origins_python_client(ws, channel):
    async def main():
        async with ws_connect(ws.port, f"/ws-origin/{channel}",
                              origin="https://good.example") as c:
            await await_subscribed(c, channel)
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as ei:
            async with ws_connect(ws.port, f"/ws-origin/{channel}",
                                  origin="https://evil.example"):
                pass
        assert ei.value.status_code == 403
    run(main())


@pytest.mark.parametrize("offer,chosen", [
    ("foo, chat.v2", "chat.v2"),
    ("chat.v1", "chat.v1"),
    ("chat.v2", "chat.v2"),
    ("foo,chat.v2,bar", "chat.v2"),
    ("bar", None),
    ("chat.v3, chat", None),
    ("chat", None),
    ("c", None),
    (None, None),
], ids=["foo-v2", "v1", "v2", "no-spaces", "none-of-ours", "near-miss", "prefix-chat",
        "prefix-c", "no-offer"])
def test_subprotocols(ws, channel, offer, chosen):
    headers = {"Sec-WebSocket-Protocol": offer} if offer else {}
    with RawWS(ws.port, f"/ws-proto/{channel}", headers) as w:
        assert w.status == 101
        assert w.header("Sec-WebSocket-Protocol") == chosen, w.head
        w.wait_subscribed(channel)


def test_subprotocols_both_offered_one_answered(ws, channel):
    with RawWS(ws.port, f"/ws-proto/{channel}",
               {"Sec-WebSocket-Protocol": "chat.v2, chat.v1"}) as w:
        assert w.header("Sec-WebSocket-Protocol") in ("chat.v1", "chat.v2"), w.head
        assert "," not in w.header("Sec-WebSocket-Protocol")


def test_subprotocols_python_client(ws, channel):
    async def main():
        async with ws_connect(ws.port, f"/ws-proto/{channel}",
                              subprotocols=["foo", "chat.v2"]) as c:
            assert c.subprotocol == "chat.v2"
            await await_subscribed(c, channel)
        async with ws_connect(ws.port, f"/ws-proto/{channel}", subprotocols=["bar"]) as c:
            assert c.subprotocol is None
            await await_subscribed(c, channel)
    run(main())


def test_websocket_off(ws, channel):
    w = refused(ws, f"/ws-off/{channel}")
    check_http_error(w, 400, "bad_request")
    # the location still serves the other transports
    with ws.sse(channel, path=f"/ws-off/{channel}") as c:
        c.wait_preamble()
        ack = ws.publish_ok(channel, "sse still works")
        assert c.next_event().int_id == ack["id"]
    assert_ws_still_works(ws)


def test_deflate_off(ws, channel):
    with RawWS(ws.port, f"/ws-nodeflate/{channel}", deflate=True) as w:
        assert w.status == 101
        assert w.header("Sec-WebSocket-Extensions") is None, w.head
        w.wait_subscribed(channel)
        ws.publish_ok(channel, "x" * 500)
        f = w.recv_frame()
        assert f.opcode == OP_TEXT and not f.rsv1, f
        assert json.loads(f.payload)["data"] == "x" * 500

    async def main():
        async with ws_connect(ws.port, f"/ws-nodeflate/{channel}") as c:
            assert c.extensions == []
            assert "Sec-WebSocket-Extensions" not in c.response_headers
            await await_subscribed(c, channel)
            big = "y" * 3000
            await asend_json(c, {"type": "publish", "channel": channel, "data": big,
                                 "ref": 1})
            got = await arecv_until(c, lambda m: m["type"] == "message")
            assert got[-1]["data"] == big
    run(main())


# ---------------------------------------------------------------------------
# the JSON protocol
# ---------------------------------------------------------------------------

def publish_n(stack, channel, n, prefix="m"):
    return [stack.publish_ok(channel, f"{prefix}{i}", event=f"e{i}")["id"] for i in range(1, n + 1)]


def test_connect_without_cursor(ws, channel):
    publish_n(ws, channel, 3)
    with RawWS(ws.port, f"/sub/{channel}") as w:
        # nothing is replayed; last_id is the channel's current last id
        assert w.recv_json() == {"type": "subscribed", "channel": channel, "last_id": 3}
        ws.publish_ok(channel, "live")
        m = w.recv_json()
        assert (m["type"], m["id"], m["data"], m["event"]) == ("message", 4, "live", None)


@pytest.mark.parametrize("how", ["query", "header"])
def test_connect_resumes_from_cursor(ws, channel, how):
    publish_n(ws, channel, 4)
    if how == "query":
        w = RawWS(ws.port, f"/sub/{channel}?last_id=1")
    else:
        w = RawWS(ws.port, f"/sub/{channel}", {"Last-Event-ID": "1"})
    with w:
        msgs = w.wait_subscribed(channel)
        assert [no_time(m) for m in msgs] == [
            {"type": "message", "channel": channel, "id": i, "event": f"e{i}", "data": f"m{i}"}
            for i in (2, 3, 4)] + [{"type": "subscribed", "channel": channel, "last_id": 4}]
        assert all(isinstance(m["time"], int) and m["time"] > 0 for m in msgs[:-1])
        assert msgs[0]["time"] <= msgs[1]["time"] <= msgs[2]["time"]
        ws.publish_ok(channel, "live")
        assert w.recv_json()["id"] == 5


def test_connect_cursor_at_end_and_zero(ws, channel):
    publish_n(ws, channel, 2)
    with RawWS(ws.port, f"/sub/{channel}?last_id=2") as w:
        assert w.recv_json() == {"type": "subscribed", "channel": channel, "last_id": 2}
    with RawWS(ws.port, f"/sub/{channel}?last_id=0") as w:
        msgs = w.wait_subscribed(channel)
        assert [m.get("id") for m in msgs[:-1]] == [1, 2]
        assert msgs[-1] == {"type": "subscribed", "channel": channel, "last_id": 2}


def test_subscribe_command(ws, channel):
    other = unique_channel("other")
    publish_n(ws, other, 3, prefix="o")
    ref = {"n": [1, 2, {"x": None}], "s": "é"}

    async def main():
        async with ws_connect(ws.port, f"/sub/{channel}") as c:
            await await_subscribed(c, channel)
            await asend_json(c, {"type": "subscribe", "channel": other, "last_id": 1,
                                 "ref": ref})
            msgs = await await_subscribed(c, other)
            assert [no_time(m) for m in msgs] == [
                {"type": "message", "channel": other, "id": 2, "event": "e2", "data": "o2"},
                {"type": "message", "channel": other, "id": 3, "event": "e3", "data": "o3"},
                {"type": "subscribed", "channel": other, "last_id": 3, "ref": ref}]
            # without last_id: nothing replayed, the channel's last id
            third = unique_channel("third")
            publish_n(ws, third, 2)
            await asend_json(c, {"type": "subscribe", "channel": third, "ref": 7})
            assert await arecv_json(c) == {"type": "subscribed", "channel": third,
                                           "last_id": 2, "ref": 7}
            # no ref: none in the answer
            fourth = unique_channel("fourth")
            await asend_json(c, {"type": "subscribe", "channel": fourth})
            assert await arecv_json(c) == {"type": "subscribed", "channel": fourth,
                                           "last_id": 0}
            # all four channels deliver
            for ch in (channel, other, third, fourth):
                ws.publish_ok(ch, f"to {ch}")
                m = await arecv_json(c)
                assert (m["type"], m["channel"], m["data"]) == ("message", ch, f"to {ch}")
    run(main())


def test_unsubscribe_and_not_subscribed(ws, channel):
    async def main():
        async with ws_connect(ws.port, f"/sub/{channel}") as c:
            await await_subscribed(c, channel)
            await asend_json(c, {"type": "unsubscribe", "channel": channel, "ref": "u1"})
            assert await arecv_json(c) == {"type": "unsubscribed", "channel": channel,
                                           "ref": "u1"}
            await asend_json(c, {"type": "unsubscribe", "channel": channel, "ref": "u2"})
            m = await arecv_json(c)
            assert (m["type"], m["code"], m["ref"]) == ("error", "not_subscribed", "u2"), m
            assert isinstance(m["message"], str) and m["message"]
            await asend_json(c, {"type": "unsubscribe", "channel": unique_channel("never")})
            m = await arecv_json(c)
            assert (m["type"], m["code"]) == ("error", "not_subscribed"), m
            assert "ref" not in m
            # nothing of the channel arrives any more; the socket is fine
            ws.publish_ok(channel, "not for us")
            await asend_json(c, {"type": "ping", "ref": "sentinel"})
            assert await arecv_json(c) == {"type": "pong", "ref": "sentinel"}
    run(main())


def test_several_channels_subscribe_unsubscribe(ws):
    a, b, c3 = (unique_channel(p) for p in ("a", "b", "c"))

    async def main():
        async with ws_connect(ws.port, f"/sub/{a}") as c:
            await await_subscribed(c, a)
            for i, ch in enumerate((b, c3)):
                await asend_json(c, {"type": "subscribe", "channel": ch, "ref": i})
                await await_subscribed(c, ch)
            for ch in (a, b, c3):
                ws.publish_ok(ch, f"first {ch}")
            got = [await arecv_json(c) for _ in range(3)]
            assert sorted((m["channel"], m["data"]) for m in got) == \
                sorted((ch, f"first {ch}") for ch in (a, b, c3))

            await asend_json(c, {"type": "unsubscribe", "channel": b, "ref": "ub"})
            assert await arecv_json(c) == {"type": "unsubscribed", "channel": b, "ref": "ub"}
            # b first: if it still reached us it would come before the others
            ws.publish_ok(b, "second b")
            ws.publish_ok(a, "second a")
            ws.publish_ok(c3, "second c")
            await asend_json(c, {"type": "ping", "ref": "end"})
            got = []
            while len([m for m in got if m["type"] == "message"]) < 2 \
                    or not any(m["type"] == "pong" for m in got):
                got.append(await arecv_json(c))
            msgs = [(m["channel"], m["data"]) for m in got if m["type"] == "message"]
            assert sorted(msgs) == sorted([(a, "second a"), (c3, "second c")]), got
            # b again, after the others: still nothing of b
            ws.publish_ok(b, "third b")
            ws.publish_ok(a, "third a")
            m = await arecv_json(c)
            assert (m["channel"], m["data"]) == (a, "third a"), m
            # and b can be subscribed again, resuming where it wants
            await asend_json(c, {"type": "subscribe", "channel": b, "last_id": 1})
            msgs = await await_subscribed(c, b)
            assert [(m.get("id"), m.get("data")) for m in msgs[:-1]] == \
                [(2, "second b"), (3, "third b")]
            assert msgs[-1]["last_id"] == 3
    run(main())


def test_subscribe_then_unsubscribe_in_one_write(ws, channel):
    """Commands are answered in the order they were sent, also when they
    arrive together: subscribe c + unsubscribe c leaves c unsubscribed."""
    other = unique_channel("sub-unsub")
    with subscribed_raw(ws.port, f"/sub/{channel}") as w:
        w.send(frame(OP_TEXT, json.dumps({"type": "subscribe", "channel": other, "ref": "s"}))
               + frame(OP_TEXT, json.dumps({"type": "unsubscribe", "channel": other,
                                            "ref": "u"})))
        got = [w.recv_json(), w.recv_json()]
        assert got == [{"type": "subscribed", "channel": other, "last_id": 0, "ref": "s"},
                       {"type": "unsubscribed", "channel": other, "ref": "u"}], got
        ws.publish_ok(other, "must not arrive")
        ws.publish_ok(channel, "sentinel")
        m = w.recv_json()
        assert (m["channel"], m["data"]) == (channel, "sentinel"), m


def test_replies_in_command_order(ws, channel):
    """subscribe, ping and publish sent in one write are answered in order."""
    other = unique_channel("order")
    with subscribed_raw(ws.port, f"/ws/{channel}") as w:
        w.send(frame(OP_TEXT, json.dumps({"type": "subscribe", "channel": other, "ref": 1}))
               + frame(OP_TEXT, json.dumps({"type": "ping", "ref": 2})))
        got = [w.recv_json(), w.recv_json()]
        assert [m["ref"] for m in got] == [1, 2], got


def test_command_right_after_a_reply_is_answered(ws, channel):
    """A command that arrives while the previous one is still being carried
    out (its reply already sent) must be read and answered as well."""
    with subscribed_raw(ws.port, f"/ws/{channel}") as w:
        for op in ("subscribe", "publish"):
            for i in range(100):
                w.send_json({"type": op, "channel": f"{channel}-{op}-{i}", "data": "d",
                             "ref": i})
                try:
                    m = w.recv_json()
                except TimeoutError:
                    pytest.fail(f"no answer to {op} #{i}, sent right after the answer to the "
                                f"previous command (bound {w.timeout}s)")
                assert (m["type"], m["ref"]) == ({"subscribe": "subscribed",
                                                  "publish": "published"}[op], i), m


def test_close_right_after_a_reply_is_answered(ws, channel):
    for i in range(15):
        with subscribed_raw(ws.port, f"/ws/{channel}") as w:
            w.send_json({"type": "subscribe", "channel": f"{channel}-{i}", "ref": i})
            w.wait_subscribed()
            w.send_frame(OP_CLOSE, b"\x03\xe8")
            try:
                w.expect_close(1000)
            except TimeoutError:
                pytest.fail(f"attempt {i}: no close answer to a close frame sent right after "
                            f"the answer to a subscribe (bound {w.timeout}s)")


def test_raw_frame_right_after_echo_is_published(ws, channel):
    with raw_ready(ws, channel) as w:
        for i in range(30):
            w.send_frame(OP_TEXT, f"n{i}")
            assert w.recv_message() == (OP_TEXT, f"n{i}".encode())


def test_ping_command(ws, channel):
    with subscribed_raw(ws.port, f"/sub/{channel}") as w:
        w.send_json({"type": "ping", "ref": "p1"})
        assert w.recv_json() == {"type": "pong", "ref": "p1"}
        w.send_json({"type": "ping"})
        assert w.recv_json() == {"type": "pong"}
        for ref in (0, None, [1, "two"], {"deep": {"er": [True, False]}}, 1.5, "é\u2603"):
            w.send_json({"type": "ping", "ref": ref})
            assert w.recv_json() == {"type": "pong", "ref": ref}


def test_publish_forbidden_by_default(ws, channel):
    with subscribed_raw(ws.port, f"/sub/{channel}") as w:
        w.send_json({"type": "publish", "channel": channel, "data": "nope", "ref": 9})
        m = w.recv_json()
        assert (m["type"], m["code"], m["ref"]) == ("error", "forbidden", 9), m
        assert isinstance(m["message"], str) and m["message"]
        w.send_json({"type": "ping", "ref": "after"})
        assert w.recv_json() == {"type": "pong", "ref": "after"}
    assert ws.poll(channel, 0).json()["messages"] == []


def test_publish_over_socket_reaches_sse(ws, channel):
    target = unique_channel("target")
    with ws.subscribe(target) as sse, subscribed_raw(ws.port, f"/ws/{channel}") as w:
        w.send_json({"type": "publish", "channel": target, "data": "line1\nline2",
                     "event": "news", "ref": "r1"})
        assert w.recv_json() == {"type": "published", "channel": target, "id": 1,
                                 "subscribers": 1, "ref": "r1"}
        ev = sse.next_event()
        assert (ev.int_id, ev.event, ev.data) == (1, "news", "line1\nline2")
        # no event name, no ref
        w.send_json({"type": "publish", "channel": target, "data": "plain"})
        assert w.recv_json() == {"type": "published", "channel": target, "id": 2,
                                 "subscribers": 1}
        ev = sse.next_event()
        assert (ev.int_id, ev.event, ev.data) == (2, None, "plain")
        # null event is no event
        w.send_json({"type": "publish", "channel": target, "data": "n", "event": None})
        assert w.recv_json()["id"] == 3
        assert sse.next_event().event is None
    doc = ws.poll(target, 0).json()
    assert [(m["id"], m["data"]) for m in doc["messages"]] == \
        [(1, "line1\nline2"), (2, "plain"), (3, "n")]


def test_publish_to_own_channel_and_other_sockets(ws, channel):
    async def main():
        async with ws_connect(ws.port, f"/ws/{channel}") as c1, \
                ws_connect(ws.port, f"/sub/{channel}") as c2:
            await await_subscribed(c1, channel)
            await await_subscribed(c2, channel)
            await asend_json(c1, {"type": "publish", "channel": channel, "data": "héllo ☃",
                                  "event": "chat", "ref": [1]})
            got = []
            while len(got) < 2:
                got.append(await arecv_json(c1))
            pub = next(m for m in got if m["type"] == "published")
            msg = next(m for m in got if m["type"] == "message")
            assert pub == {"type": "published", "channel": channel, "id": 1, "subscribers": 2,
                           "ref": [1]}
            assert no_time(msg) == {"type": "message", "channel": channel, "id": 1,
                                    "event": "chat", "data": "héllo ☃"}
            assert no_time(await arecv_json(c2)) == no_time(msg)
    run(main())


MALFORMED = ["{", "not json", '{"type":', "[1,2]", '"ping"', "42", "null", "",
             '{"type":"ping"} trailing', '{"type":"ping"}{"type":"ping"}']


@pytest.mark.parametrize("text", MALFORMED,
                         ids=["open-brace", "text", "truncated", "array", "string", "number",
                              "null", "empty", "trailing", "two-objects"])
def test_malformed_json(ws, channel, text):
    with subscribed_raw(ws.port, f"/ws/{channel}") as w:
        w.send_text(text)
        m = w.recv_json()
        assert (m["type"], m.get("code")) == ("error", "bad_request"), (text, m)
        assert "ref" not in m, m
        assert isinstance(m["message"], str) and m["message"]
        w.send_json({"type": "ping", "ref": "still"})
        assert w.recv_json() == {"type": "pong", "ref": "still"}
    assert_ws_still_works(ws)


@pytest.mark.parametrize("obj", [{"type": "nope", "ref": 1}, {"ref": 1},
                                 {"type": 5, "ref": 1}, {"type": "PING", "ref": 1},
                                 {"type": None, "ref": 1}],
                         ids=["nope", "missing", "number", "upper", "null"])
def test_unknown_command(ws, channel, obj):
    with subscribed_raw(ws.port, f"/ws/{channel}") as w:
        w.send_json(obj)
        m = w.recv_json()
        assert (m["type"], m["code"], m["ref"]) == ("error", "unknown_command", 1), m
        w.send_json({"type": "ping", "ref": "still"})
        assert w.recv_json() == {"type": "pong", "ref": "still"}


BAD_CHANNEL_VALUES = ["bad name", "", "x" * 129, "a/b", "caf\u00e9", 5, None, ["a"]]


@pytest.mark.parametrize("command", ["subscribe", "unsubscribe", "publish"])
@pytest.mark.parametrize("value", BAD_CHANNEL_VALUES + ["<missing>"],
                         ids=lambda v: repr(v)[:12])
def test_bad_channel_in_command(ws, channel, command, value):
    cmd = {"type": command, "ref": "bc", "data": "x"}
    if value != "<missing>":
        cmd["channel"] = value
    with subscribed_raw(ws.port, f"/ws/{channel}") as w:
        w.send_json(cmd)
        m = w.recv_json()
        assert (m["type"], m["code"], m["ref"]) == ("error", "bad_channel", "bc"), m
        w.send_json({"type": "ping", "ref": "still"})
        assert w.recv_json() == {"type": "pong", "ref": "still"}


@pytest.mark.parametrize("cmd", [
    {"type": "publish", "data": 5},
    {"type": "publish"},
    {"type": "publish", "data": None},
    {"type": "publish", "data": ["x"]},
    {"type": "publish", "data": "x", "event": "has space"},
    {"type": "publish", "data": "x", "event": 7},
    {"type": "publish", "data": "x", "event": "e" * 65},
    {"type": "subscribe", "last_id": -1},
    {"type": "subscribe", "last_id": "3"},
    {"type": "subscribe", "last_id": None},
], ids=["data-number", "no-data", "data-null", "data-list", "event-space", "event-number",
        "event-65", "cursor-negative", "cursor-string", "cursor-null"])
def test_bad_command_fields(ws, channel, cmd):
    cmd = dict(cmd, channel=channel, ref="bf")
    with subscribed_raw(ws.port, f"/ws/{channel}") as w:
        w.send_json(cmd)
        m = w.recv_json()
        assert (m["type"], m["code"], m["ref"]) == ("error", "bad_request", "bf"), m
        w.send_json({"type": "ping", "ref": "still"})
        assert w.recv_json() == {"type": "pong", "ref": "still"}
    assert ws.poll(channel, 0).json()["messages"] == []


def test_binary_frame_in_json_mode(ws, channel):
    with subscribed_raw(ws.port, f"/ws/{channel}") as w:
        w.send_frame(OP_BINARY, json.dumps({"type": "ping", "ref": 1}).encode())
        m = w.recv_json()
        assert m == {"type": "error", "code": "bad_request",
                     "message": "commands are JSON text messages"}, m
        w.send_json({"type": "ping", "ref": 2})
        assert w.recv_json() == {"type": "pong", "ref": 2}

    async def main():
        async with ws_connect(ws.port, f"/ws/{channel}") as c:
            await await_subscribed(c, channel)
            await c.send(b'{"type":"ping"}')
            m = await arecv_json(c)
            assert (m["type"], m["code"]) == ("error", "bad_request")
    run(main())
    assert_ws_still_works(ws)


def test_errors_keep_subscriptions(ws, channel):
    with subscribed_raw(ws.port, f"/ws/{channel}") as w:
        for bad in ("{", '{"type":"x"}', '{"type":"subscribe","channel":"bad name"}'):
            w.send_text(bad)
            assert w.recv_json()["type"] == "error"
        ack = ws.publish_ok(channel, "after errors")
        m = w.recv_json()
        assert (m["type"], m["id"]) == ("message", ack["id"])


# ---------------------------------------------------------------------------
# message size
# ---------------------------------------------------------------------------

def padded_ping(total, ref_char="p"):
    """A JSON ping command of exactly total bytes."""
    base = json.dumps({"type": "ping", "ref": ""})
    return json.dumps({"type": "ping", "ref": ref_char * (total - len(base))})


def test_max_message_default(ws, channel):
    with subscribed_raw(ws.port, f"/ws/{channel}") as w:
        text = padded_ping(65536)
        assert len(text) == 65536
        w.send_text(text)
        assert w.recv_json() == json.loads(text.replace('"ping"', '"pong"'))
        w.send_text(padded_ping(65537))
        w.expect_close(1009)
    assert_ws_still_works(ws)


def test_max_message_directive_python_client(ws, channel):
    async def main():
        async with ws_connect(ws.port, f"/ws-small/{channel}", compression=None) as c:
            await await_subscribed(c, channel)
            await c.send(padded_ping(1000))
            assert (await arecv_json(c))["type"] == "pong"
            await c.send(padded_ping(1001))
            with pytest.raises(websockets.exceptions.ConnectionClosed) as ei:
                await arecv_json(c)
            assert ei.value.rcvd is not None and ei.value.rcvd.code == 1009, ei.value
    run(main())
    assert_ws_still_works(ws)


def test_max_message_applies_after_inflating(ws, channel):
    """A compressed message that inflates to more than the limit: 1009."""
    async def main():
        async with ws_connect(ws.port, f"/ws-small/{channel}") as c:
            assert c.extensions, "deflate was not negotiated"
            await await_subscribed(c, channel)
            # compresses to a few bytes, inflates to 5000
            await c.send(padded_ping(5000))
            with pytest.raises(websockets.exceptions.ConnectionClosed) as ei:
                await arecv_json(c)
            assert ei.value.rcvd is not None and ei.value.rcvd.code == 1009, ei.value
    run(main())
    assert_ws_still_works(ws)


# ---------------------------------------------------------------------------
# permessage-deflate with python-websockets
# ---------------------------------------------------------------------------

def test_deflate_negotiated(ws, channel):
    async def main():
        async with ws_connect(ws.port, f"/sub/{channel}") as c:
            ext = c.response_headers["Sec-WebSocket-Extensions"]
            assert ext.split(";")[0].strip() == "permessage-deflate", ext
            assert "server_no_context_takeover" in ext
            assert len(c.extensions) == 1 and isinstance(c.extensions[0], PerMessageDeflate)
            assert c.extensions[0].remote_no_context_takeover is True
            await await_subscribed(c, channel)
    run(main())


def test_deflate_long_messages_both_ways(ws, channel):
    long1 = "".join(f"line {i}: the quick brown fox jumps over the lazy dog\n"
                    for i in range(300))
    long2 = long1.replace("fox", "cat") + "é☃" * 500
    sse_channel = unique_channel("deflate-sse")

    async def main():
        with ws.subscribe(sse_channel) as sse:
            async with ws_connect(ws.port, f"/ws/{channel}") as c:
                assert c.extensions
                await await_subscribed(c, channel)
                # server -> client, compressed (>= 64 bytes)
                ws.publish_ok(channel, long1, event="big")
                m = await arecv_json(c)
                assert (m["id"], m["event"], m["data"]) == (1, "big", long1)
                # short ones pass too
                ws.publish_ok(channel, "tiny")
                assert (await arecv_json(c))["data"] == "tiny"
                # client -> server compressed, several in a row (the client
                # keeps its compression context between messages)
                for i, text in enumerate([long1, long2, long1, "short", long2 + "!"]):
                    await asend_json(c, {"type": "publish", "channel": sse_channel,
                                         "data": text, "ref": i})
                    got = await arecv_json(c)
                    assert got == {"type": "published", "channel": sse_channel, "id": i + 1,
                                   "subscribers": 1, "ref": i}, got
                    ev = await asyncio.to_thread(sse.next_event)
                    assert (ev.int_id, ev.data) == (i + 1, text)
    run(main())


def test_deflate_raw_frames(ws, channel):
    """On the wire: messages of 64 bytes or more are compressed (RSV1),
    shorter ones are not; a compressed client message is understood."""
    with RawWS(ws.port, f"/ws/{channel}", deflate=True) as w:
        ext = w.header("Sec-WebSocket-Extensions")
        assert ext and "permessage-deflate" in ext and "server_no_context_takeover" in ext
        w.wait_subscribed(channel)
        ws.publish_ok(channel, "z" * 400)
        f = w.recv_frame()
        assert f.opcode == OP_TEXT and f.rsv1, f
        assert json.loads(inflate_message(f.payload))["data"] == "z" * 400
        w.send_json({"type": "ping", "ref": 1})
        f = w.recv_frame()
        assert f.opcode == OP_TEXT and not f.rsv1 and len(f.payload) < 64, f
        assert json.loads(f.payload) == {"type": "pong", "ref": 1}
        # client -> server compressed, no context takeover needed
        for i in range(3):
            w.send_json({"type": "publish", "channel": channel, "data": "w" * 300, "ref": i},
                        compress=True)
            got = [w.recv_json(), w.recv_json()]
            assert sorted(m["type"] for m in got) == ["message", "published"], got
            assert next(m for m in got if m["type"] == "message")["data"] == "w" * 300


# ---------------------------------------------------------------------------
# server pings
# ---------------------------------------------------------------------------

def test_server_pings_answered_keep_connection(ws, channel):
    with subscribed_raw(ws.port, f"/ws-ping/{channel}", auto_pong=True) as w:
        deadline = time.monotonic() + 30
        while len(w.pings) < 3:
            assert time.monotonic() < deadline, "fewer than 3 server pings"
            try:
                w.recv_message(timeout=5)
                pytest.fail("unexpected data message")
            except TimeoutError:
                pass
            except ServerClosed as e:
                pytest.fail(f"closed although every ping was answered: {e}")
        assert all(p == w.pings[0] for p in w.pings), w.pings
        # still subscribed and answering
        ack = ws.publish_ok(channel, "after pings")
        assert w.recv_json()["id"] == ack["id"]
        w.send_json({"type": "ping", "ref": 1})
        assert w.recv_json() == {"type": "pong", "ref": 1}


def test_client_not_answering_pings_is_dropped(ws, channel):
    w = subscribed_raw(ws.port, f"/ws-ping/{channel}", auto_pong=False, timeout=30)
    try:
        pings = 0
        while True:
            try:
                f = w.recv_frame(timeout=30)
            except EOFError:
                break
            if f.opcode == OP_PING:
                pings += 1
            elif f.opcode == OP_CLOSE:
                w.expect_eof(30)
                break
            else:
                pytest.fail(f"unexpected frame {f!r}")
        assert pings >= 1
    finally:
        w.close()
    assert_ws_still_works(ws)


def test_python_client_survives_pings(ws, channel):
    async def main():
        async with ws_connect(ws.port, f"/ws-ping/{channel}") as c:
            await await_subscribed(c, channel)
            await asyncio.sleep(3.5)          # several ping intervals
            ack = ws.publish_ok(channel, "still here")
            assert (await arecv_json(c))["id"] == ack["id"]
    run(main())


def test_ping_zero_sends_no_pings(ws, channel):
    with subscribed_raw(ws.port, f"/ws-noping/{channel}") as w:
        time.sleep(2.5)
        w.send_json({"type": "ping", "ref": "end"})
        assert w.recv_json() == {"type": "pong", "ref": "end"}
        assert w.pings == [], w.pings


# ---------------------------------------------------------------------------
# raw mode
# ---------------------------------------------------------------------------

def raw_ready(stack, channel, path="/ws-raw/", **kw):
    """A raw-mode socket whose subscription is in place: the answer to a
    ping comes from the reactor, which only gets the socket after it."""
    w = RawWS(stack.port, f"{path}{channel}", **kw)
    w.send_frame(OP_PING, b"ready?")
    f = w.recv_frame()
    assert (f.opcode, f.payload) == (OP_PONG, b"ready?"), f
    return w


def test_raw_text_goes_to_every_raw_subscriber(ws, channel):
    with raw_ready(ws, channel) as a, raw_ready(ws, channel) as b, \
            ws.subscribe(channel) as sse, subscribed_raw(ws.port, f"/sub/{channel}") as j:
        a.send_frame(OP_TEXT, "hello raw ☃")
        for w in (a, b):
            assert w.recv_message() == (OP_TEXT, "hello raw ☃".encode())
        ev = sse.next_event()
        assert (ev.int_id, ev.event, ev.data) == (1, None, "hello raw ☃")
        m = j.recv_json()
        assert (m["id"], m["event"], m["data"]) == (1, None, "hello raw ☃")
        # no JSON ack in raw mode: the next frame for a is the answer to a ping
        a.send_frame(OP_PING, b"x")
        f = a.recv_frame()
        assert (f.opcode, f.payload) == (OP_PONG, b"x"), f
        # a JSON-looking text is data too
        b.send_frame(OP_TEXT, '{"type":"ping"}')
        for w in (a, b):
            assert w.recv_message() == (OP_TEXT, b'{"type":"ping"}')
        assert sse.next_event().data == '{"type":"ping"}'
    assert [m["data"] for m in ws.poll(channel, 0).json()["messages"]] == \
        ["hello raw ☃", '{"type":"ping"}']


def test_raw_binary_byte_for_byte(ws, channel):
    data = bytes(range(256)) * 4
    with raw_ready(ws, channel) as a, raw_ready(ws, channel) as b, \
            ws.subscribe(channel) as sse, subscribed_raw(ws.port, f"/sub/{channel}") as j:
        a.send_frame(OP_BINARY, data)
        for w in (a, b):
            assert w.recv_message() == (OP_BINARY, data)
        assert sse.next_event().event == "~binary"
        m = j.recv_json()
        assert (m["id"], m["event"]) == (1, "~binary")
        # an empty binary and an empty text message
        a.send_frame(OP_BINARY, b"")
        a.send_frame(OP_TEXT, b"")
        for w in (a, b):
            assert w.recv_message() == (OP_BINARY, b"")
            assert w.recv_message() == (OP_TEXT, b"")


def test_raw_fragmented_and_compressed(ws, channel):
    with raw_ready(ws, channel, deflate=True) as a, raw_ready(ws, channel) as b:
        assert a.deflate and not b.deflate
        a.send_frame(OP_TEXT, "part one, ", fin=False)
        a.send_frame(0, "part two, ", fin=False)
        a.send_frame(0, "end")
        for w in (a, b):
            assert w.recv_message() == (OP_TEXT, b"part one, part two, end")
        big = b"\x00\x01binary\xff" * 200
        a.send_frame(OP_BINARY, deflate_message(big), rsv1=True)
        for w in (a, b):
            assert w.recv_message() == (OP_BINARY, big)
        f = next(f for f in reversed(a.frames) if f.opcode == OP_BINARY)
        assert f.rsv1, "a message of 64 bytes or more to a deflate client is compressed"


def test_raw_receives_http_publish_and_history(ws, channel):
    ws.publish_ok(channel, "before 1")
    ws.publish_ok(channel, "before 2", event="ev")
    with RawWS(ws.port, f"/ws-raw/{channel}?last_id=0") as w:
        assert w.recv_message() == (OP_TEXT, b"before 1")
        assert w.recv_message() == (OP_TEXT, b"before 2")
        ws.publish_ok(channel, "live")
        assert w.recv_message() == (OP_TEXT, b"live")
        w.send_frame(OP_PING, b"p")
        assert w.recv_frame().opcode == OP_PONG      # no "subscribed" in raw mode


def test_raw_non_utf8_http_publish_is_valid_frame(ws, channel):
    """Data published over HTTP that is not UTF-8 cannot go out as a text
    frame (RFC 6455 §5.6, §8.1): the raw subscriber must get a frame a
    conforming client accepts."""
    with raw_ready(ws, channel) as w:
        r = ws.publish(channel, b"caf\xe9 \xff\xfe")
        assert r.status == 200, r
        op, payload = w.recv_message()
        if op == OP_TEXT:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                pytest.fail(f"text frame with invalid UTF-8 sent to a raw subscriber: "
                            f"{payload!r}")


def test_non_utf8_data_in_json_mode(ws, channel):
    """Data that is not UTF-8 still makes a valid UTF-8 text frame (U+FFFD)."""
    with subscribed_raw(ws.port, f"/sub/{channel}") as w:
        assert ws.publish(channel, b"caf\xe9 \xff").status == 200
        m = w.recv_json()         # decodes strictly
        assert m["data"] == "caf\ufffd \ufffd", m


def test_raw_python_client(ws, channel):
    async def main():
        async with ws_connect(ws.port, f"/ws-raw/{channel}") as c1, \
                ws_connect(ws.port, f"/ws-raw/{channel}", compression=None) as c2:
            await asyncio.wait_for(await c1.ping(), EVENT_TIMEOUT)
            await asyncio.wait_for(await c2.ping(), EVENT_TIMEOUT)
            texts = ["one", "two " * 100, "three ☃"]
            for t in texts:
                await c1.send(t)
            for c in (c1, c2):
                got = [await asyncio.wait_for(c.recv(), EVENT_TIMEOUT) for _ in range(3)]
                assert got == texts, got
            await c2.send(b"\x00\xffbin" * 50)
            for c in (c1, c2):
                got = await asyncio.wait_for(c.recv(), EVENT_TIMEOUT)
                assert got == b"\x00\xffbin" * 50, got
    run(main())


def test_raw_publish_off_closes_1008(ws, channel):
    with raw_ready(ws, channel, path="/ws-raw-ro/") as w:
        ws.publish_ok(channel, "receiving works")
        assert w.recv_message() == (OP_TEXT, b"receiving works")
        w.send_frame(OP_TEXT, "may I?")
        w.expect_close(1008)
    assert ws.poll(channel, 0).json()["last_id"] == 1
    assert_ws_still_works(ws)
