"""Server-Sent Events: framing, ordering, immediacy, resume, keep-alive."""
import re

import json

import pytest

from conftest import HTTPResponseParser, unique_channel

PREAMBLE = b": mod_push\n\nretry: 2000\n\n"


def sse_block(msg_id, data, event=None):
    """The exact bytes mod_push must send for one message."""
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    out = f"id: {msg_id}\n"
    if event:
        out += f"event: {event}\n"
    for line in re.split(r"\r\n|\r|\n", data):
        out += f"data: {line}\n"
    return (out + "\n").encode("utf-8")


def normalized(data):
    """What an EventSource reports as event.data for this message data."""
    return re.sub(r"\r\n|\r", "\n", data)


# ---------------------------------------------------------------------------

def test_headers_and_preamble(stack, channel):
    with stack.sse(channel) as c:
        head = c.wait_preamble()
        assert head.status == 200
        assert head.header("Content-Type") == "text/event-stream; charset=utf-8"
        assert head.header("Cache-Control") == "no-cache"
        assert bytes(c.body) == PREAMBLE
        assert c.sse.retry == 2000
        assert [k for k, _ in c.sse.items] == ["comment", "retry"]
        assert c.sse.items[0] == ("comment", "mod_push")


@pytest.mark.parametrize("accept", ["text/event-stream", "TEXT/EVENT-STREAM",
                                    "application/json, text/event-stream;q=0.9",
                                    "text/event-stream; charset=utf-8"])
def test_accept_variants_select_sse(stack, channel, accept):
    with stack.sse(channel, headers={"Accept": accept}) as c:
        c.wait_preamble()
        ack = stack.publish_ok(channel, "sse")
        assert c.next_event().int_id == ack["id"]


def test_body_is_chunked(stack, channel):
    """The spec says the event stream is a chunked body."""
    with stack.sse(channel) as c:
        head = c.wait_preamble()
        assert head.version == "HTTP/1.1"
        assert (head.header("Transfer-Encoding") or "").lower() == "chunked", head.headers
        assert head.framing == "chunked"


def test_first_event_arrives_before_any_later_publish(stack, channel):
    with stack.subscribe(channel) as c:
        ack = stack.publish_ok(channel, "first")
        ev = c.next_event()           # must not need a second publish to flush
        assert (ev.int_id, ev.data) == (ack["id"], "first")
        ack2 = stack.publish_ok(channel, "second")
        ev2 = c.next_event()
        assert (ev2.int_id, ev2.data) == (ack2["id"], "second")


def test_first_event_of_zmq_publish_arrives_unbuffered(stack, channel):
    with stack.subscribe(channel) as c:
        msg_id = stack.broker.pub_id(channel, b"over zmq", b"ev1")
        ev = c.next_event()
        assert (ev.int_id, ev.event, ev.data) == (msg_id, "ev1", "over zmq")


def test_ordering_and_consecutive_ids(stack, channel):
    n = 200
    with stack.subscribe(channel) as c:
        ids = []
        for i in range(n):
            if i % 2:
                ids.append(stack.publish_ok(channel, f"m{i}")["id"])
            else:
                ids.append(stack.broker.pub_id(channel, f"m{i}".encode()))
        assert ids == list(range(1, n + 1))   # a fresh channel starts at 1
        evs = c.events(n, timeout=60)
        assert [e.int_id for e in evs] == ids
        assert [e.data for e in evs] == [f"m{i}" for i in range(n)]
        assert c.no_event_within(0.5)


FRAMING_CASES = [
    ("plain", "hello", None),
    ("lf", "one\ntwo\nthree", None),
    ("crlf", "one\r\ntwo\r\nthree", None),
    ("cr", "one\rtwo\rthree", None),
    ("mixed", "a\r\nb\rc\nd\r\n\r\ne", None),
    ("trailing-lf", "end\n", None),
    ("only-lf", "\n", None),
    ("cr-then-lf-separate", "x\r\r\ny", None),
    ("unicode", "héllo ✓ 日本", None),
    ("unicode-multiline", "héllo\n✓\r\n日本", "uni"),
    ("empty", "", None),
    ("empty-with-event", "", "ping"),
    ("event", "payload", "update"),
    ("colon-and-spaces", "  data: not a field : x ", "a.b-c_d"),
    ("field-like-lines", "id: 99\nevent: evil\n\nretry: 1", None),
]


