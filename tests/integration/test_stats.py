"""Statistics: the `push-status` handler of mod_push (JSON, Prometheus text
exposition, HTML) and the broker's STATS (ZeroMQ multipart, JSON op,
`pushctl stats`), including how the numbers move after a known workload.

mod_push's numbers come from shared memory that every child refreshes on
its reactor tick (every 250 ms); the child that answers reports its own
numbers as of now.  So every expectation on the numbers of the whole
server is polled for until it holds, within a bound (STATUS_BOUND) that
only keeps a broken build from hanging the run: nothing here asserts that
anything is fast.

Which child holds which connection is found from /proc (connection_owner
of conftest), so the per-child expectations are exact.
"""
import base64
import hashlib
import html.parser
import json
import os
import re
import socket
import subprocess
import time

import pytest
import zmq

from conftest import (EVENT_TIMEOUT, HOST, PUSHCTL, Broker, SSEClient, connection_owner,
                      silent_sse, stack_fixture, unique_channel, wait_until, zmq_request)

STATUS_BOUND = 20.0        # "after the next ticks", generously bounded
LINK_BOUND = 40.0          # a child notices a dead broker (a few seconds), bounded

TRANSPORTS = ("sse", "longpoll", "websocket")
COUNTERS = ("channels", "subscriptions", "delivered", "bytes_sent", "queued",
            "slow_consumers_cut", "broker_messages_in", "broker_reconnects")
CHILD_KEYS = {"pid", "subscribers", "broker_link", *COUNTERS}
TOTAL_KEYS = {"subscribers", "broker_links_up", *COUNTERS}

BROKER_KEYS = {"channels", "messages_stored", "published", "children", "uptime_s",
               "publish_rate", "presence_channels", "presence_members",
               "presence_connections"}
STORE_KEYS = {"log_bytes", "fsync", "fsync_lag_ms", "compactions"}

# Prometheus family -> (type, field of a per_child JSON object)
PROM_FAMILIES = {
    "mod_push_children": ("gauge", None),
    "mod_push_subscribers": ("gauge", "subscribers"),
    "mod_push_channels": ("gauge", "channels"),
    "mod_push_subscriptions": ("gauge", "subscriptions"),
    "mod_push_delivered_total": ("counter", "delivered"),
    "mod_push_bytes_sent_total": ("counter", "bytes_sent"),
    "mod_push_send_queue": ("gauge", "queued"),
    "mod_push_slow_consumers_cut_total": ("counter", "slow_consumers_cut"),
    "mod_push_broker_link_up": ("gauge", "broker_link"),
    "mod_push_broker_reconnects_total": ("counter", "broker_reconnects"),
    "mod_push_broker_messages_total": ("counter", "broker_messages_in"),
}

STATS_CONF = """\
<Location /sub-bigq/>
  SetHandler push-subscriber
  PushMaxQueue 100000
</Location>
"""

SLOW_CONF = """\
<Location /sub/>
  PushMaxQueue 5
</Location>
"""

PRESENCE_CONF = """\
<Location /sub/>
  PushPresenceNames on
</Location>
"""


# ---------------------------------------------------------------------------
# stacks
# ---------------------------------------------------------------------------

st = stack_fixture("stats", extra_conf=STATS_CONF,
                   doc="Broker + Apache used by the status tests only (their counters start "
                       "at 0).")


@pytest.fixture
def quiet(st):
    """st with every child reporting and nothing held or queued."""
    st.apache.wait_ready()
    wait_quiet(st)
    return st


slow = stack_fixture("stats-slowq", extra_conf=SLOW_CONF)
linkstack = stack_fixture("stats-link")
pres = stack_fixture("stats-presence", extra_conf=PRESENCE_CONF)


# ---------------------------------------------------------------------------
# reading /push-status
# ---------------------------------------------------------------------------

def get_status(stack, query="", headers=None):
    return stack.request("GET", "/push-status" + query, headers=headers or {}, timeout=20)


def status_json(stack, query="", headers=None):
    r = get_status(stack, query, headers)
    assert r.status == 200, r
    assert r.header("Content-Type") == "application/json", r.headers
    doc = r.json()
    check_shape(doc)
    return doc


def check_shape(doc):
    """Exact key sets and types; total is the sum of per_child."""
    assert set(doc) == {"children", "total", "per_child"}, doc
    assert isinstance(doc["children"], int) and doc["children"] == len(doc["per_child"]), doc
    tot = doc["total"]
    assert set(tot) == TOTAL_KEYS, sorted(tot)
    assert set(tot["subscribers"]) == set(TRANSPORTS), tot
    pids = []
    for c in doc["per_child"]:
        assert set(c) == CHILD_KEYS, sorted(c)
        assert set(c["subscribers"]) == set(TRANSPORTS), c
        assert isinstance(c["pid"], int) and c["pid"] > 0, c
        assert c["broker_link"] in ("up", "down"), c
        for k in COUNTERS:
            assert isinstance(c[k], int) and c[k] >= 0, (k, c)
        for t in TRANSPORTS:
            assert isinstance(c["subscribers"][t], int) and c["subscribers"][t] >= 0, c
        pids.append(c["pid"])
    assert len(set(pids)) == len(pids), f"a pid reported twice: {doc}"
    for k in COUNTERS:
        assert tot[k] == sum(c[k] for c in doc["per_child"]), (k, doc)
    for t in TRANSPORTS:
        assert tot["subscribers"][t] == sum(c["subscribers"][t] for c in doc["per_child"]), doc
    assert tot["broker_links_up"] == sum(c["broker_link"] == "up" for c in doc["per_child"]), doc
    return doc


def by_pid(doc):
    return {c["pid"]: c for c in doc["per_child"]}


