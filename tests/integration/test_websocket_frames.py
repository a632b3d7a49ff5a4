"""WebSocket framing rules (RFC 6455 §5) on a raw socket: we write the
frames ourselves, the server's answer is checked byte for byte (close
code, then the TCP close), every server frame must be unmasked, and after
each bad input a new connection must still work."""
import json
import socket
import struct
import time

import pytest

from conftest import EVENT_TIMEOUT, HOST, unique_channel
from test_websocket_util import (
    OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawWS, assert_ws_still_works,
    FrameReader, close_payload, deflate_message, frame, handshake_request, subscribed_raw,
    ws_stack_fixture)


fs = ws_stack_fixture("wsframes")


@pytest.fixture
def conn(fs, channel):
    """A JSON-mode socket on /ws/<channel> that got its "subscribed"."""
    w = subscribed_raw(fs.port, f"/ws/{channel}")
    yield w
    w.close()


def ping_cmd(ref):
    return json.dumps({"type": "ping", "ref": ref}).encode()


def fail_case(fs, w, code, send):
    """Send the bad bytes, expect close code then the TCP close, then check
    that the server still serves new sockets."""
    w.send(send)
    w.expect_close(code)
    assert_ws_still_works(fs)


# ---------------------------------------------------------------------------
# protocol errors: close 1002
# ---------------------------------------------------------------------------

def test_unmasked_frame(fs, conn):
    fail_case(fs, conn, 1002, frame(OP_TEXT, ping_cmd(1), mask=False))


def test_unmasked_control_frame(fs, conn):
    fail_case(fs, conn, 1002, frame(OP_PING, b"x", mask=False))


@pytest.mark.parametrize("rsv", ["rsv1", "rsv2", "rsv3"])
def test_rsv_bits_without_extension(fs, conn, rsv):
    fail_case(fs, conn, 1002, frame(OP_TEXT, ping_cmd(1), **{rsv: True}))


@pytest.mark.parametrize("rsv", ["rsv2", "rsv3"])
def test_rsv2_rsv3_with_deflate(fs, channel, rsv):
    with RawWS(fs.port, f"/ws/{channel}", deflate=True) as w:
        assert w.deflate
        w.wait_subscribed()
        fail_case(fs, w, 1002, frame(OP_TEXT, ping_cmd(1), **{rsv: True}))


def test_rsv1_on_control_frame_with_deflate(fs, channel):
    with RawWS(fs.port, f"/ws/{channel}", deflate=True) as w:
        w.wait_subscribed()
        fail_case(fs, w, 1002, frame(OP_PING, b"x", rsv1=True))


def test_rsv1_on_continuation_with_deflate(fs, channel):
    """RSV1 marks a compressed message on its first frame only."""
    with RawWS(fs.port, f"/ws/{channel}", deflate=True) as w:
        w.wait_subscribed()
        z = deflate_message(ping_cmd("z"))
        fail_case(fs, w, 1002, frame(OP_TEXT, z[:3], fin=False, rsv1=True)
                  + frame(OP_CONT, z[3:], rsv1=True))


def test_compressed_frame_without_deflate(fs, conn):
    """RSV1 (a compressed frame) when permessage-deflate was not negotiated."""
    assert not conn.deflate
    fail_case(fs, conn, 1002, frame(OP_TEXT, deflate_message(ping_cmd(1)), rsv1=True))


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_unknown_opcode(fs, conn, opcode):
    fail_case(fs, conn, 1002, frame(opcode, b"data"))


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_fragmented_control_frame(fs, conn, opcode):
    payload = close_payload(1000) if opcode == OP_CLOSE else b"frag"
    fail_case(fs, conn, 1002, frame(opcode, payload, fin=False))


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_control_frame_over_125(fs, conn, opcode):
    payload = close_payload(1000, b"r" * 124) if opcode == OP_CLOSE else b"p" * 126
    assert len(payload) == 126
    fail_case(fs, conn, 1002, frame(opcode, payload))


def test_control_frame_125_is_fine(fs, conn):
    conn.send_frame(OP_PING, b"p" * 125)
    f = conn.recv_frame()
    assert (f.opcode, f.payload) == (OP_PONG, b"p" * 125), f


def test_continuation_without_start(fs, conn):
    fail_case(fs, conn, 1002, frame(OP_CONT, ping_cmd(1)))


def test_continuation_without_start_not_fin(fs, conn):
    fail_case(fs, conn, 1002, frame(OP_CONT, b"x", fin=False))


