#!/usr/bin/env python3
"""make_corpus.py — write the seed corpora of tests/fuzz/corpus/<target>/.

    python3 tests/fuzz/make_corpus.py [--broker pushbrokerd/pushbrokerd --pushctl clients/c/pushctl]

The seeds are deterministic: running it again rewrites the same files.
Inputs found by fuzzing and merged later (tools/fuzz.sh merge) have hash
names and are left alone.  With --broker/--pushctl it also (re)writes
corpus/store/broker-*: journals written by a real pushbrokerd.
The input layouts are described at the top of each tests/fuzz/fuzz_<target>.c.
"""
import argparse
import os
import shutil
import struct
import subprocess
import tempfile
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

RS, US = b"\x1e", b"\x1f"


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def msgs(*messages):
    """Messages given as lists of frames -> the RS/US text of fuzz_common.h."""
    return RS.join(US.join(f if isinstance(f, bytes) else f.encode() for f in m)
                   for m in messages)


# ---- ws_frame ----------------------------------------------------------------

MASK = b"\x37\xfa\x21\x3d"


def ws(opcode, payload=b"", fin=True, rsv1=False, masked=True, lenform=None, rsv=0):
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | rsv | opcode
    n = len(payload)
    form = lenform or (7 if n < 126 else 16 if n < 65536 else 64)
    m = 0x80 if masked else 0
    if form == 7:
        head = bytes([b0, m | n])
    elif form == 16:
        head = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    return head + MASK + bytes(c ^ MASK[i % 4] for i, c in enumerate(payload))


def deflate_msg(data, wbits=15, obj=None):
    c = obj or zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4], c


def settings(allow_rsv1=0, limit=6, stop=0, dec=0):
    """limit index: 0, 1, 16, 125, 126, 1000, 65536, SIZE_MAX"""
    return bytes([allow_rsv1 | limit << 1 | stop << 4 | dec << 5])


def ws_frame():
    T, B, C, CL, PI, PO = 1, 2, 0, 8, 9, 10
    s = settings()
    seeds = {
        "text-hello": s + b"\x00" + ws(T, b"hello"),
        "binary-300-16bit-length": s + b"\x05" + ws(B, bytes(range(256)) + b"x" * 44),
        "binary-64bit-length-partial": settings(limit=7) + b"\x09" + ws(B, b"y" * 70000)[:400],
        "fragmented-text-with-ping": s + b"\x17" + ws(T, b"hel", fin=False)
            + ws(C, b"lo ", fin=False) + ws(PI, b"are you there") + ws(C, b"world"),
        "utf8-split-across-fragments": s + b"\x21" + ws(T, "caf\u00e9 \u20ac".encode()[:4], fin=False)
            + ws(C, "caf\u00e9 \u20ac".encode()[4:9], fin=False) + ws(C, "caf\u00e9 \u20ac".encode()[9:]),
        "close-1000-reason": s + b"\x03" + ws(CL, b"\x03\xe8bye"),
        "close-empty": s + b"\x00" + ws(CL),
        "close-one-byte": s + b"\x00" + ws(CL, b"\x03"),
        "close-code-1005": s + b"\x00" + ws(CL, b"\x03\xed"),
        "close-code-4999-utf8": s + b"\x00" + ws(CL, b"\x13\x87" + "\u00e9t\u00e9".encode()),
        "close-reason-bad-utf8": s + b"\x00" + ws(CL, b"\x03\xe8\xc3\x28"),
        "ping-125": s + b"\x44" + ws(PI, b"p" * 125),
        "ping-126-too-long": s + b"\x00" + ws(PI, b"p" * 126),
        "ping-not-fin": s + b"\x00" + ws(PI, b"x", fin=False),
        "pong": s + b"\x00" + ws(PO, b"pong"),
        "text-bad-utf8": s + b"\x00" + ws(T, b"ok \xed\xa0\x80"),
        "text-ends-mid-char": s + b"\x00" + ws(T, b"ok \xe2\x82"),
        "unmasked": s + b"\x00" + ws(T, b"hello", masked=False),
        "rsv2": s + b"\x00" + ws(T, b"x", rsv=0x20),
        "opcode-3": s + b"\x00" + ws(3, b"x"),
        "opcode-b": s + b"\x00" + ws(0xB, b"x"),
        "continuation-without-start": s + b"\x00" + ws(C, b"x"),
        "text-while-fragmented": s + b"\x00" + ws(T, b"a", fin=False) + ws(T, b"b"),
        "length-16-not-minimal": s + b"\x00" + ws(B, b"z" * 10, lenform=16),
        "length-64-not-minimal": s + b"\x00" + ws(B, b"z" * 10, lenform=64),
        "length-64-top-bit": s + b"\x00" + b"\x82\xff\x80\x00\x00\x00\x00\x00\x00\x01" + MASK,
        "too-big-for-16": settings(limit=2) + b"\x00" + ws(T, b"a" * 17),
        "too-big-fragmented": settings(limit=2) + b"\x00" + ws(B, b"a" * 10, fin=False) + ws(C, b"b" * 7),
        "limit-0-empty-ok": settings(limit=0) + b"\x00" + ws(T) + ws(B),
        "many-messages": s + b"\x3c" + b"".join(ws(T, ("message %d" % i).encode()) for i in range(12)),
        "stop-at-third-unit": settings(stop=1) + b"\x00" + b"".join(ws(PI, b"%d" % i) for i in range(5)),
        "empty-text-and-binary": s + b"\x00" + ws(T) + ws(B) + ws(PO),
        # over 4 KiB: the message buffer is released after delivery, then a small one
        "big-binary-then-small": s + b"\x2b" + ws(B, bytes(range(256)) * 20) + ws(T, b"small"),
        "big-text-fragmented": s + b"\x07" + ws(T, "\u00e9t\u00e9 ".encode() * 300, fin=False)
            + ws(PO, b"x") + ws(C, b"end"),
    }
    # permessage-deflate: RSV1 on the first frame of compressed messages
    z1, c = deflate_msg(b"Hello, hello, hello, hello!")
    z2, _ = deflate_msg(b"Hello again, hello, hello!", obj=c)
    zbig, _ = deflate_msg(b"a" * 20000)
    z9, _ = deflate_msg(b"tiny window " * 20, wbits=9)
    seeds.update({
        "deflate-text": settings(1, dec=7) + b"\x00" + ws(T, z1, rsv1=True),
        "deflate-context-takeover": settings(1, dec=6) + b"\x00" + ws(T, z1, rsv1=True)
            + ws(T, z2, rsv1=True),
        "deflate-fragmented": settings(1, dec=7) + b"\x11" + ws(B, z1[:5], rsv1=True, fin=False)
            + ws(PI, b"mid") + ws(C, z1[5:]),
        "deflate-rsv1-on-continuation": settings(1) + b"\x00" + ws(T, z1[:5], rsv1=True, fin=False)
            + ws(C, z1[5:], rsv1=True),
        "deflate-not-negotiated": settings(0) + b"\x00" + ws(T, z1, rsv1=True),
        "deflate-bomb-small-max-out": settings(1, dec=7) + b"\x00" + ws(B, zbig, rsv1=True),
        "deflate-window-9": settings(1, dec=1) + b"\x00" + ws(T, z9, rsv1=True),
        "deflate-corrupt": settings(1, dec=7) + b"\x00" + ws(T, b"\xff\xff\xff\xff", rsv1=True),
        "deflate-rsv1-on-ping": settings(1) + b"\x00" + ws(PI, b"x", rsv1=True),
    })
    for name, data in seeds.items():
        write("ws_frame", name, data)


