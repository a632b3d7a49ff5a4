"""Integration tests for the publishing clients (pushctl, PHP, Python)
against a real pushbrokerd.

Run from anywhere:  /usr/bin/python3 -m pytest tests/integration/test_clients.py

Needs the built binaries pushbrokerd/pushbrokerd and clients/c/pushctl (the
tests fail, not skip, when they are missing), php with php-zmq and
python3-zmq.  The broker is started on free loopback ports and stopped by
its PID at the end.
"""
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BROKER = ROOT / "pushbrokerd" / "pushbrokerd"
PUSHCTL = ROOT / "clients" / "c" / "pushctl"
PHP_PUBLISH = ROOT / "clients" / "php" / "publish.php"
PY_PUBLISH = ROOT / "clients" / "python" / "publish.py"
PYTHON = "/usr/bin/python3"

TIME_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_executable(path):
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{path} is missing or not executable: build it first")


class Broker:
    def __init__(self, proc, api, push, link, log):
        self.proc, self.api, self.push, self.link, self.log = proc, api, push, link, log

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def run(args, env_extra=None, stdin_data=None, timeout=20, clear_env=True):
    """Run a command; returns CompletedProcess with text stdout/stderr."""
    env = dict(os.environ)
    if clear_env:
        env.pop("PUSH_API", None)
        env.pop("PUSH_PUSH", None)
    env.update(env_extra or {})
    return subprocess.run([str(a) for a in args], input=stdin_data, capture_output=True,
                          env=env, timeout=timeout)


def text(b):
    return b.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    require_executable(BROKER)
    require_executable(PUSHCTL)
    api = f"tcp://127.0.0.1:{free_port()}"
    push = f"tcp://127.0.0.1:{free_port()}"
    link = f"tcp://127.0.0.1:{free_port()}"
    log = tmp_path_factory.mktemp("broker") / "pushbrokerd.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen([str(BROKER), "--api", api, "--push", push,
                                 "--link", link, "-f"],
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
    b = Broker(proc, api, push, link, log)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"pushbrokerd exited with {proc.returncode}:\n{b.log_text()}")
            r = run([PUSHCTL, "--api", api, "--timeout", "200", "ping"])
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"pushbrokerd does not answer PING on {api}:\n"
                            f"{text(r.stderr)}\n{b.log_text()}")
            time.sleep(0.1)
        yield b
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                pytest.fail("pushbrokerd did not stop within 5 s of SIGTERM")


def pushctl(broker, *args, **kw):
    return run([PUSHCTL, "--api", broker.api, "--push", broker.push, *args], **kw)


def history_lines(broker, channel, *args):
    r = pushctl(broker, "history", channel, *args)
    assert r.returncode == 0, text(r.stderr)
    return text(r.stdout).splitlines()


# ---- pushctl ---------------------------------------------------------------

def test_pushctl_publish_ids(broker):
    r = pushctl(broker, "publish", "news", "hello world")
    assert r.returncode == 0, text(r.stderr)
    assert text(r.stdout) == "id=1 subscribers=0\n"
    assert r.stderr == b""
    r = pushctl(broker, "publish", "news", "second", "--event", "update")
    assert r.returncode == 0, text(r.stderr)
    assert text(r.stdout) == "id=2 subscribers=0\n"


def test_pushctl_history(broker):
    ch = "hist-1"
    for args in (["first"], ["two\nlines", "--event", "multi"], ["tab\there"]):
        r = pushctl(broker, "publish", ch, *args)
        assert r.returncode == 0, text(r.stderr)
    lines = history_lines(broker, ch)
    assert len(lines) == 3, lines
    assert re.fullmatch(rf"id=1 time={TIME_RE} event= data=first", lines[0]), lines[0]
    assert re.fullmatch(rf"id=2 time={TIME_RE} event=multi data=two\\nlines", lines[1]), lines[1]
    assert re.fullmatch(rf"id=3 time={TIME_RE} event= data=tab\\there", lines[2]), lines[2]

    lines = history_lines(broker, ch, "--after", "1", "--limit", "1")
    assert len(lines) == 1 and lines[0].startswith("id=2 "), lines
    assert history_lines(broker, ch, "--after", "3") == []

    r = pushctl(broker, "history", ch, "--json")
    assert r.returncode == 0, text(r.stderr)
    doc = json.loads(r.stdout)
    assert doc["channel"] == ch and doc["last_id"] == 3
    assert [m["id"] for m in doc["messages"]] == [1, 2, 3]
    assert doc["messages"][1]["data"] == "two\nlines"
    assert doc["messages"][1]["event"] == "multi"
    assert doc["messages"][0]["event"] == ""
    assert all(m["time_us"] > 1_500_000_000_000_000 for m in doc["messages"])

    r = pushctl(broker, "history", "hist-empty", "--json")
    assert r.returncode == 0, text(r.stderr)
    assert json.loads(r.stdout) == {"channel": "hist-empty", "last_id": 0, "messages": []}


