"""bench/pushbench against a real mod_push (Apache + broker of the harness).

Small scenarios only: SSE subscribers with ZeroMQ publishing, WebSocket
subscribers with HTTP POST publishing, long polls, a JSON publish body, the
ESTABLISHED line of a hold-only run and the exit statuses.  Every assertion is
on counts read from the RESULT line, never on timings."""
import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import ROOT, free_port, wait_until

BENCH_DIR = ROOT / "bench"
PUSHBENCH = BENCH_DIR / "pushbench"
RUN_TIMEOUT = 60            # a bound against hangs, not a measurement


@pytest.fixture(scope="module")
def pushbench():
    """Build bench/pushbench (make -C bench; a no-op when up to date), or use
    the binary named by $PUSHBENCH (e.g. a sanitizer build)."""
    if os.environ.get("PUSHBENCH"):
        return Path(os.environ["PUSHBENCH"])
    p = subprocess.run(["make", "-s", "-C", str(BENCH_DIR), "pushbench"],
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        pytest.fail(f"make -C bench failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return PUSHBENCH


def prefix():
    """A channel prefix of its own for each run (names are prefix + 6 digits)."""
    return "pb" + uuid.uuid4().hex[:10] + "x"


def run(pushbench, *args, expect_rc=0):
    p = subprocess.run([str(pushbench), *[str(a) for a in args]], capture_output=True,
                       text=True, timeout=RUN_TIMEOUT)
    assert p.returncode == expect_rc, \
        f"pushbench exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 1, f"no single RESULT line:\n{p.stdout}\n{p.stderr}"
    res = json.loads(lines[0][len("RESULT "):])
    return res, p


def assert_clean(res, subscribers, messages, channels, out):
    assert res["subscribers"] == subscribers
    assert res["established"] == subscribers, out
    assert res["failed"] == 0, out
    assert res["published"] == messages, out
    per_channel = [messages // channels + (1 if c < messages % channels else 0)
                   for c in range(channels)]
    assert res["expected"] == sum(per_channel[i % channels] for i in range(subscribers))
    assert res["delivered"] == res["expected"], out
    assert res["lost"] == 0, out
    assert res["duplicated"] == 0, out
    assert res["reordered"] == 0, out
    assert res["closed_by_server"] == 0, out


REQUIRED_KEYS = {"label", "transport", "subscribers", "established", "failed", "channels",
                 "published", "expected", "delivered", "deliveries_per_s", "publish_rate",
                 "lat_p50_ms", "lat_p90_ms", "lat_p99_ms", "lat_max_ms", "lost", "duplicated",
                 "reordered", "closed_by_server", "connect_s", "duration_s"}


def test_sse_subscribers_zeromq_publisher(stack, pushbench):
    res, p = run(pushbench, "--transport", "sse",
                 "--sub-url", f"http://127.0.0.1:{stack.port}/sub/{{ch}}",
                 "--subscribers", 50, "--channels", 5, "--channel-prefix", prefix(),
                 "--publish", f"zmq:{stack.broker.push}", "--messages", 200,
                 "--rate", 2000, "--drain", 20, "--label", 'sse "zmq"')
    assert REQUIRED_KEYS <= set(res), set(res) ^ REQUIRED_KEYS
    assert res["label"] == 'sse "zmq"' and res["transport"] == "sse"
    assert res["channels"] == 5
    assert_clean(res, 50, 200, 5, p.stdout)
    assert res["expected"] == 2000


def test_websocket_subscribers_http_publisher(stack, pushbench):
    res, p = run(pushbench, "--transport", "ws",
                 "--sub-url", f"ws://127.0.0.1:{stack.port}/sub/{{ch}}",
                 "--subscribers", 50, "--channels", 5, "--channel-prefix", prefix(),
                 "--publish", f"http:http://127.0.0.1:{stack.port}/pub/{{ch}}",
                 "--pub-conns", 3, "--messages", 200, "--drain", 20,
                 "--source-addrs", "127.0.0.1,127.0.0.2")
    assert res["transport"] == "ws"
    assert_clean(res, 50, 200, 5, p.stdout)


def test_longpoll_subscribers(stack, pushbench):
    # a long poll is "established" once its request is sent; --hold lets the
    # server park every one of them before the first message
    res, p = run(pushbench, "--transport", "longpoll",
                 "--sub-url", f"http://127.0.0.1:{stack.port}/sub/{{ch}}",
                 "--subscribers", 20, "--channels", 4, "--channel-prefix", prefix(),
                 "--hold", 1, "--publish", f"zmq:{stack.broker.push}", "--messages", 100,
                 "--rate", 200, "--drain", 20)
    assert res["transport"] == "longpoll"
    assert_clean(res, 20, 100, 4, p.stdout)


def test_json_publish_body_and_query_template(stack, pushbench):
    # the body template (as Pushpin needs one) against mod_push's JSON publish
    res, p = run(pushbench, "--sub-url", f"http://127.0.0.1:{stack.port}/sub/{{ch}}?x=1",
                 "--subscribers", 10, "--channels", 2, "--channel-prefix", prefix(),
                 "--publish", f"http:http://127.0.0.1:{stack.port}/pub/{{ch}}",
                 "--pub-body-template", '{"data":"{data}"}',
                 "--messages", 40, "--payload-size", 200, "--drain", 20,
                 "--header", "X-Bench: 1")
    assert_clean(res, 10, 40, 2, p.stdout)


def test_hold_only_prints_established(stack, pushbench):
    res, p = run(pushbench, "--transport", "ws",
                 "--sub-url", f"http://127.0.0.1:{stack.port}/sub/{{ch}}",
                 "--subscribers", 30, "--channels", 3, "--channel-prefix", prefix(),
                 "--hold", 0.3)
    assert "ESTABLISHED 30" in p.stdout.splitlines()
    assert res["established"] == 30 and res["published"] == 0


def test_refused_connections_and_usage_errors(pushbench):
    port = free_port()           # nobody listens there
    res, p = run(pushbench, "--sub-url", f"http://127.0.0.1:{port}/sub/{{ch}}",
                 "--subscribers", 5, expect_rc=1)
    assert res["established"] == 0 and res["failed"] == 5
    assert "Connection refused" in p.stdout
    for bad in (["--transport", "carrier-pigeon"], ["--subscribers", "3"],
                ["--messages", "5"], ["--no-such-option"]):
        q = subprocess.run([str(pushbench), *bad], capture_output=True, text=True,
                           timeout=RUN_TIMEOUT)
        assert q.returncode == 2, (bad, q.stdout, q.stderr)


@pytest.mark.parametrize("transport", ["sse", "ws"])
def test_procs_splits_subscribers_over_processes(stack, pushbench, transport):
    # 300 subscribers read by 3 processes (subscriber i by process i % 3): the
    # parent publishes only once all of them are connected, and the totals,
    # the per-connection checks and the merged latency histogram cover all
    scheme = "http" if transport == "sse" else "ws"
    res, p = run(pushbench, "--transport", transport,
                 "--sub-url", f"{scheme}://127.0.0.1:{stack.port}/sub/{{ch}}",
                 "--subscribers", 300, "--channels", 7, "--channel-prefix", prefix(),
                 "--source-addrs", "127.0.0.1,127.0.0.2", "--connect-rate", 3000,
                 "--publish", f"zmq:{stack.broker.push}", "--messages", 70,
                 "--rate", 500, "--drain", 20, "--procs", 3)
    assert res["procs"] == 3, p.stdout
    assert_clean(res, 300, 70, 7, p.stdout)
    assert res["received"] == res["delivered"], p.stdout
    assert res["lat_samples"] == res["delivered"], p.stdout
    assert "(%d samples)" % res["delivered"] in p.stdout
    assert "busiest of the 3 receive loops" in p.stdout


def test_procs_hold_only_prints_established_once(stack, pushbench):
    res, p = run(pushbench, "--sub-url", f"http://127.0.0.1:{stack.port}/sub/{{ch}}",
                 "--subscribers", 31, "--channels", 3, "--channel-prefix", prefix(),
                 "--hold", 0.3, "--procs", 4)
    assert [ln for ln in p.stdout.splitlines() if ln.startswith("ESTABLISHED")] == \
        ["ESTABLISHED 31"], p.stdout
    assert res["established"] == 31 and res["procs"] == 4 and res["published"] == 0


def popen(pushbench, *args):
    """pushbench in a session (and process group) of its own."""
    return subprocess.Popen([str(pushbench), *[str(a) for a in args]], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def children_of(pid):
    """PIDs whose parent is pid (from /proc)."""
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(d))
    return kids


def test_procs_refused_fails_cleanly_without_orphans(pushbench):
    # nothing listens: every process fails its connections; the run ends with
    # exit 1 and a RESULT line, and no pushbench process stays behind
    port = free_port()
    p = popen(pushbench, "--sub-url", f"http://127.0.0.1:{port}/sub/{{ch}}",
              "--subscribers", 9, "--procs", 3,
              "--publish", f"http:http://127.0.0.1:{port}/pub/{{ch}}", "--messages", 5)
    out, err = _finish(p)
    assert p.returncode == 1, (out, err)
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 1, (out, err)
    res = json.loads(lines[0][len("RESULT "):])
    assert res["established"] == 0 and res["failed"] == 9 and res["procs"] == 3, out
    assert "Connection refused" in out
    # the process group (pushbench and its children) is empty
    wait_until(lambda: not os.path.exists(f"/proc/{p.pid}") and not _group_alive(p.pid), 5,
               "no pushbench process left")


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _finish(p, act=None):
    """act(p) (if given), then wait for pushbench's end: (stdout, stderr).
    Whatever happens, no pushbench process is left running."""
    try:
        if act:
            act(p)
        return p.communicate(timeout=RUN_TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def _held_procs_run(stack, pushbench, act):
    """6 subscribers held by 3 receive processes; act(p) once all are
    established.  Returns (stdout, stderr) after the run ends."""
    p = popen(pushbench, "--sub-url", f"http://127.0.0.1:{stack.port}/sub/{{ch}}",
              "--subscribers", 6, "--channels", 2, "--channel-prefix", prefix(),
              "--hold", 30, "--procs", 3)

    def established_then_act(p):
        assert p.stdout.readline().startswith("ESTABLISHED 6")
        act(p)
    return p, _finish(p, established_then_act)


def test_procs_child_death_fails_the_run(stack, pushbench):
    # a receive process killed during the hold: exit 1 with a message that
    # says so, and the other children are killed and reaped
    def kill_one(p):
        kids = children_of(p.pid)
        assert len(kids) == 2, kids
        os.kill(kids[0], signal.SIGKILL)
    p, (out, err) = _held_procs_run(stack, pushbench, kill_one)
    assert p.returncode == 1, (out, err)
    assert "RESULT " not in out
    assert "killed by signal 9" in err, err
    wait_until(lambda: not _group_alive(p.pid), 5, "no pushbench process left")


def test_procs_sigterm_still_prints_result(stack, pushbench):
    # bench/run stops an overlong run with SIGTERM and still wants the RESULT
    p, (out, err) = _held_procs_run(stack, pushbench, lambda p: p.send_signal(signal.SIGTERM))
    assert p.returncode == 0, (out, err)
    res = json.loads([ln for ln in out.splitlines() if ln.startswith("RESULT ")][0][7:])
    assert res["established"] == 6 and res["procs"] == 3
    wait_until(lambda: not _group_alive(p.pid), 5, "no pushbench process left")


# ---------------------------------------------------------------------------
# The parsers against awkward framing: a small fake push server (no Apache)
# ---------------------------------------------------------------------------

import base64          # noqa: E402
import hashlib         # noqa: E402
import socket          # noqa: E402
import socketserver    # noqa: E402
import threading       # noqa: E402

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_frame(op, payload, fin=True):
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | op])
    if n < 126:
        head += bytes([n])
    elif n < 65536:
        head += bytes([126]) + n.to_bytes(2, "big")
    else:
        head += bytes([127]) + n.to_bytes(8, "big")
    return head + payload


class FakePush(socketserver.ThreadingTCPServer):
    """GET /sub/<ch>: SSE (chunked, in 7-byte chunks, CR line ends, comments,
    id: and event: lines), WebSocket (messages in 3 fragments with pings
    between them, 16-bit lengths) or a long poll the Nchan way (one message
    per answer, Etag / If-None-Match).  POST /pub/<ch> publishes.  With
    chaos on, channel ...000000 of SSE loses seq 4, duplicates seq 2 and
    swaps seq 6 and 7."""
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, chaos=False):
        super().__init__(("127.0.0.1", 0), FakeHandler)
        self.chaos = chaos
        self.lock = threading.Condition()
        self.msgs = {}           # channel -> [payload bytes]
        self.subs = {}           # channel -> [(kind, socket, lock)]
        self.pongs = 0
        self.held = {}           # chaos: channel -> held message
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self):
        return self.server_address[1]

    def publish(self, ch, data):
        with self.lock:
            self.msgs.setdefault(ch, []).append(data)
            self.lock.notify_all()
            subs = list(self.subs.get(ch, []))
        seq = int(data.split(b":", 1)[0])
        for kind, sock, lk in subs:
            with lk:
                try:
                    if kind == "sse":
                        self.send_sse(ch, sock, seq, data)
                    else:
                        sock.sendall(ws_frame(0x9, b"ping"))
                        third = len(data) // 3
                        sock.sendall(ws_frame(0x1, data[:third], fin=False))
                        sock.sendall(ws_frame(0xA, b"unsolicited pong") + ws_frame(0x9, b""))
                        sock.sendall(ws_frame(0x0, data[third:2 * third], fin=False))
                        sock.sendall(ws_frame(0x0, data[2 * third:]))
                        sock.sendall(ws_frame(0x1, b'{"type":"other"}'))
                except OSError:
                    pass

    def send_sse(self, ch, sock, seq, data):
        events = [b"id: %d\revent: m\rdata: " % seq + data + b"\r\r"]
        if self.chaos and ch.endswith("000000"):
            if seq == 4:
                events = []
            elif seq == 2:
                events = events * 2
            elif seq == 6:
                self.held[(ch, sock)] = events
                events = []
            elif seq == 7:
                events += self.held.pop((ch, sock), [])
        stream = b": comment\n\n" + b"".join(events)
        for i in range(0, len(stream), 7):
            piece = stream[i:i + 7]
            sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")


