"""Shared helpers of the WebSocket tests (this file holds no tests).

  WS_CONF            extra Apache conf with one <Location> per directive set
  ws_stack_fixture() a module fixture: a started Stack with WS_CONF
  RawWS              blocking raw-socket WebSocket client: you build the frames
                     (masked or not, any RSV/opcode/fragmentation), it checks
                     that every server frame is unmasked
  FrameReader        sans-I/O frame parser (RawWS and the asyncio scale test)
  frame()            encode one frame
  ws_connect()       python-websockets 10.4 client (asyncio)
  assert_ws_still_works(stack)
                     after a bad-input case: a new socket subscribes, gets an
                     HTTP publish and publishes itself
"""
import asyncio
import base64
import hashlib
import json
import os
import socket
import struct
import time
import zlib

import pytest
import websockets

from conftest import (EVENT_TIMEOUT, HOST, HTTPResponseParser, SocketCloser, stack_fixture,
                      unique_channel)

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# One location per directive combination.  /sub/ keeps the defaults of
# conf/push.conf (publishing off, deflate on, ping 30 s, max message 65536).
WS_CONF = """\
<Location /ws/>
  SetHandler push-subscriber
  PushWebSocketPublish on
</Location>
<Location /ws-origin/>
  SetHandler push-subscriber
  PushWebSocketOrigins https://good.example
</Location>
<Location /ws-proto/>
  SetHandler push-subscriber
  PushWebSocketSubprotocols chat.v1 chat.v2
</Location>
<Location /ws-off/>
  SetHandler push-subscriber
  PushWebSocket off
</Location>
<Location /ws-nodeflate/>
  SetHandler push-subscriber
  PushWebSocketDeflate off
  PushWebSocketPublish on
</Location>
<Location /ws-ping/>
  SetHandler push-subscriber
  PushWebSocketPing 1
  PushWebSocketPublish on
</Location>
<Location /ws-noping/>
  SetHandler push-subscriber
  PushWebSocketPing 0
  PushWebSocketPublish on
</Location>
<Location /ws-small/>
  SetHandler push-subscriber
  PushWebSocketMaxMessage 1000
  PushWebSocketPublish on
</Location>
<Location /ws-raw/>
  SetHandler push-subscriber
  PushWebSocketMode raw
  PushWebSocketPublish on
</Location>
<Location /ws-raw-ro/>
  SetHandler push-subscriber
  PushWebSocketMode raw
</Location>
"""


def ws_stack_fixture(name, extra=""):
    """A module-scoped fixture (assign it to a name of the test file): a
    Stack named name with WS_CONF + extra, stopped after the module."""
    return stack_fixture(name, extra_conf=WS_CONF + extra)


# ---------------------------------------------------------------------------
# frames
# ---------------------------------------------------------------------------

def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def mask_bytes(payload, key):
    n = len(payload)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big") \
        if n else b""


