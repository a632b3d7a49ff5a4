"""End-to-end tests for pushbrokerd: the application API (REQ/DEALER, PUSH,
JSON) and the link protocol spoken by mod_push children (DEALER).

Each test starts its own broker from pushbrokerd/pushbrokerd (relative to the
repository root; override with PUSH_BROKER_BIN, as conftest.py does, e.g. for
a sanitizer build) on free 127.0.0.1 ports and stops it by PID.  The session
`broker` fixture of conftest.py is not used: these tests need fresh ids,
limits of their own and control over the process.
"""
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import zmq

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("PUSH_BROKER_BIN") or ROOT / "pushbrokerd" / "pushbrokerd")
PAGE = 1000    # PUSH_HISTORY_PAGE in proto/push_proto.h
TIMEOUT_MS = 3000

pytestmark = pytest.mark.skipif(not BINARY.exists(), reason=f"{BINARY} not built")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Broker:
    def __init__(self, tmp_path, *extra):
        self.api = f"tcp://127.0.0.1:{free_port()}"
        self.push = f"tcp://127.0.0.1:{free_port()}"
        self.link = f"tcp://127.0.0.1:{free_port()}"
        self.log = tmp_path / "pushbrokerd.log"
        self.pidfile = tmp_path / "pushbrokerd.pid"
        self.args = [str(BINARY), "--api", self.api, "--push", self.push,
                     "--link", self.link, "--log", str(self.log),
                     "-p", str(self.pidfile), *extra]
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL)
        wait_for(lambda: "starting" in self.log_text() or self.proc.poll() is not None,
                 what="broker start")
        assert self.proc.poll() is None, self.log_text()

    def log_text(self):
        return self.log.read_text() if self.log.exists() else ""

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(timeout=5)


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


@pytest.fixture
def own_broker(tmp_path):
    b = Broker(tmp_path, "--history-max", "2000", "--max-message-size", "1024")
    yield b
    rc = b.stop()
    assert rc == 0, b.log_text()
    # the sanitizers (when built in) report through stderr, the log shows crashes
    assert "ERROR" not in b.log_text()


def req(ctx, broker):
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
    s.connect(broker.api)
    return s


def call(sock, *frames):
    sock.send_multipart([f if isinstance(f, bytes) else str(f).encode() for f in frames])
    return sock.recv_multipart()


def call_json(sock, obj):
    text = obj if isinstance(obj, (bytes, str)) else json.dumps(obj)
    reply = call(sock, text)
    assert len(reply) == 1
    return json.loads(reply[0])


class Child:
    """A fake mod_push child on the link endpoint."""

    def __init__(self, ctx, broker):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
        self.sock.connect(broker.link)

    def send(self, *frames):
        self.sock.send_multipart([f if isinstance(f, bytes) else str(f).encode()
                                  for f in frames])

    def recv(self):
        return self.sock.recv_multipart()

    def nothing_pending(self, wait_ms=200):
        return self.sock.poll(wait_ms) == 0

    def sub(self, channel, count):
        """SUB has no reply: a PING round trip on the same socket proves the
        broker processed it before the test publishes on another socket."""
        self.send("SUB", channel, count)
        self.send("PING")
        assert self.recv()[0] == b"PONG"

    def hello(self, pid=1234):
        self.send("HELLO", pid)
        reply = self.recv()
        assert reply[0] == b"WELCOME" and len(reply) == 2
        return int(reply[1])


# ---- application API --------------------------------------------------------

def test_pub_ids_and_history(ctx, own_broker):
    s = req(ctx, own_broker)
    assert call(s, "PUB", "news", "one") == [b"OK", b"1", b"0"]
    assert call(s, "PUB", "news", "two", "update") == [b"OK", b"2", b"0"]
    assert call(s, "PUB", "news", b"thr\x00ee\xff") == [b"OK", b"3", b"0"]

    r = call(s, "HISTORY", "news", "0")
    assert r[:3] == [b"OK", b"3", b"3"]
    msgs = [r[i:i + 4] for i in range(3, len(r), 4)]
    assert [(m[0], m[1], m[2]) for m in msgs] == [
        (b"1", b"", b"one"), (b"2", b"update", b"two"), (b"3", b"", b"thr\x00ee\xff")]
    now_us = time.time() * 1e6
    for m in msgs:
        assert abs(int(m[3]) - now_us) < 60e6

    assert call(s, "HISTORY", "news", "1", "1")[:5] == [b"OK", b"3", b"1", b"2", b"update"]
    assert call(s, "HISTORY", "news", "3") == [b"OK", b"3", b"0"]
    assert call(s, "HISTORY", "empty", "0") == [b"OK", b"0", b"0"]


