"""Signed channel tokens and connection limits, against a real Apache and a
real pushbrokerd.

Tokens (PushTokenSecretFile, PushTokenRequire): every way a token can be
wrong (missing, malformed, forged, tampered, expired, wrong right, wrong
channel) on every handler and transport (SSE, long poll, short poll,
WebSocket handshake and commands, raw WebSocket, HTTP publish, presence)
gets the exact 403 body and an error-log line naming the reason, never the
token; the token's "sub" becomes the presence identity; `pushctl token`
mints tokens the module accepts.

Limits: PushMaxChannels, PushMaxSubscribers (503 "limit", and room again
once a subscriber leaves), PushWebSocketPublishRate (JSON error / raw close
1008), PushMaxMessageSize (413), PushWebSocketMaxMessage (1009), and a slow
consumer (PushMaxQueue) whose connection is closed while Apache's memory
stays bounded and every other subscriber gets every message once, in order;
reconnecting, it is told of the gap.

Each refusal is followed by a check that nothing else was lost (the
connection or the channel still works, nothing was published by a refused
request).
"""
import base64
import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest
import zmq

from conftest import (EVENT_TIMEOUT, HOST, PUSHCTL, Apache, HTTPResponseParser, SSEParser,
                      unique_channel, wait_until, zmq_request)
from test_websocket_util import OP_CLOSE, OP_TEXT, RawWS, ServerClosed, accept_for, frame

SECRET = b"5c3f0e1d2b4a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
OTHER_SECRET = b"00000000000000000000000000000000000000000000000000000000000000ff"

# One Apache child (max_workers 25 = ThreadsPerChild): PushMaxSubscribers
# counts per child, and every connection of these tests lands in the same one.
CONF = """\
<Location /tsub/>
  SetHandler push-subscriber
  PushTokenSecretFile {secret}
  PushTokenRequire on
  PushPresenceNames on
  PushWebSocketPublish on
  PushWebSocketDeflate off
</Location>
<Location /traw/>
  SetHandler push-subscriber
  PushTokenSecretFile {secret}
  PushTokenRequire on
  PushWebSocketMode raw
  PushWebSocketPublish on
  PushWebSocketDeflate off
</Location>
<Location /tpub/>
  SetHandler push-publisher
  PushTokenSecretFile {secret}
  PushTokenRequire on
</Location>
<Location /tpresence/>
  SetHandler push-presence
  PushTokenSecretFile {secret}
  PushTokenRequire on
</Location>
<Location /tnosecret/>
  SetHandler push-subscriber
  PushTokenRequire on
</Location>
<Location /topen/>
  SetHandler push-subscriber
  PushTokenSecretFile {secret}
  PushTokenRequire off
</Location>
<Location /lim-ch/>
  SetHandler push-subscriber
  PushMaxChannels 3
  PushWebSocketDeflate off
</Location>
<Location /lim-subs/>
  SetHandler push-subscriber
  PushMaxSubscribers 2
  PushWebSocketDeflate off
</Location>
<Location /lim-rate/>
  SetHandler push-subscriber
  PushWebSocketPublish on
  PushWebSocketPublishRate 2
  PushWebSocketDeflate off
</Location>
<Location /lim-rate-raw/>
  SetHandler push-subscriber
  PushWebSocketMode raw
  PushWebSocketPublish on
  PushWebSocketPublishRate 2
  PushWebSocketDeflate off
</Location>
<Location /lim-size/>
  SetHandler push-publisher
  PushMaxMessageSize 1000
</Location>
<Location /lim-frame/>
  SetHandler push-subscriber
  PushWebSocketPublish on
  PushWebSocketMaxMessage 1000
  PushWebSocketDeflate off
</Location>
<Location /slow/>
  SetHandler push-subscriber
  PushMaxQueue 100
  PushWebSocketPing 0
  PushWebSocketDeflate off
  PushSSEKeepalive 0
</Location>
"""

HISTORY_MAX = 1000          # the broker's --history-max for this stack
AHEAD = 50                  # messages the publisher may be ahead of a normal reader


# ---------------------------------------------------------------------------
# tokens
# ---------------------------------------------------------------------------

def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def sign(secret, payload_text):
    head = "v1." + b64u(payload_text.encode())
    return head + "." + b64u(hmac.new(secret, head.encode(), hashlib.sha256).digest())


def mint(channels, rights, sub=None, ttl=3600, exp=None, secret=SECRET):
    """A token as docs/protocol.md describes it (independent of the C code)."""
    now = int(time.time())
    p = {}
    if sub is not None:
        p["sub"] = sub
    p["ch"] = list(channels)
    p["r"] = rights
    p["iat"] = now
    p["exp"] = exp if exp is not None else now + ttl
    return sign(secret, json.dumps(p, separators=(",", ":")))


