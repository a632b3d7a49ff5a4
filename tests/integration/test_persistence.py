"""Broker persistence (--data-dir / --fsync): the journal survives crashes,
damaged tails are cut back to the last good record, compaction keeps the
journal near the size of the live history, and ids keep counting up across
restarts.

Only the broker runs here (no Apache): conftest.Broker starts it on free
127.0.0.1 ports from PUSH_BROKER_BIN (default pushbrokerd/pushbrokerd) and
stops it by PID.  The journal is also read back in Python, straight from the
format documented in docs/protocol.md ("Broker persistence").

Run:  /usr/bin/python3 -m pytest -v tests/integration/test_persistence.py
"""
import json
import os
import random
import re
import struct
import subprocess
import threading
import time
import zlib
from collections import namedtuple
from pathlib import Path

import pytest
import zmq

from conftest import Broker, wait_until, zmq_request

JOURNAL = "journal"
COMPACT_MIN = 1024 * 1024      # STORE_COMPACT_MIN in pushbrokerd/store.h
PAGE = 1000                    # PUSH_HISTORY_PAGE

Record = namedtuple("Record", "offset length type channel id time_us event data")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def read_journal(path):
    """Parse a journal; every record must be whole and pass its CRC."""
    raw = Path(path).read_bytes()
    assert raw[:8] == b"PUSHJRNL", raw[:16]
    version, hcrc = struct.unpack_from("<II", raw, 8)
    assert version == 1 and hcrc == zlib.crc32(raw[:12])
    off, out = 16, []
    while off < len(raw):
        size, crc = struct.unpack_from("<II", raw, off)
        body = raw[off + 8:off + 8 + size]
        assert len(body) == size, f"record at {off} is cut"
        assert zlib.crc32(body, zlib.crc32(raw[off:off + 4])) == crc, f"bad CRC at {off}"
        rtype, clen, elen, flags, rid, t = struct.unpack_from("<BBBBQQ", body, 0)
        assert flags == 0
        chan = body[20:20 + clen]
        event = body[20 + clen:20 + clen + elen]
        out.append(Record(off, 8 + size, rtype, chan, rid, t, event,
                          body[20 + clen + elen:]))
        off += 8 + size
    return out


def history(broker, channel):
    """Every message the broker holds for channel: (last_id, [(id, event, data)])."""
    after, msgs, last = 0, [], None
    while True:
        rep = zmq_request(broker.api, [b"HISTORY", channel, str(after), str(PAGE)])
        assert rep[0] == b"OK", rep
        last, count = int(rep[1]), int(rep[2])
        for i in range(count):
            mid, ev, data = rep[3 + 4 * i:6 + 4 * i]
            msgs.append((int(mid), ev, data))
        if count < PAGE:
            return last, msgs
        after = msgs[-1][0]


def stats(broker):
    rep = zmq_request(broker.api, [b"STATS"])
    assert rep[0] == b"OK", rep
    return json.loads(rep[1])


def log_since_last_start(broker):
    text = broker.log.read_text(errors="replace")
    return text[text.rfind("=== harness: starting"):]


def make_broker(tmp_path, name, *args, data_dir=None):
    data_dir = data_dir or tmp_path / "data"
    return Broker(tmp_path, name=name,
                  args=["--data-dir", str(data_dir), *[str(a) for a in args]]), data_dir


class Publisher(threading.Thread):
    """Publishes over REQ at a steady rate and remembers what was acknowledged."""

    def __init__(self, endpoint, channel, rate):
        super().__init__(daemon=True)
        self.endpoint, self.channel, self.period = endpoint, channel, 1.0 / rate
        self.acked = []          # (id, data)
        self.stop = threading.Event()
        self.error = None

    def run(self):
        sock = zmq.Context.instance().socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, 2000)
        sock.connect(self.endpoint)
        n, next_at = 0, time.monotonic()
        try:
            while not self.stop.is_set():
                n += 1
                data = f"msg {n} {random.random()}".encode()
                sock.send_multipart([b"PUB", self.channel, data])
                try:
                    rep = sock.recv_multipart()
                except zmq.Again:
                    return               # the broker is gone: unacknowledged
                if rep[0] != b"OK":
                    self.error = rep
                    return
                self.acked.append((int(rep[1]), data))
                next_at += self.period
                time.sleep(max(0.0, next_at - time.monotonic()))
        finally:
            sock.close()


# ---------------------------------------------------------------------------
# (a) kill -9 with fsync always: nothing acknowledged is lost
# ---------------------------------------------------------------------------