@pytest.mark.parametrize("second", [OP_TEXT, OP_BINARY])
def test_new_message_inside_fragmented_one(fs, conn, second):
    fail_case(fs, conn, 1002, frame(OP_TEXT, b'{"type":', fin=False)
              + frame(second, ping_cmd(1)))


def test_continuation_after_complete_message(fs, conn):
    conn.send(frame(OP_TEXT, ping_cmd(1)))
    assert conn.recv_json() == {"type": "pong", "ref": 1}
    fail_case(fs, conn, 1002, frame(OP_CONT, b"more"))


def test_64bit_length_with_msb_set(fs, conn):
    head = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 1 << 63)
    conn.send(head + b"\x00\x00\x00\x00")
    f = conn.recv_frame()
    assert f.close_code in (1002, 1009), f
    conn.expect_eof()
    assert_ws_still_works(fs)


# ---------------------------------------------------------------------------
# fragmentation that is fine
# ---------------------------------------------------------------------------

def test_fragmented_message(fs, conn):
    cmd = ping_cmd("fragmented")
    parts = [cmd[:5], cmd[5:6], b"", cmd[6:20], cmd[20:]]
    data = frame(OP_TEXT, parts[0], fin=False)
    for p in parts[1:-1]:
        data += frame(OP_CONT, p, fin=False)
    data += frame(OP_CONT, parts[-1])
    conn.send(data)
    assert conn.recv_json() == {"type": "pong", "ref": "fragmented"}


def test_ping_between_fragments_answered_at_once(fs, conn):
    cmd = ping_cmd("after-the-ping")
    conn.send(frame(OP_TEXT, cmd[:7], fin=False))
    conn.send(frame(OP_PING, b"in the middle"))
    # the pong comes right away, before the message is complete
    f = conn.recv_frame()
    assert (f.opcode, f.payload) == (OP_PONG, b"in the middle"), f
    conn.send(frame(OP_CONT, cmd[7:15], fin=False))
    conn.send(frame(OP_PING, b""))
    f = conn.recv_frame()
    assert (f.opcode, f.payload) == (OP_PONG, b""), f
    conn.send(frame(OP_PONG, b"unsolicited, in the middle"))
    conn.send(frame(OP_CONT, cmd[15:]))
    assert conn.recv_json() == {"type": "pong", "ref": "after-the-ping"}


def test_ping_between_fragments_one_write(fs, conn):
    cmd = ping_cmd("one-write")
    conn.send(frame(OP_TEXT, cmd[:4], fin=False) + frame(OP_PING, b"mid")
              + frame(OP_CONT, cmd[4:]))
    f = conn.recv_frame()
    assert (f.opcode, f.payload) == (OP_PONG, b"mid"), f
    assert conn.recv_json() == {"type": "pong", "ref": "one-write"}


def test_close_between_fragments(fs, conn):
    conn.send(frame(OP_TEXT, b'{"type":', fin=False) + frame(OP_CLOSE, close_payload(1000)))
    conn.expect_close(1000)
    assert_ws_still_works(fs)


def test_fragmented_publish(fs, channel):
    target = unique_channel("frag-pub")
    with fs.subscribe(target) as sse, subscribed_raw(fs.port, f"/ws/{channel}") as w:
        cmd = json.dumps({"type": "publish", "channel": target, "data": "x" * 3000,
                          "ref": "fp"}).encode()
        chunks = [cmd[i:i + 700] for i in range(0, len(cmd), 700)]
        data = frame(OP_TEXT, chunks[0], fin=False)
        for c in chunks[1:-1]:
            data += frame(OP_CONT, c, fin=False)
        data += frame(OP_CONT, chunks[-1])
        w.send(data)
        assert w.recv_json() == {"type": "published", "channel": target, "id": 1,
                                 "subscribers": 1, "ref": "fp"}
        assert sse.next_event().data == "x" * 3000


# ---------------------------------------------------------------------------
# UTF-8: close 1007
# ---------------------------------------------------------------------------

INVALID_UTF8 = {
    "lone-ff": b"\xff",
    "lone-continuation": b"\x80",
    "overlong-slash": b"\xc0\xaf",
    "overlong-3": b"\xe0\x80\xaf",
    "surrogate": b"\xed\xa0\x80",
    "above-10ffff": b"\xf4\x90\x80\x80",
    "truncated-at-end": b"\xe2\x82",
    "bad-continuation": b"\xe2\x82\x28",
}