# ---- ws_deflate --------------------------------------------------------------

def ws_deflate():
    offers = [
        "permessage-deflate",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        'permessage-deflate; client_max_window_bits="15"',
        'permessage-deflate; server_max_window_bits="1\\0"',
        "x-webkit-deflate-frame, permessage-deflate",
        "permessage-deflate; server_max_window_bits=8, permessage-deflate",
        "permessage-deflate; unknown=1, permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate;;",
        " , ,permessage-deflate ,",
        'foo; a="b\\"c", permessage-deflate',
        'permessage-deflate; a="unterminated',
        "permessage-deflate\t;\tclient_max_window_bits = 9",
        "permessage-deflate; client_max_window_bits=8; server_max_window_bits=9",
        "PERMESSAGE-DEFLATE",
        "",
        "permessage-deflate; client_max_window_bits=15; server_max_window_bits=15;"
        " client_no_context_takeover; server_no_context_takeover",
    ]
    cfgs = [0x00, 0x02, 0x04, 0x08, 0x38, 0x40, 0x80, 0xC0, 0xFE]
    for i, o in enumerate(offers):
        write("ws_deflate", "offer-%02d" % i, bytes([cfgs[i % len(cfgs)]]) + o.encode())

    def dec(bits=7, nct=0, max_out=5):
        return bytes([1 | bits << 1 | nct << 4 | max_out << 5])

    m1, c = deflate_msg(b"The quick brown fox jumps over the lazy dog. " * 3)
    m2, _ = deflate_msg(b"The quick brown fox jumps again. " * 2, obj=c)
    both = m1 + m2
    cut = bytes([len(m1) * 256 // len(both) + 1])
    write("ws_deflate", "inflate-two-messages-takeover", dec() + cut + both)
    write("ws_deflate", "inflate-two-messages-no-takeover", dec(nct=1) + cut + both)
    fin = zlib.compressobj(6, zlib.DEFLATED, -15)
    final = fin.compress(b"final block " * 5) + fin.flush(zlib.Z_FINISH)
    write("ws_deflate", "inflate-bfinal-block", dec() + b"\x00" + final)
    write("ws_deflate", "inflate-bfinal-then-more", dec() + b"\x00" + final + b"\x00")
    stored = zlib.compressobj(0, zlib.DEFLATED, -15)
    st = stored.compress(b"stored data") + stored.flush(zlib.Z_SYNC_FLUSH)
    write("ws_deflate", "inflate-stored-block", dec() + b"\x00" + st[:-4])
    bomb, _ = deflate_msg(b"\x00" * 100000)
    write("ws_deflate", "inflate-too-big", dec(max_out=3) + b"\x00" + bomb)
    write("ws_deflate", "inflate-max-out-0", dec(max_out=0) + b"\x00" + m1)
    write("ws_deflate", "inflate-corrupt", dec() + b"\x80" + b"\xff\xfe\xfd\xfc\xfb")
    write("ws_deflate", "inflate-mid-block", dec() + b"\x00" + m1[: len(m1) // 2])
    w8, _ = deflate_msg(b"window eight " * 40, wbits=9)
    write("ws_deflate", "inflate-window-8", dec(bits=0) + b"\x00" + w8)
    write("ws_deflate", "inflate-empty-message", dec() + b"\x00")
    write("ws_deflate", "inflate-single-00", dec() + b"\x00\x00")
    far, cf = deflate_msg(b"0123456789abcdef" * 64, wbits=15)
    near, _ = deflate_msg(b"0123456789abcdef" * 8, obj=cf)
    write("ws_deflate", "inflate-reference-into-previous-small-window",
          dec(bits=1) + bytes([len(far) * 256 // len(far + near) + 1]) + far + near)


# ---- publish_json ------------------------------------------------------------

def publish_json():
    seeds = [
        '{"op":"publish","channel":"news","data":"hello"}',
        '{"op":"publish","channel":"news","data":"hello","event":"update"}',
        '{"op":"publish","channel":"news","data":"x","event":null}',
        '{"op":"publish","channel":"news","data":"x","event":""}',
        '{"op":"publish","channel":"news","data":"x","event":"has space"}',
        '{"op":"publish","channel":"news","data":"x","event":7}',
        '{"op":"publish","channel":"news","data":42}',
        '{"op":"publish","channel":"news"}',
        '{"channel":"news","data":"no op"}',
        '{"op":"history","channel":"news","data":"x"}',
        '{"op":"publish","channel":"bad channel","data":"x"}',
        '{"op":"publish","channel":"","data":"x"}',
        '{"op":"publish","channel":"' + "c" * 129 + '","data":"x"}',
        '{"op":"publish","channel":"news","data":"nul \\u0000 inside"}',
        '{"op":"publish","channel":"news","data":"esc \\\\u0000 is fine"}',
        '{"op":"publish","channel":"news","data":"caf\\u00e9 \\ud83d\\ude00 \\n\\t\\"\\/"}',
        '{"op":"publish","channel":"news","data":"lone \\ud800 surrogate"}',
        '{"op":"publish","channel":"news","data":"x"}  \r\n\t',
        '{"op":"publish","channel":"news","data":"x"} trailing',
        '{"op":"publish","channel":"news","data":"x"}{"again":1}',
        '{"op":"publish","op":"stats","channel":"news","data":"dup keys"}',
        '{"op":"publish","channel":"news","data":"x","extra":{"a":[1,2.5e10,-3,true,false,null]}}',
        '{"data":"only data (HTTP publish, channel from the URL)"}',
        '{"data":"","event":"ev"}',
        "[1,2,3]",
        '"just a string"',
        "",
        "   ",
        "{",
        "[" * 200 + "]" * 200,
        '{"a":' * 50 + "1" + "}" * 50,
    ]
    for i, s in enumerate(seeds):
        write("publish_json", "json-%02d" % i, s.encode())
    write("publish_json", "raw-nul-byte", b'{"op":"publish","channel":"news","data":"a\x00b"}')
    write("publish_json", "invalid-utf8-data", b'{"op":"publish","channel":"news","data":"\xff\xfe"}')
    write("publish_json", "big-data", b'{"op":"publish","channel":"news","data":"' + b"d" * 3000 + b'"}')


# ---- values -------------------------------------------------------------------

def values():
    seeds = {
        "channel-news": b"news", "channel-one": b"a", "channel-all-chars": b"A-z_0.9:@~",
        "channel-128": b"c" * 128, "channel-129": b"c" * 129, "channel-space": b"bad channel",
        "channel-slash": b"room/1", "empty": b"",
        "id-0": b"0", "id-1": b"1", "id-max": b"9223372036854775807",
        "id-max-plus-1": b"9223372036854775808", "id-2-64": b"18446744073709551616",
        "id-leading-zeros": b"00000000000000000001", "id-minus": b"-1", "id-plus": b"+1",
        "id-space-before": b" 1", "id-space-after": b"1 ", "id-64-zeros": b"0" * 64,
        "id-65-zeros": b"0" * 65, "id-dash": b"-", "id-hex": b"0x10",
        "identity-alice": b"alice", "identity-utf8": "Zo\u00eb \u00e9l\u00e8ve \u20ac".encode(),
        "identity-emoji": "\U0001f600".encode(), "identity-max-cp": "\U0010ffff".encode(),
        "identity-del": b"a\x7fb", "identity-tab": b"a\tb", "identity-c1": b"\xc2\x80",
        "identity-overlong-c0": b"\xc0\xaf", "identity-truncated": b"ab\xe2\x82",
        "identity-128": b"i" * 128, "identity-129": b"i" * 129,
        "event-join": b"join", "event-with-space": b"a b", "event-64": b"e" * 64,
        "event-65": b"e" * 65, "event-high-bit": b"ev\x80",
        "u64-raw-bytes": struct.pack("<Q", 2**63 + 5), "u64-raw-small": struct.pack("<Q", 12345),
    }
    for name, data in seeds.items():
        write("values", name, data)


# ---- api_request ----------------------------------------------------------------

def api_request():
    seeds = {
        "pub": msgs(["PUB", "news", "hello"]),
        "pub-event": msgs(["PUB", "news", "hello", "update"]),
        "pub-then-history": msgs(["PUB", "news", "one"], ["PUB", "news", "two", "ev"],
                                 ["HISTORY", "news", "0"], ["HISTORY", "news", "1", "1"]),
        "history-trimmed": msgs(*[["PUB", "c", "m%d" % i] for i in range(7)],
                                ["HISTORY", "c", "0"], ["HISTORY", "c", "2"], ["HISTORY", "c", "99"]),
        "history-errors": msgs(["HISTORY", "bad channel", "0"], ["HISTORY", "news", "x"],
                               ["HISTORY", "news", "0", "-1"], ["HISTORY", "news"],
                               ["HISTORY", "news", "9223372036854775807", "0"]),
        "stats-ping": msgs(["STATS"], ["PING"], ["STATS", "x"], ["PING", "x"]),
        "presence": msgs(["PRESENCE", "news"], ["PRESENCE"], ["PRESENCE", "bad channel"]),
        "unknown": msgs(["NOPE"], [""], ["pub", "news", "x"]),
        "pub-errors": msgs(["PUB", "news"], ["PUB", "bad channel", "x"], ["PUB", "news", "d" * 65],
                           ["PUB", "news", "x", "bad event"], ["PUB", "news", "x", "e" * 65],
                           ["PUB", "news", "a", "b", "c"]),
        "pub-binary": msgs([b"PUB", b"bin", b"\x00\x01\xff\x1d"]),
        "json-publish": msgs(['{"op":"publish","channel":"news","data":"hi","event":"ev"}'],
                             ['{"op":"history","channel":"news"}']),
        "json-history": msgs(['{"op":"publish","channel":"n","data":"1"}'],
                             ['{"op":"history","channel":"n","after":0,"limit":1}'],
                             ['{"op":"history","channel":"n","after":1.5}'],
                             ['{"op":"history","channel":"n","after":-1}'],
                             ['{"op":"history","channel":"n","after":1e300}'],
                             ['{"op":"history","channel":"n","limit":9007199254740993}'],
                             ['{"op":"history","channel":"n","after":"3"}'],
                             ['{"op":"history","channel":"n","after":null,"limit":null}']),
        "json-other": msgs(['{"op":"stats"}'], ['{"op":"ping"}'], ['{"op":"presence","channel":"x"}'],
                           ['{"op":"presence"}'], ['{"op":"nope"}'], ['{"op":7}'], ["{}"]),
        "json-malformed": msgs(["{"], ['{"op":"ping"} x'], ['{"op":"ping"}  \n'], ["[]"],
                               [b'{"op":"ping"\x00}'], ['{"op":"publish","channel":"c","data":"\\u0000"}']),
        "json-two-frames-is-multipart": msgs(['{"op":"ping"}', "x"]),
        "empty-frames": msgs([""], ["", ""], ["PUB", "", ""]),
    }
    for name, data in seeds.items():
        write("api_request", name, data)


# ---- link -----------------------------------------------------------------------

def link():
    c1, c2 = "child-1", "child-2"
    seeds = {
        "hello": msgs([c1, "HELLO", "1234"]),
        "hello-sub-publish": msgs([c1, "HELLO", "11"], [c1, "SUB", "news", "2"],
                                  [c1, "PUBLISH", "7", "news", "hello", "ev"],
                                  [c1, "PUBLISH", "8", "news", "world", ""]),
        "two-children-fanout": msgs([c1, "HELLO", "11"], [c2, "HELLO", "22"],
                                    [c1, "SUB", "room", "1"], [c2, "SUB", "room", "3"],
                                    [c2, "PUBLISH", "1", "room", "hi all", "msg"],
                                    [c1, "SUB", "room", "0"], [c2, "PUBLISH", "2", "room", "again", ""]),
        "hist": msgs([c1, "HELLO", "1"], [c1, "PUBLISH", "1", "h", "a", ""],
                     [c1, "PUBLISH", "2", "h", "b", "e"], [c1, "HIST", "5", "h", "0"],
                     [c1, "HIST", "6", "h", "-"], [c1, "HIST", "7", "h", "1"],
                     [c1, "HIST", "8", "bad channel", "0"], [c1, "HIST", "9", "h", "x"]),
        "presence": msgs([c1, "HELLO", "1"], [c2, "HELLO", "2"], [c2, "SUB", "lobby", "1"],
                         [c1, "PJOIN", "lobby", "alice"], [c1, "PJOIN", "lobby", "alice"],
                         [c1, "PJOIN", "lobby", "Zo\u00eb"], [c1, "PRESENCE", "4", "lobby"],
                         [c1, "PLEAVE", "lobby", "alice"], [c1, "PLEAVE", "lobby", "alice"],
                         [c1, "PLEAVE", "lobby", "nobody"]),
        "unknown-child-reset": msgs([c1, "SUB", "news", "1"], [c1, "PING"],
                                    [c1, "PJOIN", "news", "bob"], [c1, "HIST", "1", "news", "-"]),
        "timeout": msgs([c1, "HELLO", "1"], [c2, "HELLO", "2"], [c1, "SUB", "t", "1"],
                        [c2, "SUB", "t", "1"], [c1, "PJOIN", "t", "x"], ["~~~~~~"],
                        [c2, "PING"], ["~~~~~~"], [c1, "PUBLISH", "1", "t", "late", ""]),
        "hello-again-resets": msgs([c1, "HELLO", "1"], [c1, "SUB", "a", "5"],
                                   [c1, "PJOIN", "a", "me"], [c1, "HELLO", "2"],
                                   [c1, "PUBLISH", "1", "a", "x", ""]),
        "malformed": msgs([c1, "HELLO"], [c1, "HELLO", "x"], [c1, "HELLO", "1", "2"], ["", "HELLO", "1"],
                          ["i" * 257, "HELLO", "1"], [c1], [c1, "SUB", "news"],
                          [c1, "SUB", "news", "99999999999"], [c1, "PJOIN", "news", "\x01"],
                          [c1, "PUBLISH", "1", "news", "x"], [c1, "NOPE"], [c1, "PING", "x"],
                          [c1, "PRESENCE", "1"]),
        "long-identity": msgs(["i" * 256, "HELLO", "1"], ["i" * 256, "SUB", "n", "1"],
                              ["i" * 256, "PUBLISH", "1", "n", "x", ""]),
        "publish-errors": msgs([c1, "HELLO", "1"], [c1, "PUBLISH", "1", "bad channel", "x", ""],
                               [c1, "PUBLISH", "2", "n", "d" * 65, ""],
                               [c1, "PUBLISH", "3", "n", "x", "bad event"]),
    }
    for name, data in seeds.items():
        write("link", name, data)


# ---- store ------------------------------------------------------------------------

def header():
    h = b"PUSHJRNL" + struct.pack("<I", 1)
    return h + struct.pack("<I", zlib.crc32(h))


def record(type_, chan, id_, time_us=0, event=b"", data=b"", flags=0, crc=None, clen=None):
    chan = chan.encode() if isinstance(chan, str) else chan
    fixed = bytes([type_, len(chan) if clen is None else clen, len(event), flags]) \
        + struct.pack("<QQ", id_, time_us)
    body = fixed + chan + event + data
    size = struct.pack("<I", len(body))
    c = zlib.crc32(body, zlib.crc32(size)) if crc is None else crc
    return size + struct.pack("<I", c) + body


def MSG(chan, id_, data=b"", event=b"", t=None, **kw):
    return record(1, chan, id_, 1700000000000000 + id_ if t is None else t, event, data, **kw)


def FLOOR(chan, id_, **kw):
    return record(2, chan, id_, **kw)


def store():
    # mode: bit 0 header in front, bit 1 fix CRCs, bit 2 append, bits 3-5 history_max index
    H = header()
    basic = MSG("news", 1, b"one", b"ev") + MSG("news", 2, b"two") + MSG("other", 1, b"x")
    seeds = {
        "basic-with-header": b"\x00" + H + basic,
        "basic-header-from-mode": b"\x01" + basic,
        "basic-append-hmax-1": bytes([0x01 | 0x04 | 0 << 3]) + basic,
        "floor-then-messages": b"\x01" + FLOOR("c", 41) + MSG("c", 42, b"a") + MSG("c", 43, b"b"),
        "floor-drops-retained": b"\x01" + MSG("c", 1, b"a") + MSG("c", 2, b"b") + FLOOR("c", 10)
            + MSG("c", 11, b"c"),
        "id-gap": b"\x01" + MSG("g", 1, b"a") + MSG("g", 5, b"b"),
        "stale-ids": b"\x01" + MSG("s", 3, b"a") + MSG("s", 2, b"b") + MSG("s", 3, b"c"),
        "trim-hmax-2": bytes([0x01 | 1 << 3]) + b"".join(MSG("t", i, b"m%d" % i) for i in range(1, 8)),
        "many-channels-hmax-3": bytes([0x01 | 2 << 3]) + b"".join(
            MSG("ch%d" % (i % 4), i // 4 + 1, b"d" * i, b"e%d" % i) for i in range(24)),
        "binary-data": b"\x01" + MSG("bin", 1, bytes(range(256)) * 4),
        "max-names": b"\x01" + MSG("c" * 128, 1, b"x", b"e" * 64),
        "max-id": b"\x01" + MSG("m", 2**63 - 1, b"x") + MSG("m", 1, b"y") + FLOOR("n", 2**63 - 1),
        "truncated-tail": b"\x01" + basic + MSG("news", 3, b"three")[:-3],
        "truncated-head": b"\x01" + basic + b"\x10\x00\x00",
        "bad-crc-then-intact": b"\x01" + MSG("a", 1, b"x") + MSG("a", 2, b"y", crc=0) + MSG("a", 3, b"z"),
        "garbage-tail": b"\x01" + basic + b"GARBAGE" * 5,
        "impossible-size": b"\x01" + basic + b"\x05\x00\x00\x00" + b"\x00" * 30,
        "huge-size": b"\x01" + basic + b"\xff\xff\xff\x7f" + b"\x00" * 30,
        "type-3": b"\x03" + MSG("a", 1) + record(3, "a", 2),
        "flags-set": b"\x03" + record(1, "a", 1, flags=1),
        "channel-len-0": b"\x03" + record(1, "", 1),
        "channel-invalid": b"\x03" + record(1, "bad channel", 1),
        "channel-len-beyond-body": b"\x03" + record(1, "abc", 1, clen=200),
        "msg-id-0": b"\x03" + record(1, "a", 0),
        "id-above-int64": b"\x03" + record(1, "a", 2**63),
        "floor-with-event": b"\x03" + record(2, "a", 5, event=b"e"),
        "floor-with-data": b"\x03" + record(2, "a", 5, data=b"d"),
        "event-invalid": b"\x03" + MSG("a", 1, b"x", b"bad event"),
        "crc-repair-needed": b"\x03" + MSG("a", 1, b"x", crc=0) + MSG("a", 2, b"y", crc=0),
        "empty-file": b"\x00",
        "header-only": b"\x00" + H,
        "header-prefix": b"\x00" + H[:9],
        "not-a-journal": b"\x00" + b"NOTAJOURNAL-AT-ALL" * 2,
        "short-not-a-journal": b"\x00" + b"PUSHJRNX",
        "bad-version": b"\x00" + b"PUSHJRNL" + struct.pack("<I", 2)
            + struct.pack("<I", zlib.crc32(b"PUSHJRNL" + struct.pack("<I", 2))),
        "bad-header-crc": b"\x00" + H[:12] + b"\x00\x00\x00\x00" + basic,
    }
    for name, data in seeds.items():
        write("store", name, data)


def broker_journals(broker, pushctl):
    """Journals written by a real pushbrokerd (through pushctl)."""
    tmp = tempfile.mkdtemp(prefix="push-corpus.")
    try:
        runs = [
            ("broker-basic", ["--history-max", "1000"],
             [["news", "hello", "--event", "update"], ["news", "world"], ["sport", "goal"]]),
            ("broker-trimmed", ["--history-max", "2"],
             [["c", "m%d" % i] for i in range(6)] + [["d", "x" * 200, "--event", "big"]]),
        ]
        for name, extra, pubs in runs:
            data_dir = os.path.join(tmp, name)
            api = "ipc://" + os.path.join(tmp, name + ".api")
            push = "ipc://" + os.path.join(tmp, name + ".push")
            link = "ipc://" + os.path.join(tmp, name + ".link")
            p = subprocess.Popen([broker, "--api", api, "--push", push, "--link", link,
                                  "--data-dir", data_dir, "--fsync", "always",
                                  "--log-level", "error"] + extra)
            try:
                for args in pubs:
                    for _ in range(50):
                        r = subprocess.run([pushctl, "--api", api, "--timeout", "2000",
                                            "publish"] + args, capture_output=True)
                        if r.returncode == 0:
                            break
                        time.sleep(0.1)
                    else:
                        raise SystemExit("pushctl publish failed: %r" % r.stderr)
            finally:
                p.terminate()
                p.wait()
            with open(os.path.join(data_dir, "journal"), "rb") as f:
                journal = f.read()
            write("store", name, b"\x00" + journal)
            # the same bytes with the history_max / append variants
            write("store", name + "-append-hmax-2", bytes([0x04 | 1 << 3]) + journal)
    finally:
        shutil.rmtree(tmp)


# ---- token ------------------------------------------------------------------------

TOKEN_SECRET = b"fuzz-secret-0123456789abcdef-0123456789"      # fuzz_token.c SECRET
TOKEN_OTHER = b"fuzz-secret-0123456789abcdef-0123456789-other"  # fuzz_token.c OTHER
TOKEN_FORGER = b"not-the-secret-of-this-server-000000000000"
TOKEN_NOW = 1700000000


def b64url(b):
    import base64
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def sign(payload, secret=TOKEN_SECRET):
    import hashlib
    import hmac
    head = b"v1." + b64url(payload)
    return head + b"." + b64url(hmac.new(secret, head, hashlib.sha256).digest())


def claims(ch=("news",), r="s", exp=TOKEN_NOW + 3600, sub=None, iat=None, **extra):
    import json
    d = {}
    if sub is not None:
        d["sub"] = sub
    d["ch"] = list(ch)
    d["r"] = r
    if iat is not None:
        d["iat"] = iat
    d["exp"] = exp
    d.update(extra)
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode()


def mint_args(sub=b"", ch=(b"news",), rights=b"s", iat=TOKEN_NOW, exp=TOKEN_NOW + 3600,
              iat_kind=3, exp_kind=3, tail=b""):
    """fuzz_token.c mode 2: [len] sub [nch] ([len] ch)* [len] rights iat exp tail.
    kind 3 keeps a time as it is (the top two bits select how it is folded)."""
    def t(v, kind):
        return struct.pack("<Q", (kind << 62) | (v & ((1 << 62) - 1)))
    out = bytes([len(sub)]) + sub + bytes([len(ch)])
    for c in ch:
        out += bytes([len(c)]) + c
    return out + bytes([len(rights)]) + rights + t(iat, iat_kind) + t(exp, exp_kind) + tail


def token():
    # mode byte: bits 0-1 the mode, 2-3 the right asked (s p l x), 4 ask for "news"
    RAW, PAYLOAD, MINT, B64 = 0, 1, 2, 3
    S, P, L, X = 0, 4, 8, 12
    valid = sign(claims())
    raw = {
        "valid-subscribe-news": valid,
        "valid-ask-publish": (P, valid),
        "valid-with-sub-and-iat": sign(claims(sub="alice", iat=TOKEN_NOW - 10, r="spl")),
        "valid-utf8-sub": sign(claims(sub="Zo\u00eb \u20ac")),
        "valid-pattern-prefix": sign(claims(ch=["room:*", "news"], r="sl")),
        "valid-pattern-star": (P | 16, sign(claims(ch=["*"], r="p"))),
        "valid-64-channels": sign(claims(ch=[f"c{i}" for i in range(64)])),
        "expired": sign(claims(exp=TOKEN_NOW - 1)),
        "expired-exactly-now": sign(claims(exp=TOKEN_NOW)),
        "expired-zero": sign(claims(exp=0)),
        "forged-other-secret": sign(claims(), TOKEN_FORGER),
        "signed-with-harness-other": sign(claims(), TOKEN_OTHER),
        "forged-payload-swapped": valid.split(b".")[0] + b"." + b64url(claims(r="spl"))
                                  + b"." + valid.split(b".")[2],
        "forged-empty-signature": valid.rsplit(b".", 1)[0] + b".",
        "forged-short-signature": valid[:-2],
        "forged-long-signature": valid + b"AA",
        "b64-padding": sign(claims(ch=["ab"]))[:3] + b64url(claims()) + b"==." + valid.split(b".")[2],
        "b64-std-alphabet": valid.replace(b"-", b"+").replace(b"_", b"/"),
        "b64-4k-plus-1": b"v1.AAAAA." + valid.split(b".")[2],
        "b64-trailing-bits": b"v1.eyJ9." + valid.split(b".")[2],
        "b64-space": valid[:10] + b" " + valid[10:],
        "b64-nul": valid[:10] + b"\x00" + valid[10:],
        "no-prefix": valid[3:],
        "v2-prefix": b"v2" + valid[2:],
        "uppercase-prefix": b"V1" + valid[2:],
        "only-prefix": b"v1.",
        "two-dots-only": b"v1..",
        "three-parts": valid + b".extra",
        "empty-payload-part": b"v1.." + valid.split(b".")[2],
        "empty": b"",
        "dot": b".",
        "too-long-4097": b"v1." + b"A" * 4050 + b"." + b"A" * 43 + b"A",
        "exactly-4096": b"v1." + b"A" * 4048 + b"." + b"A" * 43 + b"A" * 2,
        "signed-not-json": sign(b"not json"),
        "signed-json-array": sign(b'["news"]'),
        "signed-empty-object": sign(b"{}"),
        "signed-nested": sign(b"[" * 2000),
    }
    for name, v in raw.items():
        mode, tok = v if isinstance(v, tuple) else (S, v)
        write("token", "raw-" + name, bytes([RAW | mode]) + tok)

    import json
    payloads = {
        "valid": claims(),
        "valid-spaces": b'{ "ch" : [ "news" ] , "r" : "s" , "exp" : 1700003600 }',
        "valid-unknown-members": claims(aud="x", nbf=1, nested={"a": [1, 2, {"b": None}]}),
        "valid-exp-exponent": b'{"ch":["news"],"r":"s","exp":17e8}',
        "valid-exp-max": claims(exp=2**53 - 1),
        "valid-escaped-sub": b'{"sub":"\\u0061\\u00e9\\ud83d\\ude00","ch":["news"],"r":"s","exp":1800000000}',
        "valid-sub-128": claims(sub="s" * 128),
        "valid-pattern-128": claims(ch=["p" * 127 + "*"]),
        "pattern-129": claims(ch=["p" * 128 + "*"]),
        "channel-128": claims(ch=["c" * 128]),
        "channel-129": claims(ch=["c" * 129]),
        "sub-129": claims(sub="s" * 129),
        "sub-empty": claims(sub=""),
        "sub-control": claims(sub="a\tb"),
        "sub-nul-escape": b'{"sub":"a\\u0000b","ch":["news"],"r":"s","exp":1800000000}',
        "sub-number": claims(sub=5),
        "sub-bad-surrogate": b'{"sub":"\\ud800","ch":["news"],"r":"s","exp":1800000000}',
        "exp-past": claims(exp=TOKEN_NOW - 100),
        "exp-float": claims(exp=1800000000.5),
        "exp-negative": claims(exp=-1),
        "exp-2-53": claims(exp=2**53),
        "exp-huge": b'{"ch":["news"],"r":"s","exp":1e400}',
        "exp-string": claims(exp="1800000000"),
        "exp-missing": b'{"ch":["news"],"r":"s"}',
        "iat-negative": claims(iat=-5),
        "iat-null": claims(iat=None) [:-1] + b',"iat":null}',
        "r-empty": claims(r=""),
        "r-repeated": claims(r="ss"),
        "r-unknown": claims(r="x"),
        "r-four": claims(r="splx"),
        "r-array": claims(r=["s"]),
        "ch-empty": claims(ch=[]),
        "ch-65": claims(ch=[f"c{i}" for i in range(65)]),
        "ch-string": b'{"ch":"news","r":"s","exp":1800000000}',
        "ch-number-entry": b'{"ch":["news",5],"r":"s","exp":1800000000}',
        "ch-bad-name": claims(ch=["bad name"]),
        "ch-star-middle": claims(ch=["a*b"]),
        "ch-double-star": claims(ch=["**"]),
        "duplicate-keys": b'{"ch":["news"],"r":"s","r":"p","exp":1800000000,"exp":1}',
        "not-object": b'"just a string"',
        "truncated": claims()[:-5],
        "trailing-garbage": claims() + b"xyz",
        "empty": b"",
        "deep-nesting": b'{"x":' * 1500 + b"1" + b"}" * 1500,
        "nul-in-json": claims()[:5] + b"\x00" + claims()[5:],
    }
    for name, p in payloads.items():
        write("token", "payload-" + name, bytes([PAYLOAD]) + p)
    write("token", "payload-valid-ask-presence", bytes([PAYLOAD | L]) + claims(r="l"))
    write("token", "payload-valid-ask-x", bytes([PAYLOAD | X | 16]) + claims(r="spl"))

    mints = {
        "basic": mint_args(),
        "sub-and-patterns": mint_args(sub=b"alice", ch=(b"room:*", b"news", b"*"), rights=b"spl"),
        "expired": mint_args(exp=TOKEN_NOW - 5),
        "exp-zero-iat-zero": mint_args(iat=0, exp=0),
        "exp-max": mint_args(exp=2**53 - 1, iat=2**53 - 1),
        "exp-over-max": mint_args(exp=2**53),
        "exp-negative": mint_args(exp=5, exp_kind=2),
        "no-channels": mint_args(ch=()),
        "65-channels": mint_args(ch=tuple(b"c%d" % i for i in range(65))),
        "64-long-channels": mint_args(ch=tuple(b"%03d" % i + b"x" * 125 for i in range(64))),
        "bad-rights": mint_args(rights=b"sps"),
        "empty-rights": mint_args(rights=b""),
        "bad-sub": mint_args(sub=b"a\x01"),
        "sub-nul": mint_args(sub=b"ab\x00cd"),
        "sub-quotes": mint_args(sub=b'a"b\\c'),
        "pattern-128": mint_args(ch=(b"p" * 127 + b"*",)),
        "pattern-129": mint_args(ch=(b"p" * 128 + b"*",)),
        "channel-129": mint_args(ch=(b"c" * 129,)),
        "with-tampering": mint_args(tail=bytes(range(1, 49))),
    }
    for name, m in mints.items():
        write("token", "mint-" + name, bytes([MINT]) + m)

    b64s = {
        "empty": b"", "one": b"f", "two": b"fo", "three": b"foo", "binary": bytes(range(256)),
        "text-valid": b"Zm9vYmFy", "text-url-chars": b"-_-_", "text-4k-plus-1": b"AAAAA",
        "text-trailing-bits": b"Zh", "text-padding": b"Zg==", "text-std-chars": b"+/+/",
        "text-dot": b"ab.c",
    }
    for name, b in b64s.items():
        write("token", "b64-" + name, bytes([B64]) + b)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker")
    ap.add_argument("--pushctl")
    a = ap.parse_args()
    ws_frame()
    ws_deflate()
    publish_json()
    values()
    api_request()
    link()
    store()
    token()
    if a.broker and a.pushctl:
        broker_journals(a.broker, a.pushctl)


if __name__ == "__main__":
    main()
