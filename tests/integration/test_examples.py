"""End-to-end tests of the publishing examples served by the same private
Apache as the subscribers: examples/php/index.php (php-cgi + php-zmq) and
examples/cgi/publish.cgi (POSIX sh + pushctl), wired by
examples/apache-examples.conf.  A Server-Sent Events subscriber on
/sub/<channel> must receive exactly what the page and the script published.

Run:  /usr/bin/python3 -m pytest -v tests/integration/test_examples.py

Needs (the tests fail, not skip, when they are missing): the built module,
broker and pushctl (make), Debian's php-cgi and php-zmq.
"""
import http.client
import os
import re
import shutil
import signal
import tempfile
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import (HOST, PUSHCTL, ROOT, Apache, Broker, Stack, pid_alive, pid_holding_socket,
                      unique_channel, zmq_request)

EXAMPLES_CONF = ROOT / "examples" / "apache-examples.conf"
PHP_URL = "/examples/php/"
CGI_URL = "/examples/cgi/publish.cgi"
PHP_CGI = "/usr/lib/cgi-bin/php"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

# What the examples must carry byte for byte: HTML and URL specials, a line
# break (SSE splits the data into data: lines; the client joins them with \n),
# non-ASCII text, shell metacharacters and backslash escapes.
TRICKY = ('héllo <b>"wörld"</b> & a+b=c 100% ; $(id) `id` \\c \\0101 \\n\n'
          "second line ✓")