def test_dealer_envelope(ctx, own_broker):
    d = ctx.socket(zmq.DEALER)
    d.setsockopt(zmq.LINGER, 0)
    d.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
    d.connect(own_broker.api)
    d.send_multipart([b"", b"PUB", b"c", b"x"])
    d.send_multipart([b"", b"PING"])
    assert d.recv_multipart() == [b"", b"OK", b"1", b"0"]
    pong = d.recv_multipart()
    assert pong[:2] == [b"", b"PONG"] and int(pong[2]) > 0


def test_errors(ctx, own_broker):
    s = req(ctx, own_broker)
    r = call(s, "PUB", "news", b"x" * 1025)
    assert r == [b"ERR", b"too_large", b"message of 1025 bytes exceeds max_message_size 1024"]
    assert call(s, "PUB", "news", b"x" * 1024)[:2] == [b"OK", b"1"]
    big = call(s, "PUB", "news", b"x" * 1_000_000)       # answered, not disconnected
    assert big == [b"ERR", b"too_large",
                   b"message of 1000000 bytes exceeds max_message_size 1024"]
    assert call(s, "PUB", "bad channel!", "x")[:2] == [b"ERR", b"bad_channel"]
    assert call(s, "PUB", "news")[:2] == [b"ERR", b"bad_request"]
    assert call(s, "PUB", "news", "x", "two words")[:2] == [b"ERR", b"bad_request"]
    assert call(s, "HISTORY", "news", "abc")[:2] == [b"ERR", b"bad_request"]
    assert call(s, "FROB")[:2] == [b"ERR", b"unknown_command"]
    assert call(s, "")[:2] == [b"ERR", b"unknown_command"]


def test_json(ctx, own_broker):
    s = req(ctx, own_broker)
    r = call_json(s, {"op": "publish", "channel": "j", "data": "text", "event": "e"})
    assert r == {"ok": True, "id": 1, "subscribers": 0}
    assert call_json(s, {"op": "publish", "channel": "j", "data": "t\u00e9"})["id"] == 2

    r = call_json(s, {"op": "history", "channel": "j", "after": 0, "limit": 10})
    assert r["ok"] is True and r["last_id"] == 2
    assert [(m["id"], m["event"], m["data"]) for m in r["messages"]] == [
        (1, "e", "text"), (2, None, "t\u00e9")]
    assert all(isinstance(m["time"], int) for m in r["messages"])

    r = call_json(s, '{"op":"publish",')
    assert r["ok"] is False and r["error"] == "bad_request" and r["message"]
    r = call_json(s, {"op": "publish", "channel": "j", "data": "x" * 1025})
    assert r["ok"] is False and r["error"] == "too_large"
    assert call_json(s, {"op": "nope"})["error"] == "unknown_command"
    assert call_json(s, {"op": "publish", "channel": "a b", "data": "x"})["error"] == "bad_channel"

    stats = call_json(s, {"op": "stats"})
    assert stats["ok"] is True and stats["published"] == 2 and stats["channels"] == 1
    assert stats["messages_stored"] == 2 and stats["children"] == 0


def test_stats_and_ping(ctx, own_broker):
    s = req(ctx, own_broker)
    call(s, "PUB", "a", "1")
    r = call(s, "STATS")
    assert r[0] == b"OK"
    assert set(json.loads(r[1])) == {"channels", "messages_stored", "published",
                                     "children", "uptime_s", "publish_rate",
                                     "presence_channels", "presence_members",
                                     "presence_connections"}
    assert call(s, "PING")[0] == b"PONG"


def test_push_socket(ctx, own_broker):
    p = ctx.socket(zmq.PUSH)
    p.setsockopt(zmq.LINGER, 0)
    p.connect(own_broker.push)
    p.send_multipart([b"PUB", b"fire", b"one"])
    p.send_multipart([b"PUB", b"fire", b"x" * 2000])            # rejected, logged
    p.send(json.dumps({"op": "publish", "channel": "fire", "data": "two"}).encode())
    s = req(ctx, own_broker)
    wait_for(lambda: call(s, "HISTORY", "fire", "0")[1] == b"2", what="push publishes")
    wait_for(lambda: "too_large" in own_broker.log_text(), what="rejection logged")