def wait_status(stack, check, what, timeout=STATUS_BOUND, query=""):
    """Poll /push-status until check(doc) passes (returns without raising
    an AssertionError and not False); returns that doc.  On timeout the
    test fails with the last document and the last failed assertion."""
    deadline = time.monotonic() + timeout
    last_doc, last_err = None, None
    while True:
        try:
            doc = status_json(stack, query)
            last_doc = doc
            if check(doc) is not False:
                return doc
            last_err = "check returned False"
        except (AssertionError, OSError, ValueError) as e:
            last_err = e
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n"
                        f"last failure: {last_err}\nlast /push-status: "
                        f"{json.dumps(last_doc, indent=1)}")
        time.sleep(0.1)


def all_children_reporting(stack):
    """A check: the reported pids are exactly the live children of the master."""
    def check(doc):
        kids = set(stack.apache.child_pids())
        assert kids, "Apache has no children"
        assert set(by_pid(doc)) == kids, f"reported {sorted(by_pid(doc))}, children {sorted(kids)}"
        assert doc["children"] == len(kids)
    return check


def wait_quiet(stack, what="nothing held or queued"):
    reporting = all_children_reporting(stack)

    def check(doc):
        reporting(doc)
        t = doc["total"]
        assert t["subscribers"] == {"sse": 0, "longpoll": 0, "websocket": 0}, t
        assert t["channels"] == 0 and t["subscriptions"] == 0 and t["queued"] == 0, t
    return wait_status(stack, check, what)


def settled_status(stack):
    """The JSON document once every child has ticked since now: a baseline
    for counters when nothing is going on."""
    time.sleep(0.6)
    return wait_status(stack, all_children_reporting(stack), "every child to report")


def stable_pair(stack, fetch_other, tries=20):
    """(json, other): fetched until the JSON documents before and after
    fetch_other() are equal, i.e. nothing changed in between.  The answering
    child reports its own numbers as of now but those of the others as of
    their last tick, so fetch_other() waits for more than two ticks after
    the first document: by then every child's numbers in shared memory are
    those of the quiet moment, whichever child answers."""
    last = None
    for _ in range(tries):
        j1 = status_json(stack)
        time.sleep(0.6)
        other = fetch_other()
        j2 = status_json(stack)
        if j1 == j2:
            return j1, other
        last = (j1, j2)
        time.sleep(0.3)
    pytest.fail(f"/push-status never stayed the same across one request: {last}")