class ExamplesApache(Apache):
    """The private Apache of conftest, plus mod_cgid's daemon: that process is
    a child of the master too, but it never links to the broker, so it is
    kept out of child_pids() (which wait_ready() expects to link) and waited
    for separately when stopping."""

    def __init__(self, *a, cgid_sock, **kw):
        super().__init__(*a, **kw)
        self.cgid_sock = cgid_sock

    def cgid_pid(self):
        # mod_cgid appends ".<pid of the master>" to the ScriptSock path
        sock = re.compile(re.escape(str(self.cgid_sock)) + r"(\.\d+)?")
        inodes = set()
        try:
            with open("/proc/net/unix") as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if len(parts) >= 8 and sock.fullmatch(parts[7]):
                        inodes.add(parts[6])
        except OSError:
            return None
        if not inodes:
            return None
        return pid_holding_socket(super().child_pids(), inodes)

    def child_pids(self):
        pids = super().child_pids()
        cgid = self.cgid_pid()
        return [p for p in pids if p != cgid]

    def stop(self, timeout=30.0):
        cgid = self.cgid_pid() if self.master_pid else None
        super().stop(timeout)
        if cgid:
            deadline = time.monotonic() + timeout
            while pid_alive(cgid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(cgid):
                os.kill(cgid, signal.SIGKILL)


def urlencode(fields):
    return urllib.parse.urlencode(fields, quote_via=urllib.parse.quote)


@pytest.fixture(scope="module")
def ex(tmp_path_factory):
    if not (os.path.isfile(PHP_CGI) and os.access(PHP_CGI, os.X_OK)):
        pytest.fail(f"{PHP_CGI} is missing: apt-get install -y php-cgi php-zmq")
    if not (PUSHCTL.is_file() and os.access(PUSHCTL, os.X_OK)):
        pytest.fail(f"{PUSHCTL} is missing: build it first (make)")
    for script in (ROOT / "examples" / "cgi" / "publish.cgi",):
        if not os.access(script, os.X_OK):
            pytest.fail(f"{script} is not executable (chmod 755)")
    base = tmp_path_factory.mktemp("examples")
    # The children (User daemon) connect to mod_cgid's socket, and pytest's
    # base directory is 0700: the socket lives in a directory of its own.
    sockdir = Path(tempfile.mkdtemp(prefix="push-cgid-", dir="/tmp"))
    sockdir.chmod(0o755)
    broker = Broker(base / "broker", name="examples-broker")
    extra = (f"Define PUSH_API {broker.api}\n"
             f"Define PUSHCTL {PUSHCTL}\n"
             f"Define PUSH_CGID_SOCK {sockdir / 'cgid.sock'}\n"
             f'Include "{EXAMPLES_CONF}"\n')
    apache = ExamplesApache(base / "apache", broker.link, name="examples", extra_conf=extra,
                            cgid_sock=sockdir / "cgid.sock")
    stack = Stack(broker, apache)
    try:
        stack.start()
        yield stack
    finally:
        try:
            stack.stop()
        finally:
            shutil.rmtree(sockdir, ignore_errors=True)


def php_post(ex, fields=None, body=None):
    return ex.request("POST", PHP_URL, body if body is not None else urlencode(fields), FORM)


def php_published(r):
    """(id, subscribers) from the result of a successful PHP publish."""
    text = r.body.decode("utf-8")
    assert r.status == 200, r
    m = re.search(r'id="pub-id">(\d+)<.*?id="pub-subscribers">(\d+)<', text, re.S)
    assert m, text
    return int(m.group(1)), int(m.group(2))


def php_error(r):
    text = r.body.decode("utf-8")
    m = re.search(r'<p class="error" id="error">(.*?)</p>', text, re.S)
    assert m, text
    assert 'id="pub-id"' not in text
    return m.group(1)


def cgi_post(ex, fields=None, body=None, headers=FORM):
    return ex.request("POST", CGI_URL, body if body is not None else urlencode(fields), headers)


def cgi_get(ex, fields):
    return ex.request("GET", f"{CGI_URL}?{urlencode(fields)}")


def history(ex, channel):
    """[(id, data bytes)] of the channel, from the broker."""
    rep = zmq_request(ex.broker.api, [b"HISTORY", channel.encode(), b"0"])
    assert rep[0] == b"OK", rep
    n = int(rep[2])
    return [(int(rep[3 + 4 * i]), rep[5 + 4 * i]) for i in range(n)]


# ---------------------------------------------------------------------------


def test_php_page_get_shows_the_form(ex):
    r = ex.request("GET", PHP_URL)
    assert r.status == 200, r
    assert r.header("Content-Type").startswith("text/html"), r.headers
    text = r.body.decode("utf-8")
    assert re.search(r'<form[^>]*method="post"', text), text
    assert 'name="channel"' in text and 'name="message"' in text
    assert 'id="pub-id"' not in text and 'id="error"' not in text
    # /examples/php redirects to the directory, whose index is the page
    assert ex.request("GET", "/examples/php").status == 301


def test_php_and_cgi_publish_reach_the_sse_subscriber(ex):
    ch = unique_channel("ex")
    with ex.subscribe(ch) as sub:
        # the PHP page (form POST, php-zmq)
        r = php_post(ex, {"channel": ch, "message": TRICKY})
        first, subs = php_published(r)
        assert first == 1 and subs >= 0
        ev = sub.next_event()
        assert (ev.int_id, ev.data) == (first, TRICKY)
        # the echoed message is escaped HTML, never markup
        text = r.body.decode("utf-8")
        assert "&lt;b&gt;&quot;wörld&quot;&lt;/b&gt; &amp; a+b=c" in text
        assert "<b>" not in text

        # the CGI script, POST (pushctl)
        msg = TRICKY + " (cgi post)"
        r = cgi_post(ex, {"channel": ch, "message": msg})
        assert r.status == 200, r
        assert r.header("Content-Type") == "application/json"
        j = r.json()
        assert j["channel"] == ch and j["id"] == first + 1 and j["subscribers"] >= 0, j
        ev = sub.next_event()
        assert (ev.int_id, ev.data) == (first + 1, msg)

        # the CGI script, GET
        r = cgi_get(ex, {"channel": ch, "message": "from a GET ✓"})
        assert r.status == 200, r
        assert r.json()["id"] == first + 2
        ev = sub.next_event()
        assert (ev.int_id, ev.data) == (first + 2, "from a GET ✓")

        # bad input: errors, and nothing published
        for bad in ("bad channel", "", "x" * 129, "a/b", "é", "ok\n", "ok\x00x"):
            r = php_post(ex, {"channel": bad, "message": "must not be published"})
            assert r.status == 400, (bad, r)
            assert "invalid channel name" in php_error(r)
            r = cgi_post(ex, {"channel": bad, "message": "must not be published"})
            assert r.status == 400, (bad, r)
            assert r.json()["error"] == "bad_channel"
            r = cgi_get(ex, {"channel": bad, "message": "must not be published"})
            assert r.status == 400, (bad, r)
        r = php_post(ex, body=urlencode({"message": "no channel"}))
        assert r.status == 400 and "invalid channel name" in php_error(r)
        r = php_post(ex, body=urlencode({"channel": ch}))
        assert r.status == 400 and "missing field: message" in php_error(r)
        for body in (urlencode({"message": "no channel"}), urlencode({"channel": ch}),
                     f"channel={ch}&message=%zz", f"channel={ch}&message=50%",
                     f"channel={ch}&message=raw\x01byte"):
            r = cgi_post(ex, body=body)
            assert r.status == 400, (body, r)
            assert r.json()["error"] in ("bad_channel", "bad_request"), r

        # the next publish gets the next id: nothing was published in between
        r = cgi_get(ex, {"channel": ch, "message": "after the errors"})
        assert r.status == 200 and r.json()["id"] == first + 3, r
        ev = sub.next_event()
        assert (ev.int_id, ev.data) == (first + 3, "after the errors")
        r = php_post(ex, {"channel": ch, "message": "php again"})
        assert php_published(r)[0] == first + 4
        ev = sub.next_event()
        assert (ev.int_id, ev.data) == (first + 4, "php again")

    assert [i for i, _ in history(ex, ch)] == [1, 2, 3, 4, 5]


def test_bytes_are_kept_exactly(ex):
    """Trailing newlines, NUL, CR and backslash sequences reach the broker
    unchanged (the shell script never holds the message in a variable)."""
    ch = unique_channel("exb")
    cgi_msg = "a\\c\\0101\r\nb\x00c\n\n"
    r = cgi_post(ex, {"channel": ch, "message": cgi_msg})
    assert r.status == 200 and r.json()["id"] == 1, r
    php_msg = "p\\0\x00q\n\n"
    r = php_post(ex, {"channel": ch, "message": php_msg})
    assert php_published(r)[0] == 2
    assert history(ex, ch) == [(1, cgi_msg.encode()), (2, php_msg.encode())]


def test_channel_names_with_every_allowed_character(ex):
    for ch in ("-x", "--api", "a.b:c@d~e_f-G9", "Z" * 128):
        with ex.subscribe(ch) as sub:
            r = cgi_post(ex, {"channel": ch, "message": "cgi " + ch})
            assert r.status == 200, (ch, r)
            cid = r.json()["id"]
            r = php_post(ex, {"channel": ch, "message": "php " + ch})
            pid, _ = php_published(r)
            assert pid == cid + 1
            assert [(e.int_id, e.data) for e in sub.events(2)] == \
                [(cid, "cgi " + ch), (pid, "php " + ch)]


def test_too_large_is_refused(ex):
    ch = unique_channel("exl")
    big = "x" * 65537                     # the broker's max_message_size is 65536
    r = php_post(ex, {"channel": ch, "message": big})
    assert r.status == 413 and "too_large" in php_error(r), r
    r = cgi_post(ex, {"channel": ch, "message": big})
    assert r.status == 413 and r.json()["error"] == "too_large", r
    r = cgi_post(ex, {"channel": ch, "message": "%" * 70000})   # form over 200 KiB
    assert r.status == 413, r
    r = cgi_post(ex, {"channel": ch, "message": "x" * 65536})
    assert r.status == 200 and r.json()["id"] == 1, r


def test_cgi_method_and_content_type(ex):
    ch = unique_channel("exm")
    r = ex.request("PUT", CGI_URL, urlencode({"channel": ch, "message": "x"}), FORM)
    assert r.status == 405 and "POST" in r.header("Allow"), r
    r = cgi_post(ex, {"channel": ch, "message": "x"}, headers={"Content-Type": "text/plain"})
    assert r.status == 415, r
    r = cgi_post(ex, {"channel": ch, "message": "x"},
                 headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"})
    assert r.status == 200 and r.json()["id"] == 1, r


def test_php_cgi_is_not_reachable_directly(ex):
    for path in ("/push-examples-php-cgi", "/push-examples-php-cgi/etc/passwd",
                 "/push-examples-php-cgi" + PHP_URL + "index.php"):
        r = ex.request("GET", path)
        assert r.status == 403, (path, r)


def test_broker_down_is_a_502(ex):
    """pushctl's error is passed on; the PHP page says why (its timeout is 5 s)."""
    ch = unique_channel("exd")
    offset = ex.apache.log_offset()
    ex.broker.stop()
    try:
        r = cgi_post(ex, {"channel": ch, "message": "x"})
        assert r.status == 502, r
        j = r.json()
        assert j["error"] == "timeout" and "error: timeout" in j["message"], j
        r = php_post(ex, {"channel": ch, "message": "x"})
        assert r.status == 502 and "timeout" in php_error(r), r
    finally:
        ex.broker.start()
        ex.apache.wait_ready(since=offset)      # every child relinked
    assert history(ex, ch) == []


def test_other_requests(ex):
    """A chunked POST (no Content-Length), other methods with a body that the
    answer does not need, and bodies over LimitRequestBody: complete answers
    (a CGI program that leaves part of the body unread makes mod_cgid's
    socket reset, and the client would get a truncated answer or none)."""
    ch = unique_channel("exc")
    body = urlencode({"channel": ch, "message": "chunked ✓"}).encode()
    for url in (CGI_URL, PHP_URL):
        conn = http.client.HTTPConnection(HOST, ex.port, timeout=60)
        try:
            conn.putrequest("POST", url)
            conn.putheader("Content-Type", FORM["Content-Type"])
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            conn.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            r = conn.getresponse()
            text = r.read().decode("utf-8")
        finally:
            conn.close()
        if url == CGI_URL:
            assert r.status == 200, (url, r.status, text)
        else:   # php-cgi reads a body only with a Content-Length: a clear 411
            assert r.status == 411 and "Content-Length" in text, (url, r.status, text)
    assert [d for _, d in history(ex, ch)] == ["chunked ✓".encode()]

    for url in (CGI_URL, PHP_URL):
        r = ex.request("PUT", url, "channel=x&message=" + "y" * 100000, FORM)
        assert r.status == 405 and "POST" in r.header("Allow"), (url, r)
        r = ex.request("POST", url, "channel=x&message=" + "y" * 1100000, FORM)
        assert r.status == 413, (url, r)
    assert history(ex, "x") == []
