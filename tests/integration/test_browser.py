"""push.js and the demo chat in a real browser: Debian's headless Chromium
(/usr/bin/chromium) driven by playwright-core from npm (tests/browser/driver.js).
playwright-core never downloads a browser of its own here.

  - each transport, forced in turn, receives every published message (history
    included, several channels, event names, Unicode, multi-line data);
  - publishing from the page: over the WebSocket, over POST /pub/ without one,
    and over POST /pub/ when the location refuses WebSocket publishing;
  - automatic fallback: WebSocket refused -> SSE; WebSocket and SSE refused ->
    long polling; everything but short polls refused -> short polling;
  - resume with no loss and no duplicate across Apache restarts (graceful and
    hard) while messages are published all the time, for every transport;
  - gap notices (trimmed history, lost history) and presence events;
  - push.mjs as an ES module; the backoff bounds; the minified+gzipped size;
  - the demo chat (conf/www): two browsers chat and see each other in the
    presence list, a third one gets the history on join (on a 375 px phone
    screen), publishing through the WebSocket or POST /pub/; screenshots are
    saved to tests/artifacts/chat.png and tests/artifacts/chat-phone.png.

Needs node (>= 20), /usr/bin/chromium and tests/browser/node_modules: the
fixture runs `npm ci` in tests/browser when node_modules is missing or stale.
"""
import gzip
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, _die_with_parent, apachectl, unique_channel, wait_until, zmq_request

BROWSER_DIR = ROOT / "tests" / "browser"
ARTIFACTS = ROOT / "tests" / "artifacts"
CLIENT_JS = ROOT / "clients" / "js" / "push.js"
CLIENT_MJS = ROOT / "clients" / "js" / "push.mjs"
CHROMIUM = os.environ.get("PUSH_CHROMIUM") or "/usr/bin/chromium"
NODE = shutil.which("node") or "/usr/bin/node"
NPM = shutil.which("npm") or "/usr/bin/npm"

TRANSPORTS = ["websocket", "sse", "longpoll", "poll"]

# /sub/ as the demo needs it, plus locations that refuse transports the way a
# server or something on the way can.  /push.js and /push.mjs are served by
# mod_push's push-client handler (conf/push.conf), which embeds
# clients/js/push.js at build time; the test pages come from tests/browser/www.
BROWSER_CONF = f"""\
<Location /sub/>
  PushWebSocketPublish on
  PushPresenceNames on
  PushLongPollTimeout 5
</Location>
# WebSocket refused (400)
<Location /nows/>
  SetHandler push-subscriber
  PushWebSocket off
  PushPresenceNames on
  PushLongPollTimeout 5
</Location>
# WebSocket refused (400) and SSE refused (403)
<Location /nows-nosse/>
  SetHandler push-subscriber
  PushWebSocket off
  PushLongPollTimeout 5
  <If "%{{HTTP_ACCEPT}} =~ /event-stream/">
    Require all denied
  </If>
</Location>
# only short polls (?poll=1) get through: WebSocket, SSE and long polls are 403
<Location /pollonly/>
  SetHandler push-subscriber
  <If "! %{{QUERY_STRING}} =~ /(^|&)poll=1(&|$)/">
    Require all denied
  </If>
</Location>
# WebSocket without publishing (PushWebSocketPublish off, the default)
<Location /ropub/>
  SetHandler push-subscriber
</Location>
Alias /test/ "{BROWSER_DIR}/www/"
<Directory "{BROWSER_DIR}/www">
  Require all granted
</Directory>
"""

# PUSH_JS_FROM_TREE=1: serve clients/js/push.js and push.mjs as plain files
# instead (to work on push.js without rebuilding the module).
if os.environ.get("PUSH_JS_FROM_TREE"):
    BROWSER_CONF += f"""\
<LocationMatch "^/push\\.m?js$">
  SetHandler None
</LocationMatch>
Alias /push.js "{CLIENT_JS}"
Alias /push.mjs "{CLIENT_MJS}"
<Directory "{CLIENT_JS.parent}">
  Require all granted
</Directory>
"""

WAIT = 20_000          # ms: bound for page-side waits (only keeps a broken build from hanging)


# ---------------------------------------------------------------------------
# node, npm packages, Chromium
# ---------------------------------------------------------------------------

def _pinned_version(pkg):
    deps = json.loads((BROWSER_DIR / "package.json").read_text())
    return (deps.get("dependencies", {}) | deps.get("devDependencies", {}))[pkg]


