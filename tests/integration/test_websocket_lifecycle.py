"""WebSocket connections across Apache's own lifecycle: a graceful restart
(and at the end a graceful stop) sends close 1001 to every open socket,
whatever state it is in; new sockets work again afterwards."""
import asyncio
import json
import os
import subprocess

import pytest
import websockets

from conftest import EVENT_TIMEOUT, unique_channel, wait_until
from test_websocket_util import (
    OP_PING, OP_PONG, OP_TEXT, RawWS, ServerClosed, arecv_json, assert_ws_still_works,
    await_subscribed, frame, run, subscribed_raw, ws_connect, ws_stack_fixture)


life = ws_stack_fixture("wslife")


def apachectl(apache, what):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASAN_", "UBSAN_"))}
    env["LANG"] = "C"
    p = subprocess.run(apache.args() + ["-k", what], capture_output=True, text=True,
                       env=env, timeout=60)
    assert p.returncode == 0, p


def raw_sockets(stack, channel):
    """Raw sockets in different states, each ready (subscribed or ponged)."""
    idle = subscribed_raw(stack.port, f"/sub/{channel}")
    deflate = RawWS(stack.port, f"/ws/{channel}", deflate=True)
    deflate.wait_subscribed()
    assert deflate.deflate
    raw = RawWS(stack.port, f"/ws-raw/{channel}")
    raw.send_frame(OP_PING, b"r")
    assert raw.recv_frame().opcode == OP_PONG
    # in the middle of a fragmented message
    middle = subscribed_raw(stack.port, f"/ws/{channel}")
    middle.send(frame(OP_TEXT, b'{"type":"pi', fin=False))
    middle.send_frame(OP_PING, b"m")
    assert middle.recv_frame().opcode == OP_PONG
    # several channels (the commands in one write)
    multi = subscribed_raw(stack.port, f"/ws/{channel}")
    multi.send(b"".join(frame(OP_TEXT, json.dumps({"type": "subscribe",
                                                    "channel": f"{channel}-{i}",
                                                    "ref": i}).encode())
                        for i in range(3)))
    for i in range(3):
        multi.wait_subscribed()
    return {"idle": idle, "deflate": deflate, "raw": raw, "middle": middle, "multi": multi}


def check_all_closed_1001(socks):
    failures = {}
    for name, w in socks.items():
        try:
            w.expect_close(1001, timeout=30)
        except BaseException as e:  # noqa: BLE001 - report all of them
            failures[name] = repr(e)
        finally:
            w.close()
    assert not failures, failures


def test_graceful_restart_closes_1001(life):
    channel = unique_channel("graceful")
    socks = raw_sockets(life, channel)
    result = {}

    async def python_clients(started, done):
        async with ws_connect(life.port, f"/ws/{channel}") as a, \
                ws_connect(life.port, f"/sub/{channel}", compression=None) as b:
            await await_subscribed(a, channel)
            await await_subscribed(b, channel)
            started.set()
            await done.wait()
            for name, c in (("deflate", a), ("plain", b)):
                with pytest.raises(websockets.exceptions.ConnectionClosed) as ei:
                    while True:
                        await arecv_json(c, 30)
                result[name] = ei.value.rcvd.code if ei.value.rcvd else None

    async def main():
        started, done = asyncio.Event(), asyncio.Event()
        task = asyncio.ensure_future(python_clients(started, done))
        await asyncio.wait_for(started.wait(), EVENT_TIMEOUT)
        offset = life.apache.log_offset()
        await asyncio.to_thread(apachectl, life.apache, "graceful")
        done.set()
        await task
        return offset

    offset = run(main())
    assert result == {"deflate": 1001, "plain": 1001}, result
    check_all_closed_1001(socks)
    life.apache.wait_ready(since=offset)
    assert_ws_still_works(life)


def test_graceful_restart_with_many_sockets(life):
    channel = unique_channel("graceful-many")
    socks = {f"s{i}": subscribed_raw(life.port, f"/sub/{channel}") for i in range(50)}
    offset = life.apache.log_offset()
    apachectl(life.apache, "graceful")
    check_all_closed_1001(socks)
    life.apache.wait_ready(since=offset)
    # and clients that reconnect with their cursor miss nothing
    life.publish_ok(channel, "after restart")
    with RawWS(life.port, f"/sub/{channel}?last_id=0") as w:
        msgs = w.wait_subscribed(channel)
        assert [m["data"] for m in msgs[:-1]] == ["after restart"]
    assert_ws_still_works(life)


def test_broker_down_then_back(life):
    """While the broker is down a handshake is answered 503 with
    Retry-After; a socket open across the broker restart is not left
    silently deaf: it delivers what is published afterwards or is closed
    with a close frame (the client then resumes with its cursor)."""
    channel = unique_channel("broker-restart")
    w = subscribed_raw(life.port, f"/ws/{channel}", timeout=30)
    try:
        life.publish_ok(channel, "before")
        assert w.recv_json()["data"] == "before"
        offset = life.apache.log_offset()
        life.broker.stop()

        def refused_503():
            r = RawWS(life.port, f"/ws/{unique_channel('down')}", expect_101=False,
                      timeout=10)
            r.close()
            return r if r.status == 503 else None
        r = wait_until(refused_503, 15, "a 503 answer to a handshake while the broker is down",
                       interval=0.2)
        assert r.header("Retry-After") == "5", r.head
        assert r.json_body()["error"] == "unavailable"

        life.broker.start()
        life.apache.wait_ready(since=offset)
        ack = life.publish_ok(channel, "after")
        try:
            m = w.recv_json(timeout=15)
            assert (m["type"], m["data"], m["id"]) == ("message", "after", ack["id"]), m
        except ServerClosed as e:
            assert e.code in (1001, 1011, 1012, 1013), e
        except TimeoutError:
            pytest.fail("the socket open across the broker restart neither delivered the "
                        "message published afterwards nor was closed")
    finally:
        w.close()
    assert_ws_still_works(life)


def test_graceful_stop_closes_1001(life):
    """Last test of the module: the instance is stopped for good."""
    channel = unique_channel("graceful-stop")
    socks = raw_sockets(life, channel)
    apachectl(life.apache, "graceful-stop")
    check_all_closed_1001(socks)
