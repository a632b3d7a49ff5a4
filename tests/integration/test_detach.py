"""Detached connections (PushDetach, docs/architecture.md "Detached
connections"): once its head is sent, an SSE stream or a WebSocket over plain
HTTP leaves httpd (httpd logs the request and frees the connection's pools)
and the module's reactor serves the socket itself.  The access log tells
which way a connection went: a detached request is logged at once, one kept
in httpd when it ends."""
import json
import socket
import time

import pytest

from conftest import HOST, EVENT_TIMEOUT, SSEClient, apachectl, unique_channel, wait_until
from test_websocket_util import RawWS

DETACH_OFF_CONF = """\
<Location /sub-kept/>
  SetHandler push-subscriber
  PushDetach off
</Location>
"""


@pytest.fixture(scope="module")
def dstack(stack_factory):
    return stack_factory("detach", extra_conf=DETACH_OFF_CONF)


def access_log(stack):
    try:
        return (stack.apache.rundir / "access.log").read_text(errors="replace")
    except FileNotFoundError:
        return ""


def logged(stack, path, status):
    return f'"GET {path} HTTP/1.1" {status} ' in access_log(stack)


def held(stack):
    r = stack.apache.request("GET", "/push-status")
    assert r.status == 200, r
    return r.json()["total"]


def test_detached_stream_is_logged_at_once_and_still_served(dstack):
    ch = unique_channel("det")
    with SSEClient(dstack.apache.port, f"/sub/{ch}") as c:
        c.wait_preamble()
        wait_until(lambda: logged(dstack, f"/sub/{ch}", 200), 10,
                   "the access log line of the detached stream")
        for i in range(3):
            dstack.apache.publish_ok(ch, f"after detach {i}")
        assert [e.data for e in c.events(3)] == [f"after detach {i}" for i in range(3)]
        assert c.http.framing == "chunked"
        assert c.header("Content-Type") == "text/event-stream; charset=utf-8"


def test_push_detach_off_keeps_the_stream_in_httpd(dstack):
    ch = unique_channel("kept")
    with SSEClient(dstack.apache.port, f"/sub-kept/{ch}") as c:
        c.wait_preamble()
        dstack.apache.publish_ok(ch, "kept")
        assert c.next_event().data == "kept"
        assert not logged(dstack, f"/sub-kept/{ch}", 200), \
            "a stream kept in httpd was logged before it ended"
    wait_until(lambda: logged(dstack, f"/sub-kept/{ch}", 200), 10,
               "the access log line once the kept stream ended")


def test_detached_http10_stream_is_close_delimited(dstack):
    """HTTP/1.0 has no chunks: the detached stream is written as it is."""
    ch = unique_channel("h10")
    s = socket.create_connection((HOST, dstack.apache.port), timeout=EVENT_TIMEOUT)
    try:
        s.sendall(f"GET /sub/{ch} HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n".encode())
        buf = b""
        while b"retry:" not in buf:
            d = s.recv(4096)
            assert d, f"closed before the preamble: {buf!r}"
            buf += d
        head = buf.split(b"\r\n\r\n", 1)[0].decode()
        assert head.startswith("HTTP/1.1 200")
        assert "transfer-encoding" not in head.lower()
        wait_until(lambda: f'"GET /sub/{ch} HTTP/1.0" 200 ' in access_log(dstack), 10,
                   "the access log line of the detached HTTP/1.0 stream")
        dstack.apache.publish_ok(ch, "plain")
        while b"data: plain\n\n" not in buf:
            d = s.recv(4096)
            assert d, f"closed before the event: {buf!r}"
            buf += d
        body = buf.split(b"\r\n\r\n", 1)[1]
        assert body.endswith(b"data: plain\n\n") and b"\r\n" not in body, body
    finally:
        s.close()


def test_detached_streams_are_counted_and_released(dstack):
    ch = unique_channel("cnt")
    before = held(dstack)["subscribers"]["sse"]
    clients = [SSEClient(dstack.apache.port, f"/sub/{ch}") for _ in range(5)]
    try:
        for c in clients:
            c.wait_preamble()
        wait_until(lambda: held(dstack)["subscribers"]["sse"] == before + 5, 10,
                   "5 more SSE subscribers in /push-status")
        dstack.apache.publish_ok(ch, "to all")
        for c in clients:
            assert c.next_event().data == "to all"
    finally:
        for c in clients:
            c.close()
    wait_until(lambda: held(dstack)["subscribers"]["sse"] == before, 10,
               "the closed streams to leave /push-status")


def test_detached_stream_ends_cleanly_on_graceful_restart(dstack):
    """The last chunk, written by the reactor itself, ends a detached stream."""
    ch = unique_channel("end")
    with SSEClient(dstack.apache.port, f"/sub/{ch}") as c:
        c.wait_preamble()
        wait_until(lambda: logged(dstack, f"/sub/{ch}", 200), 10, "the stream to be detached")
        since = dstack.apache.log_offset()
        apachectl(dstack.apache, "graceful")
        c.read_body(timeout=30)
        assert c.http.complete, "the stream was cut instead of ended with the last chunk"
    dstack.apache.wait_ready(since=since)


def test_detached_websocket_is_logged_at_once_and_still_served(dstack):
    ch = unique_channel("wsd")
    with RawWS(dstack.apache.port, f"/sub/{ch}") as w:
        w.wait_subscribed(ch)
        wait_until(lambda: logged(dstack, f"/sub/{ch}", 101), 10,
                   "the access log line of the detached WebSocket")
        dstack.apache.publish_ok(ch, "over ws")
        msg = w.recv_json_until(lambda m: m.get("type") == "message")[-1]
        assert msg["data"] == "over ws"
        w.send_json({"type": "ping"})
        assert w.recv_json_until(lambda m: m.get("type") == "pong")
        w.send_frame(0x8, (1000).to_bytes(2, "big"))
        w.expect_close(1000)
    time.sleep(0.2)
    assert json.dumps(held(dstack))  # the server is still fine