def _installed_version(pkg):
    try:
        return json.loads((BROWSER_DIR / "node_modules" / pkg / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def ensure_browser_tools():
    """node >= 20, Debian's chromium, and tests/browser/node_modules as pinned by
    package-lock.json (`npm ci` when missing or stale)."""
    if not os.access(NODE, os.X_OK):
        pytest.fail("node is missing: the browser tests need Node.js >= 20")
    v = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout.strip()
    if int(v.lstrip("v").split(".")[0]) < 20:
        pytest.fail(f"node {v}: playwright-core needs Node.js >= 20")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (./configure does)")
    stale = [p for p in ("playwright-core", "terser") if _installed_version(p) != _pinned_version(p)]
    if stale:
        p = subprocess.run([NPM, "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR,
                           capture_output=True, text=True, timeout=900)
        if p.returncode != 0:
            pytest.fail(f"npm ci in {BROWSER_DIR} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        stale = [p for p in ("playwright-core", "terser")
                 if _installed_version(p) != _pinned_version(p)]
        assert not stale, f"npm ci did not install {stale}"


class BrowserError(AssertionError):
    pass


class Browser:
    """tests/browser/driver.js: one Chromium, JSON commands over a pipe."""

    def __init__(self, log_path):
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([NODE, str(BROWSER_DIR / "driver.js")], cwd=BROWSER_DIR,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, env=dict(os.environ, PUSH_CHROMIUM=CHROMIUM),
                                     preexec_fn=_die_with_parent)
        self._lines = queue.Queue()
        self._ids = iter(range(1, 1 << 30))
        threading.Thread(target=self._reader, daemon=True).start()
        hello = self._next(90)
        if not hello.get("ready"):
            self.close()
            pytest.fail(f"Chromium did not start: {hello.get('error')}\n{self.stderr_tail()}")
        self.version = hello["version"]

    def _reader(self):
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _next(self, timeout):
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise BrowserError(f"the browser driver did not answer within {timeout}s\n"
                               f"{self.stderr_tail()}") from None
        if line is None:
            raise BrowserError(f"the browser driver exited\n{self.stderr_tail()}")
        return json.loads(line)

    def stderr_tail(self):
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def call(self, cmd, timeout=60, **kw):
        cid = next(self._ids)
        self.proc.stdin.write((json.dumps({"id": cid, "cmd": cmd, **kw}) + "\n").encode())
        self.proc.stdin.flush()
        while True:
            rep = self._next(timeout)
            if rep.get("id") == cid:
                break
        if not rep["ok"]:
            raise BrowserError(f"{cmd} {kw}: {rep['error']}")
        return rep["value"]

    # conveniences
    def page(self, name, url, **kw):
        return self.call("page", page=name, url=url, **kw)

    def eval(self, page, expr, timeout=60):
        return self.call("eval", page=page, expr=expr, timeout=timeout)

    def wait(self, page, expr, timeout_ms=WAIT, what=None):
        try:
            return self.call("wait", timeout=timeout_ms / 1000 + 30, page=page, expr=expr,
                             ms=timeout_ms)
        except BrowserError as e:
            logs = "\n".join(self.call("logs", page=page)[-30:])
            raise BrowserError(f"waiting for {what or expr}: {e}\npage console:\n{logs}") from None

    def close(self):
        if self.proc.poll() is None:
            try:
                self.call("quit", timeout=30)
            except Exception:  # noqa: BLE001 - stop it by its PID below
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
        self._log.close()


# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    ensure_browser_tools()
    b = Browser(tmp_path_factory.mktemp("browser") / "driver.log")
    yield b
    b.close()


@pytest.fixture(scope="module")
def bs(stack_factory):
    """A stack for the browser: broker + Apache with BROWSER_CONF."""
    s = stack_factory("browser", extra_conf=BROWSER_CONF)
    for path, src in (("/push.js", CLIENT_JS), ("/push.mjs", CLIENT_MJS)):
        r = s.request("GET", path)
        assert r.status == 200, r
        assert r.body == src.read_bytes(), \
            f"GET {path} is not {src}: the module embeds an older copy; rebuild it (make)"
    yield s
    s.stop()


_pages = iter(range(1, 1 << 30))


@pytest.fixture
def page(browser, bs):
    """A fresh test page (its own browser context) on the browser stack; closed after the test."""
    opened = []

    def open_page(path="/test/test.html", context=None, **kw):
        name = f"p{next(_pages)}"
        browser.page(name, bs.url(path), context=context or name, **kw)
        opened.append(name)
        return name

    yield open_page
    for name in opened:
        try:
            browser.call("close", page=name)
        except Exception:  # noqa: BLE001
            pass


def js(v):
    return json.dumps(v)


def start_client(browser, page, name, options, subs):
    browser.eval(page, f"T.start({js(name)}, {js(options)}, {js(subs)})")


def wait_live(browser, page, name, *channels):
    cond = " && ".join(f"T.live({js(name)}, {js(c)})" for c in channels)
    browser.wait(page, cond, what=f"{name} subscribed to {channels}")


def wait_count(browser, page, name, channel, n, timeout_ms=WAIT):
    browser.wait(page, f"T.ids({js(name)}, {js(channel)}).length >= {n}", timeout_ms,
                 what=f"{n} messages on {channel}")
    return browser.eval(page, f"T.messages({js(name)}, {js(channel)})")


def access_log(stack):
    try:
        return (stack.apache.rundir / "access.log").read_text(errors="replace")
    except OSError:
        return ""


# ---------------------------------------------------------------------------
# every transport, forced, gets every message
# ---------------------------------------------------------------------------

PAYLOADS = [
    ("plain text", None),
    ("héllo wörld ✓ — 日本語 🚀", "greeting"),
    ("first line\nsecond line\n\nfourth line", None),
    ('{"from":"alice","text":"json inside"}', "chat"),
    ("", None),
    ("x" * 5000, "big"),
    ("  leading and trailing spaces  ", None),
    ("<b>not html</b> & ampersands", "escape"),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_each_transport_receives_every_message(browser, bs, page, transport):
    a, b = unique_channel("bra"), unique_channel("brb")
    history = [bs.publish_ok(a, f"history {i}")["id"] for i in range(3)]
    assert history == [1, 2, 3]
    p = page()
    start_client(browser, p, "c", {"transports": [transport], "pollInterval": 200},
                 [{"channel": a, "opts": {"lastId": 0}}, {"channel": b}])
    wait_live(browser, p, "c", a, b)

    expected = {a: [(i + 1, f"history {i}", None) for i in range(3)], b: []}
    for i in range(24):
        ch = a if i % 2 else b
        data, event = PAYLOADS[i % len(PAYLOADS)]
        if i % 3 == 0:                   # over ZeroMQ, straight to the broker
            rep = bs.broker.pub(ch.encode(), data.encode(), event.encode() if event else None)
            assert rep[0] == b"OK", rep
            mid = int(rep[1])
        else:                            # over HTTP
            mid = bs.publish_ok(ch, data, event)["id"]
        expected[ch].append((mid, data, event))

    for ch in (a, b):
        got = wait_count(browser, p, "c", ch, len(expected[ch]))
        assert [(m["id"], m["data"], m["event"]) for m in got] == expected[ch], \
            f"{transport}: messages of {ch} differ"
        for m in got:
            assert m["channel"] == ch
            if transport == "sse":
                assert m["time"] is None
            else:
                assert isinstance(m["time"], int) and m["time"] > 1_600_000_000_000_000

    assert browser.eval(p, "T.clients.c.transport") == transport
    assert [e["transport"] for e in browser.eval(p, "T.events('c', 'transport')")] == [transport]
    sockets = browser.eval(p, "T.sockets")
    if transport == "websocket":
        assert len(sockets) == 1, f"two channels must share one WebSocket: {sockets}"
        assert "last_id=0" in sockets[0] or b in sockets[0]
    else:
        assert sockets == []
        urls = [r["url"] for r in browser.eval(p, "T.requests")]
        for ch in (a, b):
            assert any(f"/sub/{ch}" in u for u in urls), urls
    # nothing more arrives later (no duplicates after a while)
    time.sleep(0.5)
    for ch in (a, b):
        assert browser.eval(p, f"T.ids('c', {js(ch)})") == [m[0] for m in expected[ch]]


def test_unsubscribe_stops_delivery(browser, bs, page):
    a, b = unique_channel("una"), unique_channel("unb")
    p = page()
    start_client(browser, p, "c", {}, [{"channel": a}, {"channel": b}])
    wait_live(browser, p, "c", a, b)
    bs.publish_ok(a, "a1")
    bs.publish_ok(b, "b1")
    wait_count(browser, p, "c", b, 1)
    assert browser.eval(p, f"T.clients.c.unsubscribe({js(a)})") is True
    wait_count(browser, p, "c", a, 1)
    time.sleep(0.3)                       # the unsubscribe reaches the server
    bs.publish_ok(a, "a2")
    bs.publish_ok(b, "b2")
    wait_count(browser, p, "c", b, 2)
    time.sleep(0.3)
    assert browser.eval(p, f"T.ids('c', {js(a)})") == [1]
    assert len(browser.eval(p, "T.sockets")) == 1


# ---------------------------------------------------------------------------
# publishing from the page
# ---------------------------------------------------------------------------

def _pub_requests(browser, p):
    return [r for r in browser.eval(p, "T.requests") if r["method"] == "POST"]


def test_publish_over_websocket(browser, bs, page):
    ch = unique_channel("pubws")
    p = page()
    start_client(browser, p, "c", {}, [{"channel": ch}])
    wait_live(browser, p, "c", ch)
    r1 = browser.eval(p, f"T.publish('c', {js(ch)}, 'over the socket', {{event: 'note'}})")
    r2 = browser.eval(p, f"T.publish('c', {js(ch)}, {{structured: [1, 2]}})")
    assert r1 == {"channel": ch, "id": 1, "subscribers": 1}, r1
    assert r2["id"] == 2, r2
    got = wait_count(browser, p, "c", ch, 2)
    assert [(m["data"], m["event"]) for m in got] == [("over the socket", "note"),
                                                      ('{"structured":[1,2]}', None)]
    assert _pub_requests(browser, p) == []
    assert f"POST /pub/{ch}" not in access_log(bs)
    # errors come back as rejections with the server's code
    bad = browser.eval(p, f"T.publish('c', {js(ch)}, 'x', {{event: 'has space'}})")
    assert bad["error"]["code"] == "bad_request", bad
    bad = browser.eval(p, "T.publish('c', 'bad channel!', 'x')")
    assert "invalid channel" in bad["error"]["message"], bad


def test_publish_over_http_without_websocket(browser, bs, page):
    ch = unique_channel("pubhttp")
    p = page()
    start_client(browser, p, "c", {"transports": ["sse"]}, [{"channel": ch}])
    wait_live(browser, p, "c", ch)
    r = browser.eval(p, f"T.publish('c', {js(ch)}, 'over POST', {{event: 'note'}})")
    assert r == {"channel": ch, "id": 1, "subscribers": 1}, r
    got = wait_count(browser, p, "c", ch, 1)
    assert (got[0]["data"], got[0]["event"]) == ("over POST", "note")
    assert [q["url"] for q in _pub_requests(browser, p)] == [bs.url(f"/pub/{ch}")]
    assert f"POST /pub/{ch} HTTP/1.1\" 200" in access_log(bs)


def test_publish_falls_back_to_http_when_socket_publishing_is_off(browser, bs, page):
    ch = unique_channel("ropub")
    p = page()
    start_client(browser, p, "c", {"base": "/ropub/"}, [{"channel": ch}])
    wait_live(browser, p, "c", ch)
    assert browser.eval(p, "T.clients.c.transport") == "websocket"
    r1 = browser.eval(p, f"T.publish('c', {js(ch)}, 'one')")
    r2 = browser.eval(p, f"T.publish('c', {js(ch)}, 'two')")
    assert (r1["id"], r2["id"]) == (1, 2), (r1, r2)
    got = wait_count(browser, p, "c", ch, 2)
    assert [m["data"] for m in got] == ["one", "two"]
    # the refused socket publish was retried over HTTP, the next went there directly
    assert len(_pub_requests(browser, p)) == 2
    assert browser.eval(p, "T.clients.c.transport") == "websocket"


# ---------------------------------------------------------------------------
# fallback
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("base,want,path", [
    ("/nows/", "sse", ["websocket", "sse"]),
    ("/nows-nosse/", "longpoll", ["websocket", "sse", "longpoll"]),
    ("/pollonly/", "poll", ["websocket", "sse", "longpoll", "poll"]),
], ids=["websocket-refused", "websocket-and-sse-refused", "only-short-polls"])
def test_fallback(browser, bs, page, base, want, path):
    a, b = unique_channel("fba"), unique_channel("fbb")
    bs.publish_ok(a, "before")
    p = page()
    start_client(browser, p, "c", {"base": base, "pollInterval": 200},
                 [{"channel": a, "opts": {"lastId": 0}}, {"channel": b}])
    browser.wait(p, f"T.clients.c.transport === {js(want)}", what=f"the fallback to {want}")
    wait_live(browser, p, "c", a, b)
    events = browser.eval(p, "T.events('c', 'transport')")
    assert [e["transport"] for e in events] == path, events
    assert all(e["reason"] and "refused" in e["reason"] for e in events[1:]), events
    assert browser.eval(p, "T.clients.c.transport") == want
    for i in range(5):
        bs.publish_ok(a, f"a{i}")
        bs.publish_ok(b, f"b{i}")
    got_a = wait_count(browser, p, "c", a, 6)
    got_b = wait_count(browser, p, "c", b, 5)
    assert [m["data"] for m in got_a] == ["before"] + [f"a{i}" for i in range(5)]
    assert [m["id"] for m in got_b] == [1, 2, 3, 4, 5]
    # publishing still works: over POST, since no socket is open
    r = browser.eval(p, f"T.publish('c', {js(b)}, 'from the page')")
    assert r["id"] == 6, r
    wait_count(browser, p, "c", b, 6)


# ---------------------------------------------------------------------------
# resume across Apache restarts
# ---------------------------------------------------------------------------

class Publisher(threading.Thread):
    """Publishes n messages over ZeroMQ (the broker keeps running while
    Apache restarts), one every interval seconds, to the channels in turn."""

    def __init__(self, endpoint, channels, n, interval):
        super().__init__(daemon=True)
        self.endpoint, self.channels, self.n, self.interval = endpoint, channels, n, interval
        self.ids = {ch: [] for ch in channels}
        self.count = 0
        self.error = None

    def run(self):
        try:
            for i in range(self.n):
                ch = self.channels[i % len(self.channels)]
                k = len(self.ids[ch]) + 1
                rep = zmq_request(self.endpoint, [b"PUB", ch.encode(), f"m{k}".encode()])
                assert rep[0] == b"OK", rep
                self.ids[ch].append(int(rep[1]))
                self.count += 1
                time.sleep(self.interval)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e


@pytest.mark.parametrize("transport,action", [
    ("websocket", "graceful"), ("sse", "graceful"), ("longpoll", "graceful"), ("poll", "graceful"),
    ("websocket", "restart"), ("sse", "restart"), ("longpoll", "restart"),
])
def test_resume_across_apache_restart(browser, bs, page, transport, action):
    """Two channels (over WebSocket: the URL's one and one subscribed with a
    message), 150 messages each published during the restart: every id
    arrives exactly once, in order."""
    chans = [unique_channel(f"resume-{transport}"), unique_channel(f"resume2-{transport}")]
    n = 300
    per = n // len(chans)
    p = page()
    start_client(browser, p, "c", {"transports": [transport], "pollInterval": 100},
                 [{"channel": ch} for ch in chans])
    wait_live(browser, p, "c", *chans)
    pub = Publisher(bs.broker.api, chans, n, 0.01)
    pub.start()
    try:
        wait_until(lambda: pub.count >= n // 4, 30, "a quarter of the messages published")
        offset = bs.apache.log_offset()
        apachectl(bs.apache, action)
        bs.apache.wait_ready(since=offset)
    finally:
        pub.join(60)
    assert pub.error is None, pub.error
    assert all(pub.ids[ch] == list(range(1, per + 1)) for ch in chans), pub.ids
    try:
        for ch in chans:
            wait_count(browser, p, "c", ch, per, timeout_ms=30_000)
        time.sleep(0.5)               # anything more would be a duplicate
    except BrowserError:
        pass                          # the assertion below says what is missing
    events = [(e["type"], e.get("transport"), e.get("channel")) for e in browser.eval(p, "T.events('c')")
              if e["type"] in ("open", "close", "transport", "subscribed")]
    for ch in chans:
        ids = browser.eval(p, f"T.ids('c', {js(ch)})")
        missing = sorted(set(range(1, per + 1)) - set(ids))
        dups = len(ids) - len(set(ids))
        assert not missing and not dups and ids == list(range(1, per + 1)), \
            f"{transport}/{action} {ch}: missing {missing[:20]}, {dups} duplicates; events {events}"
        data = [m["data"] for m in browser.eval(p, f"T.messages('c', {js(ch)})")]
        assert data == [f"m{i}" for i in range(1, per + 1)]
    assert browser.eval(p, "T.clients.c.transport") == transport
    if transport in ("websocket", "sse"):
        # the restart ended the connections and the client came back (polls
        # need not notice: Apache answers a waiting long poll when it stops)
        for ch in chans:
            opens = [e for e in events if e[0] == "subscribed" and e[2] == ch]
            assert len(opens) >= 2, f"no reconnection of {ch} seen: {events}"
    if transport == "websocket":
        assert len(browser.eval(p, "T.sockets")) >= 2


@pytest.fixture(scope="module")
def outage_stack(stack_factory):
    s = stack_factory("browser-outage", extra_conf=BROWSER_CONF)
    yield s
    s.stop()


@pytest.mark.parametrize("transport", ["websocket", "sse"])
def test_broker_outage_is_not_a_refusal(browser, outage_stack, page, transport):
    """While the broker is down every subscribe is answered 503: the client
    keeps its transport and comes back; the restarted broker (memory only)
    starts the ids again, which the client learns from a "lost" gap notice."""
    s = outage_stack
    ch = unique_channel(f"outage-{transport}")
    name = f"p{next(_pages)}"
    browser.page(name, s.url("/test/test.html"))
    try:
        transports = TRANSPORTS[TRANSPORTS.index(transport):]
        start_client(browser, name, "c", {"transports": transports, "maxDelay": 1000},
                     [{"channel": ch}])
        wait_live(browser, name, "c", ch)
        for i in range(3):
            s.publish_ok(ch, f"before {i}")
        wait_count(browser, name, "c", ch, 3)
        s.broker.stop()
        try:
            time.sleep(4)             # several reconnection attempts meet a 503
            assert s.request("GET", f"/sub/{ch}?poll=1").status == 503
        finally:
            offset = s.apache.log_offset()
            s.broker.start()
            s.apache.wait_ready(since=offset)
        wait_live(browser, name, "c", ch)
        s.publish_ok(ch, "after")     # id 1 again: a new broker
        got = wait_count(browser, name, "c", ch, 4)
        assert [(m["id"], m["data"]) for m in got] == \
            [(1, "before 0"), (2, "before 1"), (3, "before 2"), (1, "after")]
        events = browser.eval(name, "T.events('c', 'transport')")
        assert [e["transport"] for e in events] == [transport], events
        gaps = browser.eval(name, "T.events('c', 'gap')")
        assert gaps and gaps[0]["reason"] == "lost" and gaps[0]["after"] == 3, gaps
    finally:
        browser.call("close", page=name)


def test_silent_websocket_is_given_up(browser, bs, page):
    """A socket that goes silent (every Apache child frozen with SIGSTOP: no
    close, no error, just nothing) is given up after the heartbeat; the
    client comes back once the server answers again, without a loss."""
    ch = unique_channel("silent")
    p = page()
    start_client(browser, p, "c", {"pingInterval": 250}, [{"channel": ch}])
    wait_live(browser, p, "c", ch)
    bs.publish_ok(ch, "one")
    wait_count(browser, p, "c", ch, 1)
    time.sleep(1)                     # a few heartbeats go by without harm
    assert len(browser.eval(p, "T.sockets")) == 1
    kids = bs.apache.child_pids()
    for pid in kids:
        os.kill(pid, signal.SIGSTOP)
    try:
        browser.wait(p, "T.events('c', 'close').some(e => e.transport === 'websocket' && e.code === 4000)",
                     5000, what="the silent socket given up")
        bs.broker.pub(ch.encode(), b"two")
    finally:
        for pid in kids:
            os.kill(pid, signal.SIGCONT)
    got = wait_count(browser, p, "c", ch, 2)
    assert [(m["id"], m["data"]) for m in got] == [(1, "one"), (2, "two")]
    wait_live(browser, p, "c", ch)
    assert browser.eval(p, "T.clients.c.transport") == "websocket"
    assert len(browser.eval(p, "T.sockets")) >= 2


# ---------------------------------------------------------------------------
# gaps, presence
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_history(stack_factory):
    """A broker that keeps 5 messages per channel."""
    s = stack_factory("browser-gap", extra_conf=BROWSER_CONF, broker_args=("--history-max", "5"))
    yield s
    s.stop()


def test_gap_notices(browser, small_history, page):
    s = small_history
    ch = unique_channel("gap")
    for i in range(12):
        s.publish_ok(ch, f"g{i + 1}")
    name = f"p{next(_pages)}"
    browser.page(name, s.url("/test/test.html"))
    try:
        for t in TRANSPORTS:
            start_client(browser, name, t, {"transports": [t], "pollInterval": 200},
                         [{"channel": ch, "opts": {"lastId": 2}}])
            start_client(browser, name, t + "-lost", {"transports": [t], "pollInterval": 200},
                         [{"channel": ch, "opts": {"lastId": 100}}])
        for t in TRANSPORTS:
            for client, after, reason in ((t, 2, "trimmed"), (t + "-lost", 100, "lost")):
                got = wait_count(browser, name, client, ch, 5)
                assert [m["id"] for m in got] == [8, 9, 10, 11, 12], (client, got)
                assert [m["data"] for m in got] == [f"g{i}" for i in range(8, 13)]
                gaps = browser.eval(name, f"T.events({js(client)}, 'gap')")
                assert len(gaps) >= 1, client
                g = gaps[0]
                assert (g["channel"], g["after"], g["oldest_id"], g["last_id"], g["reason"]) == \
                       (ch, after, 8, 12, reason), (client, g)
        # live messages after the gap go on from the new cursor
        s.publish_ok(ch, "g13")
        for t in TRANSPORTS:
            for client in (t, t + "-lost"):
                got = wait_count(browser, name, client, ch, 6)
                assert [m["id"] for m in got] == [8, 9, 10, 11, 12, 13], (client, got)
    finally:
        browser.call("close", page=name)


def test_presence_events_and_list(browser, bs, page):
    ch = unique_channel("pres")
    pa = page()
    start_client(browser, pa, "alice", {"name": "alice"}, [{"channel": ch, "opts": {"presence": True}}])
    wait_live(browser, pa, "alice", ch)
    browser.wait(pa, "(T.clients.alice._subs[%s].members || []).map(m => m.identity).join() === 'alice'"
                 % js(ch), what="alice in her own presence list")

    pb = page()                     # bob over SSE (an event stream is present too)
    start_client(browser, pb, "bob", {"name": "bob", "transports": ["sse"]},
                 [{"channel": ch, "opts": {"presence": True}}])
    wait_live(browser, pb, "bob", ch)
    browser.wait(pa, "T.events('alice', 'join').some(e => e.identity === 'bob')", what="bob's join")
    members = "(T.clients.%s._subs[%s].members || []).map(m => m.identity).join()"
    browser.wait(pa, members % ("alice", js(ch)) + " === 'alice,bob'", what="alice sees alice,bob")
    browser.wait(pb, members % ("bob", js(ch)) + " === 'alice,bob'", what="bob sees alice,bob")
    listed = browser.eval(pa, f"T.presence('alice', {js(ch)})")
    assert [m["identity"] for m in listed["members"]] == ["alice", "bob"], listed
    join = [e for e in browser.eval(pa, "T.events('alice', 'join')") if e["identity"] == "bob"][0]
    assert join["channel"] == ch and join["connections"] == 1

    browser.eval(pb, "T.clients.bob.close(), true")
    browser.wait(pa, "T.events('alice', 'leave').some(e => e.identity === 'bob')", what="bob's leave")
    browser.wait(pa, members % ("alice", js(ch)) + " === 'alice'", what="bob gone from the list")


# ---------------------------------------------------------------------------
# the module, the backoff, the size
# ---------------------------------------------------------------------------

def test_es_module(browser, bs, page):
    ch = unique_channel("mjs")
    bs.publish_ok(ch, "before")
    p = page(f"/test/module.html#{ch}")
    browser.wait(p, "window.M && M.got.length === 1", what="the module page got the history")
    assert browser.eval(p, "M.sameDefault && M.isFunction") is True
    bs.publish_ok(ch, "after")
    browser.wait(p, "M.got.length === 2", what="a live message on the module page")
    assert browser.eval(p, "M.got.map(m => m.data)") == ["before", "after"]
    assert browser.eval(p, "M.client.transport") == "websocket"


@pytest.mark.skipif(bool(os.environ.get("PUSH_JS_FROM_TREE")), reason="push.js served as a file")
def test_push_js_is_served_with_caching_headers(bs):
    for path in ("/push.js", "/push.mjs"):
        r = bs.request("GET", path)
        assert r.status == 200, r
        assert r.header("Content-Type").startswith("text/javascript"), r.header("Content-Type")
        etag, cc = r.header("ETag"), r.header("Cache-Control") or ""
        assert etag and "max-age=" in cc, (etag, cc)
        r2 = bs.request("GET", path, headers={"If-None-Match": etag})
        assert r2.status == 304 and r2.body == b"", r2


def test_backoff_is_capped_full_jitter(browser, bs, page):
    p = page()
    res = browser.eval(p, """(() => {
        const out = [];
        for (let n = 0; n < 12; n++) {
            const cap = Math.min(15000, 500 * 2 ** n);
            let lo = Infinity, hi = 0;
            for (let i = 0; i < 2000; i++) {
                const d = PushClient.backoff(n, 500, 15000);
                lo = Math.min(lo, d); hi = Math.max(hi, d);
            }
            out.push([cap, lo, hi]);
        }
        return out; })()""")
    for cap, lo, hi in res:
        assert 0 <= lo < cap * 0.05 and cap * 0.95 < hi <= cap, (cap, lo, hi)
    assert res[-1][0] == 15000


def test_push_js_size_minified_gzipped(browser, bs):
    terser = BROWSER_DIR / "node_modules" / ".bin" / "terser"
    p = subprocess.run([str(terser), str(CLIENT_JS), "--compress", "--mangle"],
                       capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    minified = p.stdout
    gz = gzip.compress(minified, 9)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "push.min.js").write_bytes(minified)
    print(f"push.js: {CLIENT_JS.stat().st_size} bytes, minified {len(minified)}, "
          f"minified+gzip -9 {len(gz)}")
    assert len(gz) < 8 * 1024, len(gz)
    # the module entry holds no logic of its own
    assert len(CLIENT_MJS.read_text()) < 600


# ---------------------------------------------------------------------------
# the demo chat (conf/www/index.html)
# ---------------------------------------------------------------------------

def chat_login(browser, p, nick):
    browser.wait(p, "!!document.querySelector('#nick-dialog[open]')", what="the nickname dialog")
    browser.call("fill", page=p, selector="#nick-input", text=nick)
    browser.call("press", page=p, selector="#nick-input", key="Enter")
    browser.wait(p, "window.chat && chat.sub && chat.sub.live", what=f"{nick} in the room")


def chat_people(browser, p):
    return browser.eval(p, "[...document.querySelectorAll('#people li')].map(li => li.dataset.name)")


def chat_lines(browser, p):
    return browser.eval(p, """[...document.querySelectorAll('#messages .msg')].map(
        li => [li.querySelector('.who').textContent, li.querySelector('.text').textContent])""")


def chat_say(browser, p, text):
    browser.call("fill", page=p, selector="#compose-input", text=text)
    browser.call("press", page=p, selector="#compose-input", key="Enter")


def test_chat_two_browsers(browser, bs, page):
    room = "lobby"                      # the demo's default room (this stack is ours alone)
    before = access_log(bs).count("POST /pub/")
    alice = page(f"/#{room}")
    chat_login(browser, alice, "alice")
    bob = page(f"/#{room}")
    chat_login(browser, bob, "bob")
    for p in (alice, bob):
        assert browser.eval(p, "chat.client.transport") == "websocket"
        browser.wait(p, "[...document.querySelectorAll('#people li')].map(li => li.dataset.name)"
                        ".join() === 'alice,bob'", what="alice and bob in the presence list")

    chat_say(browser, alice, "Hi Bob! Welcome to the lobby.")
    browser.wait(bob, "document.querySelectorAll('#messages .msg').length === 1", what="bob gets it")
    chat_say(browser, bob, "Hello Alice <3 — how is the <b>push</b> going?")
    for p in (alice, bob):
        browser.wait(p, "document.querySelectorAll('#messages .msg').length === 2", what="both lines")
        assert chat_lines(browser, p) == [["alice", "Hi Bob! Welcome to the lobby."],
                                          ["bob", "Hello Alice <3 — how is the <b>push</b> going?"]]
    assert browser.eval(alice, "document.querySelectorAll('#messages .msg.mine').length") == 1
    # the page published over the WebSocket, not over POST /pub/
    assert access_log(bs).count("POST /pub/") == before

    # a plain-text message from a server-side publisher shows up too
    bs.publish_ok(room, "deploy finished")
    browser.wait(alice, "document.querySelectorAll('#messages .msg').length === 3", what="server line")

    # a third person, on a phone, gets the history on join
    carol = page(f"/#{room}", viewport={"width": 375, "height": 740}, mobile=True)
    chat_login(browser, carol, "carol")
    browser.wait(carol, "document.querySelectorAll('#messages .msg').length === 3", what="history")
    assert chat_lines(browser, carol)[:2] == chat_lines(browser, alice)[:2]
    browser.wait(alice, "[...document.querySelectorAll('#people li')].length === 3", what="3 present")
    chat_say(browser, carol, "Just joined from my phone, the page fits nicely.")
    for p in (alice, bob, carol):
        browser.wait(p, "document.querySelectorAll('#messages .msg').length === 4", what="carol's line")
    # fits a 375 px screen: no horizontal scrolling
    assert browser.eval(carol, "document.documentElement.scrollWidth <= window.innerWidth") is True

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert browser.call("screenshot", page=alice, path=str(ARTIFACTS / "chat.png")) > 10_000
    assert browser.call("screenshot", page=carol, path=str(ARTIFACTS / "chat-phone.png")) > 10_000

    # bob leaves: the others see it
    browser.call("close", page=bob)
    browser.wait(alice, "[...document.querySelectorAll('#people li')].map(li => li.dataset.name)"
                        ".join() === 'alice,carol'", what="bob gone from alice's list")


def test_chat_rooms_are_channels(browser, bs, page):
    lobby, other = unique_channel("lobby"), unique_channel("side")
    alice = page(f"/#{lobby}")
    chat_login(browser, alice, "alice")
    bob = page(f"/#{lobby}")
    chat_login(browser, bob, "bob")
    # alice switches rooms through the room field
    browser.call("fill", page=alice, selector="#room-input", text=other)
    browser.call("press", page=alice, selector="#room-input", key="Enter")
    browser.wait(alice, f"chat.room === {js(other)} && chat.sub.live", what="alice in the other room")
    chat_say(browser, alice, "only in the side room")
    browser.wait(alice, "document.querySelectorAll('#messages .msg').length === 1", what="own line")
    assert bs.poll(other, cursor=0).json()["messages"][0]["data"] == \
        json.dumps({"from": "alice", "text": "only in the side room"}, separators=(",", ":"))
    time.sleep(0.3)
    assert browser.eval(bob, "document.querySelectorAll('#messages .msg').length") == 0
    browser.wait(bob, "[...document.querySelectorAll('#people li')].map(li => li.dataset.name)"
                      ".join() === 'bob'", what="alice left the lobby")
    assert browser.eval(alice, "location.hash") == f"#{other}"


def test_chat_publishes_over_http_without_websocket(browser, bs, page):
    room = unique_channel("room-http")
    p = page(f"/?transport=sse#{room}")
    chat_login(browser, p, "Dave Ö+1")             # any UTF-8 name, sent as ?name=
    assert browser.eval(p, "chat.client.transport") == "sse"
    browser.wait(p, "[...document.querySelectorAll('#people li')].map(li => li.dataset.name)"
                    ".join() === 'Dave Ö+1'", what="present over SSE")
    chat_say(browser, p, "sent with POST")
    browser.wait(p, "document.querySelectorAll('#messages .msg').length === 1", what="own line")
    assert chat_lines(browser, p) == [["Dave Ö+1", "sent with POST"]]
    assert f"POST /pub/{room} HTTP/1.1\" 200" in access_log(bs)