@pytest.mark.parametrize("name", list(INVALID_UTF8))
def test_invalid_utf8_text(fs, conn, name):
    payload = b'{"type":"ping","ref":"' + INVALID_UTF8[name] + b'"}'
    if name == "truncated-at-end":
        payload = b'{"type":"ping","ref":"x"}' + INVALID_UTF8[name]
    fail_case(fs, conn, 1007, frame(OP_TEXT, payload))


@pytest.mark.parametrize("split", [1, 2, 3])
def test_invalid_utf8_split_across_fragments(fs, conn, split):
    bad = b'{"ref":"\xf0\x9f\x98' + b"\x28" + b'"}'    # 4-byte sequence broken by "("
    cut = len(b'{"ref":"') + split
    fail_case(fs, conn, 1007, frame(OP_TEXT, bad[:cut], fin=False) + frame(OP_CONT, bad[cut:]))


def test_invalid_utf8_truncated_at_message_end_fragmented(fs, conn):
    fail_case(fs, conn, 1007, frame(OP_TEXT, b'{"type":"ping"}', fin=False)
              + frame(OP_CONT, b"\xf0\x9f"))


@pytest.mark.parametrize("split", [1, 2, 3])
def test_valid_utf8_split_across_fragments(fs, conn, split):
    cmd = json.dumps({"type": "ping", "ref": "\U0001F600 ok"}, ensure_ascii=False).encode()
    cut = cmd.index("\U0001F600".encode()) + split
    conn.send(frame(OP_TEXT, cmd[:cut], fin=False))
    time.sleep(0.05)
    conn.send(frame(OP_CONT, cmd[cut:]))
    assert conn.recv_json() == {"type": "pong", "ref": "\U0001F600 ok"}


def test_invalid_utf8_in_binary_is_fine(fs, conn):
    """Binary frames carry no UTF-8 obligation (JSON mode answers an error)."""
    conn.send_frame(OP_BINARY, b"\xff\xfe\xc0\xaf")
    m = conn.recv_json()
    assert (m["type"], m["code"]) == ("error", "bad_request"), m


def test_invalid_utf8_after_inflating(fs, channel):
    with RawWS(fs.port, f"/ws/{channel}", deflate=True) as w:
        w.wait_subscribed()
        fail_case(fs, w, 1007, frame(OP_TEXT, deflate_message(b'{"x":"\xff"}' * 20),
                                     rsv1=True))


def test_corrupt_deflate_data(fs, channel):
    with RawWS(fs.port, f"/ws/{channel}", deflate=True) as w:
        w.wait_subscribed()
        w.send_frame(OP_TEXT, b"\xff\xff\xff\xff not deflate", rsv1=True)
        f = None
        while f is None or f.opcode != OP_CLOSE:
            f = w.recv_frame()
        assert f.close_code in (1002, 1007), f
        w.expect_eof()
    assert_ws_still_works(fs)


def test_invalid_utf8_close_reason(fs, conn):
    conn.send_frame(OP_CLOSE, close_payload(1000, b"\xff\xfe"))
    f = None
    while f is None or f.opcode != OP_CLOSE:
        f = conn.recv_frame()
    assert f.close_code in (1002, 1007), f
    conn.expect_eof()
    assert_ws_still_works(fs)


# ---------------------------------------------------------------------------
# message size: close 1009
# ---------------------------------------------------------------------------

@pytest.fixture
def small(fs, channel):
    w = subscribed_raw(fs.port, f"/ws-small/{channel}")
    yield w
    w.close()


def padded(total):
    base = b'{"type":"ping","ref":""}'
    return b'{"type":"ping","ref":"' + b"p" * (total - len(base)) + b'"}'


def test_message_at_limit(fs, small):
    small.send_frame(OP_TEXT, padded(1000))
    assert small.recv_json()["type"] == "pong"


def test_message_over_limit(fs, small):
    fail_case(fs, small, 1009, frame(OP_TEXT, padded(1001)))


def test_message_over_limit_in_fragments(fs, small):
    msg = padded(1500)
    fail_case(fs, small, 1009, frame(OP_TEXT, msg[:600], fin=False)
              + frame(OP_CONT, msg[600:1200], fin=False) + frame(OP_CONT, msg[1200:]))