@pytest.mark.parametrize("data,event", [c[1:] for c in FRAMING_CASES],
                         ids=[c[0] for c in FRAMING_CASES])
def test_exact_framing_http_publish(stack, channel, data, event):
    with stack.subscribe(channel) as c:
        start = len(c.body)
        ack = stack.publish_ok(channel, data.encode("utf-8"), event)
        ev = c.next_event()
        expected = sse_block(ack["id"], data, event)
        assert ev.raw == expected
        assert bytes(c.body[start:]) == expected      # nothing else around it
        assert ev.int_id == ack["id"]
        assert ev.event == event
        assert ev.data == normalized(data)


@pytest.mark.parametrize("data,event", [c[1:] for c in FRAMING_CASES],
                         ids=[c[0] for c in FRAMING_CASES])
def test_exact_framing_zmq_publish(stack, channel, data, event):
    with stack.subscribe(channel) as c:
        msg_id = stack.broker.pub_id(channel, data.encode("utf-8"),
                                     event.encode() if event else None)
        ev = c.next_event()
        assert ev.raw == sse_block(msg_id, data, event)
        assert ev.data == normalized(data)
        assert ev.event == event


def test_empty_data_is_a_single_empty_data_line(stack, channel):
    with stack.subscribe(channel) as c:
        ack = stack.publish_ok(channel, b"")
        ev = c.next_event()
        assert ev.raw == f"id: {ack['id']}\ndata: \n\n".encode()
        assert ev.data == ""


def test_largest_message_arrives_whole(stack, channel):
    data = ("0123456789abcdef" * 4096)  # 65536 bytes = PushMaxMessageSize
    with stack.subscribe(channel) as c:
        ack = stack.publish_ok(channel, data.encode())
        ev = c.next_event()
        assert ev.int_id == ack["id"]
        assert ev.data == data


def test_two_subscribers_get_the_same_stream(stack, channel):
    with stack.subscribe(channel) as a, stack.subscribe(channel) as b:
        acks = [stack.publish_ok(channel, f"x{i}", "e")["id"] for i in range(5)]
        ea, eb = a.events(5), b.events(5)
        assert [e.raw for e in ea] == [e.raw for e in eb]
        assert [e.int_id for e in ea] == acks


def test_channels_are_isolated(stack):
    c1, c2 = unique_channel("iso"), unique_channel("iso")
    with stack.subscribe(c1) as s1, stack.subscribe(c2) as s2:
        stack.publish_ok(c2, "for two")
        stack.publish_ok(c1, "for one")
        assert s1.next_event().data == "for one"
        assert s2.next_event().data == "for two"
        assert s1.no_event_within(0.5)
        assert s2.no_event_within(0.1)


def test_without_cursor_only_new_messages(stack, channel):
    for i in range(3):
        stack.publish_ok(channel, f"old{i}")
    with stack.subscribe(channel) as c:
        ack = stack.publish_ok(channel, "new")
        ev = c.next_event()
        assert (ev.int_id, ev.data) == (ack["id"], "new")
        assert ack["id"] == 4


def _publish_history(stack, channel):
    msgs = [("m1", None), ("line1\nline2", "multi"), ("crlf\r\nx", None),
            ("héllo ✓ 日本", "uni"), ("", None), ("m6", "last")]
    ids = [stack.publish_ok(channel, d.encode(), e)["id"] for d, e in msgs]
    assert ids == list(range(1, len(msgs) + 1))
    return msgs


@pytest.mark.parametrize("how", ["header", "query"])
@pytest.mark.parametrize("cursor", [0, 2, 5, 6])
def test_resume_gets_exactly_the_missed_messages_then_live(stack, channel, how, cursor):
    msgs = _publish_history(stack, channel)
    kw = {"header_id": cursor} if how == "header" else {"last_id": cursor}
    with stack.sse(channel, **kw) as c:
        head = c.read_head()
        assert head.status == 200
        missed = c.events(len(msgs) - cursor) if cursor < len(msgs) else []
        assert [e.int_id for e in missed] == list(range(cursor + 1, len(msgs) + 1))
        for e in missed:
            d, ev = msgs[e.int_id - 1]
            assert e.raw == sse_block(e.int_id, d, ev)
        # the history is followed by nothing but live messages
        assert c.no_event_within(0.5)
        ack = stack.publish_ok(channel, "live")
        ev = c.next_event()
        assert (ev.int_id, ev.data) == (len(msgs) + 1, "live")
        assert ack["id"] == len(msgs) + 1
        # the history and the live event follow the preamble with nothing in between
        expected = PREAMBLE + b"".join(e.raw for e in missed) + ev.raw
        assert bytes(c.body) == expected


