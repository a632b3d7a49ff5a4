"""Long polling and short polling (?poll=1)."""
import http.client
import json
import threading
import time

import pytest

from conftest import HOST, SSEClient


def check_doc(r, channel, gap=None):
    assert r.status == 200, r
    assert r.header("Content-Type") == "application/json"
    assert r.header("Cache-Control") == "no-cache"
    doc = r.json()
    if gap is None:
        assert set(doc) == {"channel", "messages", "last_id"}, doc
    else:
        assert set(doc) == {"channel", "messages", "last_id", "gap"}, doc
        assert doc["gap"] == gap, doc
    assert doc["channel"] == channel
    for m in doc["messages"]:
        assert set(m) == {"id", "event", "data", "time"}, m
        assert isinstance(m["id"], int) and isinstance(m["time"], int)
        # microseconds since the epoch, within a day of now
        assert abs(m["time"] - time.time() * 1e6) < 86400e6, m
    return doc


class BackgroundPoll:
    """A long poll on a raw socket, read in a thread."""

    def __init__(self, stack, channel, query="", headers=None):
        self.client = SSEClient(stack.port, f"/sub/{channel}{query}", headers, accept=None,
                                timeout=90)
        self.result = None
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.client.read_body(timeout=90)
            self.result = self.client
        except BaseException as e:  # noqa: BLE001
            self.error = e

    def done(self):
        return not self.thread.is_alive()

    def wait(self, timeout=90):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "long poll never answered"
        if self.error:
            raise self.error
        c = self.client
        return c.http, json.loads(bytes(c.body))

    def close(self):
        self.client.close()


# ---------------------------------------------------------------------------
# long polling
# ---------------------------------------------------------------------------

def test_longpoll_with_cursor_holds_and_returns_on_publish(stack, channel):
    stack.publish_ok(channel, "before")                  # id 1
    bp = BackgroundPoll(stack, channel, "?last_id=1")
    try:
        time.sleep(1.0)
        assert not bp.done(), "a long poll with nothing after its cursor must wait"
        ack = stack.publish_ok(channel, "wake up", "ev")
        assert ack["subscribers"] == 1                   # the held poll counts
        head, doc = bp.wait()
        assert head.status == 200
        assert head.header("Content-Type") == "application/json"
        assert (head.header("Connection") or "").lower() == "close"
        assert doc["channel"] == channel
        assert [(m["id"], m["event"], m["data"]) for m in doc["messages"]] == \
            [(2, "ev", "wake up")]
        assert doc["last_id"] == 2
    finally:
        bp.close()


def test_longpoll_without_cursor_holds_and_returns_next_message(stack, channel):
    stack.publish_ok(channel, "old")
    bp = BackgroundPoll(stack, channel)
    try:
        time.sleep(1.0)     # let the poll park (no cursor: earlier messages are not sent)
        assert not bp.done(), "a long poll without cursor must wait for a new message"
        stack.publish_ok(channel, "new")
        head, doc = bp.wait()
        assert head.status == 200
        assert [(m["id"], m["data"]) for m in doc["messages"]] == [(2, "new")]
        assert doc["last_id"] == 2
    finally:
        bp.close()


def test_longpoll_last_event_id_header_holds(stack, channel):
    for i in range(3):
        stack.publish_ok(channel, f"m{i}")
    bp = BackgroundPoll(stack, channel, headers={"Last-Event-ID": "3"})
    try:
        time.sleep(0.5)
        assert not bp.done()
        stack.publish_ok(channel, "m3")
        _, doc = bp.wait()
        assert [m["id"] for m in doc["messages"]] == [4]
        assert doc["last_id"] == 4
    finally:
        bp.close()


@pytest.mark.parametrize("use_header", [False, True], ids=["query", "header"])
def test_longpoll_returns_at_once_when_cursor_is_behind(stack, channel, use_header):
    sent = [("a", None), ("b\nc", "multi"), ("héllo ✓ 日本", None)]
    for d, e in sent:
        stack.publish_ok(channel, d.encode(), e)
    doc = check_doc(stack.longpoll(channel, 0, use_header), channel)
    assert [(m["id"], m["event"], m["data"]) for m in doc["messages"]] == \
        [(1, None, "a"), (2, "multi", "b\nc"), (3, None, "héllo ✓ 日本")]
    assert doc["last_id"] == 3
    doc = check_doc(stack.longpoll(channel, 1, use_header), channel)
    assert [m["id"] for m in doc["messages"]] == [2, 3]
    assert doc["last_id"] == 3
    doc = check_doc(stack.longpoll(channel, 2, use_header), channel)
    assert [m["id"] for m in doc["messages"]] == [3]


