"""Fault injection: Apache restarts and crashes while a publisher runs.

A publisher sends 200 messages a second to the broker (ZeroMQ PUB on the
api endpoint) on a fresh channel, before, during and after the fault:

  graceful   apache2 -k graceful    held connections end cleanly (SSE: the
                                    last chunk; WebSocket: close 1001)
  restart    apache2 -k restart     every child is killed: connections cut
  kill9-*    kill -9 of the child holding the SSE (or WebSocket) subscriber

Subscribers of every transport (SSE, WebSocket, long poll) reconnect with
their last id, as a browser does (503 with Retry-After while a brand-new
child's broker link comes up is retried after a short pause).  At the end
each one must hold exactly the ids 1..N, in order, once each, with the data
that was published under them, N being the number of acknowledged
publishes.  The broker keeps 100,000 messages per channel, so a gap never
excuses a miss.

Time only bounds the waits (nothing may hang); no test asserts speed.
"""
import http.client
import json
import threading
import time

import pytest
import zmq

from conftest import (SSEClient, apachectl, child_crashes, connection_owner,
                      kill_child, pid_alive, unique_channel, wait_until)
from test_websocket_util import RawWS, ServerClosed

RATE = 200                 # messages per second
BEFORE_FAULT = 2.0         # seconds of publishing before the fault
AFTER_FAULT = 4.0          # ... and after it
CONNECT_TIMEOUT = 30.0     # bound: the first connection of every subscriber
DRAIN_TIMEOUT = 90.0       # bound: subscribers catch up after the publisher stops
RETRY_PAUSE = 0.1          # between reconnection attempts (503, refused, reset)

RESTART_CONF = """\
<Location /sub/>
  PushLongPollTimeout 3
</Location>
"""


@pytest.fixture(scope="module")
def rs(stack_factory):
    s = stack_factory("restarts", extra_conf=RESTART_CONF,
                      broker_args=("--history-max", "100000"))
    yield s
    s.stop()


@pytest.fixture
def ready(rs):
    """Every test starts on a serving Apache (a previous fault may have just
    replaced children)."""
    rs.apache.wait_ready()
    return rs


def payload(i):
    return f"message {i} " + "x" * (i % 37)


# ---------------------------------------------------------------------------
# the publisher
# ---------------------------------------------------------------------------

class Publisher(threading.Thread):
    """PUB on the broker's api endpoint at RATE messages a second until
    stopped.  .acked: the ids of the acknowledged publishes, in order;
    .sent[id]: the data published under that id."""

    def __init__(self, endpoint, channel, rate=RATE):
        super().__init__(daemon=True, name=f"publisher {channel}")
        self.endpoint, self.channel, self.rate = endpoint, channel, rate
        self.acked = []
        self.sent = {}
        self.errors = []
        self._halt = threading.Event()

    def stop(self):
        self._halt.set()

    def run(self):
        s = zmq.Context.instance().socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVTIMEO, 10000)
        s.setsockopt(zmq.SNDTIMEO, 10000)
        s.connect(self.endpoint)
        t0 = time.monotonic()
        i = 0
        try:
            while not self._halt.is_set():
                due = t0 + i / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                data = payload(i + 1)
                s.send_multipart([b"PUB", self.channel.encode(), data.encode()])
                rep = s.recv_multipart()
                if rep[0] != b"OK":
                    self.errors.append(f"publish {i + 1}: {rep!r}")
                    return
                mid = int(rep[1])
                self.acked.append(mid)
                self.sent[mid] = data
                i += 1
        except zmq.ZMQError as e:
            self.errors.append(f"publish {i + 1}: {e!r} (the broker did not answer)")
        finally:
            s.close()


# ---------------------------------------------------------------------------
# subscribers that reconnect with their last id
# ---------------------------------------------------------------------------

