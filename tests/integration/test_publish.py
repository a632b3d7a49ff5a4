"""Publishing: HTTP POST /pub/<channel>, ZeroMQ (multipart and JSON, REQ and
PUSH), pushctl and publish.php, each seen by a real SSE subscriber."""
import json
import os
import re
import subprocess

import pytest
import zmq

from conftest import PHP_PUBLISH, PUSHCTL, ROOT, wait_until


def run(args, env_extra=None, timeout=30):
    env = dict(os.environ)
    env.pop("PUSH_API", None)
    env.pop("PUSH_PUSH", None)
    env.update(env_extra or {})
    return subprocess.run([str(a) for a in args], capture_output=True, env=env,
                          timeout=timeout)


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------

def test_http_publish_ack(stack, channel):
    r = stack.publish(channel, "hello")
    assert r.status == 200, r
    assert r.header("Content-Type") == "application/json"
    assert r.json() == {"channel": channel, "id": 1, "subscribers": 0}
    assert stack.publish(channel, "again").json() == \
        {"channel": channel, "id": 2, "subscribers": 0}


def test_http_publish_counts_two_sse_subscribers(stack, channel):
    with stack.subscribe(channel) as a, stack.subscribe(channel) as b:
        ack = stack.publish_ok(channel, "to both")
        assert ack == {"channel": channel, "id": 1, "subscribers": 2}
        for c in (a, b):
            ev = c.next_event()
            assert (ev.int_id, ev.data) == (1, "to both")
    # once they are gone, the count drops back (the children report it)
    wait_until(lambda: stack.publish_ok(channel, "nobody")["subscribers"] == 0, 15,
               "the subscriber count to drop to 0 after the subscribers left")


def test_subscribers_counted_across_all_children(stack, channel):
    """Enough connections that several Apache children hold some."""
    n = 12
    subs = [stack.subscribe(channel) for _ in range(n)]
    try:
        ack = stack.publish_ok(channel, "count me")
        assert ack["subscribers"] == n
        for c in subs:
            assert c.next_event().data == "count me"
    finally:
        for c in subs:
            c.close()


def test_ids_start_at_1_per_channel_and_increase_by_1(stack, channel):
    other = channel + "-other"
    ids = []
    for i in range(10):
        ids.append(stack.publish_ok(channel, f"h{i}")["id"])
        ids.append(stack.broker.pub_id(channel, f"z{i}".encode()))
    assert ids == list(range(1, 21))
    assert stack.publish_ok(other, "x")["id"] == 1


def test_http_publish_event_param(stack, channel):
    with stack.subscribe(channel) as c:
        ack = stack.publish_ok(channel, "with event", event="price.update")
        ev = c.next_event()
        assert (ev.int_id, ev.event, ev.data) == (ack["id"], "price.update", "with event")
        assert ev.raw == f"id: {ack['id']}\nevent: price.update\ndata: with event\n\n".encode()


def test_http_publish_raw_body_is_the_data(stack, channel):
    body = b'{"data":"not parsed"}\x00 tail'     # not JSON content type: taken as is
    with stack.subscribe(channel) as c:
        stack.publish_ok(channel, body)
        ev = c.next_event()
        assert ev.raw == b"id: 1\ndata: " + body + b"\n\n"
    doc = stack.poll(channel, 0).json()
    assert doc["messages"][0]["data"] == body.decode()


