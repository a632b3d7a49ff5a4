"""Harness for the mod_push integration tests: a real pushbrokerd and a real
private Apache (event MPM) on free loopback ports.

Run:  /usr/bin/python3 -m pytest -v tests/integration      (or `make integration`)

Environment:
  PUSH_BROKER_BIN  the broker binary (default: <repo>/pushbrokerd/pushbrokerd;
                   `make integration` passes an ASan+UBSan build)
  PUSH_HTTPD       the Apache binary (default: /usr/sbin/apache2)
  PUSH_MODULE_SO   mod_push.so to load (default: <repo>/mod_push/.libs/mod_push.so)
  PUSH_HTTPD_VALGRIND=1
                   run every Apache as one process (apache2 -X) under valgrind
                   memcheck (`make valgrind`, tests/valgrind/README.md); its
                   stop() fails the test when valgrind reports an error or a
                   definite leak.  Tests that need several children or
                   `apache2 -k` are not for this mode.
  PUSH_TIME_SCALE  multiplies the harness's bounds (START/RELINK/EVENT_TIMEOUT,
                   wait_until, SSEClient waits); default 1, 6 under valgrind

What the harness offers (usable from any test file of this directory):

  Classes
    Broker(workdir, name, args=())      .start() .stop() .restart() (same ports)
                                        .api .push .link (tcp:// endpoints)
                                        .pub(...) .pub_json(...) .ping()
    Apache(rundir, broker_link, port=None, max_workers=None, extra_conf=None, nofile=None)
                                        .start() .stop() .wait_ready()
                                        .request() .publish() .poll() .longpoll()
                                        .sse() .child_pids() .error_log_text()
    Stack(broker, apache)               one broker + one Apache linked to it;
                                        proxies publish/poll/longpoll/sse/request
    SSEClient                           raw-socket Server-Sent Events client that
                                        decodes HTTP framing itself (chunked,
                                        Content-Length or close-delimited) and
                                        parses events by the WHATWG rules
    HTTPResponseParser, SSEParser       the sans-I/O parsers SSEClient uses (the
                                        scale test drives them from asyncio)
    SocketCloser                        mixin: close() and `with` for a client
                                        holding .sock (SSEClient, RawWS)
    ScaleSubscriber                     base of the asyncio subscribers of the
                                        scale tests (see fan_out())

  Fixtures
    broker          session: a broker (no Apache)
    stack           session: broker + Apache with conf/push.conf as shipped
    short_stack     session: broker + Apache with PushSSEKeepalive 1 and
                    PushLongPollTimeout 2 on /sub/
    stack_factory   session: make_stack(name, extra_conf=None, max_workers=None,
                    broker_args=()) -> started Stack, stopped at session end
                    (or call stack.stop() yourself)
    channel         function: a fresh channel name, unique in the session
    many_fds        function: RLIMIT_NOFILE raised for the module's N_SUBSCRIBERS
    stack_fixture(name, doc=None, **kw)
                    makes a module-scoped Stack fixture for a test file

  Helpers
    free_port(), unique_channel(prefix), zmq_request(endpoint, frames),
    wait_until(predicate, timeout, what), connection_owner(apache, sock),
    silent_sse(port, path),
    pid_holding_socket(pids, inodes), fan_out(...) and
    assert_no_thread_per_connection(...) (the scale tests)

On a failing test the tails of the error.log of every running Apache and of
every running broker's log are attached to the report.  Processes are
stopped by their own PIDs only.
"""
import asyncio
import atexit
import http.client
import itertools
import json
import os
import re
import resource
import shlex
import signal
import socket
import subprocess
import threading
import time
import types
import uuid
from pathlib import Path

import pytest
import zmq

ROOT = Path(__file__).resolve().parents[2]
BROKER_BIN = Path(os.environ.get("PUSH_BROKER_BIN") or ROOT / "pushbrokerd" / "pushbrokerd")
HTTPD = os.environ.get("PUSH_HTTPD") or "/usr/sbin/apache2"
MODULE_SO = Path(os.environ.get("PUSH_MODULE_SO") or ROOT / "mod_push" / ".libs" / "mod_push.so")
PUSHCTL = ROOT / "clients" / "c" / "pushctl"
PHP_PUBLISH = ROOT / "clients" / "php" / "publish.php"
HOST = "127.0.0.1"

VALGRIND = os.environ.get("PUSH_HTTPD_VALGRIND", "") not in ("", "0")
VALGRIND_BIN = os.environ.get("PUSH_VALGRIND") or "valgrind"
VALGRIND_SUPP = ROOT / "tests" / "valgrind" / "apache.supp"
VALGRIND_ERROR_EXIT = 97
TIME_SCALE = float(os.environ.get("PUSH_TIME_SCALE") or (6 if VALGRIND else 1))

# Upper bounds that only keep a broken build from hanging the run; no test
# asserts that anything is fast.  Scaled under valgrind (PUSH_TIME_SCALE).
START_TIMEOUT = 20.0 * TIME_SCALE
RELINK_TIMEOUT = 15.0 * TIME_SCALE
EVENT_TIMEOUT = 15.0 * TIME_SCALE

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: UndefinedBehaviorSanitizer", "SUMMARY: AddressSanitizer")


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------

_used_ports = set()