@pytest.mark.parametrize("how", ["header", "query"])
def test_resume_cursor_beyond_end_gets_whole_channel(stack, channel, how):
    """A cursor beyond the channel's end means the broker started its ids
    again (it lost its state): the client gets everything the channel has
    now (mod_push/subscribe.c), then the live messages."""
    stack.publish_ok(channel, "one")
    kw = {"header_id": 1000} if how == "header" else {"last_id": 1000}
    with stack.subscribe(channel, **kw) as c:
        # told first, without an id (Last-Event-ID must not move)
        gap = c.next_event()
        assert gap.event == "gap" and not gap.id, gap
        assert json.loads(gap.data) == {"channel": channel, "after": 1000, "oldest_id": 1,
                                        "last_id": 1, "reason": "lost"}
        ev = c.next_event()
        assert (ev.int_id, ev.data) == (1, "one")
        ack = stack.publish_ok(channel, "two")
        ev = c.next_event()
        assert (ev.int_id, ev.data) == (ack["id"], "two")


def test_resume_after_disconnect_loses_nothing(stack, channel):
    """The EventSource reconnect pattern: remember the last id, reconnect with
    Last-Event-ID, get what was published meanwhile."""
    with stack.subscribe(channel) as c:
        stack.publish_ok(channel, "a")
        stack.publish_ok(channel, "b")
        last = c.events(2)[-1].id
    stack.publish_ok(channel, "c")          # while disconnected
    stack.publish_ok(channel, "d")
    with stack.subscribe(channel, header_id=last) as c2:
        evs = c2.events(2)
        assert [(e.id, e.data) for e in evs] == [("3", "c"), ("4", "d")]
        stack.publish_ok(channel, "e")
        assert c2.next_event().data == "e"


def test_keepalive_comment(short_stack, channel):
    """PushSSEKeepalive 1 (short_stack): an idle stream carries ': keepalive'."""
    with short_stack.subscribe(channel) as c:
        kind, val = c.next_item(timeout=15)
        assert (kind, val) == ("comment", "keepalive")
        assert bytes(c.body) == PREAMBLE + b": keepalive\n\n"
        # the stream still delivers after keep-alives
        kind, val = c.next_item(timeout=15)
        assert (kind, val) == ("comment", "keepalive")
        ack = short_stack.publish_ok(channel, "after keepalive")
        ev = c.next_event()
        assert (ev.int_id, ev.data) == (ack["id"], "after keepalive")


def test_no_keepalive_before_the_configured_interval(stack, channel):
    """With PushSSEKeepalive 15 an idle stream has nothing but the preamble
    for a while (checked over one second only)."""
    with stack.subscribe(channel) as c:
        with pytest.raises(TimeoutError):
            c.next_item(timeout=1.0)
        assert bytes(c.body) == PREAMBLE


def test_sse_parser_rules():
    """The harness parser itself, on the WHATWG examples."""
    from conftest import SSEParser
    p = SSEParser()
    p.feed(b"data: YHOO\ndata: +2\ndata: 10\n\n")
    p.feed(b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\n"
           b"data:  third event\n\n")
    p.feed(b"data\n\ndata\ndata\n\ndata:\r\n\r")
    p.feed(b"\nevent: x\rdata: y\r\n\r\n")
    evs = [v for k, v in p.items if k == "event"]
    assert [(e.data, e.id) for e in evs] == [
        ("YHOO\n+2\n10", ""), ("first event", "1"), ("second event", ""),
        (" third event", ""), ("", ""), ("\n", ""), ("", ""), ("y", "")]
    assert evs[-1].event == "x"
    h = HTTPResponseParser()
    body = h.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
    body += h.feed(b"lo\r\n0\r\n\r\n")
    assert body == b"hello" and h.complete and h.chunks == [5]
