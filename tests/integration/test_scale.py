"""2,000 concurrent SSE subscribers on an Apache limited to 50 workers
(MaxRequestWorkers 50 = 2 children of 25 threads): held connections must not
hold worker threads."""
from conftest import (HOST, HTTPResponseParser, ScaleSubscriber, SSEParser,
                      assert_no_thread_per_connection, fan_out, stack_fixture, unique_channel)

N_SUBSCRIBERS = 2000            # also read by the many_fds fixture of conftest
MAX_WORKERS = 50

scale_stack = stack_fixture("scale", max_workers=MAX_WORKERS)


class Sub(ScaleSubscriber):
    """One SSE subscriber driven by asyncio: ready after the preamble
    (retry:), done after its first event."""

    def __init__(self, idx, port, channel):
        super().__init__(idx, port, channel)
        self.http = HTTPResponseParser()
        self.sse = SSEParser()
        self.events = []

    async def handshake(self, reader):
        self.writer.write(f"GET /sub/{self.channel} HTTP/1.1\r\n"
                          f"Host: {HOST}:{self.port}\r\n"
                          f"Accept: text/event-stream\r\n\r\n".encode())
        await self.writer.drain()

    def is_ready(self):
        return any(k == "retry" for k, _ in self.sse.items)

    def has_received(self):
        return bool(self.events)

    async def read(self, reader):
        data = await reader.read(65536)
        if not data:
            raise EOFError(f"closed; status {self.http.status}, body {self.sse.items!r}")
        body = self.http.feed(data)
        if self.http.head_done and self.http.status != 200:
            raise RuntimeError(f"status {self.http.status}")
        for kind, val in self.sse.feed(body):
            if kind == "event":
                self.events.append(val)


def test_2000_sse_subscribers_with_50_workers(scale_stack, many_fds):
    s = scale_stack
    channel = unique_channel("scale")

    def check_ready(subs):
        assert all(x.http.status == 200 for x in subs)
        assert not any(x.events for x in subs), "an event before anything was published"

    r = fan_out(s, lambda i: Sub(i, s.port, channel), N_SUBSCRIBERS, channel, "to all 2000",
                "bulk", ready_timeout=180, ready_what="subscribers got the preamble",
                got_timeout=120, check_ready=check_ready)

    assert r.ack["id"] == 1
    assert r.ack["subscribers"] == N_SUBSCRIBERS
    for evs in (x.events for x in r.subs):
        assert len(evs) == 1, evs
        ev = evs[0]
        assert (ev.id, ev.event, ev.data) == ("1", "bulk", "to all 2000")
        assert ev.raw == b"id: 1\nevent: bulk\ndata: to all 2000\n\n"

    assert_no_thread_per_connection(r.children, r.threads, MAX_WORKERS)

    # and the server is still fine afterwards
    ch = unique_channel("after-scale")
    with s.subscribe(ch) as c:
        ack = s.publish_ok(ch, "still fine")
        assert c.next_event().int_id == ack["id"]