def free_port():
    """A free TCP port on 127.0.0.1, never the same one twice in a session."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in _used_ports:
            _used_ports.add(port)
            return port
    raise RuntimeError("no free port")


_chan_counter = itertools.count(1)


def unique_channel(prefix="t"):
    return f"{prefix}-{os.getpid()}-{next(_chan_counter)}-{uuid.uuid4().hex[:8]}"


def wait_until(predicate, timeout, what, interval=0.05):
    """Poll predicate() until it returns a true value; returns that value.
    Fails the test after timeout seconds (a bound, not an assertion on speed;
    multiplied by PUSH_TIME_SCALE)."""
    timeout *= TIME_SCALE
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = predicate()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - report the last one
            last_exc = e
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout}s waiting for {what}"
            if last_exc is not None:
                msg += f" (last error: {last_exc!r})"
            pytest.fail(msg)
        time.sleep(interval)


def tail(path, lines=60):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(text.splitlines()[-lines:])


def valgrind_problems(log):
    """What valgrind's log says is wrong: errors (ERROR SUMMARY: N, N > 0),
    definite leaks (definitely lost: N bytes, N > 0), or no summary at all."""
    try:
        text = Path(log).read_text(errors="replace")
    except OSError as e:
        return [f"no valgrind log {log}: {e}"]
    out = []
    m = re.findall(r"ERROR SUMMARY: ([\d,]+) errors", text)
    if not m:
        out.append("valgrind wrote no ERROR SUMMARY (did the process exit?)")
    elif int(m[-1].replace(",", "")) > 0:
        out.append(f"ERROR SUMMARY: {m[-1]} errors")
    for n in re.findall(r"definitely lost: ([\d,]+) bytes", text):
        if int(n.replace(",", "")) > 0:
            out.append(f"definitely lost: {n} bytes")
    return out


def valgrind_report(log, limit=400):
    """The error records of a valgrind log (without the banner and summaries)."""
    try:
        lines = Path(log).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    keep = [ln for ln in lines if not re.match(r"==\d+== ?$", ln)]
    return "\n".join(keep[:limit])


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still "exists": look at its state
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


def zmq_request(endpoint, frames, timeout=10.0):
    """Send one multipart request on a fresh REQ socket; returns the reply frames."""
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
    s.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
    try:
        s.connect(endpoint)
        s.send_multipart([f if isinstance(f, bytes) else str(f).encode() for f in frames])
        return s.recv_multipart()
    finally:
        s.close()


def _die_with_parent():
    """In the child before exec: get SIGTERM when the test process dies."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - only a safety net
        pass


# Instances whose logs are attached to the report of a failing test.
_ACTIVE = []


# ---------------------------------------------------------------------------
# the broker
# ---------------------------------------------------------------------------