class FakeHandler(socketserver.BaseRequestHandler):
    def read_head(self, buf):
        while b"\r\n\r\n" not in buf:
            d = self.request.recv(65536)
            if not d:
                return None, None, buf
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        hdrs = {k.strip().lower(): v.strip() for k, v in
                (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
        return lines[0].split(" "), hdrs, rest

    def handle(self):
        srv, sock, buf = self.server, self.request, b""
        while True:
            req, hdrs, buf = self.read_head(buf)
            if req is None:
                return
            method, path = req[0], req[1]
            ch = path.rsplit("/", 1)[1]
            if method == "POST":
                n = int(hdrs.get("content-length", "0"))
                while len(buf) < n:
                    buf += sock.recv(65536)
                body, buf = buf[:n], buf[n:]
                srv.publish(ch, body)
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                continue
            if hdrs.get("upgrade", "").lower() == "websocket":
                acc = base64.b64encode(hashlib.sha1(hdrs["sec-websocket-key"].encode()
                                                    + WS_GUID).digest())
                return self.hold(ch, "ws", buf, b"HTTP/1.1 101 Switching Protocols\r\n"
                                 b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                 b"Sec-WebSocket-Accept: " + acc + b"\r\n\r\n")
            if "text/event-stream" in hdrs.get("accept", ""):
                return self.hold(ch, "sse", buf, b"HTTP/1.1 200 OK\r\nContent-Type: "
                                 b"text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"6\r\n: hi\r\r\r\n")
            # long poll, Nchan style: the Etag is the index of the next message
            with srv.lock:
                known = len(srv.msgs.get(ch, []))
                idx = int(hdrs["if-none-match"]) if "if-none-match" in hdrs else known
                while len(srv.msgs.get(ch, [])) <= idx:
                    srv.lock.wait()
                body = srv.msgs[ch][idx]
            sock.sendall(b"HTTP/1.1 200 OK\r\nEtag: %d\r\nLast-Modified: Sat, 21 Nov 2026 "
                         b"12:00:00 GMT\r\nContent-Length: %d\r\n\r\n" % (idx + 1, len(body))
                         + body)

    def hold(self, ch, kind, buf, head):
        """Subscribe, then answer: the subscriber is known before it can tell."""
        srv, sock, lk = self.server, self.request, threading.Lock()
        with lk:
            with srv.lock:
                srv.subs.setdefault(ch, []).append((kind, sock, lk))
            sock.sendall(head)
        while True:             # client frames: count the pongs
            try:
                d = sock.recv(65536)
            except OSError:
                return
            if not d:
                return
            buf += d
            while len(buf) >= 6 and len(buf) >= 6 + (buf[1] & 0x7f):
                if buf[0] & 0x0f == 0xA:
                    with srv.lock:
                        srv.pongs += 1
                buf = buf[6 + (buf[1] & 0x7f):]


@pytest.fixture
def fake():
    servers = []

    def make(chaos=False):
        s = FakePush(chaos)
        servers.append(s)
        return s
    yield make
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.mark.parametrize("transport", ["sse", "ws", "longpoll"])
def test_awkward_framing(pushbench, fake, transport):
    srv = fake()
    res, p = run(pushbench, "--transport", transport,
                 "--sub-url", f"http://127.0.0.1:{srv.port}/sub/{{ch}}",
                 "--subscribers", 6, "--channels", 3, "--channel-prefix", prefix(),
                 "--hold", 0.3 if transport == "longpoll" else 0,
                 "--publish", f"http:http://127.0.0.1:{srv.port}/pub/{{ch}}",
                 "--messages", 30, "--payload-size", 300, "--drain", 20)
    assert_clean(res, 6, 30, 3, p.stdout)
    if transport == "ws":       # every ping answered (the last pongs may still be on their way)
        wait_until(lambda: srv.pongs >= 2 * 60, 10, f"120 pongs (got {srv.pongs})")


def test_loss_duplicate_and_reorder_accounting(pushbench, fake):
    srv = fake(chaos=True)
    res, p = run(pushbench, "--sub-url", f"http://127.0.0.1:{srv.port}/sub/{{ch}}",
                 "--subscribers", 6, "--channels", 3, "--channel-prefix", prefix(),
                 "--publish", f"http:http://127.0.0.1:{srv.port}/pub/{{ch}}",
                 "--messages", 30, "--drain", 2)
    # channel 0 has subscribers 0 and 3: each loses 1, gets 1 twice, 1 late
    assert res["expected"] == 60 and res["established"] == 6, p.stdout
    assert res["lost"] == 2 and res["lost_conns"] == 2, p.stdout
    assert res["duplicated"] == 2 and res["duplicated_conns"] == 2, p.stdout
    assert res["reordered"] == 2 and res["reordered_conns"] == 2, p.stdout
    assert res["delivered"] == 58 and res["received"] == 60, p.stdout