def test_longpoll_timeout_returns_empty_with_cursor(short_stack, channel):
    """PushLongPollTimeout 2 (short_stack)."""
    for i in range(2):
        short_stack.publish_ok(channel, f"m{i}")
    doc = check_doc(short_stack.longpoll(channel, 2, timeout=60), channel)
    assert doc["messages"] == []
    assert doc["last_id"] == 2                 # the cursor sent
    doc = check_doc(short_stack.longpoll(channel, 2, use_header=True, timeout=60), channel)
    assert doc == {"channel": channel, "messages": [], "last_id": 2}


def test_longpoll_timeout_returns_empty_without_cursor(short_stack, channel):
    for i in range(3):
        short_stack.publish_ok(channel, f"m{i}")
    r = short_stack.longpoll(channel, timeout=60)
    doc = check_doc(r, channel)
    assert doc == {"channel": channel, "messages": [], "last_id": 3}   # the channel's last id


def test_longpoll_timeout_on_empty_channel(short_stack, channel):
    doc = check_doc(short_stack.longpoll(channel, timeout=60), channel)
    assert doc == {"channel": channel, "messages": [], "last_id": 0}


def test_longpoll_after_timeout_cursor_loses_nothing(short_stack, channel):
    """Timeout, then publish while no poll is open, then poll with the cursor."""
    doc = check_doc(short_stack.longpoll(channel, timeout=60), channel)
    cursor = doc["last_id"]
    short_stack.publish_ok(channel, "while away")
    doc = check_doc(short_stack.longpoll(channel, cursor), channel)
    assert [m["data"] for m in doc["messages"]] == ["while away"]


def test_continuous_publishing_longpoll_receives_everything_once(stack, channel):
    """200 msg/s for 5 s (paced) while a long-poll client loops with its cursor."""
    total, rate = 1000, 200.0
    errors = []

    def publisher():
        conn = None
        t0 = time.monotonic()
        try:
            for i in range(total):
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                for attempt in range(2):
                    try:
                        if conn is None:
                            conn = http.client.HTTPConnection(HOST, stack.port, timeout=30)
                        conn.request("POST", f"/pub/{channel}", body=f"msg-{i}".encode())
                        r = conn.getresponse()
                        body = r.read()
                        if r.status != 200:
                            raise AssertionError(f"publish {i}: {r.status} {body!r}")
                        if json.loads(body)["id"] != i + 1:
                            raise AssertionError(f"publish {i}: {body!r}")
                        if r.getheader("Connection", "").lower() == "close":
                            conn.close()
                            conn = None
                        break
                    except (http.client.RemoteDisconnected, ConnectionError,
                            http.client.BadStatusLine):
                        conn = None   # the keep-alive connection closed: retry on a new one
                        if attempt:
                            raise
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            if conn:
                conn.close()

    received = []
    cursor = 0
    polls = 0
    th = threading.Thread(target=publisher, daemon=True)
    th.start()
    deadline = time.monotonic() + 120
    while len(received) < total and time.monotonic() < deadline and not errors:
        r = stack.longpoll(channel, cursor)
        doc = check_doc(r, channel)
        polls += 1
        received.extend((m["id"], m["data"]) for m in doc["messages"])
        if doc["messages"]:
            assert doc["last_id"] == doc["messages"][-1]["id"]
        else:
            assert doc["last_id"] == cursor
        cursor = doc["last_id"]
    th.join(60)
    assert not errors, errors
    assert len(received) == total, f"got {len(received)} of {total} in {polls} polls"
    assert received == [(i + 1, f"msg-{i}") for i in range(total)]


# ---------------------------------------------------------------------------
# short polling
# ---------------------------------------------------------------------------

def test_short_poll_empty_channel(stack, channel):
    doc = check_doc(stack.poll(channel), channel)
    assert doc == {"channel": channel, "messages": [], "last_id": 0}
    doc = check_doc(stack.poll(channel, 0), channel)
    assert doc == {"channel": channel, "messages": [], "last_id": 0}