def test_kill9_with_fsync_always_loses_nothing_acknowledged(tmp_path):
    broker, data_dir = make_broker(tmp_path, "crash", "--fsync", "always",
                                   "--history-max", 100000)
    broker.start()
    chan = b"crash-test"
    pub = Publisher(broker.api, chan, rate=200)
    pub.start()
    wait_until(lambda: len(pub.acked) >= 300, 30, "300 acknowledged messages")
    broker.kill()                                  # SIGKILL while publishing
    pub.join(10)
    assert not pub.is_alive() and pub.error is None, pub.error
    acked = pub.acked
    assert len(acked) >= 300
    assert [i for i, _ in acked] == list(range(1, len(acked) + 1))

    broker.start()
    last, msgs = history(broker, chan)
    held = {mid: data for mid, _, data in msgs}
    for mid, data in acked:
        assert held.get(mid) == data, f"acknowledged message {mid} lost or changed"
    # at most the one request in flight at the kill can be there unacknowledged
    assert last in (len(acked), len(acked) + 1)
    assert [m[0] for m in msgs] == list(range(1, last + 1))
    # ids go on upwards
    assert broker.pub_id(chan, b"after the crash") == last + 1
    log = log_since_last_start(broker)
    assert re.search(rf"recovered {last} messages in 1 channels from \d+ bytes in \d+ ms", log), log
    broker.stop()


# ---------------------------------------------------------------------------
# (b) damaged tails: cut back to the last good record, and say so
# ---------------------------------------------------------------------------