# ---------------------------------------------------------------------------
# clients
# ---------------------------------------------------------------------------

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WS:
    """A small blocking WebSocket client (RFC 6455) on a raw socket: the
    handshake, unmasked server frames, pongs to pings.  .wire counts the
    bytes of every data frame received, headers included."""

    def __init__(self, port, path, timeout=EVENT_TIMEOUT):
        self.timeout = timeout
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._fill(time.monotonic() + timeout)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        head = head.decode("iso-8859-1")
        assert head.startswith("HTTP/1.1 101"), head
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        assert f"sec-websocket-accept: {accept.lower()}" in head.lower(), head
        self.wire = 0

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no WebSocket frame in time")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("WebSocket closed")
        self.buf += data

    def _need(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)

    def frame(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "server frame is masked"
        n, hl = b1 & 0x7F, 2
        if n == 126:
            self._need(4, deadline)
            n, hl = int.from_bytes(self.buf[2:4], "big"), 4
        elif n == 127:
            self._need(10, deadline)
            n, hl = int.from_bytes(self.buf[2:10], "big"), 10
        self._need(hl + n, deadline)
        payload = self.buf[hl:hl + n]
        self.buf = self.buf[hl + n:]
        return b0 & 0x0F, b0 & 0x80, payload, hl + n

    def _send(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        hdr = bytes([0x80 | opcode])
        hdr += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
        self.sock.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv_json(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            op, fin, payload, wire = self.frame(max(0.001, deadline - time.monotonic()))
            if op == 0x9:
                self._send(0xA, payload)
                continue
            if op == 0xA:
                continue
            assert op == 0x1 and fin, f"unexpected frame opcode {op} fin {fin}"
            self.wire += wire
            return json.loads(payload)

    def close_handshake(self, timeout=None):
        """Send a close frame (1000) and wait for the server's close frame."""
        self._send(0x8, (1000).to_bytes(2, "big"))
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            op, _, payload, _ = self.frame(max(0.001, deadline - time.monotonic()))
            if op == 0x8:
                return payload

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def ws_subscribe(stack, channel):
    w = WS(stack.port, f"/sub/{channel}")
    m = w.recv_json()
    assert m == {"type": "subscribed", "channel": channel, "last_id": 0}, m
    w.wire = 0          # count the messages only
    return w


def sse_subscribe(stack, channel, path=None):
    return stack.subscribe(channel, path=path)


def longpoll_start(stack, channel, path=None):
    """A long poll without cursor (it waits for the next message), on a raw
    socket so that its owner can be found; answer with .json()."""
    return SSEClient(stack.port, path or f"/sub/{channel}", accept=None, timeout=60)


def closed_within(sock, timeout):
    """Read (and drop) until EOF or a reset; False if still open after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(1 << 20):
                return True
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
    return False


def owner(stack, sock):
    pid = wait_until(lambda: connection_owner(stack.apache, sock), STATUS_BOUND,
                     "the child holding a connection to be found in /proc")
    return pid


class Publisher:
    """PUB on one REQ socket of the broker's api endpoint."""

    def __init__(self, endpoint):
        self.sock = zmq.Context.instance().socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, 20000)
        self.sock.setsockopt(zmq.SNDTIMEO, 20000)
        self.sock.connect(endpoint)

    def pub(self, channel, data):
        self.sock.send_multipart([b"PUB", channel.encode(),
                                  data if isinstance(data, bytes) else data.encode()])
        rep = self.sock.recv_multipart()
        assert rep[0] == b"OK", rep
        return int(rep[1])

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------------------
# /push-status as JSON
# ---------------------------------------------------------------------------

def test_status_json_document(quiet):
    s = quiet
    r = get_status(s)
    assert r.status == 200, r
    assert r.header("Content-Type") == "application/json", r.headers
    assert r.header("Cache-Control") == "no-cache", r.headers
    check_shape(r.json())
    # the same document for ?format=json and for an explicit Accept: application/json
    for q, h in (("?format=json", {}), ("", {"Accept": "application/json"}),
                 ("?format=json", {"Accept": "text/html"})):
        r2 = get_status(s, q, h)
        assert r2.status == 200 and r2.header("Content-Type") == "application/json", (q, h, r2)
        check_shape(r2.json())
    # children = the live children of the master, every one linked
    doc = wait_status(s, all_children_reporting(s), "every child to report")
    for c in doc["per_child"]:
        assert c["broker_link"] == "up", c
    assert doc["total"]["broker_links_up"] == doc["children"] >= 1
    # the broker counts the same children as linked
    wait_until(lambda: stats_multipart(s.broker)["children"] == len(s.apache.child_pids()),
               STATUS_BOUND, "the broker to count as many linked children as Apache has")


def test_status_known_workload(quiet):
    """3 SSE (2 on a, 1 on b), 2 WebSocket (a), 1 waiting long poll (c):
    per child and total subscribers, channels, subscriptions; 5 messages
    on a: delivered +20, bytes_sent at least the frames, broker_messages_in
    +5 on each child with a subscriber of a; one on c answers the long poll;
    closing everything brings the gauges back to 0."""
    s = quiet
    a, b, c = unique_channel("sa"), unique_channel("sb"), unique_channel("sc")
    base = by_pid(settled_status(s))
    clients = []
    try:
        sse = [sse_subscribe(s, a), sse_subscribe(s, a), sse_subscribe(s, b)]
        clients += sse
        ws = [ws_subscribe(s, a), ws_subscribe(s, a)]
        clients += ws
        lp = longpoll_start(s, c)
        clients.append(lp)
        subs = [("sse", a, x.sock) for x in sse[:2]] + [("sse", b, sse[2].sock)] \
            + [("websocket", a, w.sock) for w in ws] + [("longpoll", c, lp.sock)]
        owners = [(tp, ch, owner(s, sock)) for tp, ch, sock in subs]
        pids = {p for _, _, p in owners}
        print("owners:", owners)

        def expected_of(pid):
            mine = [(tp, ch) for tp, ch, p in owners if p == pid]
            return ({t: sum(tp == t for tp, _ in mine) for t in TRANSPORTS},
                    len({ch for _, ch in mine}), len(mine))

        def held(doc):
            all_children_reporting(s)(doc)
            t = doc["total"]
            assert t["subscribers"] == {"sse": 3, "longpoll": 1, "websocket": 2}, t
            assert t["subscriptions"] == 6, t
            pairs = len({(p, ch) for _, ch, p in owners})
            assert 3 <= t["channels"] <= pairs, (t, pairs)
            assert t["channels"] == pairs, (t, pairs)
            for pid, cdoc in by_pid(doc).items():
                subs_exp, chans_exp, n_exp = expected_of(pid)
                assert cdoc["subscribers"] == subs_exp, (pid, cdoc, subs_exp)
                assert cdoc["channels"] == chans_exp, (pid, cdoc, chans_exp)
                assert cdoc["subscriptions"] == n_exp, (pid, cdoc, n_exp)
                assert cdoc["queued"] == 0, cdoc
        before = wait_status(s, held, "the subscribers of the workload to be counted")
        before = by_pid(before)

        # 5 messages on a: 4 connections of a each get them
        pub = Publisher(s.broker.api)
        try:
            for i in range(5):
                pub.pub(a, f"message {i} on a " + "x" * (100 * i))
        finally:
            pub.close()
        sse_bytes = 0
        for x in sse[:2]:
            evs = x.events(5)
            assert [e.data for e in evs] == [f"message {i} on a " + "x" * (100 * i)
                                             for i in range(5)]
            sse_bytes += sum(len(e.raw) for e in evs)
        for w in ws:
            ms = [w.recv_json() for _ in range(5)]
            assert [m["data"] for m in ms] == [f"message {i} on a " + "x" * (100 * i)
                                               for i in range(5)], ms
        ws_bytes = sum(w.wire for w in ws)
        per_a = {p: sum(1 for _, ch, q in owners if ch == a and q == p) for p in pids}

        def delivered(doc):
            held(doc)
            now = by_pid(doc)
            for pid, cdoc in now.items():
                old = base.get(pid)
                d_deliv = cdoc["delivered"] - (old["delivered"] if old else 0)
                d_in = cdoc["broker_messages_in"] - (old["broker_messages_in"] if old else 0)
                assert d_deliv == 5 * per_a.get(pid, 0), (pid, d_deliv, per_a)
                assert d_in == (5 if per_a.get(pid) else 0), (pid, d_in, per_a)
            d_total = doc["total"]["delivered"] - sum(o["delivered"] for o in base.values())
            assert d_total == 20, d_total
            d_bytes = doc["total"]["bytes_sent"] - sum(o["bytes_sent"] for o in before.values())
            assert d_bytes >= sse_bytes + ws_bytes, (d_bytes, sse_bytes, ws_bytes)
        wait_status(s, delivered, "delivered to grow by exactly 5 x 4")

        # one message on c answers the long poll (and nothing else)
        lp_pid = next(p for tp, _, p in owners if tp == "longpoll")
        s.broker.pub_id(c, "for the long poll")
        answer = lp.json()
        assert lp.http.status == 200, answer
        assert [m["data"] for m in answer["messages"]] == ["for the long poll"], answer

        def after_longpoll(doc):
            all_children_reporting(s)(doc)
            t = doc["total"]
            assert t["subscribers"] == {"sse": 3, "longpoll": 0, "websocket": 2}, t
            assert t["subscriptions"] == 5, t
            d_total = t["delivered"] - sum(o["delivered"] for o in base.values())
            assert d_total == 21, d_total
            cdoc = by_pid(doc)[lp_pid]
            old = base.get(lp_pid)
            assert cdoc["delivered"] - (old["delivered"] if old else 0) \
                == 5 * per_a.get(lp_pid, 0) + 1, cdoc
        wait_status(s, after_longpoll, "the long poll to be answered and counted")
    finally:
        for x in clients:
            if isinstance(x, WS):
                try:
                    x.close_handshake()
                except (OSError, EOFError, TimeoutError, AssertionError):
                    pass
            x.close()

    def gone(doc):
        all_children_reporting(s)(doc)
        t = doc["total"]
        assert t["subscribers"] == {"sse": 0, "longpoll": 0, "websocket": 0}, t
        assert t["channels"] == 0 and t["subscriptions"] == 0 and t["queued"] == 0, t
        assert t["delivered"] - sum(o["delivered"] for o in base.values()) == 21, t
    wait_status(s, gone, "the subscribers to be gone after closing the clients")


@pytest.fixture
def gonestack(stack_factory):
    """A stack of its own for each case: a connection whose end the server
    fails to notice must not spoil the counts of the other tests."""
    s = stack_factory("stats-gone")
    yield s
    s.stop()


@pytest.mark.parametrize("transport", ["sse", "websocket"])
@pytest.mark.parametrize("how", ["close", "shutdown-write"])
def test_status_client_gone_without_goodbye(gonestack, transport, how):
    """A subscriber whose client ends its TCP connection without a word (a
    crashed browser, a proxy timing out; for WebSocket: no close frame)
    is no longer counted: the server sees the FIN and ends the hold.
    (The bound is below the default PushWebSocketPing of 30 s, which would
    end a dead WebSocket anyway; a FIN needs no ping to be seen.)"""
    s = gonestack
    s.apache.wait_ready()
    wait_quiet(s)
    ch = unique_channel("gone")
    c = sse_subscribe(s, ch) if transport == "sse" else ws_subscribe(s, ch)
    try:
        pid = owner(s, c.sock)
        cport = c.sock.getsockname()[1]

        def held(doc):
            assert by_pid(doc)[pid]["subscribers"][transport] == 1, doc
            assert doc["total"]["subscriptions"] == 1, doc
        wait_status(s, held, "the subscriber to be counted")
        if how == "close":
            c.sock.close()
        else:
            c.sock.shutdown(socket.SHUT_WR)
        try:
            wait_quiet(s, f"the {transport} subscriber that closed its TCP connection "
                          f"({how}) to be no longer held")
        finally:
            print(f"server side of the connections to port {s.port}, client port: TCP state "
                  f"(01 ESTABLISHED, 08 CLOSE_WAIT): {server_side_states(s.port)}; "
                  f"this client's port: {cport}")
        if how == "shutdown-write":
            assert closed_within(c.sock, 30), "the server did not close its side"
    finally:
        c.close()


def server_side_states(port):
    """{client port: TCP state (hex as /proc/net/tcp)} of the server side of
    the connections to port."""
    out = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            x = line.split()
            if x[1] == f"0100007F:{port:04X}" and x[3] != "0A":
                out[int(x[2].split(":")[1], 16)] = x[3]
    return out


def test_status_queued_counts_waiting_messages(quiet):
    """A subscriber that never reads (PushMaxQueue 100000 here, so it is not
    cut): once its socket is full, the rest of the messages wait in its
    queue.  When quiet, delivered + queued = the messages published; after
    the client goes away the queue is freed (queued back to 0)."""
    s = quiet
    ch = unique_channel("bigq")
    base = by_pid(settled_status(s))
    sock = silent_sse(s.port, f"/sub-bigq/{ch}")
    pub = Publisher(s.broker.api)
    n = 200
    try:
        pid = owner(s, sock)
        wait_status(s, lambda d: d["total"]["subscribers"]["sse"] == 1,
                    "the silent subscriber to be held")
        data = b"q" * 60000
        for _ in range(n):
            pub.pub(ch, data)
        old = base.get(pid, {"delivered": 0, "queued": 0, "slow_consumers_cut": 0})

        def piled(doc):
            c = by_pid(doc)[pid]
            assert c["queued"] > 0, c
            assert c["delivered"] - old["delivered"] + c["queued"] == n, (c, old)
            assert c["slow_consumers_cut"] == old["slow_consumers_cut"], c
            assert doc["total"]["queued"] == c["queued"], doc["total"]
            assert c["subscribers"]["sse"] == 1, c
        doc = wait_status(s, piled, "messages to wait in the queue of the silent subscriber")
        print("queued:", by_pid(doc)[pid]["queued"])
    finally:
        pub.close()
        sock.close()

    def freed(doc):
        t = doc["total"]
        assert t["queued"] == 0 and t["subscribers"]["sse"] == 0, t
    wait_status(s, freed, "the queue to be freed after the client closed")


def test_status_slow_consumer_cut(slow):
    """PushMaxQueue 5 and an event stream that never reads: publishing 200
    messages of 60 KB overflows its queue: slow_consumers_cut +1 on the
    child holding it, the connection is closed, queued back to 0."""
    s = slow
    s.apache.wait_ready()
    wait_quiet(s)
    ch = unique_channel("slow")
    base = by_pid(settled_status(s))
    base_cut = sum(c["slow_consumers_cut"] for c in base.values())
    log_off = s.apache.log_offset()
    sock = silent_sse(s.port, f"/sub/{ch}")
    pub = Publisher(s.broker.api)
    try:
        pid = owner(s, sock)
        wait_status(s, lambda d: d["total"]["subscribers"]["sse"] == 1,
                    "the silent subscriber to be held")
        data = b"s" * 60000
        for _ in range(200):
            pub.pub(ch, data)

        def cut(doc):
            t = doc["total"]
            assert t["slow_consumers_cut"] == base_cut + 1, t
            c = by_pid(doc)[pid]
            assert c["slow_consumers_cut"] == base.get(pid, {}).get("slow_consumers_cut", 0) + 1
            assert t["subscribers"]["sse"] == 0, t
            assert t["queued"] == 0, t
            assert t["channels"] == 0 and t["subscriptions"] == 0, t
        wait_status(s, cut, "the slow consumer to be cut and counted")
        assert closed_within(sock, 60), "the slow consumer was counted as cut, " \
                                        "but its connection is still open"
        with open(s.apache.error_log, "rb") as f:
            f.seek(log_off)
            text = f.read().decode("utf-8", "replace")
        assert re.search(rf"\[pid {pid}:tid \d+\] AH20011: slow consumer on channel "
                         rf"{re.escape(ch)} cut off", text), text[-3000:]
    finally:
        pub.close()
        sock.close()


def test_status_broker_link_down_and_up(linkstack):
    """Broker stopped: every child reports broker_link "down" and its
    broker_reconnects grows; started again: every child "up"."""
    s = linkstack
    s.apache.wait_ready()
    reporting = all_children_reporting(s)

    def all_up(doc):
        reporting(doc)
        assert all(c["broker_link"] == "up" for c in doc["per_child"]), doc["per_child"]
        assert doc["total"]["broker_links_up"] == doc["children"]
    base = by_pid(wait_status(s, all_up, "every child to report its link up"))
    s.broker.stop()
    try:
        def all_down(doc):
            reporting(doc)
            for c in doc["per_child"]:
                assert c["broker_link"] == "down", c
                old = base.get(c["pid"])
                if old:      # it was up: its link went down once more
                    assert c["broker_reconnects"] == old["broker_reconnects"] + 1, (c, old)
                # a child Apache started meanwhile never had its link up
            assert doc["total"]["broker_links_up"] == 0, doc["total"]
            assert set(base) <= set(by_pid(doc)), "a child that was up is not reported"
        down = wait_status(s, all_down, "every child to report its link down",
                           timeout=LINK_BOUND)
        prom = get_status(s, "?format=prometheus")
        assert prom.status == 200
        samples = parse_prometheus(prom.body.decode())[1]
        ups = [v for (n, _), v in samples.items() if n == "mod_push_broker_link_up"]
        assert ups and all(v == 0 for v in ups), ups
    finally:
        off = s.apache.log_offset()
        s.broker.start()
    s.apache.wait_ready(since=off)

    def up_again(doc):
        all_up(doc)
        for c in doc["per_child"]:
            old = by_pid(down).get(c["pid"])
            if old:      # the count of "went down" does not move when it comes up
                assert c["broker_reconnects"] == old["broker_reconnects"], (c, old)
    wait_status(s, up_again, "every child to report its link up again", timeout=LINK_BOUND)


# ---------------------------------------------------------------------------
# Prometheus text exposition
# ---------------------------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{((?:{_LABEL})(?:,{_LABEL})*)?\}})? "
                     rf"(-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|NaN|[+-]Inf)$")
_HELP = re.compile(rf"^# HELP ({_NAME}) (.*)$")
_TYPE = re.compile(rf"^# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)$")


def parse_prometheus(text):
    """Strict parse of text format 0.0.4: returns ({family: (type, help)},
    {(name, frozenset(labels.items())): value}).  Every line is a HELP, a
    TYPE or a sample; HELP and TYPE come once per family, before its
    samples; a family's samples are contiguous."""
    assert text.endswith("\n"), "exposition does not end with a newline"
    families, samples = {}, {}
    helps, types = {}, {}
    current, done = None, set()
    for ln in text[:-1].split("\n"):
        assert ln, "blank line in the exposition"
        if ln.startswith("#"):
            m = _HELP.match(ln)
            if m:
                name = m.group(1)
                assert name not in helps, f"second HELP for {name}"
                assert m.group(2).strip(), f"empty HELP for {name}"
                helps[name] = m.group(2)
            else:
                m = _TYPE.match(ln)
                assert m, f"comment line that is neither HELP nor TYPE: {ln!r}"
                name = m.group(1)
                assert name not in types, f"second TYPE for {name}"
                assert name not in done and name != current, f"TYPE of {name} after its samples"
                types[name] = m.group(2)
            continue
        m = _SAMPLE.match(ln)
        assert m, f"not a sample line: {ln!r}"
        name, labels, value = m.group(1), m.group(2), m.group(3)
        assert name in types, f"sample of {name} before (or without) its TYPE"
        assert name in helps, f"sample of {name} without HELP"
        if name != current:
            assert name not in done, f"samples of {name} are not contiguous"
            if current:
                done.add(current)
            current = name
        lab = {}
        for lm in re.finditer(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"',
                              labels or ""):
            assert lm.group(1) not in lab, f"label {lm.group(1)} twice: {ln!r}"
            lab[lm.group(1)] = lm.group(2)
        key = (name, frozenset(lab.items()))
        assert key not in samples, f"sample twice: {ln!r}"
        samples[key] = float(value)
    assert set(helps) == set(types), (sorted(helps), sorted(types))
    for name in types:
        families[name] = (types[name], helps[name])
    return families, samples


def prom_matches_json(fams, samples, doc):
    assert set(fams) == set(PROM_FAMILIES), sorted(fams)
    for name, (typ, _) in PROM_FAMILIES.items():
        assert fams[name][0] == typ, (name, fams[name])
        if typ == "counter":
            assert name.endswith("_total"), name
    pids = {str(c["pid"]) for c in doc["per_child"]}
    expect = {("mod_push_children", frozenset()): float(doc["children"])}
    for c in doc["per_child"]:
        pid = str(c["pid"])
        for name, (_, field) in PROM_FAMILIES.items():
            if field is None:
                continue
            if field == "subscribers":
                for t in TRANSPORTS:
                    expect[(name, frozenset({"pid": pid, "transport": t}.items()))] = \
                        float(c["subscribers"][t])
            elif field == "broker_link":
                expect[(name, frozenset({"pid": pid}.items()))] = \
                    1.0 if c["broker_link"] == "up" else 0.0
            else:
                expect[(name, frozenset({"pid": pid}.items()))] = float(c[field])
    assert samples == expect, {"only in exposition": {k: v for k, v in samples.items()
                                                      if expect.get(k) != v},
                               "expected from JSON": {k: v for k, v in expect.items()
                                                      if samples.get(k) != v}}
    assert {dict(k[1]).get("pid") for k in samples if k[0] != "mod_push_children"} == pids


@pytest.fixture
def busy(quiet):
    """Some held connections and delivered messages, so that the numbers
    compared across formats are not all zero: 2 SSE + 1 WebSocket on one
    channel, one message each."""
    s = quiet
    ch = unique_channel("busy")
    held = [sse_subscribe(s, ch), sse_subscribe(s, ch), ws_subscribe(s, ch)]
    try:
        s.broker.pub_id(ch, "a message for the busy fixture")
        held[0].next_event()
        held[1].next_event()
        held[2].recv_json()
        def counted(d):
            all_children_reporting(s)(d)
            assert d["total"]["subscribers"] == {"sse": 2, "longpoll": 0, "websocket": 1}, d
        wait_status(s, counted, "the busy connections to be counted")
        yield s
    finally:
        for h in held:
            if isinstance(h, WS):
                try:
                    h.close_handshake()
                except (OSError, EOFError, TimeoutError, AssertionError):
                    pass
            h.close()


@pytest.mark.parametrize("how", [("?format=prometheus", {}),
                                 ("", {"Accept": "text/plain"}),
                                 ("", {"Accept": "text/plain;version=0.0.4;q=0.9,*/*;q=0.1"}),
                                 ("", {"Accept": "application/openmetrics-text; version=1.0.0"}),
                                 ("?format=prometheus", {"Accept": "text/html"})],
                         ids=["query", "accept-text-plain", "accept-prometheus-scraper",
                              "accept-openmetrics", "query-beats-accept"])
def test_status_prometheus(busy, how):
    s = busy
    query, headers = how
    doc, r = stable_pair(s, lambda: get_status(s, query, headers))
    assert r.status == 200, r
    ctype = r.header("Content-Type")
    assert ctype.startswith("text/plain; version=0.0.4"), ctype
    assert r.header("Cache-Control") == "no-cache", r.headers
    fams, samples = parse_prometheus(r.body.decode("utf-8"))
    prom_matches_json(fams, samples, doc)
    assert doc["total"]["subscribers"]["sse"] == 2       # not all zeros
    assert sum(v for (n, _), v in samples.items() if n == "mod_push_subscribers") == 3


def test_prometheus_parser_is_strict():
    """The parser above refuses what the format forbids (a guard on the test)."""
    good = "# HELP a_total A.\n# TYPE a_total counter\na_total{pid=\"1\"} 3\n"
    parse_prometheus(good)
    for bad in (good[:-1],                                        # no final newline
                good + "\n",                                      # blank line
                "a_total 3\n",                                    # no TYPE
                good + "a_total{pid=\"1\"} 4\n",                  # same sample twice
                good.replace("} 3", "} three"),                   # bad value
                good.replace('{pid="1"}', "{pid=1}"),             # unquoted label
                good + "# a free comment\n",
                good + "# TYPE b gauge\n# HELP b B.\nb 1\na_total{pid=\"2\"} 1\n"):
        with pytest.raises(AssertionError):
            parse_prometheus(bad)


# ---------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------

class TableParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables = []
        self.row = None
        self.cell = None
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.row = []
        elif tag in ("td", "th"):
            self.cell = [tag, ""]
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.row.append((self.cell[0], self.cell[1].strip()))
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.tables[-1].append(self.row)
            self.row = None
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[1] += data
        if self._in_title:
            self.title += data


HTML_HEAD = ["child", "SSE", "long poll", "WebSocket", "channels", "delivered", "bytes sent",
             "queued", "slow cut", "broker link"]


def html_row_of(who, c, link):
    return [str(who), str(c["subscribers"]["sse"]), str(c["subscribers"]["longpoll"]),
            str(c["subscribers"]["websocket"]), str(c["channels"]), str(c["delivered"]),
            str(c["bytes_sent"]), str(c["queued"]), str(c["slow_consumers_cut"]), link]


@pytest.mark.parametrize("how", [("?format=html", {}),
                                 ("", {"Accept": "text/html"}),
                                 ("", {"Accept": "text/html,application/xhtml+xml,"
                                                 "application/xml;q=0.9,*/*;q=0.8"})],
                         ids=["query", "accept-text-html", "accept-browser"])
def test_status_html(busy, how):
    s = busy
    query, headers = how
    doc, r = stable_pair(s, lambda: get_status(s, query, headers))
    assert r.status == 200, r
    assert r.header("Content-Type") == "text/html; charset=utf-8", r.headers
    text = r.body.decode("utf-8")
    assert text.lstrip().lower().startswith("<!doctype html>"), text[:200]
    p = TableParser()
    p.feed(text)
    p.close()
    assert p.title.strip() == "mod_push status", p.title
    assert len(p.tables) == 1, p.tables
    rows = p.tables[0]
    assert [t for t, _ in rows[0]] == ["th"] * len(HTML_HEAD), rows[0]
    assert [v for _, v in rows[0]] == HTML_HEAD, rows[0]
    body = [[v for _, v in row] for row in rows[1:]]
    assert all(all(t == "td" for t, _ in row) for row in rows[1:]), rows
    assert len(body) == doc["children"] + 1, body        # a row per child and a total row
    expect = [html_row_of(c["pid"], c, c["broker_link"]) for c in doc["per_child"]]
    t = doc["total"]
    expect.append(html_row_of("total", t, f"{t['broker_links_up']} of {doc['children']} up"))
    assert body == expect, (body, expect)
    assert body[-1][1] == "2" and body[-1][3] == "1", body[-1]      # the busy connections


def test_status_bad_format_and_method(quiet):
    s = quiet
    for q in ("?format=xml", "?format=yaml", "?format=xml&x=1"):
        r = get_status(s, q)
        assert r.status == 400, (q, r)
        assert r.header("Content-Type") == "application/json", r.headers
        d = r.json()
        assert set(d) == {"error", "message"} and d["error"] == "bad_request", d
    r = s.request("POST", "/push-status", b"x", {"Content-Type": "text/plain"}, timeout=20)
    assert r.status == 405, r
    assert r.header("Allow") == "GET", r.headers


# ---------------------------------------------------------------------------
# the broker: STATS, {"op":"stats"}, pushctl stats
# ---------------------------------------------------------------------------

def stats_multipart(broker):
    rep = zmq_request(broker.api, [b"STATS"])
    assert len(rep) == 2 and rep[0] == b"OK", rep
    return json.loads(rep[1])


def stats_op(broker):
    d = broker.pub_json({"op": "stats"})
    assert d.pop("ok") is True, d
    return d


def stats_pushctl(broker):
    p = subprocess.run([str(PUSHCTL), "--api", broker.api, "stats"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    assert p.stdout.endswith("\n") and p.stdout.count("\n") == 1, p.stdout
    return json.loads(p.stdout)


def check_broker_stats(d, store=False):
    keys = BROKER_KEYS | (STORE_KEYS if store else set())
    assert set(d) == keys, sorted(d)
    for k in keys - {"fsync"}:
        assert isinstance(d[k], int) and d[k] >= 0, (k, d)
    if store:
        assert d["fsync"] in ("always", "everysec", "no"), d
    return d


def all_three(broker, store=False):
    out = [check_broker_stats(f(broker), store)
           for f in (stats_multipart, stats_op, stats_pushctl)]
    return out


def same_but_time(a, b):
    skip = {"uptime_s", "publish_rate", "fsync_lag_ms"}
    return {k: v for k, v in a.items() if k not in skip} == \
        {k: v for k, v in b.items() if k not in skip}


@pytest.fixture
def own_broker(tmp_path):
    made = []

    def make(*args, name="stats-broker"):
        b = Broker(tmp_path / f"{name}-{len(made)}", name=name, args=args).start()
        made.append(b)
        return b
    yield make
    for b in made:
        b.stop()


def test_broker_stats_forms_agree(own_broker):
    b = own_broker()
    ms, op, ctl = all_three(b)
    assert same_but_time(ms, op) and same_but_time(ms, ctl), (ms, op, ctl)
    assert ms["channels"] == 0 and ms["messages_stored"] == 0 and ms["published"] == 0, ms
    assert ms["children"] == 0, ms
    assert ms["presence_channels"] == ms["presence_members"] == \
        ms["presence_connections"] == 0, ms
    # STATS takes no argument
    rep = zmq_request(b.api, [b"STATS", b"extra"])
    assert rep[0] == b"ERR" and rep[1] == b"bad_request", rep


def test_broker_stats_known_workload(own_broker):
    """50 messages on 2 channels: channels 2, messages_stored 50,
    published 50, in all three forms."""
    b = own_broker("--history-max", "1000")
    c1, c2 = unique_channel("b1"), unique_channel("b2")
    pub = Publisher(b.api)
    try:
        for i in range(50):
            pub.pub(c1 if i % 2 else c2, f"m{i}")
    finally:
        pub.close()
    ms, op, ctl = all_three(b)
    for d in (ms, op, ctl):
        assert d["channels"] == 2 and d["messages_stored"] == 50 and d["published"] == 50, d
    assert same_but_time(ms, op) and same_but_time(ms, ctl), (ms, op, ctl)
    # history reading creates no message; a HISTORY of a new channel may add a channel
    zmq_request(b.api, [b"HISTORY", c1.encode(), b"0"])
    d = stats_multipart(b)
    assert d["messages_stored"] == 50 and d["published"] == 50 and d["channels"] == 2, d
    # 10 more over the JSON op and pushctl: published +10, stored +10
    for i in range(5):
        assert b.pub_json({"op": "publish", "channel": c1, "data": f"j{i}"})["ok"] is True
        p = subprocess.run([str(PUSHCTL), "--api", b.api, "publish", c2, f"p{i}"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p
    d = stats_multipart(b)
    assert d["messages_stored"] == 60 and d["published"] == 60 and d["channels"] == 2, d


def test_broker_stats_history_max_bounds_stored(own_broker):
    """messages_stored counts what history keeps; published counts every
    publish."""
    b = own_broker("--history-max", "10")
    c1, c2 = unique_channel("h1"), unique_channel("h2")
    pub = Publisher(b.api)
    try:
        for i in range(50):
            pub.pub(c1 if i % 2 else c2, f"m{i}")
    finally:
        pub.close()
    d = stats_multipart(b)
    assert d["messages_stored"] == 20 and d["published"] == 50 and d["channels"] == 2, d


def test_broker_publish_rate(own_broker):
    """Publishing at most ~200/s (a 5 ms pause after each acknowledged PUB)
    for 3 s: publish_rate is positive and no more than what was possible;
    some seconds after publishing stopped it falls back to 0.  (The bounds
    are loose on purpose: this is about the rate being a rate.)"""
    b = own_broker()
    ch = unique_channel("rate")
    assert stats_multipart(b)["publish_rate"] == 0
    pub = Publisher(b.api)
    n = 0
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:
            pub.pub(ch, "r")
            n += 1
            time.sleep(0.005)
        mid = stats_multipart(b)          # the last window ended while publishing
        elapsed = time.monotonic() - t0
    finally:
        pub.close()
    achieved = n / elapsed
    print(f"published {n} in {elapsed:.2f}s ({achieved:.0f}/s); broker says {mid}")
    assert mid["published"] == n, mid
    assert 0 < mid["publish_rate"] <= 1000, mid
    assert mid["publish_rate"] <= 2 * 200 + 1, mid       # at most 200/s were possible
    wait_until(lambda: stats_multipart(b)["publish_rate"] == 0, STATUS_BOUND,
               "publish_rate to fall to 0 after publishing stopped")


@pytest.mark.parametrize("policy", ["always", "everysec", "no"])
def test_broker_stats_with_store(own_broker, tmp_path, policy):
    data = tmp_path / f"data-{policy}"
    b = own_broker("--data-dir", str(data), "--fsync", policy, name=f"stats-store-{policy}")
    ms, op, ctl = all_three(b, store=True)
    assert same_but_time(ms, op) and same_but_time(ms, ctl), (ms, op, ctl)
    assert ms["fsync"] == policy, ms
    assert ms["compactions"] == 0, ms
    size0 = ms["log_bytes"]
    journal = data / "journal"
    ch = unique_channel("store")
    pub = Publisher(b.api)
    try:
        for i in range(20):
            pub.pub(ch, f"stored message {i} " + "d" * 500)
    finally:
        pub.close()
    d = stats_multipart(b)
    check_broker_stats(d, store=True)
    assert d["log_bytes"] >= size0 + 20 * 500, (size0, d)
    assert d["messages_stored"] == 20 and d["published"] == 20, d
    if policy == "always":
        assert d["fsync_lag_ms"] == 0, d      # synced before every acknowledgement
    # the journal is as big as the broker says (everything acknowledged is written)
    assert journal.stat().st_size == d["log_bytes"], (journal.stat().st_size, d)
    if policy != "no":
        wait_until(lambda: stats_multipart(b)["fsync_lag_ms"] == 0, STATUS_BOUND,
                   "fsync_lag_ms to fall to 0 once everything is synced")
    # a restart keeps the journal: log_bytes and messages_stored survive
    b.restart()
    d2 = check_broker_stats(stats_multipart(b), store=True)
    assert d2["messages_stored"] == 20 and d2["published"] == 0, d2
    assert d2["log_bytes"] == journal.stat().st_size >= d["log_bytes"], (d, d2)
    assert d2["fsync"] == policy


def test_broker_stats_without_store_has_no_store_fields(own_broker):
    d = stats_multipart(own_broker())
    assert not (set(d) & STORE_KEYS), d


def test_broker_stats_presence(pres):
    """PushPresenceNames on: alice and bob on channel p: presence_channels 1,
    presence_members 2, presence_connections 2; a second connection of
    alice: connections 3, members 2; all gone: 0 0 0."""
    s = pres
    s.apache.wait_ready()
    b = s.broker
    p = unique_channel("p")

    def wait_presence(chans, mems, conns, what):
        last = {}

        def ok():
            d = check_broker_stats(stats_multipart(b))
            last["d"] = d
            return (d["presence_channels"], d["presence_members"],
                    d["presence_connections"]) == (chans, mems, conns)
        try:
            wait_until(ok, STATUS_BOUND, what, interval=0.1)
        except BaseException:
            print("last broker stats:", last.get("d"))
            raise
        return last["d"]

    d0 = wait_presence(0, 0, 0, "no presence at the start")
    kids = len(s.apache.child_pids())
    assert d0["children"] == kids, (d0, kids)
    clients = []
    try:
        clients.append(sse_subscribe(s, p, path=f"/sub/{p}?name=alice"))
        clients.append(sse_subscribe(s, p, path=f"/sub/{p}?name=bob"))
        d = wait_presence(1, 2, 2, "alice and bob to be present")
        for f in (stats_op, stats_pushctl):
            e = f(b)
            assert (e["presence_channels"], e["presence_members"],
                    e["presence_connections"]) == (1, 2, 2), e
        assert d["channels"] >= 1, d          # the subscribers' channel exists on the broker
        clients.append(sse_subscribe(s, p, path=f"/sub/{p}?name=alice"))
        wait_presence(1, 2, 3, "alice's second connection to be counted")
        # an anonymous subscriber is not present
        clients.append(sse_subscribe(s, p))
        # a second channel
        q = unique_channel("q")
        clients.append(sse_subscribe(s, q, path=f"/sub/{q}?name=carol"))
        wait_presence(2, 3, 4, "carol on a second channel")
        clients.pop().close()
        wait_presence(1, 2, 3, "carol to leave")
        clients[2].close()
        wait_presence(1, 2, 2, "alice's second connection to close")
    finally:
        for c in clients:
            c.close()
    wait_presence(0, 0, 0, "everybody to leave")


def test_status_and_broker_agree_on_messages(quiet):
    """published on the broker and broker_messages_in of the children move
    together: 7 messages on a channel with one subscriber -> the broker's
    published +7, that child's broker_messages_in +7."""
    s = quiet
    ch = unique_channel("agree")
    c = sse_subscribe(s, ch)
    try:
        pid = owner(s, c.sock)
        wait_status(s, lambda d: by_pid(d)[pid]["subscribers"]["sse"] == 1,
                    "the subscriber to be counted")
        old = by_pid(settled_status(s))[pid]
        b0 = stats_multipart(s.broker)
        for i in range(7):
            s.broker.pub_id(ch, f"m{i}")
        c.events(7)
        b1 = stats_multipart(s.broker)
        assert b1["published"] == b0["published"] + 7, (b0, b1)
        assert b1["messages_stored"] == b0["messages_stored"] + 7, (b0, b1)

        def moved(doc):
            now = by_pid(doc)[pid]
            assert now["broker_messages_in"] == old["broker_messages_in"] + 7, (old, now)
            assert now["delivered"] == old["delivered"] + 7, (old, now)
        wait_status(s, moved, "broker_messages_in and delivered of the child to grow by 7")
    finally:
        c.close()