def test_short_poll_answers_at_once_with_messages_and_cursor(stack, channel):
    sent = [("one", None), ("two", "e2"), ("three\r\nlines", None)]
    for d, e in sent:
        stack.publish_ok(channel, d, e)
    # without a cursor: nothing, and the cursor to start from
    doc = check_doc(stack.poll(channel), channel)
    assert doc["messages"] == [] and doc["last_id"] == 3
    doc = check_doc(stack.poll(channel, 0), channel)
    assert [(m["id"], m["event"], m["data"]) for m in doc["messages"]] == \
        [(1, None, "one"), (2, "e2", "two"), (3, None, "three\r\nlines")]
    assert doc["last_id"] == 3
    doc = check_doc(stack.poll(channel, 2), channel)
    assert [m["id"] for m in doc["messages"]] == [3] and doc["last_id"] == 3
    doc = check_doc(stack.poll(channel, 3), channel)
    assert doc["messages"] == [] and doc["last_id"] == 3
    doc = check_doc(stack.poll(channel, headers={"Last-Event-ID": "1"}), channel)
    assert [m["id"] for m in doc["messages"]] == [2, 3]
    # times are increasing
    doc = check_doc(stack.poll(channel, 0), channel)
    times = [m["time"] for m in doc["messages"]]
    assert times == sorted(times)


def test_polls_with_cursor_beyond_end_get_whole_channel(stack, channel):
    """A cursor beyond the channel's end (a restarted broker) gets everything
    the channel has now, like an event stream does."""
    for i in range(2):
        stack.publish_ok(channel, f"n{i}")
    for r in (stack.poll(channel, 500), stack.longpoll(channel, 500),
              stack.longpoll(channel, 500, use_header=True)):
        # the client is told its history was lost, then gets what exists
        doc = check_doc(r, channel, gap={"channel": channel, "after": 500, "oldest_id": 1,
                                         "last_id": 2, "reason": "lost"})
        assert [(m["id"], m["data"]) for m in doc["messages"]] == [(1, "n0"), (2, "n1")]
        assert doc["last_id"] == 2


def test_short_poll_follow_cursor(stack, channel):
    cursor = check_doc(stack.poll(channel), channel)["last_id"]
    got = []
    for i in range(10):
        stack.publish_ok(channel, f"p{i}")
        if i % 3 == 2:
            doc = check_doc(stack.poll(channel, cursor), channel)
            got += [m["data"] for m in doc["messages"]]
            cursor = doc["last_id"]
    doc = check_doc(stack.poll(channel, cursor), channel)
    got += [m["data"] for m in doc["messages"]]
    assert got == [f"p{i}" for i in range(10)]


def test_short_poll_keeps_the_connection(stack, channel):
    """An answer given at once keeps the connection (docs/protocol.md)."""
    stack.publish_ok(channel, "x")
    conn = http.client.HTTPConnection(HOST, stack.port, timeout=30)
    try:
        for cursor in (0, 1, 0):
            conn.request("GET", f"/sub/{channel}?poll=1&last_id={cursor}")
            r = conn.getresponse()
            doc = json.loads(r.read())
            assert r.status == 200 and doc["channel"] == channel
            assert (r.getheader("Connection") or "").lower() != "close"
    finally:
        conn.close()


def test_json_escaping(stack, channel):
    data = 'quote " backslash \\ slash / tab \t nl \n cr \r ctl \x01\x1f del \x7f é ✓ 日本 😀'
    stack.publish_ok(channel, data.encode("utf-8"), "ev")
    r = stack.poll(channel, 0)
    doc = check_doc(r, channel)
    assert doc["messages"][0]["data"] == data
    assert doc["messages"][0]["event"] == "ev"


def test_invalid_utf8_becomes_replacement_character_in_json(stack, channel):
    stack.publish_ok(channel, b"ok \xff\xfe end \xc3")
    doc = check_doc(stack.poll(channel, 0), channel)
    assert doc["messages"][0]["data"] == "ok \ufffd\ufffd end \ufffd"
    # SSE passes the bytes unchanged
    with stack.subscribe(channel, last_id=0) as c:
        ev = c.next_event()
        assert ev.raw == b"id: 1\ndata: ok \xff\xfe end \xc3\n\n"


def test_poll_and_sse_see_the_same_ids(stack, channel):
    with stack.subscribe(channel) as c:
        for i in range(5):
            stack.broker.pub_id(channel, f"z{i}".encode())
        evs = c.events(5)
    doc = check_doc(stack.poll(channel, 0), channel)
    assert [(m["id"], m["data"]) for m in doc["messages"]] == \
        [(e.int_id, e.data) for e in evs]


def test_many_parallel_long_polls_all_answered(stack, channel):
    n = 50
    cursor = check_doc(stack.poll(channel), channel)["last_id"]
    polls = [BackgroundPoll(stack, channel, f"?last_id={cursor}") for _ in range(n)]
    try:
        time.sleep(0.5)
        assert not any(p.done() for p in polls)
        ack = stack.publish_ok(channel, "everyone")
        for p in polls:
            head, doc = p.wait()
            assert head.status == 200
            assert [(m["id"], m["data"]) for m in doc["messages"]] == [(ack["id"], "everyone")]
    finally:
        for p in polls:
            p.close()