class Broker:
    def __init__(self, workdir, name="broker", args=(), binary=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.binary = Path(binary or BROKER_BIN)
        self.extra_args = [str(a) for a in args]
        self.api_port, self.push_port, self.link_port = free_port(), free_port(), free_port()
        self.log = self.workdir / f"{name}.log"
        self.proc = None
        self.exit_codes = []

    api = property(lambda self: f"tcp://{HOST}:{self.api_port}")
    push = property(lambda self: f"tcp://{HOST}:{self.push_port}")
    link = property(lambda self: f"tcp://{HOST}:{self.link_port}")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=START_TIMEOUT):
        if not (self.binary.is_file() and os.access(self.binary, os.X_OK)):
            pytest.fail(f"broker binary {self.binary} is missing: build it first (make)")
        assert not self.running()
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        cmd = [str(self.binary), "--api", self.api, "--push", self.push, "--link", self.link,
               "-f", *self.extra_args]
        with open(self.log, "ab") as logf:
            logf.write(f"=== harness: starting {' '.join(cmd)}\n".encode())
            logf.flush()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=subprocess.STDOUT, env=env,
                                         preexec_fn=_die_with_parent)
        if self not in _ACTIVE:
            _ACTIVE.append(self)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"broker exited with status {self.proc.returncode} at start:\n"
                            f"{tail(self.log)}")
            try:
                if self.ping(timeout=0.5)[0] == b"PONG":
                    return self
            except zmq.ZMQError:
                pass
            if time.monotonic() > deadline:
                self.stop(check=False)
                pytest.fail(f"broker did not answer PING within {timeout}s:\n{tail(self.log)}")
            time.sleep(0.05)

    def stop(self, check=True, timeout=20.0):
        """SIGTERM by PID, wait.  Returns the exit status.  With check, fails
        when the broker does not exit cleanly or a sanitizer reported."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait(10)
                if check:
                    pytest.fail(f"broker pid {self.proc.pid} ignored SIGTERM for {timeout}s")
        self.exit_codes.append(rc)
        self.proc = None
        if check:
            self.check_clean(rc)
        return rc

    def kill(self):
        """SIGKILL (a crash, as far as Apache can tell)."""
        if self.running():
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self, timeout=START_TIMEOUT):
        self.stop()
        return self.start(timeout)

    def sanitizer_report(self):
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        hits = [ln for ln in text.splitlines() if any(m in ln for m in SANITIZER_MARKERS)]
        return "\n".join(hits)

    def check_clean(self, rc):
        rep = self.sanitizer_report()
        if rep:
            pytest.fail(f"sanitizer report in the broker log:\n{rep}\n{tail(self.log, 80)}")
        if rc not in (0, -signal.SIGTERM):
            pytest.fail(f"broker exited with status {rc} after SIGTERM:\n{tail(self.log)}")

    # --- API helpers -------------------------------------------------------
    def ping(self, timeout=5.0):
        return zmq_request(self.api, [b"PING"], timeout)

    def pub(self, channel, data, event=None, timeout=10.0):
        """PUB over the api endpoint; returns the reply frames ([b'OK', id, subs])."""
        frames = [b"PUB", channel, data]
        if event is not None:
            frames.append(event)
        return zmq_request(self.api, frames, timeout)

    def pub_id(self, channel, data, event=None):
        rep = self.pub(channel, data, event)
        assert rep[0] == b"OK", rep
        return int(rep[1])

    def pub_json(self, obj, timeout=10.0):
        """One JSON frame; returns the decoded JSON reply."""
        raw = obj if isinstance(obj, (bytes, str)) else json.dumps(obj)
        rep = zmq_request(self.api, [raw if isinstance(raw, bytes) else raw.encode()], timeout)
        assert len(rep) == 1, rep
        return json.loads(rep[0])

    def log_sections(self):
        state = f"pid {self.pid}" if self.running() else "stopped"
        return [(f"pushbrokerd '{self.name}' ({state}) log tail: {self.log}", tail(self.log))]


# ---------------------------------------------------------------------------
# HTTP: sans-I/O response parser and SSE parser
# ---------------------------------------------------------------------------

class ProtocolError(Exception):
    pass


class HTTPResponseParser:
    """Feed raw bytes of one HTTP/1.1 response; get decoded body bytes back.

    After the head: .status, .reason, .version, .headers (list of (name, value)),
    .framing in {'chunked', 'length', 'close'}; .complete once the body ended by
    its framing (or at EOF for close-delimited bodies)."""

    def __init__(self):
        self.buf = bytearray()
        self.head_done = False
        self.status = None
        self.reason = None
        self.version = None
        self.headers = []
        self.framing = None
        self.complete = False
        self.truncated = False
        self.chunks = []          # sizes of the chunks seen (chunked framing)
        self._remaining = 0
        self._state = "size"

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def feed(self, data):
        self.buf += data
        out = bytearray()
        if not self.head_done:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return bytes(out)
            head = bytes(self.buf[:end]).decode("iso-8859-1")
            del self.buf[:end + 4]
            lines = head.split("\r\n")
            m = re.match(r"(HTTP/\d\.\d) (\d{3})(?: (.*))?$", lines[0])
            if not m:
                raise ProtocolError(f"bad status line {lines[0]!r}")
            self.version, self.status, self.reason = m.group(1), int(m.group(2)), m.group(3) or ""
            for ln in lines[1:]:
                k, _, v = ln.partition(":")
                self.headers.append((k.strip(), v.strip()))
            self.head_done = True
            te = (self.header("Transfer-Encoding") or "").lower()
            if "chunked" in te:
                self.framing = "chunked"
            elif self.header("Content-Length") is not None:
                self.framing = "length"
                self._remaining = int(self.header("Content-Length"))
                if self._remaining == 0:
                    self.complete = True
            else:
                self.framing = "close"
        if self.complete:
            self.buf.clear()
            return bytes(out)
        if self.framing == "close":
            out += self.buf
            self.buf.clear()
        elif self.framing == "length":
            take = min(self._remaining, len(self.buf))
            out += self.buf[:take]
            del self.buf[:take]
            self._remaining -= take
            if self._remaining == 0:
                self.complete = True
        else:
            self._dechunk(out)
        return bytes(out)

    def _dechunk(self, out):
        while not self.complete:
            if self._state == "size":
                i = self.buf.find(b"\r\n")
                if i < 0:
                    return
                line = bytes(self.buf[:i]).split(b";")[0].strip()
                del self.buf[:i + 2]
                try:
                    size = int(line, 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size line {line!r}") from None
                if size == 0:
                    self._state = "trailer"
                else:
                    self.chunks.append(size)
                    self._remaining = size
                    self._state = "data"
            elif self._state == "data":
                if not self.buf:
                    return
                take = min(self._remaining, len(self.buf))
                out += self.buf[:take]
                del self.buf[:take]
                self._remaining -= take
                if self._remaining == 0:
                    self._state = "crlf"
            elif self._state == "crlf":
                if len(self.buf) < 2:
                    return
                if self.buf[:2] != b"\r\n":
                    raise ProtocolError("chunk not followed by CRLF")
                del self.buf[:2]
                self._state = "size"
            elif self._state == "trailer":
                i = self.buf.find(b"\r\n")
                if i < 0:
                    return
                line = self.buf[:i]
                del self.buf[:i + 2]
                if not line:
                    self.complete = True

    def feed_eof(self):
        if not self.head_done:
            self.truncated = True
        elif not self.complete:
            if self.framing == "close":
                self.complete = True
            else:
                self.truncated = True


class Event:
    """One dispatched SSE event."""

    def __init__(self, id, event, data, raw, retry=None):
        self.id = id          # the last event ID string at dispatch (WHATWG lastEventId)
        self.event = event    # value of the event: field, or None when absent
        self.data = data      # str, trailing LF removed
        self.raw = raw        # the bytes of the block, blank line included
        self.retry = retry

    @property
    def type(self):
        return self.event or "message"

    @property
    def int_id(self):
        return int(self.id)

    def __repr__(self):
        return f"Event(id={self.id!r}, event={self.event!r}, data={self.data!r})"


_LINE_END = re.compile(rb"\r\n|\r|\n")


class SSEParser:
    """Event stream interpretation per the WHATWG HTML spec (9.2.6).

    feed(body_bytes) returns a list of items: ('event', Event), ('comment', str),
    ('retry', int).  .items keeps all of them in order."""

    def __init__(self):
        self.buf = bytearray()
        self.items = []
        self.data = ""
        self.event_type = ""
        self.last_event_id = ""
        self.retry = None
        self._raw = bytearray()
        self._first = True
        self._eof = False

    def feed(self, data):
        self.buf += data
        new = []
        pos = 0
        while True:
            m = _LINE_END.search(self.buf, pos)
            if not m:
                break
            if m.group() == b"\r" and m.end() == len(self.buf) and not self._eof:
                break   # might be the CR of a CRLF split across reads
            line = bytes(self.buf[pos:m.start()])
            self._raw += self.buf[pos:m.end()]
            pos = m.end()
            self._line(line, new)
        del self.buf[:pos]
        self.items.extend(new)
        return new

    def feed_eof(self):
        self._eof = True
        new = self.feed(b"")
        # an incomplete final block is discarded, per the spec
        return new

    def _line(self, line, new):
        if self._first:
            self._first = False
            if line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
        text = line.decode("utf-8", "replace")
        if text == "":
            raw = bytes(self._raw)
            self._raw.clear()
            if self.data == "":
                self.event_type = ""
                return
            data = self.data[:-1] if self.data.endswith("\n") else self.data
            ev = Event(self.last_event_id, self.event_type or None, data, raw, self.retry)
            self.data = ""
            self.event_type = ""
            new.append(("event", ev))
            return
        if text.startswith(":"):
            new.append(("comment", text[1:].lstrip(" ") if text.startswith(": ") else text[1:]))
            return
        if ":" in text:
            field, value = text.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            field, value = text, ""
        if field == "event":
            self.event_type = value
        elif field == "data":
            self.data += value + "\n"
        elif field == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif field == "retry":
            if value.isdigit() and value.isascii():
                self.retry = int(value)
                new.append(("retry", self.retry))
        # other fields are ignored


# ---------------------------------------------------------------------------
# SSE client over a raw socket
# ---------------------------------------------------------------------------

class SocketCloser:
    """Mixin of the raw-socket clients (SSEClient here, RawWS of
    test_websocket_util.py): close() closes self.sock (an OSError while
    closing is ignored), and a with block closes it when it ends."""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SSEClient(SocketCloser):
    """GET <path> with Accept: text/event-stream on a raw socket.

    The constructor connects and sends the request; read_head() waits for the
    status line and headers.  Events come from next_event(); everything the
    parser produced is in .items, the decoded body bytes in .body."""

    def __init__(self, port, path, headers=None, host=HOST, accept="text/event-stream",
                 timeout=EVENT_TIMEOUT, source=None):
        self.port, self.path, self.timeout = port, path, timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if source:
            self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        hdrs = {"Host": f"{host}:{port}"}
        if accept:
            hdrs["Accept"] = accept
        hdrs.update(headers or {})
        req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        self.sock.sendall((req + "\r\n").encode("utf-8"))
        self.http = HTTPResponseParser()
        self.sse = SSEParser()
        self.body = bytearray()
        self.eof = False
        self._cursor = 0          # index in self.sse.items of the next item to hand out

    # --- I/O ---------------------------------------------------------------
    def _recv_some(self, deadline):
        """Read once (bounded by deadline); False on timeout, raises EOFError at EOF."""
        if self.eof:
            raise EOFError("connection closed")
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            self.http.feed_eof()
            if self.http.head_done:
                self.sse.feed_eof()
            raise EOFError("connection closed")
        body = self.http.feed(data)
        if body:
            self.body += body
            if self.http.status == 200:
                self.sse.feed(body)
        return True

    def read_head(self, timeout=None):
        deadline = self._deadline(timeout)
        while not self.http.head_done:
            try:
                if not self._recv_some(deadline):
                    raise TimeoutError(f"no response head for GET {self.path}")
            except EOFError:
                raise EOFError(f"connection closed before the response head of GET {self.path}")
        return self.http

    @property
    def status(self):
        return self.read_head().status

    def header(self, name):
        return self.read_head().header(name)

    def read_body(self, timeout=None):
        """The whole body (for error answers that end)."""
        deadline = self._deadline(timeout)
        self.read_head()
        while not self.http.complete:
            try:
                if not self._recv_some(deadline):
                    raise TimeoutError(f"body of GET {self.path} did not end")
            except EOFError:
                break
        return bytes(self.body)

    def json(self):
        return json.loads(self.read_body())

    def _deadline(self, timeout):
        """When a wait of timeout seconds (times PUSH_TIME_SCALE) ends; None:
        the client's own timeout."""
        return time.monotonic() + (timeout * TIME_SCALE if timeout else self.timeout)

    def next_item(self, timeout=None, _deadline=None):
        deadline = _deadline or self._deadline(timeout)
        self.read_head()
        while self._cursor >= len(self.sse.items):
            if not self._recv_some(deadline):
                raise TimeoutError(f"nothing from GET {self.path} within "
                                   f"{timeout or self.timeout}s; items so far: "
                                   f"{self.sse.items[-5:]!r}")
        item = self.sse.items[self._cursor]
        self._cursor += 1
        return item

    def next_event(self, timeout=None, _deadline=None):
        deadline = _deadline or self._deadline(timeout)
        while True:
            kind, val = self.next_item(_deadline=deadline)
            if kind == "event":
                return val

    def events(self, n, timeout=None):
        deadline = self._deadline(timeout)
        return [self.next_event(_deadline=deadline) for _ in range(n)]

    def wait_preamble(self, timeout=None):
        """Wait for the 'retry:' field that ends the preamble; returns the head.
        Fails the test when the answer is not a 200 event stream."""
        head = self.read_head(timeout)
        if head.status != 200:
            body = self.read_body(timeout)
            pytest.fail(f"SSE subscribe GET {self.path} answered {head.status}: {body!r}")
        deadline = self._deadline(timeout)
        while not any(k == "retry" for k, _ in self.sse.items):
            if not self._recv_some(deadline):
                raise TimeoutError(f"no SSE preamble on GET {self.path}: {bytes(self.body)!r}")
        # hand out the items after the preamble only
        self._cursor = max(self._cursor,
                           next(i for i, (k, _) in enumerate(self.sse.items) if k == "retry") + 1)
        return head

    def no_event_within(self, seconds):
        """True when no event arrives within seconds (comments are ignored)."""
        try:
            ev = self.next_event(_deadline=time.monotonic() + seconds)    # not scaled
        except TimeoutError:
            return True
        pytest.fail(f"unexpected event {ev!r}")