def test_fragments_at_limit(fs, small):
    msg = padded(1000)
    small.send(frame(OP_TEXT, msg[:500], fin=False) + frame(OP_CONT, msg[500:]))
    assert small.recv_json()["type"] == "pong"
    # the limit is per message: the next one may be as big
    small.send(frame(OP_TEXT, msg[:999], fin=False) + frame(OP_CONT, msg[999:]))
    assert small.recv_json()["type"] == "pong"


def test_over_limit_refused_from_the_header(fs, conn):
    """The default limit is 65536: a frame announcing 65537 bytes is refused
    before its payload is sent."""
    conn.send(bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 65537) + b"\x01\x02\x03\x04")
    conn.expect_close(1009)
    assert_ws_still_works(fs)


def test_64bit_length_frame_at_default_limit(fs, conn):
    msg = padded(65536)
    data = frame(OP_TEXT, msg)
    assert data[1] & 0x7F == 127          # needs the 8-byte length
    conn.send(data)
    assert conn.recv_json() == json.loads(msg.replace(b'"ping"', b'"pong"'))


def test_16bit_length_frame(fs, conn):
    msg = padded(40000)
    data = frame(OP_TEXT, msg)
    assert data[1] & 0x7F == 126
    conn.send(data)
    assert conn.recv_json()["type"] == "pong"


# ---------------------------------------------------------------------------
# control frames
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [b"", b"hello", bytes(range(125)), b"\xff\x00\xfe"],
                         ids=["empty", "text", "125", "binary"])
def test_ping_gets_pong_with_same_payload(fs, conn, payload):
    conn.send_frame(OP_PING, payload)
    f = conn.recv_frame()
    assert (f.opcode, f.fin, f.payload) == (OP_PONG, True, payload), f


def test_several_pings_in_order(fs, conn):
    conn.send(b"".join(frame(OP_PING, f"p{i}".encode()) for i in range(20)))
    for i in range(20):
        f = conn.recv_frame()
        assert (f.opcode, f.payload) == (OP_PONG, f"p{i}".encode()), f


def test_unsolicited_pong_ignored(fs, conn, channel):
    conn.send_frame(OP_PONG, b"nobody asked")
    conn.send_frame(OP_PONG, b"")
    conn.send_json({"type": "ping", "ref": "after-pong"})
    assert conn.recv_json() == {"type": "pong", "ref": "after-pong"}
    ack = fs.publish_ok(channel, "still subscribed")
    m = conn.recv_json()
    assert (m["type"], m["id"]) == ("message", ack["id"])


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                  3000, 3999, 4000, 4999])
def test_close_valid_code_echoed(fs, conn, code):
    conn.send_frame(OP_CLOSE, close_payload(code, "bye"))
    f = conn.expect_close(code)
    assert f.payload[:2] == struct.pack("!H", code)


def test_close_empty_echoed_empty(fs, conn):
    conn.send_frame(OP_CLOSE, b"")
    f = conn.recv_frame()
    assert (f.opcode, f.payload) == (OP_CLOSE, b""), f
    conn.expect_eof()
    assert_ws_still_works(fs)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999,
                                  5000, 65535])
def test_close_invalid_code(fs, conn, code):
    fail_case(fs, conn, 1002, frame(OP_CLOSE, close_payload(code)))


def test_close_one_byte_payload(fs, conn):
    fail_case(fs, conn, 1002, frame(OP_CLOSE, b"\x03"))


def test_nothing_processed_after_close(fs, conn, channel):
    """Frames after the client's close are not acted on."""
    conn.send(frame(OP_CLOSE, close_payload(1000))
              + frame(OP_TEXT, json.dumps({"type": "publish", "channel": channel,
                                           "data": "after close"}).encode()))
    conn.expect_close(1000)
    assert fs.poll(channel, 0).json()["messages"] == []


def test_client_vanishes_without_close(fs, channel):
    for _ in range(10):
        w = subscribed_raw(fs.port, f"/ws/{channel}")
        w.send(frame(OP_TEXT, b'{"type":"pi', fin=False))
        w.sock.shutdown(socket.SHUT_RDWR)
        w.close()
    for _ in range(3):
        fs.publish_ok(channel, "to nobody")
    assert_ws_still_works(fs)


# ---------------------------------------------------------------------------
# however the bytes arrive
# ---------------------------------------------------------------------------