def _cut_last_in_half(path, records):
    last = records[-1]
    with open(path, "r+b") as f:
        f.truncate(last.offset + last.length // 2)
    return last.offset, last.length // 2, len(records) - 1, "incomplete record"


def _flip_bytes_in_last(path, records):
    last = records[-1]
    with open(path, "r+b") as f:
        f.seek(last.offset + last.length - 3)
        b = f.read(2)
        f.seek(last.offset + last.length - 3)
        f.write(bytes(x ^ 0x5A for x in b))
    return last.offset, last.length, len(records) - 1, "checksum mismatch"


def _append_garbage(path, records):
    end = records[-1].offset + records[-1].length
    with open(path, "ab") as f:
        f.write(os.urandom(37))
    return end, 37, len(records), "record"


def _flip_in_middle_of_tail(path, records):
    # the third record from the end: it and the two after it go
    bad = records[-3]
    with open(path, "r+b") as f:
        f.seek(bad.offset + 12)        # inside the id
        b = f.read(1)
        f.seek(bad.offset + 12)
        f.write(bytes([b[0] ^ 1]))
    dropped = sum(r.length for r in records[-3:])
    return bad.offset, dropped, len(records) - 3, "checksum mismatch"


@pytest.mark.parametrize("damage", [_cut_last_in_half, _flip_bytes_in_last, _append_garbage,
                                    _flip_in_middle_of_tail])
def test_damaged_tail_is_cut_back(tmp_path, damage):
    broker, data_dir = make_broker(tmp_path, "damaged", "--fsync", "everysec")
    broker.start()
    chan = b"damage"
    sent = [b"payload %d " % i + os.urandom(20) for i in range(1, 21)]
    for i, data in enumerate(sent, 1):
        assert broker.pub_id(chan, data, b"ev") == i
    broker.stop()

    path = data_dir / JOURNAL
    records = read_journal(path)
    assert len(records) == 20
    cut_at, dropped_bytes, kept, why = damage(path, records)
    damaged_size = path.stat().st_size
    assert damaged_size - cut_at == dropped_bytes

    broker.start()
    log = log_since_last_start(broker)
    m = re.search(r"WARN: message store (\S+): damaged tail cut off at offset (\d+): ([^;]+); "
                  r"dropped (\d+) bytes, (\d+) records? \(the damaged one and (\d+) intact "
                  r"after it\); kept (\d+) records \((\d+) bytes\)", log)
    assert m, log
    assert m.group(1) == str(path)
    assert int(m.group(2)) == cut_at
    assert why in m.group(3)
    assert int(m.group(4)) == dropped_bytes
    assert int(m.group(7)) == kept
    assert int(m.group(8)) == cut_at
    if damage is _flip_in_middle_of_tail:
        assert (int(m.group(5)), int(m.group(6))) == (3, 2)
    else:
        assert (int(m.group(5)), int(m.group(6))) == (1, 0)
    assert f"recovered {kept} messages in 1 channels from {cut_at} bytes" in log

    last, msgs = history(broker, chan)
    assert last == kept
    assert [(i, d) for i, _, d in msgs] == list(zip(range(1, kept + 1), sent[:kept]))
    assert path.stat().st_size == cut_at
    # the bytes cut off are kept next to the journal for inspection
    saved = list(data_dir.glob(JOURNAL + ".damaged.*"))
    assert len(saved) == 1 and saved[0].stat().st_size == dropped_bytes
    # the journal goes on cleanly after the cut
    assert broker.pub_id(chan, b"next") == kept + 1
    broker.stop()
    assert len(read_journal(path)) == kept + 1


def test_foreign_file_is_refused_not_truncated(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / JOURNAL).write_bytes(b"this is not a journal at all\n" * 10)
    broker, _ = make_broker(tmp_path, "foreign", data_dir=data_dir)
    proc = subprocess.run([str(broker.binary), "--api", broker.api, "--push", broker.push,
                           "--link", broker.link, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1, proc
    assert "is not a pushbrokerd journal" in proc.stderr
    assert (data_dir / JOURNAL).read_bytes() == b"this is not a journal at all\n" * 10


def test_data_dir_is_locked(tmp_path):
    broker, data_dir = make_broker(tmp_path, "locked")
    broker.start()
    other = Broker(tmp_path / "other", name="other")
    proc = subprocess.run([str(other.binary), "--api", other.api, "--push", other.push,
                           "--link", other.link, "--data-dir", str(data_dir)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1, proc
    assert f"data directory {data_dir} is in use by another pushbrokerd (pid {broker.pid})" \
        in proc.stderr
    broker.stop()


# ---------------------------------------------------------------------------
# (c) compaction keeps disk use near the live history
# ---------------------------------------------------------------------------

def test_compaction_bounds_the_journal(tmp_path):
    hist_max = 20
    broker, data_dir = make_broker(tmp_path, "compact", "--fsync", "everysec",
                                   "--history-max", hist_max)
    broker.start()
    path = data_dir / JOURNAL
    ctx = zmq.Context.instance()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 2000)
    push.connect(broker.push)
    chans = [b"compact-a", b"compact-b"]
    per_chan, chunk = 20000, 2000
    payload = b"x" * 200
    biggest = 0
    total_bytes = 0
    for start in range(0, per_chan, chunk):
        for i in range(start + 1, start + chunk + 1):
            for c in chans:
                push.send_multipart([b"PUB", c, b"%s %d" % (payload, i)])
                total_bytes += 28 + len(c) + len(payload) + 1 + len(str(i))
        want = len(chans) * (start + chunk)
        wait_until(lambda: stats(broker)["published"] >= want, 60, f"{want} published")
        biggest = max(biggest, path.stat().st_size)
        time.sleep(0.15)      # at least one tick (100 ms) per chunk
        biggest = max(biggest, path.stat().st_size)
    push.close()
    # let the last check happen (the tick runs every 100 ms)
    time.sleep(0.5)
    st = stats(broker)
    assert st["published"] == per_chan * len(chans)
    assert st["compactions"] >= 3, st
    assert st["log_bytes"] == path.stat().st_size
    assert total_bytes > 8 * 1024 * 1024
    # never far above the compaction threshold, whatever was written in all
    assert biggest < 4 * COMPACT_MIN, biggest
    assert path.stat().st_size < 2 * COMPACT_MIN
    assert "message store: compacted" in log_since_last_start(broker)

    # after a restart, history and ids are right
    broker.stop()
    broker.start()
    for c in chans:
        last, msgs = history(broker, c)
        assert last == per_chan
        assert [m[0] for m in msgs] == list(range(per_chan - hist_max + 1, per_chan + 1))
        assert msgs[-1][2] == b"%s %d" % (payload, per_chan)
        assert broker.pub_id(c, b"next") == per_chan + 1
    broker.stop()
    # the journal only holds live records, floors, and what came after them
    recs = read_journal(path)
    assert len(recs) < 2 * COMPACT_MIN // 200


# ---------------------------------------------------------------------------
# (d) a clean stop with everysec keeps everything
# ---------------------------------------------------------------------------

def test_clean_stop_with_everysec_keeps_history_and_ids(tmp_path):
    broker, data_dir = make_broker(tmp_path, "clean", "--fsync", "everysec",
                                   "--history-max", 100, "--history-age", 0)
    broker.start()
    chan = b"clean-stop"
    for i in range(1, 151):
        assert broker.pub_id(chan, b"m%d" % i, b"e" if i % 2 else None) == i
    st = stats(broker)
    assert st["fsync"] == "everysec" and st["log_bytes"] > 16
    assert 0 <= st["fsync_lag_ms"] < 5000
    broker.stop()                                  # SIGTERM at once
    recs = read_journal(data_dir / JOURNAL)
    assert [r.id for r in recs] == list(range(1, 151))

    broker.start()
    last, msgs = history(broker, chan)
    assert last == 150
    assert [(m[0], m[2]) for m in msgs] == [(i, b"m%d" % i) for i in range(51, 151)]
    assert msgs[0][1] == (b"e" if 51 % 2 else b"")
    assert broker.pub_id(chan, b"after") == 151
    assert "recovered 100 messages in 1 channels" in log_since_last_start(broker)
    broker.stop()


def test_no_data_dir_means_memory_only(tmp_path):
    broker = Broker(tmp_path, name="memory").start()
    broker.pub_id(b"mem", b"x")
    st = stats(broker)
    assert "log_bytes" not in st and "fsync" not in st
    broker.stop()
    broker.start()
    assert history(broker, b"mem")[0] == 0
    broker.stop()
    assert not any(tmp_path.glob("**/" + JOURNAL))