def silent_sse(port, path, rcvbuf=2048):
    """An SSE client that never reads a byte, with a tiny receive buffer:
    the connected socket, its GET sent (a slow consumer of the tests)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((HOST, port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                 f"Accept: text/event-stream\r\n\r\n".encode())
    return sock


# ---------------------------------------------------------------------------
# Apache
# ---------------------------------------------------------------------------

class Response:
    def __init__(self, status, reason, headers, body):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body

    def header(self, name):
        if isinstance(self.headers, dict):
            return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)
        return self.headers.get(name)

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError(f"not JSON ({self.status}): {self.body[:500]!r}") from None

    def __repr__(self):
        return f"<Response {self.status} {self.body[:300]!r}>"


class Apache:
    """A private Apache running conf/httpd.conf and conf/push.conf from the
    repository (PUSH_SRC = the repository root)."""

    def __init__(self, rundir, broker_link, name="apache", port=None, max_workers=None,
                 extra_conf=None, nofile=None):
        self.rundir = Path(rundir)
        self.nofile = nofile        # soft RLIMIT_NOFILE for Apache (None: the hard limit)
        self.rundir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.broker_link = broker_link
        self.port = port or free_port()
        self.max_workers = max_workers
        self.extra_conf = None
        if extra_conf:
            self.extra_conf = self.rundir / "extra.conf"
            self.extra_conf.write_text(extra_conf)
        self.error_log = self.rundir / "error.log"
        self.pidfile = self.rundir / "httpd.pid"
        self.master_pid = None
        self.src = ROOT
        self.proc = None            # valgrind mode: the one apache2 -X process
        self.valgrind_logs = []     # valgrind mode: one log per start

    def _limits(self):
        """In apache2 -k start before exec: the open-file limit asked for, by
        default the hard limit (up to 65,536), as Debian's apachectl raises it
        (ulimit -n 8192), whatever the shell that runs the tests has."""
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        soft = self.nofile or (65536 if hard == resource.RLIM_INFINITY else min(hard, 65536))
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    def args(self):
        a = [HTTPD, "-d", str(self.rundir), "-f", str(ROOT / "conf" / "httpd.conf"),
             "-C", f"Define PUSH_RUNDIR {self.rundir}",
             "-C", f"Define PUSH_SRC {self.src}",
             "-C", f"Define PUSH_PORT {self.port}",
             "-C", f"Define PUSH_MODULE {MODULE_SO}",
             "-C", f"Define PUSH_BROKER {self.broker_link}"]
        if self.max_workers:
            a += ["-C", f"Define PUSH_MAX_WORKERS {self.max_workers}"]
        if self.extra_conf:
            a += ["-C", f"Define PUSH_EXTRA_CONF {self.extra_conf}"]
        return a

    def start(self, require_broker=True, timeout=START_TIMEOUT):
        if not MODULE_SO.is_file():
            pytest.fail(f"{MODULE_SO} is missing: build it first (make)")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ASAN_", "UBSAN_"))}
        env["LANG"] = "C"
        if VALGRIND:
            return self._start_valgrind(env, require_broker, timeout)
        p = subprocess.run(self.args() + ["-k", "start"], capture_output=True, text=True,
                           env=env, timeout=60, preexec_fn=self._limits)
        if p.returncode != 0:
            pytest.fail(f"apache2 -k start failed ({p.returncode}):\n{p.stdout}{p.stderr}\n"
                        f"{tail(self.error_log)}")
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.master_pid = int(self.pidfile.read_text().strip())
                break
            except (OSError, ValueError):
                if time.monotonic() > deadline:
                    pytest.fail(f"no pid file {self.pidfile}:\n{tail(self.error_log)}")
                time.sleep(0.05)
        if self not in _ACTIVE:
            _ACTIVE.append(self)
        self.wait_ready(require_broker, timeout=timeout)
        return self

    def log_offset(self):
        """Current size of error.log: pass it to wait_ready(since=...) to wait
        for link messages written after this point."""
        try:
            return self.error_log.stat().st_size
        except OSError:
            return 0

    def linked_pids(self, since=0):
        """PIDs of the children that logged 'linked to pushbrokerd' after offset since."""
        try:
            with open(self.error_log, "rb") as f:
                f.seek(since)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return set()
        return {int(p) for p in re.findall(r"\[pid (\d+):tid \d+\] AH20003: linked", text)}

    def wait_ready(self, require_broker=True, since=0, timeout=RELINK_TIMEOUT):
        """Wait until every child has linked to the broker (logged after
        offset since) and a short poll answers 200; without require_broker,
        until Apache answers at all."""
        def ready():
            if self.master_pid and not pid_alive(self.master_pid):
                pytest.fail(f"Apache master {self.master_pid} died:\n{tail(self.error_log)}")
            if require_broker:
                kids = set(self.child_pids())
                if not kids or not kids <= self.linked_pids(since):
                    return False
            r = self.request("GET", "/sub/__ready?poll=1", timeout=5)
            return r.status == 200 if require_broker else True
        wait_until(ready, timeout, f"Apache on port {self.port} to be ready"
                                   f"{' (all children linked)' if require_broker else ''}")

    def child_pids(self):
        """PIDs of the processes whose parent is the Apache master (under
        valgrind, apache2 -X: the one process serves)."""
        if self.proc is not None:
            return [self.master_pid] if self.master_pid and pid_alive(self.master_pid) else []
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    st = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(st[1]) == self.master_pid and st[0] != "Z":
                out.append(int(d))
        return out

    @staticmethod
    def thread_count(pid):
        try:
            return len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            return 0

    def stop(self, timeout=30.0):
        if self.proc is not None:
            return self._stop_valgrind(timeout * TIME_SCALE)
        if not self.master_pid:
            return
        pid = self.master_pid
        children = self.child_pids()
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while any(pid_alive(p) for p in [pid] + children):
            if time.monotonic() > deadline:
                for p in [pid] + children:
                    if pid_alive(p):
                        try:
                            os.kill(p, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                break
            time.sleep(0.05)
        self.master_pid = None

    def error_log_text(self):
        try:
            return self.error_log.read_text(errors="replace")
        except OSError:
            return ""

    # --- valgrind mode (PUSH_HTTPD_VALGRIND=1, `make valgrind`) ---------------
    def _start_valgrind(self, env, require_broker, timeout):
        """apache2 -X (one process, in the foreground: the event MPM's child
        runs in it, child_init, threads and all) under valgrind memcheck."""
        log = self.rundir / f"valgrind.{len(self.valgrind_logs) + 1}.log"
        self.valgrind_logs.append(log)
        cmd = [VALGRIND_BIN, "--tool=memcheck", f"--log-file={log}",
               f"--error-exitcode={VALGRIND_ERROR_EXIT}", "--leak-check=full",
               "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
               "--track-fds=no", "--num-callers=40", "--vgdb=no", "--keep-debuginfo=yes", f"--suppressions={VALGRIND_SUPP}",
               *shlex.split(os.environ.get("PUSH_VALGRIND_OPTS", "")),
               self.args()[0], "-X", *self.args()[1:]]
        with open(self.rundir / "stdout.log", "ab") as out:
            out.write(f"=== harness: starting {' '.join(cmd)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=env,
                                         preexec_fn=_die_with_parent)
        self.master_pid = self.proc.pid
        if self not in _ACTIVE:
            _ACTIVE.append(self)
        self.wait_ready(require_broker, timeout=timeout)
        return self

    def _stop_valgrind(self, timeout):
        """SIGTERM (with -X: the one process ends its threads, runs the child
        pool's cleanups and exits), then read valgrind's verdict: fail on any
        error or definite leak (the log names the stacks)."""
        proc, self.proc, self.master_pid = self.proc, None, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
            pytest.fail(f"apache2 -X under valgrind (pid {proc.pid}) ignored SIGTERM for "
                        f"{timeout:.0f}s; valgrind log {self.valgrind_logs[-1]}")
        problems = valgrind_problems(self.valgrind_logs[-1])
        if rc not in (0, VALGRIND_ERROR_EXIT) and not problems:
            problems.append(f"apache2 -X exited with status {rc}")
        if problems:
            pytest.fail(f"valgrind, Apache '{self.name}' ({self.valgrind_logs[-1]}):\n"
                        + "\n".join(problems) + "\n" + valgrind_report(self.valgrind_logs[-1]))

    def log_sections(self):
        state = f"master pid {self.master_pid}" if self.master_pid else "stopped"
        out = [(f"Apache '{self.name}' ({state}, port {self.port}) error.log tail: "
                f"{self.error_log}", tail(self.error_log))]
        if self.valgrind_logs:
            out.append((f"valgrind log of Apache '{self.name}': {self.valgrind_logs[-1]}",
                        valgrind_report(self.valgrind_logs[-1], 120)))
        return out

    # --- HTTP helpers ------------------------------------------------------
    def url(self, path):
        return f"http://{HOST}:{self.port}{path}"

    def request(self, method, path, body=None, headers=None, timeout=60.0):
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            if isinstance(body, str):
                body = body.encode("utf-8")
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return Response(r.status, r.reason, r.headers, data)
        finally:
            conn.close()

    def publish(self, channel, data, event=None, content_type=None, query=None):
        """POST /pub/<channel>; data is str or bytes.  Returns a Response."""
        path = f"/pub/{channel}"
        qs = []
        if event is not None:
            qs.append(f"event={event}")
        if query:
            qs.append(query)
        if qs:
            path += "?" + "&".join(qs)
        headers = {"Content-Type": content_type or "application/octet-stream"}
        return self.request("POST", path, data, headers)

    def publish_ok(self, channel, data, event=None):
        r = self.publish(channel, data, event)
        assert r.status == 200, r
        return r.json()

    def publish_json(self, channel, obj, query=None):
        body = obj if isinstance(obj, (str, bytes)) else json.dumps(obj)
        return self.publish(channel, body, content_type="application/json", query=query)

    def poll(self, channel, cursor=None, headers=None, timeout=60.0):
        """Short poll (?poll=1)."""
        path = f"/sub/{channel}?poll=1"
        if cursor is not None:
            path += f"&last_id={cursor}"
        return self.request("GET", path, headers=headers, timeout=timeout)

    def longpoll(self, channel, cursor=None, use_header=False, timeout=90.0):
        path = f"/sub/{channel}"
        headers = {}
        if cursor is not None:
            if use_header:
                headers["Last-Event-ID"] = str(cursor)
            else:
                path += f"?last_id={cursor}"
        return self.request("GET", path, headers=headers, timeout=timeout)

    def sse(self, channel, last_id=None, header_id=None, path=None, headers=None,
            timeout=EVENT_TIMEOUT, source=None):
        """Open an SSE subscription (not yet waited for: call wait_preamble())."""
        p = path or f"/sub/{channel}"
        if last_id is not None:
            p += ("&" if "?" in p else "?") + f"last_id={last_id}"
        h = dict(headers or {})
        if header_id is not None:
            h["Last-Event-ID"] = str(header_id)
        return SSEClient(self.port, p, h, timeout=timeout, source=source)

    def subscribe(self, channel, **kw):
        """SSE subscription that has received its preamble."""
        c = self.sse(channel, **kw)
        c.wait_preamble()
        return c


# ---------------------------------------------------------------------------
# a broker + an Apache
# ---------------------------------------------------------------------------

class Stack:
    def __init__(self, broker, apache):
        self.broker, self.apache = broker, apache

    port = property(lambda self: self.apache.port)

    def __getattr__(self, name):
        # publish, publish_ok, publish_json, poll, longpoll, sse, subscribe, request, url
        if name in ("apache", "broker") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.apache, name)

    def start(self):
        self.broker.start()
        self.apache.start()
        return self

    def stop(self):
        try:
            self.apache.stop()
        finally:
            self.broker.stop()
        for obj in (self.apache, self.broker):
            if obj in _ACTIVE:
                _ACTIVE.remove(obj)


def make_stack(base_dir, name, extra_conf=None, max_workers=None, broker_args=()):
    base = Path(base_dir)
    broker = Broker(base / "broker", name=f"{name}-broker", args=broker_args)
    apache = Apache(base / "apache", broker.link, name=name, max_workers=max_workers,
                    extra_conf=extra_conf)
    return Stack(broker, apache).start()


SHORT_TIMEOUTS_CONF = """\
<Location /sub/>
  PushSSEKeepalive 1
  PushLongPollTimeout 2
</Location>
"""


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def stack_factory(tmp_path_factory):
    made = []

    def factory(name, extra_conf=None, max_workers=None, broker_args=()):
        s = make_stack(tmp_path_factory.mktemp(name), name, extra_conf, max_workers,
                       broker_args)
        made.append(s)
        return s

    yield factory
    errors = []
    for s in reversed(made):
        try:
            s.stop()
        except BaseException as e:  # noqa: BLE001 - stop the others too
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture(scope="session")
def stack(stack_factory):
    return stack_factory("main")


@pytest.fixture(scope="session")
def short_stack(stack_factory):
    return stack_factory("short", extra_conf=SHORT_TIMEOUTS_CONF)


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("lone-broker"), name="lone-broker").start()
    yield b
    b.stop()
    if b in _ACTIVE:
        _ACTIVE.remove(b)


@pytest.fixture
def channel():
    return unique_channel()


def stack_fixture(name, doc=None, **kw):
    """A module-scoped fixture, for a test file to assign to a name of its
    own (`ps = stack_fixture("presence", extra_conf=CONF)`): a Stack made by
    stack_factory(name, **kw) (extra_conf, max_workers, broker_args), stopped
    after the module's last test.  doc becomes the fixture's docstring."""
    def fixture(stack_factory):
        s = stack_factory(name, **kw)
        yield s
        s.stop()
    fixture.__doc__ = doc
    return pytest.fixture(scope="module")(fixture)


# ---------------------------------------------------------------------------
# never leave a broker or an Apache behind
# ---------------------------------------------------------------------------

def _stop_everything():
    for obj in reversed(list(_ACTIVE)):
        try:
            if isinstance(obj, Apache):
                obj.stop()
            elif isinstance(obj, Broker):
                obj.stop(check=False)
        except BaseException:  # noqa: BLE001 - best effort at exit (pytest.fail too)
            pass
    _ACTIVE.clear()


atexit.register(_stop_everything)


def pytest_configure(config):
    # `timeout`, `kill` and make send SIGTERM: turn it into KeyboardInterrupt
    # so that pytest runs the fixture finalizers (which stop our processes).
    def on_term(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt("SIGTERM")
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_term)


# ---------------------------------------------------------------------------
# attach the logs to failing tests
# ---------------------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for obj in list(_ACTIVE):
            try:
                for title, text in obj.log_sections():
                    rep.sections.append((title, text))
            except Exception as e:  # noqa: BLE001
                rep.sections.append(("log dump failed", repr(e)))


# ---------------------------------------------------------------------------
# thousands of subscribers from asyncio (test_scale.py, test_websocket_scale.py)
# ---------------------------------------------------------------------------

THREADS_PER_CHILD = 25                                  # conf/httpd.conf
SCALE_SOURCES = [f"127.0.0.{i}" for i in range(2, 6)]  # spread over 4 source addresses


@pytest.fixture
def many_fds(request):
    """RLIMIT_NOFILE raised to 8192 (or the hard limit) for one test and
    restored after it; fails the test when that leaves fewer than the test
    module's N_SUBSCRIBERS + 200 descriptors."""
    n = request.module.N_SUBSCRIBERS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(8192, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < n + 200:
        pytest.fail(f"RLIMIT_NOFILE too small for {n} connections")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class ScaleSubscriber:
    """One subscriber of a scale test, driven by asyncio.

    run(connect_sem) connects from one of SCALE_SOURCES (by idx) and, while
    it holds connect_sem, sends the subclass's request (handshake(reader))
    and reads until is_ready(); then sets .ready, reads until has_received()
    and sets .got.  An exception is kept in .error (both events are set
    then) for the test to report.  A subclass defines handshake(reader),
    read(reader) (one read, parsed into its own state), is_ready() and
    has_received()."""

    def __init__(self, idx, port, channel):
        self.idx, self.port, self.channel = idx, port, channel
        self.ready = asyncio.Event()
        self.got = asyncio.Event()
        self.error = None
        self.writer = None

    async def run(self, connect_sem):
        try:
            async with connect_sem:
                reader, self.writer = await asyncio.open_connection(
                    HOST, self.port, local_addr=(SCALE_SOURCES[self.idx % len(SCALE_SOURCES)], 0))
                await self.handshake(reader)
                while not self.is_ready():
                    await self.read(reader)
            self.ready.set()
            while not self.has_received():
                await self.read(reader)
            self.got.set()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e
            self.ready.set()
            self.got.set()

    def close(self):
        if self.writer:
            self.writer.close()


async def wait_all(events, timeout, what):
    """Until every asyncio.Event of events is set; fails the test after
    timeout seconds, saying how many of them were set."""
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), timeout)
    except asyncio.TimeoutError:
        n = sum(1 for e in events if e.is_set())
        pytest.fail(f"only {n} of {len(events)} {what} within {timeout}s")