def frame(opcode, payload=b"", fin=True, rsv1=False, rsv2=False, rsv3=False, mask=True,
          key=None, length=None):
    """One frame.  length overrides the announced payload length."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) \
        | (0x10 if rsv3 else 0) | (opcode & 0x0F)
    n = len(payload) if length is None else length
    mbit = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, mbit | n])
    elif n <= 0xFFFF:
        head = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if mask:
        key = key if key is not None else os.urandom(4)
        return head + key + mask_bytes(payload, key)
    return head + payload


def close_payload(code, reason=b""):
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


def deflate_message(data):
    """permessage-deflate payload of data (RFC 7692 §7.2.1: drop 00 00 ff ff)."""
    c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate_message(payload):
    d = zlib.decompressobj(-15)
    return d.decompress(payload + b"\x00\x00\xff\xff") + d.flush()


class Frame:
    def __init__(self, fin, rsv1, rsv2, rsv3, opcode, masked, payload):
        self.fin, self.rsv1, self.rsv2, self.rsv3 = fin, rsv1, rsv2, rsv3
        self.opcode, self.masked, self.payload = opcode, masked, payload

    @property
    def close_code(self):
        assert self.opcode == OP_CLOSE
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    def __repr__(self):
        return (f"Frame(op={self.opcode:#x}, fin={self.fin}, rsv1={self.rsv1}, "
                f"masked={self.masked}, len={len(self.payload)}, {self.payload[:80]!r})")


class FrameReader:
    """Feed bytes, get Frames (any masking; the caller checks it)."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data
        out = []
        while True:
            f = self._one()
            if f is None:
                return out
            out.append(f)

    def _one(self):
        b = self.buf
        if len(b) < 2:
            return None
        n = b[1] & 0x7F
        pos = 2
        if n == 126:
            if len(b) < 4:
                return None
            n = struct.unpack("!H", b[2:4])[0]
            pos = 4
        elif n == 127:
            if len(b) < 10:
                return None
            n = struct.unpack("!Q", b[2:10])[0]
            pos = 10
        masked = bool(b[1] & 0x80)
        key = None
        if masked:
            if len(b) < pos + 4:
                return None
            key = bytes(b[pos:pos + 4])
            pos += 4
        if len(b) < pos + n:
            return None
        payload = bytes(b[pos:pos + n])
        if masked:
            payload = mask_bytes(payload, key)
        f = Frame(bool(b[0] & 0x80), bool(b[0] & 0x40), bool(b[0] & 0x20), bool(b[0] & 0x10),
                  b[0] & 0x0F, masked, payload)
        del b[:pos + n]
        return f


# ---------------------------------------------------------------------------
# a blocking raw-socket client
# ---------------------------------------------------------------------------

class ServerClosed(Exception):
    """The server sent a close frame: .frame, its .code and .reason (text)."""

    def __init__(self, frame):
        super().__init__(f"server sent close {frame.close_code} {frame.payload[2:]!r}")
        self.frame = frame
        self.code = frame.close_code
        self.reason = frame.payload[2:].decode("utf-8", "replace")