def test_http_publish_chunked_request_body(stack, channel):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
    try:
        conn.request("POST", f"/pub/{channel}", body=iter([b"chunk1-", b"chunk2"]),
                     encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
        r = conn.getresponse()
        assert r.status == 200, r.read()
        r.read()
    finally:
        conn.close()
    doc = stack.poll(channel, 0).json()
    assert doc["messages"][0]["data"] == "chunk1-chunk2"


@pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8"])
def test_http_json_publish(stack, channel, ctype):
    with stack.subscribe(channel) as c:
        r = stack.publish(channel, json.dumps({"data": "héllo\n✓ \u65e5\u672c", "event": "js"}),
                          content_type=ctype)
        assert r.status == 200, r
        ack = r.json()
        assert ack["channel"] == channel and ack["id"] == 1 and ack["subscribers"] == 1
        ev = c.next_event()
        assert (ev.event, ev.data) == ("js", "héllo\n✓ 日本")
        r = stack.publish(channel, '{"data":"just data"}', content_type=ctype)
        assert r.status == 200, r
        ev = c.next_event()
        assert (ev.int_id, ev.event, ev.data) == (2, None, "just data")


def test_http_json_publish_with_event_param(stack, channel):
    with stack.subscribe(channel) as c:
        r = stack.publish_json(channel, {"data": "d"}, query="event=fromquery")
        assert r.status == 200, r
        ev = c.next_event()
        assert (ev.event, ev.data) == ("fromquery", "d")


def test_http_json_publish_escapes(stack, channel):
    data = 'q" b\\ \u0001 \u001f 😀 end'
    r = stack.publish_json(channel, json.dumps({"data": data}))
    assert r.status == 200, r
    doc = stack.poll(channel, 0).json()
    assert doc["messages"][0]["data"] == data


def test_http_publish_largest_allowed(stack, channel):
    data = b"x" * 65536
    r = stack.publish(channel, data)
    assert r.status == 200, r
    doc = stack.poll(channel, 0).json()
    assert doc["messages"][0]["data"] == data.decode()


# ---------------------------------------------------------------------------
# ZeroMQ
# ---------------------------------------------------------------------------

def test_zmq_multipart_publish(stack, channel):
    with stack.subscribe(channel) as c:
        rep = stack.broker.pub(channel, "zé".encode(), b"zev")
        assert rep == [b"OK", b"1", b"1"]
        ev = c.next_event()
        assert (ev.int_id, ev.event, ev.data) == (1, "zev", "zé")
        rep = stack.broker.pub(channel, b"no event")
        assert rep == [b"OK", b"2", b"1"]
        ev = c.next_event()
        assert (ev.int_id, ev.event, ev.data) == (2, None, "no event")
        rep = stack.broker.pub(channel, b"empty event", b"")
        assert rep == [b"OK", b"3", b"1"]
        ev = c.next_event()
        assert (ev.int_id, ev.event, ev.data) == (3, None, "empty event")


def test_zmq_json_publish(stack, channel):
    with stack.subscribe(channel) as c:
        rep = stack.broker.pub_json({"op": "publish", "channel": channel, "data": "json ✓"})
        assert rep == {"ok": True, "id": 1, "subscribers": 1}
        ev = c.next_event()
        assert (ev.int_id, ev.event, ev.data) == (1, None, "json ✓")
        rep = stack.broker.pub_json({"op": "publish", "channel": channel, "data": "a\nb",
                                     "event": "jev"})
        assert rep == {"ok": True, "id": 2, "subscribers": 1}
        ev = c.next_event()
        assert (ev.int_id, ev.event, ev.data) == (2, "jev", "a\nb")


def test_zmq_push_socket_fire_and_forget(stack, channel):
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.LINGER, 2000)
    with stack.subscribe(channel) as c:
        try:
            s.connect(stack.broker.push)
            s.send_multipart([b"PUB", channel.encode(), b"pushed", b"pev"])
        finally:
            s.close()
        ev = c.next_event()
        assert (ev.int_id, ev.event, ev.data) == (1, "pev", "pushed")


# ---------------------------------------------------------------------------
# the clients
# ---------------------------------------------------------------------------

def test_pushctl_publish_reaches_sse_subscriber(stack, channel):
    assert PUSHCTL.is_file(), f"{PUSHCTL} missing: run make"
    with stack.subscribe(channel) as c:
        p = run([PUSHCTL, "publish", channel, "from pushctl", "--api", stack.broker.api])
        assert p.returncode == 0, p
        assert p.stdout.decode().strip() == "id=1 subscribers=1"
        ev = c.next_event()
        assert (ev.int_id, ev.event, ev.data) == (1, None, "from pushctl")
        p = run([PUSHCTL, "--api", stack.broker.api, "publish", channel, "two\nlines",
                 "--event", "ctl"])
        assert p.returncode == 0, p
        assert p.stdout.decode().strip() == "id=2 subscribers=1"
        ev = c.next_event()
        assert (ev.int_id, ev.event, ev.data) == (2, "ctl", "two\nlines")


def test_php_publish_reaches_sse_subscriber(stack, channel):
    assert PHP_PUBLISH.is_file()
    with stack.subscribe(channel) as c:
        p = run(["php", PHP_PUBLISH, channel, "from php ✓"], {"PUSH_API": stack.broker.api})
        assert p.returncode == 0, p
        assert p.stdout.decode().strip() == "id=1 subscribers=1"
        ev = c.next_event()
        assert (ev.int_id, ev.event, ev.data) == (1, None, "from php ✓")
        p = run(["php", PHP_PUBLISH, channel, "evd", "phpev"], {"PUSH_API": stack.broker.api})
        assert p.returncode == 0, p
        assert re.fullmatch(r"id=2 subscribers=1", p.stdout.decode().strip())
        ev = c.next_event()
        assert (ev.int_id, ev.event, ev.data) == (2, "phpev", "evd")


def test_python_client_publish_reaches_sse_subscriber(stack, channel):
    script = ROOT / "clients" / "python" / "publish.py"
    if not script.is_file():
        pytest.skip("clients/python/publish.py not present")
    with stack.subscribe(channel) as c:
        p = run(["/usr/bin/python3", script, channel, "from python"],
                {"PUSH_API": stack.broker.api})
        assert p.returncode == 0, p
        assert p.stdout.decode().strip() == "id=1 subscribers=1"
        assert c.next_event().data == "from python"