def assert_none_failed(subs, what):
    """No ScaleSubscriber of subs has an error (the first 5 are shown)."""
    failed = [(x.idx, repr(x.error)) for x in subs if x.error]
    assert not failed, f"{len(failed)} {what} failed: {failed[:5]}"


def fan_out(stack, make_sub, n, channel, data, event, ready_timeout, ready_what,
            got_timeout, check_ready):
    """The scenario of the scale tests, in a fresh asyncio loop: make_sub(i)
    for i in range(n) makes the ScaleSubscribers, which connect (200 set up
    at once) and must all be ready within ready_timeout seconds without an
    error; check_ready(subs) then checks them.  While they are all held,
    Apache's children and their threads are counted; then data (event) is
    published to channel over HTTP, and every subscriber must receive it
    within got_timeout seconds, again without an error.  At the end every
    subscriber is closed and its task reaped.  Returns a SimpleNamespace:
    subs, children, threads, ack (the publish answer)."""
    r = types.SimpleNamespace()

    async def main():
        r.subs = [make_sub(i) for i in range(n)]
        sem = asyncio.Semaphore(200)          # connections being set up at once
        tasks = [asyncio.ensure_future(sub.run(sem)) for sub in r.subs]
        try:
            await wait_all([x.ready for x in r.subs], ready_timeout, ready_what)
            assert_none_failed(r.subs, "subscriptions")
            check_ready(r.subs)

            # all are held now: count Apache's processes and threads
            r.children = stack.apache.child_pids()
            r.threads = sum(stack.apache.thread_count(p) for p in r.children)

            loop = asyncio.get_running_loop()
            r.ack = await loop.run_in_executor(
                None, lambda: stack.publish_ok(channel, data, event))
            await wait_all([x.got for x in r.subs], got_timeout, "subscribers got the message")
            assert_none_failed(r.subs, "subscribers")
        finally:
            for x in r.subs:
                x.close()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    print(f"publish ack {r.ack}; Apache children {r.children}, {r.threads} threads in all")
    return r