def pushctl_token(secret_file, channels, rights, sub=None, ttl=None):
    cmd = [str(PUSHCTL), "token", "--secret-file", str(secret_file), "--rights", rights]
    for c in channels:
        cmd += ["--channel", c]
    if sub is not None:
        cmd += ["--sub", sub]
    if ttl is not None:
        cmd += ["--ttl", str(ttl)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def payload_of(token):
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def tampered(token, **changes):
    """The payload changed (e.g. more rights), the signature kept."""
    _, p64, sig = token.split(".")
    p = json.loads(base64.urlsafe_b64decode(p64 + "=" * (-len(p64) % 4)))
    p.update(changes)
    return "v1." + b64u(json.dumps(p, separators=(",", ":")).encode()) + "." + sig


def forbidden(msg):
    return {"error": "forbidden", "message": msg}


def no_right(right, ch):
    return f"token does not grant {right} on channel {ch}"


# The bad tokens of every refusal test: name -> (token for channel ch and
# right r, the message of the 403, the reason in the error log).
def bad_tokens(ch, right):
    rname = {"s": "subscribe", "p": "publish", "l": "presence"}[right]
    other = "spl".replace(right, "")
    good = mint([ch], right, sub="mallory")
    return {
        "missing": (None, "token missing", "token missing"),
        "empty": ("", "token missing", "token missing"),
        "malformed": ("not-a-token", "token malformed", "token malformed"),
        "malformed-b64": (good[:10] + "+" + good[11:], "token malformed", "token malformed"),
        "wrong-version": ("v2" + good[2:], "token malformed", "token malformed"),
        "too-long": ("v1." + "A" * 5000 + "." + good.split(".")[2], "token malformed",
                     "token malformed"),
        "forged": (mint([ch], right, secret=OTHER_SECRET), "token signature invalid",
                   "token signature invalid"),
        "tampered": (tampered(mint(["elsewhere"], right), ch=[ch]), "token signature invalid",
                     "token signature invalid"),
        "expired": (mint([ch], right, exp=int(time.time()) - 1), "token expired",
                    "token expired"),
        "wrong-right": (mint([ch], other, sub="mallory"), no_right(rname, ch),
                        'token does not grant this right (sub "mallory")'),
        "wrong-channel": (mint([ch + "x", "zz*"], right), no_right(rname, ch),
                          "token does not grant this right"),
    }


BAD = ["missing", "empty", "malformed", "malformed-b64", "wrong-version", "too-long", "forged",
       "tampered", "expired", "wrong-right", "wrong-channel"]


def q(token):
    return "" if token is None else f"token={token}"


def with_query(path, *parts):
    parts = [p for p in parts if p]
    if not parts:
        return path
    return path + ("&" if "?" in path else "?") + "&".join(parts)


# ---------------------------------------------------------------------------
# a small blocking WebSocket client (no extensions)
# ---------------------------------------------------------------------------

class WS(RawWS):
    """RawWS (test_websocket_util.py) as these tests use it: any answer to
    the handshake is taken (a refusal's body is read, then the socket is
    closed), a 101 must carry the right Sec-WebSocket-Accept; recv() gives
    a text message as str and a binary one as bytes."""

    def __init__(self, port, path, headers=None, rcvbuf=None, timeout=EVENT_TIMEOUT):
        super().__init__(port, path, headers, timeout=timeout, rcvbuf=rcvbuf, expect_101=False)
        if self.status == 101:
            assert self.header("Sec-WebSocket-Accept") == accept_for(self.key), self.head
        else:
            self.close()

    def frames_bytes(self, objs):
        """Several JSON commands as one write (one TCP segment)."""
        return b"".join(frame(OP_TEXT, json.dumps(obj)) for obj in objs)

    def recv(self, timeout=None):
        """The next data message (text as str, binary as bytes); pings are
        answered; a close frame raises ServerClosed."""
        op, payload = self.recv_message(timeout)
        return payload.decode() if op == OP_TEXT else payload

    def until(self, pred, timeout=None):
        """JSON messages until pred(msg): (that message, the ones before)."""
        got = self.recv_json_until(pred, timeout)
        return got[-1], got[:-1]

    def subscribed(self, channel, timeout=None):
        m, seen = self.until(lambda m: m.get("type") in ("subscribed", "error"), timeout)
        assert m == {"type": "subscribed", "channel": channel, "last_id": m.get("last_id")}, \
            (m, seen)
        return m

    def expect_close(self, code, reason=None, timeout=None):
        """Wait for the close frame (data messages before it are skipped and
        returned); checks its code and reason."""
        deadline = time.monotonic() + (timeout or self.timeout)
        skipped = []
        try:
            while True:
                skipped.append(self.recv(max(0.001, deadline - time.monotonic())))
        except ServerClosed as e:
            assert e.code == code, (e, skipped)
            if reason is not None:
                assert e.reason == reason, (e, skipped)
            return skipped


# ---------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def secret_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("token-secret")
    f = d / "push.secret"
    f.write_bytes(SECRET + b"\n")        # the newline is not part of the secret
    f.chmod(0o600)
    return f


@pytest.fixture(scope="module")
def sec(stack_factory, secret_file):
    s = stack_factory("security", extra_conf=CONF.format(secret=secret_file), max_workers=25,
                      broker_args=("--history-max", str(HISTORY_MAX)))
    assert len(s.apache.child_pids()) == 1, "these tests need a single Apache child"
    return s


def log_since(apache, offset):
    with open(apache.error_log, "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")


def assert_logged(apache, offset, pattern, what):
    """A line matching pattern was logged after offset; returns the text."""
    rx = re.compile(pattern, re.M)
    return wait_until(lambda: rx.search(log_since(apache, offset)) and log_since(apache, offset),
                      10, f"the error log to say {what}")


def refusal_logged(apache, offset, right, ch, reason, token):
    rname = {"s": "subscribe", "p": "publish", "l": "presence"}[right]
    text = assert_logged(apache, offset,
                         rf"\[push:error\].*AH20080: token refused for {rname} on channel "
                         rf"{re.escape(ch)}: {re.escape(reason)}$", reason)
    if token:
        assert token not in text, "a token was written to the error log"
    assert SECRET.decode() not in text


def history(stack, ch):
    rep = zmq_request(stack.broker.api, [b"HISTORY", ch.encode(), b"0"])
    assert rep[0] == b"OK", rep
    msgs = [(int(rep[3 + 4 * i]), rep[5 + 4 * i]) for i in range(int(rep[2]))]
    return int(rep[1]), msgs


def presence(stack, ch):
    rep = zmq_request(stack.broker.api, [b"PRESENCE", ch.encode()])
    assert rep[0] == b"OK", rep
    return {m["identity"]: m["connections"] for m in json.loads(rep[1])["members"]}


def sse_refused(stack, path, headers=None):
    c = stack.sse(None, path=path, headers=headers)
    try:
        head = c.read_head()
        body = c.read_body()
        return head, body
    finally:
        c.close()


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children_rss(apache):
    return sum(rss_kib(p) for p in apache.child_pids())


class Publisher:
    """One REQ socket for many PUBs."""

    def __init__(self, endpoint):
        self.s = zmq.Context.instance().socket(zmq.REQ)
        self.s.setsockopt(zmq.LINGER, 0)
        self.s.setsockopt(zmq.RCVTIMEO, 10000)
        self.s.connect(endpoint)

    def pub(self, ch, data):
        self.s.send_multipart([b"PUB", ch.encode(), data])
        rep = self.s.recv_multipart()
        assert rep[0] == b"OK", rep
        return int(rep[1])

    def close(self):
        self.s.close()


# ---------------------------------------------------------------------------
# tokens: subscribers
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", BAD)
@pytest.mark.parametrize("transport", ["sse", "longpoll", "poll", "websocket"])
def test_subscribe_refused(sec, transport, case):
    """Each bad token on each subscriber transport: 403, the exact body, the
    reason in the error log (never the token); then a good token works on
    the same channel and nothing published in between is missed."""
    ch = unique_channel("tok")
    tok, msg, reason = bad_tokens(ch, "s")[case]
    off = sec.apache.log_offset()
    path = with_query(f"/tsub/{ch}", q(tok))
    if transport == "sse":
        head, body = sse_refused(sec, path)
        status, ctype = head.status, head.header("Content-Type")
    elif transport == "websocket":
        w = WS(sec.port, path)
        assert w.status == 403, (w.status, w.body)
        status, body, ctype = w.status, w.body, w.header("Content-Type")
    else:
        r = sec.request("GET", with_query(path, "poll=1" if transport == "poll" else ""))
        status, body, ctype = r.status, r.body, r.header("Content-Type")
    assert status == 403, body
    assert ctype == "application/json"
    assert json.loads(body) == forbidden(msg)
    refusal_logged(sec.apache, off, "s", ch, reason, tok)

    good = mint([ch], "s")
    with sec.subscribe(None, path=f"/tsub/{ch}?token={good}") as c:
        ack = sec.publish_ok(ch, "after the refusal")
        ev = c.next_event()
        assert (ev.int_id, ev.data) == (ack["id"], "after the refusal")


def test_token_in_authorization_header(sec):
    ch = unique_channel("bearer")
    good = mint([ch], "s")
    with sec.subscribe(None, path=f"/tsub/{ch}",
                       headers={"Authorization": f"Bearer {good}"}) as c:
        ack = sec.publish_ok(ch, "x")
        assert c.next_event().int_id == ack["id"]
    r = sec.request("GET", f"/tsub/{ch}?poll=1", headers={"Authorization": f"bearer  {good} "})
    assert r.status == 200, r
    # a Basic header is not a token, and the header wins over the query
    off = sec.apache.log_offset()
    r = sec.request("GET", f"/tsub/{ch}?poll=1", headers={"Authorization": "Basic YTpi"})
    assert (r.status, r.json()) == (403, forbidden("token missing"))
    r = sec.request("GET", f"/tsub/{ch}?poll=1&token={good}",
                    headers={"Authorization": "Bearer junk"})
    assert (r.status, r.json()) == (403, forbidden("token malformed"))
    refusal_logged(sec.apache, off, "s", ch, "token malformed", None)
    assert "junk" not in log_since(sec.apache, off)


def test_patterns_and_rights(sec):
    room = unique_channel("room")
    tok = mint([f"{room}:*", "news-" + room], "s")
    for ch in (f"{room}:", f"{room}:lobby", f"{room}:a:b", "news-" + room):
        r = sec.request("GET", f"/tsub/{ch}?poll=1&token={tok}")
        assert r.status == 200, (ch, r)
    for ch in (room, f"x{room}:lobby", "news-" + room + "2"):
        r = sec.request("GET", f"/tsub/{ch}?poll=1&token={tok}")
        assert (r.status, r.json()) == (403, forbidden(no_right("subscribe", ch))), ch
    everything = mint(["*"], "s")
    assert sec.request("GET", f"/tsub/{room}?poll=1&token={everything}").status == 200


def test_token_not_required_elsewhere(sec):
    """PushTokenRequire off (or not set): no token needed, a bad one ignored."""
    ch = unique_channel("open")
    assert sec.request("GET", f"/topen/{ch}?poll=1").status == 200
    assert sec.request("GET", f"/topen/{ch}?poll=1&token=garbage").status == 200
    assert sec.request("GET", f"/sub/{ch}?poll=1&token=garbage").status == 200


def test_no_secret_configured(sec):
    ch = unique_channel("nosecret")
    off = sec.apache.log_offset()
    r = sec.request("GET", f"/tnosecret/{ch}?poll=1&token={mint([ch], 's')}")
    assert (r.status, r.json()) == (500, {"error": "internal", "message":
                                          "token verification is not configured on this server"})
    assert_logged(sec.apache, off, r"AH20081: PushTokenRequire is on for /tnosecret/.*but no "
                  r"PushTokenSecretFile applies", "the missing secret")


def test_other_checks_come_after_the_token(sec):
    """Without the right, a client learns nothing else: not that its cursor
    is malformed, nor its ?name=."""
    ch = unique_channel("order")
    r = sec.request("GET", f"/tsub/{ch}?last_id=abc&name=%01")
    assert (r.status, r.json()) == (403, forbidden("token missing"))
    r = sec.request("GET", f"/tsub/{ch}?last_id=abc&token={mint([ch], 's')}")
    assert r.status == 400 and r.json()["error"] == "bad_request"


# ---------------------------------------------------------------------------
# tokens: publishing and presence
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", BAD)
def test_publish_refused(sec, case):
    """POST /tpub/<ch> with each bad token: 403, exact body, logged, and
    nothing published; with right p it is published."""
    ch = unique_channel("tpub")
    tok, msg, reason = bad_tokens(ch, "p")[case]
    off = sec.apache.log_offset()
    r = sec.request("POST", with_query(f"/tpub/{ch}", q(tok)), b"must not be published")
    assert (r.status, r.json()) == (403, forbidden(msg))
    refusal_logged(sec.apache, off, "p", ch, reason, tok)
    assert history(sec, ch) == (0, [])

    r = sec.request("POST", f"/tpub/{ch}?token={mint([ch], 'p')}", b"published")
    assert r.status == 200, r
    assert r.json()["id"] == 1
    assert history(sec, ch) == (1, [(1, b"published")])


def test_publish_with_bearer_and_pushctl_token(sec, secret_file):
    ch = unique_channel("ctl")
    tok = pushctl_token(secret_file, [ch], "p", sub="publisher-1", ttl=120)
    p = payload_of(tok)
    assert p["ch"] == [ch] and p["r"] == "p" and p["sub"] == "publisher-1"
    assert p["exp"] - p["iat"] == 120 and abs(p["iat"] - time.time()) < 60
    r = sec.request("POST", f"/tpub/{ch}", b"via pushctl",
                    headers={"Authorization": f"Bearer {tok}"})
    assert r.status == 200, r
    assert history(sec, ch) == (1, [(1, b"via pushctl")])
    # default ttl one hour; several channels and patterns
    tok = pushctl_token(secret_file, [ch, "room:*"], "spl")
    p = payload_of(tok)
    assert p["ch"] == [ch, "room:*"] and p["r"] == "spl" and "sub" not in p
    assert p["exp"] - p["iat"] == 3600
    assert sec.request("GET", f"/tsub/room:x?poll=1&token={tok}").status == 200


def test_pushctl_token_usage_errors(tmp_path, secret_file):
    def run(*args):
        return subprocess.run([str(PUSHCTL), "token", *args], capture_output=True, text=True,
                              timeout=30)
    short = tmp_path / "short"
    short.write_text("too short\n")
    p = run("--secret-file", str(short), "--channel", "a", "--rights", "s")
    assert p.returncode == 2 and "at least 32" in p.stderr and not p.stdout
    p = run("--secret-file", str(tmp_path / "none"), "--channel", "a", "--rights", "s")
    assert p.returncode == 2 and "cannot open" in p.stderr
    p = run("--secret-file", str(secret_file), "--channel", "a b", "--rights", "s")
    assert p.returncode == 2 and "not a channel name or pattern" in p.stderr
    p = run("--secret-file", str(secret_file), "--channel", "a", "--rights", "sx")
    assert p.returncode == 2 and "--rights" in p.stderr
    p = run("--secret-file", str(secret_file), "--channel", "a")
    assert p.returncode == 2 and "token needs --rights" in p.stderr
    world = tmp_path / "world"
    world.write_bytes(SECRET)
    world.chmod(0o644)
    p = run("--secret-file", str(world), "--channel", "a", "--rights", "s")
    assert p.returncode == 0 and "readable by every user" in p.stderr
    assert p.stdout.count(".") == 2
    p = subprocess.run([str(PUSHCTL), "--help"], capture_output=True, text=True, timeout=30)
    assert "token --secret-file FILE --channel PATTERN" in p.stdout


@pytest.mark.parametrize("case", BAD)
def test_presence_refused(sec, case):
    ch = unique_channel("tpres")
    tok, msg, reason = bad_tokens(ch, "l")[case]
    off = sec.apache.log_offset()
    r = sec.request("GET", with_query(f"/tpresence/{ch}", q(tok)))
    assert (r.status, r.json()) == (403, forbidden(msg))
    refusal_logged(sec.apache, off, "l", ch, reason, tok)
    r = sec.request("GET", f"/tpresence/{ch}?token={mint([ch], 'l')}")
    assert r.status == 200 and r.json() == {"channel": ch, "count": 0, "members": []}


def test_token_sub_is_the_presence_identity(sec):
    """The token's sub is the identity, and ?name= cannot change it; a
    token without sub leaves ?name= (PushPresenceNames on) to the client."""
    ch = unique_channel("who")
    look = mint([ch], "l")
    alice = mint([ch], "s", sub="alice")
    anon = mint([ch], "s")
    with sec.subscribe(None, path=f"/tsub/{ch}?token={alice}&name=mallory"), \
            sec.subscribe(None, path=f"/tsub/{ch}?token={anon}&name=bob"), \
            WS(sec.port, f"/tsub/{ch}?token={mint([ch], 's', sub='Zoë')}") as w:
        assert w.status == 101
        w.subscribed(ch)

        def members():
            r = sec.request("GET", f"/tpresence/{ch}?token={look}")
            assert r.status == 200, r
            got = {m["identity"]: m["connections"] for m in r.json()["members"]}
            return got if got == {"alice": 1, "bob": 1, "Zoë": 1} else None
        wait_until(members, 15, "alice (token), bob (?name=) and Zoë (token) to be present")
    wait_until(lambda: presence(sec, ch) == {}, 15, "everyone to leave")


def test_presence_events_need_the_presence_right(sec):
    ch = unique_channel("pev")
    r = sec.request("GET", f"/tsub/{ch}?poll=1&presence=1&token={mint([ch], 's')}")
    assert (r.status, r.json()) == (403, forbidden(no_right("presence", ch)))
    r = sec.request("GET", f"/tsub/{ch}?poll=1&presence=1&token={mint([ch], 'sl')}")
    assert r.status == 200, r


# ---------------------------------------------------------------------------
# tokens: WebSocket commands and raw mode
# ---------------------------------------------------------------------------

def test_websocket_commands_checked_against_the_token(sec):
    """The handshake's token covers the URL channel and later commands; a
    command may carry its own "token".  Refusals are errors on an open
    socket, logged, and the socket goes on working."""
    a, b, c = (unique_channel(x) for x in "abc")
    room = unique_channel("room")
    tok = mint([a, f"{room}:*"], "s", sub="wsuser")
    off = sec.apache.log_offset()
    with WS(sec.port, f"/tsub/{a}?token={tok}") as w:
        assert w.status == 101
        w.subscribed(a)
        w.send_json({"type": "subscribe", "channel": b, "ref": 1})
        assert w.recv_json() == {"type": "error", "code": "forbidden",
                                 "message": no_right("subscribe", b), "ref": 1}
        refusal_logged(sec.apache, off, "s", b, 'token does not grant this right (sub "wsuser")',
                       tok)
        w.send_json({"type": "subscribe", "channel": f"{room}:1", "ref": 2})
        m, _ = w.until(lambda m: m.get("ref") == 2)
        assert m["type"] == "subscribed" and m["channel"] == f"{room}:1"
        # publishing needs p
        w.send_json({"type": "publish", "channel": a, "data": "x", "ref": 3})
        assert w.recv_json() == {"type": "error", "code": "forbidden",
                                 "message": no_right("publish", a), "ref": 3}
        # presence events need l
        w.send_json({"type": "subscribe", "channel": f"{room}:2", "presence": True, "ref": 4})
        assert w.recv_json() == {"type": "error", "code": "forbidden",
                                 "message": no_right("presence", f"{room}:2"), "ref": 4}
        # a command's own token
        w.send_json({"type": "subscribe", "channel": c, "token": mint([c], "s"), "ref": 5})
        m, _ = w.until(lambda m: m.get("ref") == 5)
        assert m["type"] == "subscribed" and m["channel"] == c
        for bad, msg in ((mint([c], "sp", exp=int(time.time()) - 5), "token expired"),
                         (mint([b], "sp", secret=OTHER_SECRET), "token signature invalid"),
                         ("junk", "token malformed"), (17, "token malformed")):
            w.send_json({"type": "publish", "channel": b, "data": "no", "token": bad, "ref": 6})
            assert w.recv_json() == {"type": "error", "code": "forbidden", "message": msg,
                                     "ref": 6}
        w.send_json({"type": "publish", "channel": b, "data": "yes", "ref": 7,
                     "token": mint([b], "p")})
        m, _ = w.until(lambda m: m.get("ref") == 7)
        assert m["type"] == "published" and m["id"] == 1
        assert history(sec, a) == (0, [])
        assert history(sec, b) == (1, [(1, b"yes")])
        # still subscribed to a, room:1 and c; not to b
        for ch in (a, f"{room}:1", c, b):
            sec.publish_ok(ch, f"to {ch}")
        got = [w.recv_json() for _ in range(3)]
        assert [(m["type"], m["channel"], m["data"]) for m in got] == \
            [("message", ch, f"to {ch}") for ch in (a, f"{room}:1", c)]
        w.send_json({"type": "ping", "ref": 8})
        assert w.recv_json() == {"type": "pong", "ref": 8}
    text = log_since(sec.apache, off)
    for t in (tok, "junk"):
        assert t not in text


def test_websocket_token_expiring_while_connected(sec):
    """The subscription made with a token stays; commands after its expiry
    are refused as expired."""
    a, b = unique_channel("exp-a"), unique_channel("exp-b")
    tok = mint([a, b], "s", exp=int(time.time()) + 2)
    with WS(sec.port, f"/tsub/{a}?token={tok}") as w:
        assert w.status == 101
        w.subscribed(a)
        time.sleep(max(0.0, payload_of(tok)["exp"] - time.time()) + 0.2)
        w.send_json({"type": "subscribe", "channel": b, "ref": "late"})
        assert w.recv_json() == {"type": "error", "code": "forbidden",
                                 "message": "token expired", "ref": "late"}
        ack = sec.publish_ok(a, "still here")
        m = w.recv_json()
        assert (m["type"], m["id"], m["data"]) == ("message", ack["id"], "still here")


def test_raw_websocket_publish_needs_the_right(sec):
    ch = unique_channel("raw")
    off = sec.apache.log_offset()
    with WS(sec.port, f"/traw/{ch}?token={mint([ch], 's')}") as w, \
            sec.subscribe(None, path=f"/tsub/{ch}?token={mint([ch], 's')}") as watcher:
        assert w.status == 101
        w.send_frame(0x1, "not allowed")
        w.expect_close(1008, "token does not grant this right on this channel")
        refusal_logged(sec.apache, off, "p", ch, "token does not grant this right", None)
        assert watcher.no_event_within(0.5)
    assert history(sec, ch) == (0, [])
    with WS(sec.port, f"/traw/{ch}?token={mint([ch], 'sp')}") as w:
        assert w.status == 101
        w.send_frame(0x1, "allowed")
        assert w.recv() == "allowed"
        w.send_frame(0x2, b"\x00\x01")
        assert w.recv() == b"\x00\x01"
    assert history(sec, ch) == (2, [(1, b"allowed"), (2, b"\x00\x01")])


# ---------------------------------------------------------------------------
# the secret file at configuration time
# ---------------------------------------------------------------------------

def config_test(tmp_path, sec, conf):
    a = Apache(tmp_path / "cfg", sec.broker.link, name="cfgtest", extra_conf=conf)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASAN_", "UBSAN_"))}
    env["LANG"] = "C"
    return subprocess.run(a.args() + ["-t"], capture_output=True, text=True, env=env,
                          timeout=60)


def test_secret_file_checked_at_configuration(tmp_path, sec):
    short = tmp_path / "short.secret"
    short.write_text("0123456789\n")
    short.chmod(0o600)
    p = config_test(tmp_path, sec, f"<Location /x/>\n  PushTokenSecretFile {short}\n</Location>\n")
    assert p.returncode != 0
    assert f"PushTokenSecretFile: {short} holds 10 bytes of secret; at least 32 are needed" \
        in p.stderr, p.stderr
    p = config_test(tmp_path, sec, "PushTokenSecretFile /nonexistent/push.secret\n")
    assert p.returncode != 0
    assert "PushTokenSecretFile: cannot open /nonexistent/push.secret" in p.stderr, p.stderr
    world = tmp_path / "world.secret"
    world.write_bytes(SECRET)
    world.chmod(0o644)
    p = config_test(tmp_path, sec, f"PushTokenSecretFile {world}\n")
    assert p.returncode == 0, p.stderr
    assert re.search(rf"AH20082: PushTokenSecretFile {re.escape(str(world))} is readable by "
                     rf"every user", p.stderr), p.stderr
    assert SECRET.decode() not in p.stderr + p.stdout
    ok = tmp_path / "ok.secret"
    ok.write_bytes(SECRET)
    ok.chmod(0o600)
    p = config_test(tmp_path, sec, f"PushTokenSecretFile {ok}\nPushMaxSubscribers 10\n"
                                   "PushMaxChannels 5\nPushWebSocketPublishRate 3\n")
    assert p.returncode == 0 and "AH20082" not in p.stderr, p.stderr
    for bad in ("PushMaxChannels 0", "PushMaxSubscribers -1", "PushWebSocketPublishRate x"):
        p = config_test(tmp_path, sec, bad + "\n")
        assert p.returncode != 0 and "is not a number from" in p.stderr, (bad, p.stderr)


# ---------------------------------------------------------------------------
# limits
# ---------------------------------------------------------------------------

def test_max_channels(sec):
    """PushMaxChannels 3: the URL channel and two more; a fourth is refused
    with "limit"; subscribing again to one it has is not a new channel;
    after an unsubscribe there is room again."""
    a, b, c, d = (unique_channel(f"mc{x}") for x in "abcd")
    with WS(sec.port, f"/lim-ch/{a}") as w:
        assert w.status == 101
        w.subscribed(a)
        # b, c and d in one write: d is refused while b and c are pending
        w.sock.sendall(w.frames_bytes([{"type": "subscribe", "channel": x, "ref": x}
                                       for x in (b, c, d)]))
        replies = {}
        while len(replies) < 3:
            m = w.recv_json()
            replies[m["ref"]] = m
        assert replies[d] == {"type": "error", "code": "limit", "ref": d,
                              "message": "too many channels on this connection "
                                         "(PushMaxChannels 3)"}
        assert replies[b]["type"] == replies[c]["type"] == "subscribed"
        w.send_json({"type": "subscribe", "channel": b, "ref": "again"})
        m, _ = w.until(lambda m: m.get("ref") == "again")
        assert m["type"] == "subscribed", m
        w.send_json({"type": "unsubscribe", "channel": c, "ref": "u"})
        assert w.recv_json() == {"type": "unsubscribed", "channel": c, "ref": "u"}
        w.send_json({"type": "subscribe", "channel": d, "ref": "d2"})
        m, _ = w.until(lambda m: m.get("ref") == "d2")
        assert m["type"] == "subscribed", m
        for ch in (a, b, c, d):
            sec.publish_ok(ch, ch)
        got = [w.recv_json() for _ in range(3)]
        assert [(m["channel"], m["data"]) for m in got] == [(a, a), (b, b), (d, d)]
        w.send_json({"type": "ping"})
        assert w.recv_json() == {"type": "pong"}


def test_max_subscribers(sec):
    """PushMaxSubscribers 2: a third subscriber of the channel in this child
    gets 503 "limit" (SSE, long poll, WebSocket handshake, WebSocket
    subscribe); short polls hold nothing and pass; other channels are not
    affected; once one subscriber leaves there is room again.  The two
    subscribers miss nothing meanwhile."""
    ch, other = unique_channel("ms"), unique_channel("ms-other")
    expect = {"error": "limit",
              "message": f"channel {ch} has reached its subscriber limit (PushMaxSubscribers 2)"}
    off = sec.apache.log_offset()
    first = sec.subscribe(None, path=f"/lim-subs/{ch}")
    second = WS(sec.port, f"/lim-subs/{ch}")
    try:
        assert second.status == 101
        second.subscribed(ch)
        head, body = sse_refused(sec, f"/lim-subs/{ch}")
        assert (head.status, json.loads(body)) == (503, expect)
        assert head.header("Retry-After") == "5"
        r = sec.request("GET", f"/lim-subs/{ch}")
        assert (r.status, r.json()) == (503, expect)
        w = WS(sec.port, f"/lim-subs/{ch}")
        assert (w.status, w.json_body()) == (503, expect)
        assert sec.request("GET", f"/lim-subs/{ch}?poll=1").status == 200
        assert_logged(sec.apache, off, rf"AH20083: subscriber refused: channel {re.escape(ch)} "
                      r"has 2 subscribers in this process \(PushMaxSubscribers\)", "the limit")
        with WS(sec.port, f"/lim-subs/{other}") as w:
            assert w.status == 101
            w.subscribed(other)
            w.send_json({"type": "subscribe", "channel": ch, "ref": 1})
            assert w.recv_json() == {"type": "error", "code": "limit", "ref": 1,
                                     "message": expect["message"]}
            ack = sec.publish_ok(other, "other")
            m = w.recv_json()
            assert (m["channel"], m["id"]) == (other, ack["id"])
        ack1 = sec.publish_ok(ch, "one")
        assert first.next_event().data == "one"
        assert second.recv_json()["id"] == ack1["id"]
        first.close()

        def room():
            c = sec.sse(None, path=f"/lim-subs/{ch}")
            if c.read_head().status == 200:
                c.wait_preamble()
                return c
            c.close()
            return None
        third = wait_until(room, 15, "room for a subscriber once the first one left")
        with third:
            ack2 = sec.publish_ok(ch, "two")
            assert third.next_event().int_id == ack2["id"]
            m = second.recv_json()
            assert (m["id"], m["data"]) == (ack2["id"], "two")
    finally:
        first.close()
        second.close()


def test_websocket_publish_rate_json(sec):
    """PushWebSocketPublishRate 2: of ten publishes sent at once, two are
    published (the burst) and eight refused with "rate_limited"; a second
    later the bucket has refilled."""
    ch = unique_channel("rate")
    with WS(sec.port, f"/lim-rate/{ch}") as w, sec.subscribe(None, path=f"/sub/{ch}") as watch:
        assert w.status == 101
        w.subscribed(ch)
        w.sock.sendall(w.frames_bytes([{"type": "publish", "channel": ch, "data": f"m{i}",
                                        "ref": i} for i in range(10)]))
        replies, messages = {}, []
        while len(replies) < 10 or len(messages) < 2:
            m = w.recv_json()
            if m["type"] == "message":
                messages.append(m["data"])
            else:
                replies[m["ref"]] = m
        for i in (0, 1):
            assert replies[i]["type"] == "published", replies[i]
        for i in range(2, 10):
            assert replies[i] == {"type": "error", "code": "rate_limited", "ref": i,
                                  "message": "more than 2 messages a second "
                                             "(PushWebSocketPublishRate); not published"}
        assert messages == ["m0", "m1"]
        assert [e.data for e in watch.events(2)] == ["m0", "m1"]
        assert history(sec, ch)[1] == [(1, b"m0"), (2, b"m1")]
        time.sleep(1.1)                  # at least two more tokens
        w.send_json({"type": "publish", "channel": ch, "data": "later", "ref": "later"})
        m, _ = w.until(lambda m: m.get("ref") == "later")
        assert m["type"] == "published" and m["id"] == 3
        assert watch.next_event().data == "later"


def test_websocket_publish_rate_raw(sec):
    """Raw mode: the frame over the rate closes with 1008; what came before
    it is published."""
    ch = unique_channel("rate-raw")
    with WS(sec.port, f"/lim-rate-raw/{ch}") as w, \
            sec.subscribe(None, path=f"/sub/{ch}") as watch:
        assert w.status == 101
        w.sock.sendall(b"".join(frame(OP_TEXT, f"r{i}") for i in range(3)))
        w.expect_close(1008, "publish rate exceeded")
        assert [e.data for e in watch.events(2)] == ["r0", "r1"]
        assert watch.no_event_within(0.5)
    assert history(sec, ch)[1] == [(1, b"r0"), (2, b"r1")]


def test_message_too_large(sec):
    """PushMaxMessageSize 1000: 1001 bytes get 413 and are not published;
    1000 bytes are."""
    ch = unique_channel("big")
    r = sec.request("POST", f"/lim-size/{ch}", b"x" * 1001)
    assert (r.status, r.json()) == (413, {"error": "too_large", "message":
                                          "message exceeds PushMaxMessageSize (1000 bytes)"})
    r = sec.request("POST", f"/lim-size/{ch}", json.dumps({"data": "y" * 1001}),
                    headers={"Content-Type": "application/json"})
    assert r.status == 413 and r.json()["error"] == "too_large"
    assert history(sec, ch) == (0, [])
    r = sec.request("POST", f"/lim-size/{ch}", b"z" * 1000)
    assert r.status == 200 and r.json()["id"] == 1
    assert history(sec, ch) == (1, [(1, b"z" * 1000)])


def test_websocket_frame_too_large(sec):
    """PushWebSocketMaxMessage 1000: a message of 1001 bytes closes with
    1009; what came before it was published, exactly 1000 bytes pass."""
    ch = unique_channel("frame")
    head = json.dumps({"type": "publish", "channel": ch, "data": ""})

    def publish_cmd(n):
        return head[:-2] + "x" * (n - len(head)) + head[-2:]
    with WS(sec.port, f"/lim-frame/{ch}") as w, sec.subscribe(None, path=f"/sub/{ch}") as watch:
        assert w.status == 101
        w.subscribed(ch)
        ok = publish_cmd(1000)
        assert len(ok.encode()) == 1000
        w.send_frame(0x1, ok)
        m, _ = w.until(lambda m: m["type"] == "published")
        assert m["id"] == 1
        w.send_frame(0x1, publish_cmd(1001))
        w.expect_close(1009)
        assert watch.next_event().data == "x" * (1000 - len(head))
        assert watch.no_event_within(0.5)
    assert [i for i, _ in history(sec, ch)[1]] == [1]


# ---------------------------------------------------------------------------
# slow consumers
# ---------------------------------------------------------------------------

class SSEReader(threading.Thread):
    """Reads an event stream to the end, in a thread."""

    def __init__(self, client, n):
        super().__init__(daemon=True)
        self.c, self.n, self.events, self.error = client, n, [], None

    def run(self):
        try:
            while len(self.events) < self.n:
                self.events.append(self.c.next_event(timeout=120))
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e


class WSReader(threading.Thread):
    def __init__(self, ws, n):
        super().__init__(daemon=True)
        self.w, self.n, self.msgs, self.error = ws, n, [], None

    def run(self):
        try:
            while len(self.msgs) < self.n:
                m = self.w.recv_json(timeout=120)
                if m["type"] == "message":
                    self.msgs.append(m)
        except Exception as e:  # noqa: BLE001
            self.error = e


def drain_slow_websocket(w, timeout=90):
    """Everything the cut-off client can still read: its messages, then a
    close frame (1013) or the end of the connection."""
    ids, close = [], None
    deadline = time.monotonic() + timeout
    try:
        while True:
            f = w.recv_frame(max(0.001, deadline - time.monotonic()))
            assert f.fin, f"unexpected fragmented frame {f!r}"
            if f.opcode == OP_CLOSE:
                close = f.close_code, f.payload[2:].decode()
                break
            if f.opcode == OP_TEXT:
                m = json.loads(f.payload)
                if m["type"] == "message":
                    ids.append(m["id"])
    except EOFError:
        pass
    return ids, close


class SlowSSE:
    """An event stream with a tiny receive buffer that reads nothing after
    its preamble until drain()."""

    def __init__(self, port, path):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(EVENT_TIMEOUT)
        self.sock.connect((HOST, port))
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                          "Accept: text/event-stream\r\n\r\n".encode())
        self.raw = bytearray()
        while b"retry:" not in self.raw:
            data = self.sock.recv(4096)
            assert data, f"no preamble: {bytes(self.raw)!r}"
            self.raw += data
        assert self.raw.startswith(b"HTTP/1.1 200 "), bytes(self.raw[:200])

    def drain(self, timeout=90):
        """Read to the end of the connection (fails on timeout); the events."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.001, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                break
            self.raw += data
        http, parser = HTTPResponseParser(), SSEParser()
        parser.feed(http.feed(bytes(self.raw)))
        http.feed_eof()
        parser.feed_eof()
        self.clean_end = http.complete and not http.truncated
        return [v for k, v in parser.items if k == "event"]

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("slow_kind", ["websocket", "sse"])
def test_slow_consumer(sec, slow_kind):
    """PushMaxQueue 100 and a client that reads nothing (tiny receive
    buffer) while 10,000 messages of 1 KiB are published (3,000 for the SSE
    variant): Apache's memory stays bounded, the slow connection is closed
    (WebSocket: 1013 when that frame can still reach it, else the end of the
    connection; SSE: the end of the stream), every other subscriber (an
    event stream and a WebSocket reading normally) gets every message once,
    in order; reconnecting with its last id, the slow client is told of
    the gap (the broker keeps 1,000 messages) and gets what history has."""
    n = 10000
    ch = unique_channel("slow")
    off = sec.apache.log_offset()
    sse = sec.subscribe(None, path=f"/slow/{ch}")
    ws = WS(sec.port, f"/slow/{ch}")
    assert ws.status == 101
    ws.subscribed(ch)
    if slow_kind == "websocket":
        slow = WS(sec.port, f"/slow/{ch}", rcvbuf=4096)
        assert slow.status == 101
        slow.subscribed(ch)
    else:
        slow = SlowSSE(sec.port, f"/slow/{ch}")
    readers = [SSEReader(sse, n), WSReader(ws, n)]
    for r in readers:
        r.start()
    pub = Publisher(sec.broker.api)
    base = children_rss(sec.apache)
    peak = base
    pad = b"." * 1024
    try:
        for i in range(1, n + 1):
            # "reading normally": the other subscribers keep up, i.e. they
            # are never more than AHEAD messages behind (fewer than
            # PushMaxQueue, so they are never slow consumers themselves)
            wait_until(lambda: i - 1 - min(len(readers[0].events), len(readers[1].msgs)) < AHEAD
                       or any(r.error for r in readers), 60,
                       "the normal subscribers to keep up", interval=0.0005)
            assert pub.pub(ch, f"{i:06d}".encode() + pad[6:]) == i
            if i % 250 == 0:
                peak = max(peak, children_rss(sec.apache))
        for r in readers:
            r.join(180)
            assert not r.is_alive(), "a normal reader did not get every message"
        peak = max(peak, children_rss(sec.apache))
        # memory: bounded, whatever the slow client does
        assert peak - base < 64 * 1024, f"httpd children grew by {(peak - base) // 1024} MiB"
        # everyone else: every message, once, in order
        sse_r, ws_r = readers
        assert sse_r.error is None and ws_r.error is None, (sse_r.error, ws_r.error)
        assert [e.int_id for e in sse_r.events] == list(range(1, n + 1))
        assert all(e.data.startswith(f"{e.int_id:06d}") for e in sse_r.events)
        assert [m["id"] for m in ws_r.msgs] == list(range(1, n + 1))
        assert all(m["data"].startswith(f"{m['id']:06d}") for m in ws_r.msgs)
        assert_logged(sec.apache, off, rf"AH20011: slow consumer on channel {re.escape(ch)} "
                      r"cut off: more than 100 messages queued", "the slow consumer cut off")

        # the slow client: what it can still read, then the end
        if slow_kind == "websocket":
            ids, close = drain_slow_websocket(slow)
            if close is not None:
                assert close == (1013, "slow consumer: too many messages queued"), close
        else:
            ids = [e.int_id for e in slow.drain()]
        assert ids == list(range(1, len(ids) + 1)), "the slow client got a hole or a repeat"
        assert len(ids) < n, "the slow consumer was not cut off"
        last = ids[-1] if ids else 0
    finally:
        pub.close()
        sse.close()
        ws.close()
        slow.close()

    # reconnecting with its last id: the gap, then what history still has
    oldest = n - HISTORY_MAX + 1
    if slow_kind == "sse":
        with sec.subscribe(None, path=f"/slow/{ch}", header_id=last) as again:
            expect = list(range(max(oldest, last + 1), n + 1))
            evs = again.events(len(expect) + (1 if last + 1 < oldest else 0), timeout=60)
            if last + 1 < oldest:
                gap = evs.pop(0)
                assert (gap.type, gap.id) == ("gap", "")
                assert json.loads(gap.data) == {"channel": ch, "after": last,
                                                "oldest_id": oldest, "last_id": n,
                                                "reason": "trimmed"}
            assert [e.int_id for e in evs] == expect
        return
    with WS(sec.port, f"/slow/{ch}?last_id={last}") as again:
        assert again.status == 101
        first = again.recv_json()
        if last + 1 < oldest:
            assert first == {"type": "gap", "channel": ch, "after": last, "oldest_id": oldest,
                             "last_id": n, "reason": "trimmed"}
            expect = list(range(oldest, n + 1))
            got = []
        else:
            expect = list(range(last + 1, n + 1))
            got = [first["id"]]
        while len(got) < len(expect):
            m = again.recv_json()
            assert m["type"] == "message", m
            got.append(m["id"])
        assert got == expect
        assert again.recv_json() == {"type": "subscribed", "channel": ch, "last_id": n}