class Subscriber(threading.Thread):
    """Base: .received is [(id, data)] in arrival order over all
    connections; .cursor the last id; .ends how each connection ended;
    .anomalies what must not happen (gap notices, errors, bad answers)."""

    kind = "?"

    def __init__(self, stack, channel):
        super().__init__(daemon=True, name=f"{self.kind} subscriber {channel}")
        self.stack, self.channel = stack, channel
        self.received = []
        self.cursor = 0
        self.connections = 0       # connections that were accepted (200 / 101)
        self.refused = []          # 503s and connection errors before acceptance
        self.ends = []             # one per accepted connection that ended
        self.anomalies = []
        self.target = None         # set when the publisher is done: the last id
        self.connected = threading.Event()
        self.lock = threading.Lock()
        self.sock = None           # the socket of the current connection
        self.deadline = time.monotonic() + 600   # hard bound, tightened by finish()

    def finish(self, target, timeout):
        self.target = target
        self.deadline = time.monotonic() + timeout

    def done(self):
        if self.anomalies:
            return True
        if time.monotonic() > self.deadline:
            return True
        return self.target is not None and self.cursor >= self.target

    def got(self, mid, data):
        if mid <= self.cursor:
            self.anomalies.append(f"id {mid} after id {self.cursor} (duplicate or out of order)")
        self.received.append((mid, data))
        self.cursor = max(self.cursor, mid)

    def current_socket(self):
        with self.lock:
            return self.sock

    def set_socket(self, sock):
        with self.lock:
            self.sock = sock

    def run(self):
        try:
            self.loop()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.anomalies.append(f"subscriber crashed: {e!r}")
        finally:
            self.connected.set()

    def summary(self):
        ids = [m for m, _ in self.received]
        return (f"{self.kind}: {len(ids)} received, last id {self.cursor}, "
                f"{self.connections} connections, ends {self.ends[:10]}, "
                f"refused {len(self.refused)} ({self.refused[:5]}), "
                f"anomalies {self.anomalies[:5]}")


class SSESubscriber(Subscriber):
    """The first request carries ?last_id=0, every reconnection the
    Last-Event-ID header, as EventSource does."""

    kind = "SSE"

    def loop(self):
        first = True
        while not self.done():
            if first:
                path, headers = f"/sub/{self.channel}?last_id=0", {}
            else:
                path, headers = f"/sub/{self.channel}", {"Last-Event-ID": str(self.cursor)}
            try:
                c = SSEClient(self.stack.port, path, headers, timeout=10)
            except OSError as e:
                self.refused.append(repr(e))
                time.sleep(RETRY_PAUSE)
                continue
            try:
                try:
                    head = c.read_head()
                except (EOFError, TimeoutError, OSError) as e:
                    self.refused.append(repr(e))
                    time.sleep(RETRY_PAUSE)
                    continue
                if head.status == 503:
                    self.refused.append(503)
                    time.sleep(RETRY_PAUSE)
                    continue
                if head.status != 200:
                    self.anomalies.append(f"GET {path} answered {head.status}: "
                                          f"{c.read_body(5)!r}")
                    return
                first = False
                self.connections += 1
                self.set_socket(c.sock)
                self.connected.set()
                self.stream(c)
            finally:
                self.set_socket(None)
                c.close()

    def stream(self, c):
        while True:
            try:
                kind, val = c.next_item(1.0)
            except TimeoutError:
                if self.done():
                    self.ends.append("stopped")
                    return
                continue
            except (EOFError, OSError):
                clean = c.http.complete and not c.http.truncated
                self.ends.append("clean" if clean else "cut")
                return
            if kind != "event":
                continue
            if val.event is not None:
                self.anomalies.append(f"unexpected event {val!r}")
                return
            try:
                mid = int(val.id)
            except ValueError:
                self.anomalies.append(f"event without a numeric id: {val!r}")
                return
            self.got(mid, val.data)
            if self.done():
                self.ends.append("stopped")
                return


class WSSubscriber(Subscriber):
    """JSON mode; every connection carries ?last_id=<last id seen>."""

    kind = "WebSocket"

    def loop(self):
        while not self.done():
            path = f"/sub/{self.channel}?last_id={self.cursor}"
            try:
                w = RawWS(self.stack.port, path, expect_101=False, timeout=10)
            except (OSError, EOFError, TimeoutError) as e:
                self.refused.append(repr(e))
                time.sleep(RETRY_PAUSE)
                continue
            try:
                if w.status == 503:
                    self.refused.append(503)
                    time.sleep(RETRY_PAUSE)
                    continue
                if w.status != 101:
                    self.anomalies.append(f"handshake {path} answered {w.status}: {w.body!r}")
                    return
                self.connections += 1
                self.set_socket(w.sock)
                self.connected.set()
                self.stream(w)
            finally:
                self.set_socket(None)
                w.close()

    def stream(self, w):
        while True:
            try:
                m = w.recv_json(1.0)
            except TimeoutError:
                if self.done():
                    self.ends.append("stopped")
                    return
                continue
            except ServerClosed as e:
                self.ends.append(f"close {e.code}")
                return
            except (EOFError, OSError):
                self.ends.append("cut")
                return
            t = m.get("type")
            if t == "subscribed":
                continue
            if t != "message" or m.get("channel") != self.channel:
                self.anomalies.append(f"unexpected message {m!r}")
                return
            self.got(m["id"], m["data"])
            if self.done():
                self.ends.append("stopped")
                return