def test_pushctl_history_pages(broker):
    """More messages than fit in one reply (PUSHCLIENT_HISTORY_PAGE = 1000)."""
    ch = "hist-big"
    data = "".join(f"m{i}\n" for i in range(1, 1201)).encode()
    # one REQ socket for all: starting pushctl 1200 times would be slow
    py = ("import sys, zmq\n"
          "s = zmq.Context.instance().socket(zmq.REQ)\n"
          "s.setsockopt(zmq.RCVTIMEO, 5000); s.setsockopt(zmq.LINGER, 0)\n"
          "s.connect(sys.argv[1])\n"
          "for line in sys.stdin.buffer.read().split(b'\\n')[:-1]:\n"
          "    s.send_multipart([b'PUB', sys.argv[2].encode(), line])\n"
          "    assert s.recv_multipart()[0] == b'OK'\n")
    r = run([PYTHON, "-c", py, broker.api, ch], stdin_data=data, timeout=60)
    assert r.returncode == 0, text(r.stderr)
    lines = history_lines(broker, ch)
    # the broker keeps 1000 messages per channel by default
    assert len(lines) == 1000, len(lines)
    assert lines[0].startswith("id=201 ") and lines[-1].startswith("id=1200 ")
    assert lines[-1].endswith(" data=m1200")
    lines = history_lines(broker, ch, "--after", "100", "--limit", "1100")
    assert len(lines) == 1000 and lines[0].startswith("id=201 ")
    lines = history_lines(broker, ch, "--after", "1190")
    assert [l.split()[0] for l in lines] == [f"id={i}" for i in range(1191, 1201)]


def test_pushctl_publish_stdin(broker):
    r = pushctl(broker, "publish", "stdin-ch", "-", stdin_data=b"line one\nline two\n")
    assert r.returncode == 0, text(r.stderr)
    assert text(r.stdout) == "id=1 subscribers=0\n"
    r = pushctl(broker, "history", "stdin-ch", "--json")
    assert json.loads(r.stdout)["messages"][0]["data"] == "line one\nline two\n"


def test_pushctl_no_ack(broker):
    r = pushctl(broker, "publish", "noack", "fire", "--no-ack", "--event", "ff")
    assert r.returncode == 0, text(r.stderr)
    assert r.stdout == b""
    deadline = time.monotonic() + 5
    while True:
        lines = history_lines(broker, "noack")
        if lines:
            break
        assert time.monotonic() < deadline, "fire-and-forget message never arrived"
        time.sleep(0.05)
    assert re.fullmatch(rf"id=1 time={TIME_RE} event=ff data=fire", lines[0]), lines


def test_pushctl_bad_channel(broker):
    r = pushctl(broker, "publish", "bad channel!", "x")
    assert r.returncode == 1
    assert r.stdout == b""
    assert text(r.stderr).startswith("error: bad_channel: "), text(r.stderr)
    r = pushctl(broker, "history", "bad/channel")
    assert r.returncode == 1
    assert text(r.stderr).startswith("error: bad_channel: "), text(r.stderr)
    # fire-and-forget: checked by the client, same code
    r = pushctl(broker, "publish", "bad channel!", "x", "--no-ack")
    assert r.returncode == 1
    assert text(r.stderr).startswith("error: bad_channel: "), text(r.stderr)


def test_pushctl_too_large(broker):
    r = pushctl(broker, "publish", "big", "-", stdin_data=b"x" * (64 * 1024 + 1))
    assert r.returncode == 1
    assert text(r.stderr).startswith("error: too_large: "), text(r.stderr)


def test_pushctl_stats_ping(broker):
    r = pushctl(broker, "stats")
    assert r.returncode == 0, text(r.stderr)
    assert isinstance(json.loads(r.stdout), dict)
    r = pushctl(broker, "ping")
    assert r.returncode == 0, text(r.stderr)
    assert re.fullmatch(r"epoch=\d+ rtt_ms=\d+\.\d{3}\n", text(r.stdout)), text(r.stdout)


