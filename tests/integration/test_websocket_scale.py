"""2,000 concurrent WebSocket subscribers on an Apache limited to 50
workers (MaxRequestWorkers 50 = 2 children of 25 threads): parked sockets
must not hold worker threads.  Plain asyncio streams, no compression."""
import asyncio
import base64
import json
import os
import resource

import pytest

from conftest import HOST, unique_channel
from test_websocket_util import (
    OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, FrameReader, accept_for, assert_ws_still_works,
    frame)

N_SUBSCRIBERS = 2000
MAX_WORKERS = 50
THREADS_PER_CHILD = 25          # conf/httpd.conf
SOURCES = [f"127.0.0.{i}" for i in range(2, 6)]   # spread over 4 source addresses


@pytest.fixture(scope="module")
def scale_stack(stack_factory):
    s = stack_factory("wsscale", max_workers=MAX_WORKERS,
                      extra_conf="<Location /ws/>\n  SetHandler push-subscriber\n"
                                 "  PushWebSocketPublish on\n</Location>\n")
    yield s
    s.stop()


@pytest.fixture
def many_fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(8192, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < N_SUBSCRIBERS + 200:
        pytest.fail(f"RLIMIT_NOFILE too small for {N_SUBSCRIBERS} connections")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class WSSub:
    """One WebSocket subscriber driven by asyncio: handshake, wait for
    {"type":"subscribed"}, then collect messages (pings are answered)."""

    def __init__(self, idx, port, channel):
        self.idx, self.port, self.channel = idx, port, channel
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.reader = FrameReader()
        self.ready = asyncio.Event()
        self.got_message = asyncio.Event()
        self.subscribed = None
        self.messages = []
        self.other = []
        self.error = None
        self.writer = None

    async def run(self, connect_sem):
        try:
            async with connect_sem:
                reader, self.writer = await asyncio.open_connection(
                    HOST, self.port, local_addr=(SOURCES[self.idx % len(SOURCES)], 0))
                self.writer.write(
                    f"GET /sub/{self.channel} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
                    f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {self.key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                    .encode())
                await self.writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("iso-8859-1").split("\r\n")
                if not lines[0].startswith("HTTP/1.1 101"):
                    raise RuntimeError(f"handshake answered {lines[0]!r}")
                hdrs = {k.strip().lower(): v.strip()
                        for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                if hdrs.get("sec-websocket-accept") != accept_for(self.key):
                    raise RuntimeError(f"bad Sec-WebSocket-Accept in {head!r}")
                while self.subscribed is None:
                    await self._read(reader)
            self.ready.set()
            while not self.messages:
                await self._read(reader)
            self.got_message.set()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e
            self.ready.set()
            self.got_message.set()

    async def _read(self, reader):
        data = await reader.read(65536)
        if not data:
            raise EOFError(f"closed; subscribed={self.subscribed!r}")
        for f in self.reader.feed(data):
            if f.masked:
                raise RuntimeError(f"masked server frame {f!r}")
            if f.opcode == OP_PING:
                self.writer.write(frame(OP_PONG, f.payload))
            elif f.opcode == OP_CLOSE:
                raise EOFError(f"server sent close {f.close_code}")
            elif f.opcode == OP_TEXT and not f.rsv1:
                m = json.loads(f.payload)
                if m.get("type") == "subscribed" and self.subscribed is None:
                    self.subscribed = m
                elif m.get("type") == "message":
                    self.messages.append(m)
                else:
                    self.other.append(m)
            else:
                raise RuntimeError(f"unexpected frame {f!r}")

    def close(self):
        if self.writer:
            self.writer.close()


async def _wait_all(events, timeout, what):
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), timeout)
    except asyncio.TimeoutError:
        n = sum(1 for e in events if e.is_set())
        pytest.fail(f"only {n} of {len(events)} {what} within {timeout}s")


def test_2000_websocket_subscribers_with_50_workers(scale_stack, many_fds):
    s = scale_stack
    channel = unique_channel("wsscale")
    result = {}

    async def main():
        subs = [WSSub(i, s.port, channel) for i in range(N_SUBSCRIBERS)]
        sem = asyncio.Semaphore(200)          # handshakes under way at once
        tasks = [asyncio.ensure_future(sub.run(sem)) for sub in subs]
        try:
            await _wait_all([x.ready for x in subs], 240, "subscribers got 'subscribed'")
            failed = [(x.idx, repr(x.error)) for x in subs if x.error]
            assert not failed, f"{len(failed)} subscriptions failed: {failed[:5]}"
            assert all(x.subscribed == {"type": "subscribed", "channel": channel,
                                        "last_id": 0} for x in subs), \
                [x.subscribed for x in subs if x.subscribed.get("last_id") != 0][:5]
            assert not any(x.messages for x in subs), "a message before anything was published"

            children = s.apache.child_pids()
            result["children"] = children
            result["threads"] = sum(s.apache.thread_count(p) for p in children)

            loop = asyncio.get_running_loop()
            ack = await loop.run_in_executor(
                None, lambda: s.publish_ok(channel, "to all 2000 sockets", "bulk"))
            result["ack"] = ack
            await _wait_all([x.got_message for x in subs], 180, "subscribers got the message")
            failed = [(x.idx, repr(x.error)) for x in subs if x.error]
            assert not failed, f"{len(failed)} subscribers failed: {failed[:5]}"
            result["messages"] = [x.messages for x in subs]
            result["other"] = [x.other for x in subs if x.other]
        finally:
            for x in subs:
                x.close()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())

    ack = result["ack"]
    print(f"publish ack {ack}; Apache children {result['children']}, "
          f"{result['threads']} threads in all")
    assert ack["id"] == 1
    assert ack["subscribers"] == N_SUBSCRIBERS
    assert not result["other"], result["other"][:5]
    for msgs in result["messages"]:
        assert len(msgs) == 1, msgs
        m = dict(msgs[0])
        assert isinstance(m.pop("time"), int)
        assert m == {"type": "message", "channel": channel, "id": 1, "event": "bulk",
                     "data": "to all 2000 sockets"}

    # No thread per connection: at most MaxRequestWorkers / ThreadsPerChild
    # children, each with its fixed thread pool.
    max_children = MAX_WORKERS // THREADS_PER_CHILD
    assert 1 <= len(result["children"]) <= max_children, result["children"]
    assert result["threads"] < 40 * max_children, result["threads"]

    # and the server is still fine afterwards
    assert_ws_still_works(s)