def assert_no_thread_per_connection(children, threads, max_workers):
    """No thread per connection: at most max_workers / THREADS_PER_CHILD
    children, each with its fixed thread pool (fewer than 40 threads)."""
    max_children = max_workers // THREADS_PER_CHILD
    assert 1 <= len(children) <= max_children, children
    assert threads < 40 * max_children, threads


# ---------------------------------------------------------------------------
# fault injection (test_restarts.py, test_presence.py)
# ---------------------------------------------------------------------------

def apachectl(apache, action, timeout=60.0):
    """`apache2 <this Apache's args> -k <action>` (graceful, restart, ...):
    the master of this Apache only, found through its own pid file."""
    if VALGRIND:
        pytest.skip("apache2 -k needs a master process (not under valgrind: apache2 -X)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASAN_", "UBSAN_"))}
    env["LANG"] = "C"
    p = subprocess.run(apache.args() + ["-k", action], capture_output=True, text=True,
                       env=env, timeout=timeout)
    assert p.returncode == 0, f"apache2 -k {action} failed ({p.returncode}): " \
                              f"{p.stdout}{p.stderr}\n{tail(apache.error_log)}"


def _hex_addr(port):
    return f"0100007F:{port:04X}"          # 127.0.0.1 as /proc/net/tcp writes it