# ---- link protocol ------------------------------------------------------------

def test_link_fanout_and_hist(ctx, own_broker):
    child = Child(ctx, own_broker)
    epoch = child.hello()
    child.send("PING")
    assert child.recv() == [b"PONG", str(epoch).encode()]
    child.sub("live", 2)
    other = Child(ctx, own_broker)
    other.hello(pid=99)
    other.sub("elsewhere", 1)

    s = req(ctx, own_broker)
    assert call(s, "PUB", "live", "hello", "greet") == [b"OK", b"1", b"2"]
    msg = child.recv()
    assert msg[:6] == [b"MSG", b"live", b"1", b"greet", b"hello"] + msg[5:6]
    assert len(msg) == 6 and int(msg[5]) > 0
    assert other.nothing_pending()

    call(s, "PUB", "live", "second")
    assert child.recv()[:5] == [b"MSG", b"live", b"2", b"", b"second"]

    child.send("HIST", "r1", "live", "-")
    assert child.recv() == [b"HIST", b"r1", b"OK", b"2", b"1"]
    child.send("HIST", "r2", "live", "1")
    r = child.recv()
    assert r[:5] == [b"HIST", b"r2", b"OK", b"2", b"1"]
    assert r[5:9][:3] == [b"2", b"", b"second"] and len(r) == 9
    child.send("HIST", "r3", "never", "0")
    assert child.recv() == [b"HIST", b"r3", b"OK", b"0", b"1"]
    child.send("HIST", "r4", "bad chan", "0")
    assert child.recv()[:4] == [b"HIST", b"r4", b"ERR", b"bad_channel"]
    child.send("HIST", "r5", "live", "x")
    assert child.recv()[:4] == [b"HIST", b"r5", b"ERR", b"bad_request"]

    # unsubscribe: no more fan-out
    child.sub("live", 0)
    assert call(s, "PUB", "live", "third")[2] == b"0"
    assert child.nothing_pending()


def test_link_publish(ctx, own_broker):
    child = Child(ctx, own_broker)
    child.hello()
    child.sub("p", 1)
    child.send("PUBLISH", "7", "p", "data", "ev")
    # fan-out to its own subscribers comes first, then the ack
    assert child.recv()[:5] == [b"MSG", b"p", b"1", b"ev", b"data"]
    assert child.recv() == [b"PUBACK", b"7", b"OK", b"1", b"1"]
    child.send("PUBLISH", "8", "p", b"x" * 1025, "")
    assert child.recv()[:4] == [b"PUBACK", b"8", b"ERR", b"too_large"]
    child.send("PUBLISH", "9", "p", b"x" * 10_000_000, "")   # the link is never cut
    assert child.recv()[:4] == [b"PUBACK", b"9", b"ERR", b"too_large"]


def test_link_unknown_child_gets_reset(ctx, own_broker):
    child = Child(ctx, own_broker)
    child.send("SUB", "r", 1)
    assert child.recv() == [b"RESET"]
    s = req(ctx, own_broker)
    assert call(s, "PUB", "r", "x")[2] == b"0"     # the SUB had no effect
    child.send("HIST", "q", "r", "-")
    assert child.recv() == [b"HIST", b"q", b"OK", b"1", b"1"]
    assert child.recv() == [b"RESET"]
    child.hello()
    child.sub("r", 1)
    assert call(s, "PUB", "r", "y")[1:] == [b"2", b"1"]


def test_link_hello_again_resets_subscriptions(ctx, own_broker):
    child = Child(ctx, own_broker)
    child.hello()
    child.sub("h", 3)
    s = req(ctx, own_broker)
    assert call(s, "PUB", "h", "x")[2] == b"3"
    child.recv()
    child.hello()
    assert call(s, "PUB", "h", "y")[2] == b"0"
    assert json.loads(call(s, "STATS")[1])["children"] == 1


def test_link_malformed_is_dropped(ctx, own_broker):
    child = Child(ctx, own_broker)
    child.hello()
    for frames in (["BOGUS"], ["SUB", "x"], ["HIST", "1"], ["HELLO", "notapid"],
                   ["PUBLISH", "1", "c", "d"], ["PING", "extra"], [""]):
        child.send(*frames)
    child.send("PING")
    assert child.recv()[0] == b"PONG"
    wait_for(lambda: "WARN: link: dropped malformed message" in own_broker.log_text(),
             what="warning")