def test_pushctl_env(broker):
    r = run([PUSHCTL, "publish", "envch", "via env"],
            env_extra={"PUSH_API": broker.api})
    assert r.returncode == 0, text(r.stderr)
    assert text(r.stdout) == "id=1 subscribers=0\n"
    r = run([PUSHCTL, "publish", "envch", "via env", "--no-ack"],
            env_extra={"PUSH_PUSH": broker.push})
    assert r.returncode == 0, text(r.stderr)


def test_pushctl_dead_endpoint():
    require_executable(PUSHCTL)
    dead = f"tcp://127.0.0.1:{free_port()}"
    for args in (["ping"], ["publish", "news", "x"], ["history", "news"], ["stats"]):
        t0 = time.monotonic()
        r = run([PUSHCTL, "--api", dead, "--timeout", "500", *args])
        elapsed = time.monotonic() - t0
        assert r.returncode == 3, (args, text(r.stderr))
        assert text(r.stderr).startswith("error: timeout: "), text(r.stderr)
        assert elapsed < 3, elapsed
    r = run([PUSHCTL, "--push", dead, "--timeout", "500", "publish", "news", "x", "--no-ack"])
    assert r.returncode == 3, text(r.stderr)


def test_pushctl_usage():
    require_executable(PUSHCTL)
    for args in ([], ["frob"], ["publish", "only-channel"], ["--timeout", "x", "ping"],
                 ["ping", "--no-ack"], ["history", "c", "--limit", "0"]):
        r = run([PUSHCTL, *args])
        assert r.returncode == 2, (args, r.returncode)
        assert b"pushctl --help" in r.stderr
    r = run([PUSHCTL, "--help"])
    assert r.returncode == 0 and text(r.stdout).startswith("Usage: pushctl")
    for word in ("publish", "history", "stats", "ping", "--no-ack", "--json",
                 "PUSH_API", "PUSH_PUSH", "--timeout", "Exit status"):
        assert word in text(r.stdout), word
    r = run([PUSHCTL, "--version"])
    assert r.returncode == 0 and text(r.stdout).startswith("pushctl ")
    r = run([PUSHCTL, "--api", "no-such-transport", "ping"])
    assert r.returncode == 2


# ---- PHP and Python examples ---------------------------------------------

def test_php_publish(broker):
    env = {"PUSH_API": broker.api}
    r = run(["php", PHP_PUBLISH, "php-ch", "from php", "phpev"], env_extra=env)
    assert r.returncode == 0, text(r.stdout + r.stderr)
    assert text(r.stdout) == "id=1 subscribers=0\n"
    r = run(["php", PHP_PUBLISH, "php-ch", "again"], env_extra=env)
    assert text(r.stdout) == "id=2 subscribers=0\n"
    lines = history_lines(broker, "php-ch")
    assert re.fullmatch(rf"id=1 time={TIME_RE} event=phpev data=from php", lines[0]), lines
    r = run(["php", PHP_PUBLISH, "bad channel", "x"], env_extra=env)
    assert r.returncode == 1
    assert text(r.stderr).startswith("error: bad_channel: "), text(r.stdout + r.stderr)


def test_python_publish(broker):
    env = {"PUSH_API": broker.api}
    r = run([PYTHON, PY_PUBLISH, "py-ch", "from python", "pyev"], env_extra=env)
    assert r.returncode == 0, text(r.stderr)
    assert text(r.stdout) == "id=1 subscribers=0\n"
    r = run([PYTHON, PY_PUBLISH, "py-ch", "-"], env_extra=env, stdin_data=b"stdin\n")
    assert text(r.stdout) == "id=2 subscribers=0\n"
    lines = history_lines(broker, "py-ch")
    assert re.fullmatch(rf"id=1 time={TIME_RE} event=pyev data=from python", lines[0]), lines
    assert lines[1].endswith(" data=stdin\\n"), lines
    r = run([PYTHON, PY_PUBLISH, "bad channel", "x"], env_extra=env)
    assert r.returncode == 1
    assert text(r.stderr).startswith("error: bad_channel: "), text(r.stderr)


def test_examples_timeout():
    """Both examples give up (exit 3) when nobody answers."""
    dead = f"tcp://127.0.0.1:{free_port()}"
    for cmd in (["php", PHP_PUBLISH, "c", "x"], [PYTHON, PY_PUBLISH, "c", "x"]):
        t0 = time.monotonic()
        r = run(cmd, env_extra={"PUSH_API": dead, "PUSH_TIMEOUT": "500"}, timeout=15)
        assert time.monotonic() - t0 < 3
        assert r.returncode == 3, (cmd, text(r.stdout + r.stderr))
        assert text(r.stderr).startswith("error: timeout: ")