def handshake_request(port, path, headers=None, version="HTTP/1.1", key=None,
                      deflate=False, host=HOST, omit=()):
    """The bytes of an opening handshake; headers override/extend the
    defaults, omit drops default headers by name."""
    h = {"Host": f"{host}:{port}", "Upgrade": "websocket", "Connection": "Upgrade",
         "Sec-WebSocket-Key": key or new_key(), "Sec-WebSocket-Version": "13"}
    if deflate:
        h["Sec-WebSocket-Extensions"] = deflate if isinstance(deflate, str) else \
            "permessage-deflate; client_max_window_bits"
    for k in omit:
        h.pop(k, None)
    h.update(headers or {})
    lines = [f"GET {path} {version}"] + [f"{k}: {v}" for k, v in h.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class RawWS(SocketCloser):
    """A WebSocket client on a plain socket.

    The constructor sends the handshake and reads the answer: .status,
    .headers (HTTPResponseParser), .body for a non-101 answer.  With
    expect_101 (default) anything else fails the test.  rcvbuf sets the
    socket's SO_RCVBUF before it connects (a client that is slow to read)."""

    def __init__(self, port, path, headers=None, *, deflate=False, key=None, omit=(),
                 version="HTTP/1.1", timeout=EVENT_TIMEOUT, source=None, ssl_context=None,
                 expect_101=True, auto_pong=True, rcvbuf=None):
        self.timeout = timeout
        self.auto_pong = auto_pong
        self.pings = []             # payloads of the pings the server sent
        self.pongs = []
        self.reader = FrameReader()
        self.frames = []            # every frame received, in order
        self._pending = []
        self.eof = False
        self.key = key or new_key()
        self.deflate = False
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.connect((HOST, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock, server_hostname=HOST)
        self.sock = sock
        self.request = handshake_request(port, path, headers, version, self.key, deflate,
                                         omit=omit)
        self.sock.sendall(self.request)
        self._read_head()
        if expect_101 and self.status != 101:
            pytest.fail(f"handshake GET {path} answered {self.status}: {self.body!r}\n"
                        f"request: {self.request!r}")
        if self.status == 101:
            ext = self.header("Sec-WebSocket-Extensions") or ""
            self.deflate = "permessage-deflate" in ext

    # --- handshake -----------------------------------------------------------
    def _read_head(self):
        buf = b""
        deadline = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in buf:
            data = self._recv(deadline)
            if not data:
                raise EOFError(f"closed before the handshake answer: {buf!r}")
            buf += data
        head, _, rest = buf.partition(b"\r\n\r\n")
        self.http = HTTPResponseParser()
        self.http.feed(head + b"\r\n\r\n")
        self.status = self.http.status
        self.head = head.decode("iso-8859-1")
        self.body = b""
        if self.status == 101:
            self._pending.extend(self._check(self.reader.feed(rest)))
        else:
            body = bytearray(self.http.feed(rest))
            while not self.http.complete:
                data = self._recv(deadline)
                if not data:
                    break
                body += self.http.feed(data)
            self.body = bytes(body)

    def header(self, name):
        return self.http.header(name)

    def json_body(self):
        return json.loads(self.body)

    # --- I/O -----------------------------------------------------------------
    def _recv(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("nothing from the server in time")
        self.sock.settimeout(left)
        try:
            return self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("nothing from the server in time") from None
        except ConnectionResetError:
            return b""

    def _check(self, frames):
        for f in frames:
            assert not f.masked, f"the server sent a masked frame: {f!r}"
            self.frames.append(f)
        return frames

    def send(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(frame(opcode, payload, **kw))

    def send_text(self, text, **kw):
        self.send_frame(OP_TEXT, text, **kw)

    def send_json(self, obj, compress=False):
        data = json.dumps(obj).encode()
        if compress:
            self.send_frame(OP_TEXT, deflate_message(data), rsv1=True)
        else:
            self.send_frame(OP_TEXT, data)

    def recv_frame(self, timeout=None):
        """The next frame, whatever it is.  EOFError at EOF."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self._pending:
            if self.eof:
                raise EOFError("connection closed by the server")
            data = self._recv(deadline)
            if not data:
                self.eof = True
                if self.reader.buf:
                    raise EOFError(f"EOF inside a frame: {bytes(self.reader.buf)!r}")
                raise EOFError("connection closed by the server")
            self._pending.extend(self._check(self.reader.feed(data)))
        return self._pending.pop(0)

    def recv_message(self, timeout=None):
        """The next data frame as (opcode, payload), inflated when compressed.
        Pings are answered (auto_pong) and recorded; a close raises ServerClosed."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            f = self.recv_frame(max(0.001, deadline - time.monotonic()))
            if f.opcode == OP_PING:
                self.pings.append(f.payload)
                if self.auto_pong:
                    self.send_frame(OP_PONG, f.payload)
                continue
            if f.opcode == OP_PONG:
                self.pongs.append(f.payload)
                continue
            if f.opcode == OP_CLOSE:
                raise ServerClosed(f)
            assert f.fin, f"the server fragmented a message: {f!r}"
            assert f.opcode in (OP_TEXT, OP_BINARY), f
            assert not (f.rsv2 or f.rsv3), f
            payload = f.payload
            if f.rsv1:
                assert self.deflate, f"RSV1 set but deflate was not negotiated: {f!r}"
                payload = inflate_message(payload)
            return f.opcode, payload

    def recv_json(self, timeout=None):
        op, payload = self.recv_message(timeout)
        assert op == OP_TEXT, f"JSON mode sent a binary frame: {payload!r}"
        return json.loads(payload.decode("utf-8"))

    def recv_json_until(self, pred, timeout=None):
        """Messages until pred(msg); returns all of them (the last matches)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        got = []
        while True:
            m = self.recv_json(max(0.001, deadline - time.monotonic()))
            got.append(m)
            if pred(m):
                return got

    def wait_subscribed(self, channel=None, timeout=None):
        msgs = self.recv_json_until(lambda m: m.get("type") == "subscribed", timeout)
        if channel is not None:
            assert msgs[-1]["channel"] == channel, msgs
        return msgs

    def expect_close(self, code, timeout=None):
        """Data frames may come first; then a close with code, then EOF.
        Returns the close frame."""
        deadline = time.monotonic() + (timeout or self.timeout)
        seen = []
        while True:
            try:
                f = self.recv_frame(max(0.001, deadline - time.monotonic()))
            except EOFError:
                pytest.fail(f"connection closed without a close frame (wanted {code}); "
                            f"frames before: {seen!r}")
            if f.opcode == OP_CLOSE:
                break
            seen.append(f)
        assert f.fin and not (f.rsv1 or f.rsv2 or f.rsv3), f
        assert f.close_code == code, f"close {f.close_code} ({f.payload[2:]!r}), wanted {code}"
        if len(f.payload) > 2:
            f.payload[2:].decode("utf-8")     # a reason must be UTF-8
        self.expect_eof(max(0.001, deadline - time.monotonic()))
        return f

    def expect_eof(self, timeout=None):
        """The server closes TCP: nothing but EOF may come."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            try:
                f = self.recv_frame(max(0.001, deadline - time.monotonic()))
            except EOFError:
                return
            except TimeoutError:
                pytest.fail("the server did not close the TCP connection")
            if f.opcode not in (OP_PING,):
                pytest.fail(f"a frame after the close: {f!r}")


def subscribed_raw(port, path, **kw):
    """A RawWS on a JSON location that got its {"type":"subscribed"}."""
    ws = RawWS(port, path, **kw)
    ws.wait_subscribed()
    return ws


def assert_ws_still_works(stack, path_prefix="/ws/"):
    """A new socket subscribes, receives an HTTP publish, publishes itself."""
    ch = unique_channel("alive")
    with subscribed_raw(stack.port, f"{path_prefix}{ch}") as ws:
        ack = stack.publish_ok(ch, "still alive")
        m = ws.recv_json()
        assert (m["type"], m["id"], m["data"]) == ("message", ack["id"], "still alive"), m
        ws.send_json({"type": "publish", "channel": ch, "data": "from ws", "ref": "alive"})
        got = []
        while not (any(m["type"] == "published" for m in got)
                   and any(m["type"] == "message" for m in got)):
            got.append(ws.recv_json())
        pub = next(m for m in got if m["type"] == "published")
        msg = next(m for m in got if m["type"] == "message")
        assert (pub["ref"], pub["channel"], pub["id"]) == ("alive", ch, ack["id"] + 1), got
        assert (msg["id"], msg["data"]) == (pub["id"], "from ws"), got
        assert len(got) == 2, got
    assert stack.broker.running(), "the broker died"


# ---------------------------------------------------------------------------
# python-websockets (asyncio)
# ---------------------------------------------------------------------------

def ws_url(port, path, scheme="ws"):
    return f"{scheme}://{HOST}:{port}{path}"


def ws_connect(port, path, scheme="ws", **kw):
    kw.setdefault("open_timeout", EVENT_TIMEOUT)
    kw.setdefault("close_timeout", EVENT_TIMEOUT)
    kw.setdefault("ping_interval", None)
    kw.setdefault("max_size", None)
    return websockets.connect(ws_url(port, path, scheme), **kw)


async def arecv_json(ws, timeout=EVENT_TIMEOUT):
    msg = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(msg, str), f"JSON mode sent a binary message: {msg!r}"
    return json.loads(msg)


async def arecv_until(ws, pred, timeout=EVENT_TIMEOUT):
    deadline = time.monotonic() + timeout
    got = []
    while True:
        m = await arecv_json(ws, max(0.001, deadline - time.monotonic()))
        got.append(m)
        if pred(m):
            return got


async def await_subscribed(ws, channel=None, timeout=EVENT_TIMEOUT):
    msgs = await arecv_until(ws, lambda m: m.get("type") == "subscribed", timeout)
    if channel is not None:
        assert msgs[-1]["channel"] == channel, msgs
    return msgs


async def asend_json(ws, obj):
    await ws.send(json.dumps(obj))


def run(coro, timeout=180):
    """Run a coroutine; timeout only keeps a broken build from hanging."""
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())