class LongPollSubscriber(Subscriber):
    """GET /sub/<ch>?last_id=<cursor> in a loop; a failed request (reset,
    refused, 503) is sent again with the same cursor."""

    kind = "long poll"

    def loop(self):
        self.connected.set()
        while not self.done():
            path = f"/sub/{self.channel}?last_id={self.cursor}"
            try:
                r = self.stack.request("GET", path, timeout=30)
            except (OSError, http.client.HTTPException) as e:
                self.refused.append(repr(e))
                time.sleep(RETRY_PAUSE)
                continue
            if r.status == 503:
                self.refused.append(503)
                time.sleep(RETRY_PAUSE)
                continue
            if r.status != 200:
                self.anomalies.append(f"GET {path} answered {r.status}: {r.body[:300]!r}")
                return
            self.connections += 1
            try:
                doc = json.loads(r.body)
            except ValueError:
                self.anomalies.append(f"GET {path}: not JSON: {r.body[:300]!r}")
                return
            if set(doc) != {"channel", "messages", "last_id"} or doc["channel"] != self.channel:
                self.anomalies.append(f"GET {path}: unexpected answer {doc!r}"[:500])
                return
            for m in doc["messages"]:
                self.got(m["id"], m["data"])
            if doc["messages"] and doc["last_id"] != doc["messages"][-1]["id"]:
                self.anomalies.append(f"last_id {doc['last_id']} is not the last message's "
                                      f"id {doc['messages'][-1]['id']}")
            if doc["last_id"] < self.cursor:
                self.anomalies.append(f"last_id went back from {self.cursor} to "
                                      f"{doc['last_id']}")
            self.cursor = max(self.cursor, doc["last_id"])


# ---------------------------------------------------------------------------
# the scenario
# ---------------------------------------------------------------------------

def run_scenario(stack, fault, subscribers_per_kind=1):
    """Subscribers of every kind, a publisher at RATE, fault(subs) after
    BEFORE_FAULT seconds; returns (publisher, subscribers, fault result)."""
    ch = unique_channel("fault")
    subs = []
    for cls in (SSESubscriber, WSSubscriber, LongPollSubscriber):
        subs += [cls(stack, ch) for _ in range(subscribers_per_kind)]
    for s in subs:
        s.start()
    pub = Publisher(stack.broker.api, ch)
    result = None
    try:
        for s in subs:
            assert s.connected.wait(CONNECT_TIMEOUT), f"{s.kind} subscriber never connected"
            assert not s.anomalies, s.summary()
        pub.start()
        time.sleep(BEFORE_FAULT)
        result = fault(subs)
        time.sleep(AFTER_FAULT)
    finally:
        pub.stop()
        pub.join(30)
        n = len(pub.acked)
        for s in subs:
            s.finish(n, DRAIN_TIMEOUT)
        for s in subs:
            s.join(DRAIN_TIMEOUT + 30)
    return ch, pub, subs, result


def check_exactly_once(pub, subs):
    assert not pub.errors, pub.errors
    assert not pub.is_alive(), "the publisher did not stop"
    n = len(pub.acked)
    assert n > 0, "nothing was published"
    assert pub.acked == list(range(1, n + 1)), \
        f"the broker acknowledged ids {pub.acked[:5]}..{pub.acked[-5:]} for a fresh channel"
    problems = []
    for s in subs:
        if s.is_alive():
            problems.append(f"{s.summary()}: still running after the bound")
            continue
        ids = [m for m, _ in s.received]
        if s.anomalies:
            problems.append(s.summary())
        elif ids != list(range(1, n + 1)):
            missing = sorted(set(range(1, n + 1)) - set(ids))
            dups = sorted({m for m in ids if ids.count(m) > 1})
            problems.append(f"{s.summary()}: expected ids 1..{n} once each in order; "
                            f"missing {len(missing)} {missing[:10]}, duplicated {dups[:10]}, "
                            f"extra {sorted(set(ids) - set(range(1, n + 1)))[:10]}")
        else:
            bad = [(m, d) for m, d in s.received if d != pub.sent[m]]
            if bad:
                problems.append(f"{s.summary()}: wrong data for ids {bad[:3]}")
    assert not problems, "\n".join(problems)


def holder(stack, sub, timeout=15):
    """The child holding sub's current connection."""
    def find():
        sock = sub.current_socket()
        return connection_owner(stack.apache, sock) if sock is not None else None
    return wait_until(find, timeout, f"the child holding the {sub.kind} subscriber")


