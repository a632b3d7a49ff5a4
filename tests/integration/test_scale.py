"""2,000 concurrent SSE subscribers on an Apache limited to 50 workers
(MaxRequestWorkers 50 = 2 children of 25 threads): held connections must not
hold worker threads."""
import asyncio
import resource

import pytest

from conftest import HOST, HTTPResponseParser, SSEParser, unique_channel

N_SUBSCRIBERS = 2000
MAX_WORKERS = 50
THREADS_PER_CHILD = 25          # conf/httpd.conf
SOURCES = [f"127.0.0.{i}" for i in range(2, 6)]   # spread over 4 source addresses


@pytest.fixture(scope="module")
def scale_stack(stack_factory):
    s = stack_factory("scale", max_workers=MAX_WORKERS)
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


class Sub:
    """One SSE subscriber driven by asyncio."""

    def __init__(self, idx, port, channel):
        self.idx, self.port, self.channel = idx, port, channel
        self.http = HTTPResponseParser()
        self.sse = SSEParser()
        self.ready = asyncio.Event()
        self.got_event = asyncio.Event()
        self.events = []
        self.error = None
        self.writer = None

    async def run(self, connect_sem):
        try:
            async with connect_sem:
                reader, self.writer = await asyncio.open_connection(
                    HOST, self.port, local_addr=(SOURCES[self.idx % len(SOURCES)], 0))
                self.writer.write(f"GET /sub/{self.channel} HTTP/1.1\r\n"
                                  f"Host: {HOST}:{self.port}\r\n"
                                  f"Accept: text/event-stream\r\n\r\n".encode())
                await self.writer.drain()
                while not any(k == "retry" for k, _ in self.sse.items):
                    await self._read(reader)
            self.ready.set()
            while not self.events:
                await self._read(reader)
            self.got_event.set()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e
            self.ready.set()
            self.got_event.set()

    async def _read(self, reader):
        data = await reader.read(65536)
        if not data:
            raise EOFError(f"closed; status {self.http.status}, body {self.sse.items!r}")
        body = self.http.feed(data)
        if self.http.head_done and self.http.status != 200:
            raise RuntimeError(f"status {self.http.status}")
        for kind, val in self.sse.feed(body):
            if kind == "event":
                self.events.append(val)

    def close(self):
        if self.writer:
            self.writer.close()


async def _wait_all(events, timeout, what):
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), timeout)
    except asyncio.TimeoutError:
        n = sum(1 for e in events if e.is_set())
        pytest.fail(f"only {n} of {len(events)} {what} within {timeout}s")


def test_2000_sse_subscribers_with_50_workers(scale_stack, many_fds):
    s = scale_stack
    channel = unique_channel("scale")
    result = {}

    async def main():
        subs = [Sub(i, s.port, channel) for i in range(N_SUBSCRIBERS)]
        sem = asyncio.Semaphore(200)          # connections being set up at once
        tasks = [asyncio.ensure_future(sub.run(sem)) for sub in subs]
        try:
            await _wait_all([x.ready for x in subs], 180, "subscribers got the preamble")
            failed = [(x.idx, repr(x.error)) for x in subs if x.error]
            assert not failed, f"{len(failed)} subscriptions failed: {failed[:5]}"
            assert all(x.http.status == 200 for x in subs)
            assert not any(x.events for x in subs), "an event before anything was published"

            # all 2000 are held now: count Apache's processes and threads
            children = s.apache.child_pids()
            result["children"] = children
            result["threads"] = sum(s.apache.thread_count(p) for p in children)

            loop = asyncio.get_running_loop()
            ack = await loop.run_in_executor(
                None, lambda: s.publish_ok(channel, "to all 2000", "bulk"))
            result["ack"] = ack
            await _wait_all([x.got_event for x in subs], 120, "subscribers got the message")
            failed = [(x.idx, repr(x.error)) for x in subs if x.error]
            assert not failed, f"{len(failed)} subscribers failed: {failed[:5]}"
            result["events"] = [x.events for x in subs]
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
    for evs in result["events"]:
        assert len(evs) == 1, evs
        ev = evs[0]
        assert (ev.id, ev.event, ev.data) == ("1", "bulk", "to all 2000")
        assert ev.raw == b"id: 1\nevent: bulk\ndata: to all 2000\n\n"

    # No thread per connection: at most MaxRequestWorkers / ThreadsPerChild
    # children, each with its fixed thread pool.
    max_children = MAX_WORKERS // THREADS_PER_CHILD
    assert 1 <= len(result["children"]) <= max_children, result["children"]
    assert result["threads"] < 40 * max_children, result["threads"]

    # and the server is still fine afterwards
    ch = unique_channel("after-scale")
    with s.subscribe(ch) as c:
        ack = s.publish_ok(ch, "still fine")
        assert c.next_event().int_id == ack["id"]