def server_socket_inode(server_port, client_port):
    """Inode of the server-side socket of the loopback TCP connection
    client_port -> server_port, or None."""
    local, remote = _hex_addr(server_port), _hex_addr(client_port)
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[1] == local and fields[2] == remote and fields[9] != "0":
                    return fields[9]
    except OSError:
        pass
    return None


def connection_owner(apache, sock):
    """PID of the Apache child holding the server side of the client socket
    sock (an open connection to apache), or None when none is found."""
    try:
        client_port = sock.getsockname()[1]
    except OSError:
        return None
    inode = server_socket_inode(apache.port, client_port)
    if inode is None:
        return None
    return pid_holding_socket(apache.child_pids(), {inode})


def pid_holding_socket(pids, inodes):
    """The first of pids that has a socket with one of the inodes (strings,
    as /proc/net/* write them) among its open files (/proc/<pid>/fd), or
    None.  Processes and descriptors that vanish meanwhile are skipped."""
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return pid
    return None


def kill_child(apache, pid):
    """SIGKILL one child of this Apache (by its PID, checked to be a child
    of our master) and wait until it is gone."""
    if VALGRIND:
        pytest.skip("killing a child needs a master process (not under valgrind: apache2 -X)")
    assert pid in apache.child_pids(), f"{pid} is not a child of Apache {apache.master_pid}"
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), 30, f"child {pid} to die")


def child_crashes(apache, since=0, expected=()):
    """error.log lines after offset since that report a child dying of a
    signal, except for the PIDs in expected (the ones a test killed)."""
    try:
        with open(apache.error_log, "rb") as f:
            f.seek(since)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    out = []
    for ln in text.splitlines():
        m = re.search(r"child pid (\d+) exit signal", ln)
        if m and int(m.group(1)) not in expected:
            out.append(ln)
        elif "AddressSanitizer" in ln or "double free" in ln or "corrupted" in ln:
            out.append(ln)
    return out