def after_fault_checks(stack, offset, killed=()):
    assert stack.broker.running(), "the broker died"
    assert pid_alive(stack.apache.master_pid), "the Apache master died"
    crashes = child_crashes(stack.apache, offset, expected=killed)
    assert not crashes, "children crashed:\n" + "\n".join(crashes)


# ---------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------

def test_no_fault_baseline(ready):
    """The same load without a fault: every subscriber keeps its first
    connection (only the long poll makes new ones), every message once, and
    no child dies.  A failure here is not about restarts."""
    s = ready
    offset = s.apache.log_offset()
    ch, pub, subs, _ = run_scenario(s, lambda subs: None)
    check_exactly_once(pub, subs)
    after_fault_checks(s, offset)
    for sub in subs:
        if sub.kind != "long poll":
            assert sub.connections == 1, f"a connection ended without a fault: {sub.summary()}"


def test_graceful_restart_under_load(ready):
    s = ready
    state = {}

    def fault(subs):
        state["offset"] = s.apache.log_offset()
        apachectl(s.apache, "graceful")
        s.apache.wait_ready(since=state["offset"])

    ch, pub, subs, _ = run_scenario(s, fault)
    check_exactly_once(pub, subs)
    after_fault_checks(s, state["offset"])
    # every held connection was ended by the restart, cleanly
    for sub in subs:
        if sub.kind == "long poll":
            continue
        assert sub.connections >= 2, f"the graceful restart did not end it: {sub.summary()}"
        first_end = sub.ends[0]
        want = "clean" if sub.kind == "SSE" else "close 1001"
        assert first_end == want, \
            f"{sub.kind} connection ended by the graceful restart: {first_end}, want {want} " \
            f"({sub.summary()})"


def test_restart_under_load(ready):
    """apache2 -k restart: the master kills its children (their connections
    are cut) and starts new ones; subscribers resume from their last id."""
    s = ready
    state = {}

    def fault(subs):
        state["offset"] = s.apache.log_offset()
        state["old"] = set(s.apache.child_pids())
        apachectl(s.apache, "restart")
        s.apache.wait_ready(since=state["offset"])
        state["new"] = set(s.apache.child_pids())

    ch, pub, subs, _ = run_scenario(s, fault)
    assert not (state["old"] & state["new"]), "no child was replaced by -k restart"
    check_exactly_once(pub, subs)
    after_fault_checks(s, state["offset"])
    for sub in subs:
        if sub.kind != "long poll":
            assert sub.connections >= 2, f"-k restart did not end it: {sub.summary()}"


@pytest.mark.parametrize("target", ["sse", "websocket"])
def test_kill9_child_under_load(ready, target):
    """kill -9 of the child holding the SSE (or the WebSocket) subscriber."""
    s = ready
    state = {}

    def fault(subs):
        victim_sub = subs[0] if target == "sse" else subs[1]
        assert victim_sub.kind == ("SSE" if target == "sse" else "WebSocket")
        pid = holder(s, victim_sub)
        state["offset"] = s.apache.log_offset()
        state["pid"] = pid
        state["on_victim"] = [x.kind for x in subs if x.current_socket() is not None
                              and connection_owner(s.apache, x.current_socket()) == pid]
        kill_child(s.apache, pid)
        # the master replaces it; every child (new ones too) links to the broker
        s.apache.wait_ready()
        state["victim_sub"] = victim_sub

    ch, pub, subs, _ = run_scenario(s, fault)
    check_exactly_once(pub, subs)
    after_fault_checks(s, state["offset"], killed={state["pid"]})
    v = state["victim_sub"]
    assert v.connections >= 2 and "cut" in v.ends, \
        f"the kill of child {state['pid']} (holding {state['on_victim']}) did not cut " \
        f"the {v.kind} subscriber: {v.summary()}"
    assert state["pid"] not in s.apache.child_pids()


def test_every_fault_in_a_row_same_channel(ready):
    """The three faults one after the other on one channel, several
    subscribers of each kind: still every message exactly once, in order."""
    s = ready
    state = {"killed": set()}

    def fault(subs):
        state["offset"] = s.apache.log_offset()
        apachectl(s.apache, "graceful")
        s.apache.wait_ready(since=state["offset"])
        time.sleep(1.0)
        off = s.apache.log_offset()
        apachectl(s.apache, "restart")
        s.apache.wait_ready(since=off)
        time.sleep(1.0)
        pid = holder(s, subs[0])
        state["killed"].add(pid)
        kill_child(s.apache, pid)
        s.apache.wait_ready()

    ch, pub, subs, _ = run_scenario(s, fault, subscribers_per_kind=2)
    check_exactly_once(pub, subs)
    after_fault_checks(s, state["offset"], killed=state["killed"])