def script(channel, other):
    """A command sequence and what it must produce (without "time"),
    as frames: JSON commands, a fragmented one, a ping between them."""
    cmds = [
        frame(OP_TEXT, json.dumps({"type": "subscribe", "channel": other, "ref": 1})),
        frame(OP_TEXT, json.dumps({"type": "publish", "channel": other, "data": "hello ☃",
                                   "event": "greet", "ref": 2}, ensure_ascii=False)),
        frame(OP_PING, b"control"),
    ]
    # a fragmented publish to the URL's channel
    pub = b'{"type":"publish","channel":' + json.dumps(channel).encode() \
        + b',"data":"own","ref":3}'
    cmds.append(frame(OP_TEXT, pub[:10], fin=False) + frame(OP_CONT, pub[10:25], fin=False)
                + frame(OP_CONT, pub[25:]))
    cmds.append(frame(OP_TEXT, json.dumps({"type": "ping", "ref": 4})))
    expected = [
        {"type": "subscribed", "channel": other, "last_id": 0, "ref": 1},
        {"type": "published", "channel": other, "id": 1, "subscribers": 1, "ref": 2},
        {"type": "message", "channel": other, "id": 1, "event": "greet", "data": "hello ☃"},
        {"type": "published", "channel": channel, "id": 1, "subscribers": 1, "ref": 3},
        {"type": "message", "channel": channel, "id": 1, "event": None, "data": "own"},
        {"type": "pong", "ref": 4},
    ]
    return cmds, expected


def collect(w, expected):
    """Read until as many JSON messages as expected and the control pong
    arrived; returns (json messages without time, control pongs)."""
    got, pongs = [], []
    while len(got) < len(expected) or not pongs:
        f = w.recv_frame()
        if f.opcode == OP_PONG:
            pongs.append(f.payload)
            continue
        assert f.opcode == OP_TEXT, f
        m = json.loads(f.payload)
        m.pop("time", None)
        got.append(m)
    return got, pongs


def key(m):
    return json.dumps(m, sort_keys=True)


@pytest.mark.parametrize("how", ["one-byte-writes", "one-write", "frame-per-write"])
def test_bytes_arrive_any_way(fs, how):
    channel, other = unique_channel("bytes"), unique_channel("bytes-other")
    cmds, expected = script(channel, other)
    with subscribed_raw(fs.port, f"/ws/{channel}") as w:
        data = b"".join(cmds)
        if how == "one-write":
            w.send(data)
        elif how == "frame-per-write":
            for c in cmds:
                w.send(c)
        else:
            for i in range(len(data)):
                w.send(data[i:i + 1])
                time.sleep(0.002)
        got, pongs = collect(w, expected)
        assert pongs == [b"control"]
        assert sorted(map(key, got)) == sorted(map(key, expected)), got
        # per channel: the subscription is acknowledged before its messages
        assert got.index(expected[0]) < got.index(expected[2]), got
        # nothing more
        w.send_json({"type": "ping", "ref": "end"})
        assert w.recv_json() == {"type": "pong", "ref": "end"}
    assert_ws_still_works(fs)


def test_handshake_and_frames_in_one_write(fs, channel):
    """Frames sent right behind the handshake request (before the 101)."""
    req = handshake_request(fs.port, f"/ws/{channel}")
    with socket.create_connection((HOST, fs.port), timeout=EVENT_TIMEOUT) as s:
        s.sendall(req + frame(OP_TEXT, ping_cmd("early")) + frame(OP_PING, b"early"))
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            assert chunk, buf
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        r = FrameReader()
        frames = r.feed(rest)
        while len(frames) < 3:
            chunk = s.recv(65536)
            assert chunk, frames
            frames += r.feed(chunk)
    assert not any(f.masked for f in frames)
    got = sorted((f.opcode, f.payload) for f in frames)
    assert (OP_PONG, b"early") in got, frames
    texts = [json.loads(f.payload) for f in frames if f.opcode == OP_TEXT]
    assert {"type": "subscribed", "channel": channel, "last_id": 0} in texts, texts
    assert {"type": "pong", "ref": "early"} in texts, texts


def test_many_masks_and_sizes(fs, conn):
    """Zero mask, all-ones mask, payload sizes around the length encodings."""
    for mask in (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x01\x02\x03\x04"):
        for size in (25, 125, 126, 127, 65535):
            msg = padded(size)
            conn.send(frame(OP_TEXT, msg, key=mask))
            assert conn.recv_json() == json.loads(msg.replace(b'"ping"', b'"pong"')), \
                (mask, size)