def test_history_pages(ctx, own_broker):
    s = req(ctx, own_broker)
    p = ctx.socket(zmq.PUSH)
    p.setsockopt(zmq.LINGER, 0)
    p.connect(own_broker.push)
    for i in range(PAGE + 100):
        p.send_multipart([b"PUB", b"long", str(i).encode()])
    wait_for(lambda: call(s, "HISTORY", "long", PAGE + 99)[:2] == [b"OK", str(PAGE + 100).encode()],
             what="all published")
    r = call(s, "HISTORY", "long", "0", PAGE * 5)
    assert r[1:3] == [str(PAGE + 100).encode(), str(PAGE).encode()] and len(r) == 3 + 4 * PAGE
    assert r[3] == b"1"                                          # oldest first
    child = Child(ctx, own_broker)
    child.hello()
    child.send("HIST", "1", "long", "0")
    r = child.recv()
    assert len(r) == 5 + 4 * PAGE and r[5] == b"1" and r[-4] == str(PAGE).encode()
    child.send("HIST", "2", "long", PAGE)
    r = child.recv()
    assert len(r) == 5 + 4 * 100 and r[5] == str(PAGE + 1).encode()


def test_link_child_forgotten_after_silence(ctx, own_broker):
    child = Child(ctx, own_broker)
    child.hello()
    child.sub("quiet", 1)
    s = req(ctx, own_broker)
    assert call(s, "PUB", "quiet", "x")[2] == b"1"
    assert child.recv()[:5] == [b"MSG", b"quiet", b"1", b"", b"x"]
    wait_for(lambda: json.loads(call(s, "STATS")[1])["children"] == 0, timeout=13,
             what="child to be forgotten")
    assert call(s, "PUB", "quiet", "y")[2] == b"0"
    assert child.nothing_pending()
    assert "forgotten" in own_broker.log_text()
    child.send("PING")                              # it comes back: told to re-register
    assert child.recv()[0] == b"PONG"
    assert child.recv() == [b"RESET"]


# ---- process ------------------------------------------------------------------

def test_clean_stop_removes_pidfile(tmp_path):
    b = Broker(tmp_path)
    assert b.pidfile.read_text().strip() == str(b.proc.pid)
    assert b.stop() == 0
    assert not b.pidfile.exists()
    text = b.log_text()
    assert "INFO: starting" in text and "INFO: stopping" in text
    line = text.splitlines()[0]
    assert line[10] == "T" and line[23] == "Z" and f"pushbrokerd[{b.proc.pid}] INFO: " in line


def test_bind_failure_exits_1(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        r = subprocess.run([str(BINARY), "--api", busy, "--push",
                            f"tcp://127.0.0.1:{free_port()}", "--link",
                            f"tcp://127.0.0.1:{free_port()}"],
                           capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert f"cannot bind api endpoint {busy}" in r.stderr


def test_bad_config_exits_2(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("api tcp://127.0.0.1:1\nhistory_max lots\n")
    r = subprocess.run([str(BINARY), "-c", str(conf)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2
    assert f"{conf}:2: history_max" in r.stderr
    r = subprocess.run([str(BINARY), "--bogus"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2


def test_daemon_mode(tmp_path):
    pidfile, log = tmp_path / "d.pid", tmp_path / "d.log"
    ports = [free_port() for _ in range(3)]
    r = subprocess.run([str(BINARY), "-d", "-p", str(pidfile), "--log", str(log),
                        "--api", f"tcp://127.0.0.1:{ports[0]}",
                        "--push", f"tcp://127.0.0.1:{ports[1]}",
                        "--link", f"tcp://127.0.0.1:{ports[2]}"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    pid = int(pidfile.read_text())
    try:
        assert f"pushbrokerd[{pid}] INFO: starting" in log.read_text()
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pidfile.exists(), what="daemon to stop")
    assert "INFO: stopping" in log.read_text()


def test_daemon_bind_failure_reported_by_parent(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = subprocess.run([str(BINARY), "-d", "--log", str(tmp_path / "x.log"),
                            "--link", f"tcp://127.0.0.1:{s.getsockname()[1]}",
                            "--api", f"tcp://127.0.0.1:{free_port()}",
                            "--push", f"tcp://127.0.0.1:{free_port()}"],
                           capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert "cannot bind link endpoint" in (tmp_path / "x.log").read_text()
