"""2,000 concurrent WebSocket subscribers on an Apache limited to 50
workers (MaxRequestWorkers 50 = 2 children of 25 threads): parked sockets
must not hold worker threads.  Plain asyncio streams, no compression."""
import json

from conftest import (ScaleSubscriber, assert_no_thread_per_connection, fan_out, stack_fixture,
                      unique_channel)
from test_websocket_util import (
    OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, FrameReader, accept_for, assert_ws_still_works,
    frame, handshake_request, new_key)

N_SUBSCRIBERS = 2000            # also read by the many_fds fixture of conftest
MAX_WORKERS = 50

scale_stack = stack_fixture("wsscale", max_workers=MAX_WORKERS,
                            extra_conf="<Location /ws/>\n  SetHandler push-subscriber\n"
                                       "  PushWebSocketPublish on\n</Location>\n")


class WSSub(ScaleSubscriber):
    """One WebSocket subscriber driven by asyncio: handshake, wait for
    {"type":"subscribed"}, then collect messages (pings are answered)."""

    def __init__(self, idx, port, channel):
        super().__init__(idx, port, channel)
        self.key = new_key()
        self.reader = FrameReader()
        self.subscribed = None
        self.messages = []
        self.other = []

    async def handshake(self, reader):
        self.writer.write(handshake_request(self.port, f"/sub/{self.channel}", key=self.key))
        await self.writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("iso-8859-1").split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            raise RuntimeError(f"handshake answered {lines[0]!r}")
        hdrs = {k.strip().lower(): v.strip()
                for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        if hdrs.get("sec-websocket-accept") != accept_for(self.key):
            raise RuntimeError(f"bad Sec-WebSocket-Accept in {head!r}")

    def is_ready(self):
        return self.subscribed is not None

    def has_received(self):
        return bool(self.messages)

    async def read(self, reader):
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


def test_2000_websocket_subscribers_with_50_workers(scale_stack, many_fds):
    s = scale_stack
    channel = unique_channel("wsscale")

    def check_ready(subs):
        assert all(x.subscribed == {"type": "subscribed", "channel": channel,
                                    "last_id": 0} for x in subs), \
            [x.subscribed for x in subs if x.subscribed.get("last_id") != 0][:5]
        assert not any(x.messages for x in subs), "a message before anything was published"

    r = fan_out(s, lambda i: WSSub(i, s.port, channel), N_SUBSCRIBERS, channel,
                "to all 2000 sockets", "bulk", ready_timeout=240,
                ready_what="subscribers got 'subscribed'", got_timeout=180,
                check_ready=check_ready)

    assert r.ack["id"] == 1
    assert r.ack["subscribers"] == N_SUBSCRIBERS
    other = [x.other for x in r.subs if x.other]
    assert not other, other[:5]
    for msgs in (x.messages for x in r.subs):
        assert len(msgs) == 1, msgs
        m = dict(msgs[0])
        assert isinstance(m.pop("time"), int)
        assert m == {"type": "message", "channel": channel, "id": 1, "event": "bulk",
                     "data": "to all 2000 sockets"}

    assert_no_thread_per_connection(r.children, r.threads, MAX_WORKERS)

    # and the server is still fine afterwards
    assert_ws_still_works(s)
