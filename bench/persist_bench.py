#!/usr/bin/python3
"""pushbrokerd persistence benchmark: ingest rate and recovery time.

Not a test: it prints numbers.  It starts its own brokers on free 127.0.0.1
ports, with journals in a temporary directory (or --dir), and stops them by
PID.

Run from the repository root after `make`:

    /usr/bin/python3 bench/persist_bench.py ingest            # all fsync policies, PUSH and REQ
    /usr/bin/python3 bench/persist_bench.py ingest --fsync everysec --mode push -n 500000
    /usr/bin/python3 bench/persist_bench.py recovery          # 1,000,000 messages
    /usr/bin/python3 bench/persist_bench.py all

Options: --broker BIN (default $PUSH_BROKER_BIN or pushbrokerd/pushbrokerd),
-n messages, --size data bytes (100), --channels (100), --publishers
processes (PUSH: 2, REQ: 8), --window (in-flight requests per DEALER
publisher, 64), --dir DIR (keep the journals there).

What is measured:
  ingest    N messages of --size bytes spread over --channels channels, with
            history on (history_max 1000).  "push": PUSH sockets, fire and
            forget, timed until STATS says every message was published.
            "req": REQ sockets, one PUB and its acknowledgement at a time per
            publisher.  "dealer": DEALER sockets keeping --window PUBs in
            flight each (what a batching publisher does).  Also reported: the
            broker's own CPU time per message (user+sys from /proc), i.e. the
            rate one core could take if the publishers did not share the
            machine with it.  "memory" is the same run without --data-dir.
  recovery  fills a broker with -n messages (default 1,000,000: 1000 channels
            x history_max 1000), stops it (SIGTERM), and times the next start
            until it answers PING; reports the journal size and the broker's
            own "recovered ... in T ms" line.
"""
import argparse
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BIN = os.environ.get("PUSH_BROKER_BIN") or str(ROOT / "pushbrokerd" / "pushbrokerd")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, binary, workdir, data_dir=None, fsync=None, history_max=1000):
        self.binary, self.workdir = binary, Path(workdir)
        self.data_dir, self.fsync, self.history_max = data_dir, fsync, history_max
        self.api = f"tcp://127.0.0.1:{free_port()}"
        self.push = f"tcp://127.0.0.1:{free_port()}"
        self.link = f"tcp://127.0.0.1:{free_port()}"
        self.log = self.workdir / "broker.log"
        self.proc = None
        self.ctx = zmq.Context.instance()

    def start(self, timeout=600):
        cmd = [self.binary, "--api", self.api, "--push", self.push, "--link", self.link,
               "--history-max", str(self.history_max), "--history-age", "0",
               "--log", str(self.log)]
        if self.data_dir:
            cmd += ["--data-dir", str(self.data_dir), "--fsync", self.fsync]
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        while True:
            if self.proc.poll() is not None:
                sys.exit(f"broker exited with {self.proc.returncode}; see {self.log}")
            try:
                if self.request([b"PING"], timeout=0.2)[0] == b"PONG":
                    return time.monotonic() - t0
            except zmq.Again:
                pass
            if time.monotonic() - t0 > timeout:
                self.stop()
                sys.exit("broker did not start")

    def request(self, frames, timeout=10.0):
        s = self.ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
        s.connect(self.api)
        try:
            s.send_multipart(frames)
            return s.recv_multipart()
        finally:
            s.close()

    def stats(self):
        return json.loads(self.request([b"STATS"])[1])

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK   # utime + stime

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(120)
        self.proc = None


# ---- publishers (separate processes) ------------------------------------------

def _frames(i, channels, data):
    return [b"PUB", b"bench-%d" % (i % channels), data]


def _push_worker(endpoint, first, count, channels, size, ready, go):
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.setsockopt(zmq.SNDHWM, 0)
    s.setsockopt(zmq.LINGER, -1)
    s.connect(endpoint)
    data = b"x" * size
    chans = [b"bench-%d" % c for c in range(channels)]
    ready.put(1)
    go.wait()
    send = s.send_multipart
    for i in range(first, first + count):
        send([b"PUB", chans[i % channels], data])
    s.close()
    ctx.term()


def _req_worker(endpoint, first, count, channels, size, ready, go, out):
    ctx = zmq.Context()
    s = ctx.socket(zmq.REQ)
    s.connect(endpoint)
    data = b"x" * size
    ready.put(1)
    go.wait()
    bad = 0
    for i in range(first, first + count):
        s.send_multipart(_frames(i, channels, data))
        if s.recv_multipart()[0] != b"OK":
            bad += 1
    out.put(bad)
    s.close()
    ctx.term()


def _dealer_worker(endpoint, first, count, channels, size, window, ready, go, out):
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.connect(endpoint)
    data = b"x" * size
    ready.put(1)
    go.wait()
    sent = acked = bad = 0
    while acked < count:
        while sent < count and sent - acked < window:
            s.send_multipart([b""] + _frames(first + sent, channels, data))
            sent += 1
        rep = s.recv_multipart()
        acked += 1
        bad += rep[1] != b"OK"
    out.put(bad)
    s.close()
    ctx.term()


def _split(n, k):
    base = [n // k + (1 if i < n % k else 0) for i in range(k)]
    firsts = [sum(base[:i]) for i in range(k)]
    return list(zip(firsts, base))


def publish(broker, mode, n, size, channels, publishers, window=64):
    """Publish n messages; returns (seconds, broker cpu seconds)."""
    ready, out, go = mp.Queue(), mp.Queue(), mp.Event()
    procs = []
    for first, count in _split(n, publishers):
        if mode == "push":
            args = (broker.push, first, count, channels, size, ready, go)
            target = _push_worker
        elif mode == "req":
            args = (broker.api, first, count, channels, size, ready, go, out)
            target = _req_worker
        else:
            args = (broker.api, first, count, channels, size, window, ready, go, out)
            target = _dealer_worker
        p = mp.Process(target=target, args=args)
        p.start()
        procs.append(p)
    for _ in procs:
        ready.get(timeout=30)
    time.sleep(0.2)                      # let the connections settle
    base = broker.stats()["published"]
    cpu0 = broker.cpu_seconds()
    t0 = time.monotonic()
    go.set()
    if mode == "push":
        while broker.stats()["published"] < base + n:
            time.sleep(0.005)
    else:
        bad = sum(out.get(timeout=3600) for _ in procs)
        if bad:
            print(f"  warning: {bad} publishes were refused")
    elapsed = time.monotonic() - t0
    cpu = broker.cpu_seconds() - cpu0
    for p in procs:
        p.join(60)
    return elapsed, cpu


# ---- commands ----------------------------------------------------------------------

def run_ingest(a, base):
    policies = [a.fsync] if a.fsync else ["memory", "no", "everysec", "always"]
    modes = [a.mode] if a.mode else ["push", "req", "dealer"]
    print(f"ingest: {a.n} messages of {a.size} bytes over {a.channels} channels, "
          f"history_max 1000, broker {a.broker}, {os.cpu_count()} CPUs")
    print(f"{'fsync':>9} {'mode':>7} {'pubs':>4} {'msgs/s':>10} {'broker CPU':>11} "
          f"{'us/msg':>7} {'1-core cap':>11} {'journal':>12}")
    results = []
    for policy in policies:
        for mode in modes:
            pubs = a.publishers or (2 if mode == "push" else 8 if mode == "req" else 2)
            work = Path(tempfile.mkdtemp(prefix=f"bench-{policy}-{mode}-", dir=base))
            data_dir = None if policy == "memory" else work / "data"
            b = Broker(a.broker, work, data_dir, policy)
            b.start()
            n = a.n if mode != "req" else min(a.n, a.req_n)
            try:
                elapsed, cpu = publish(b, mode, n, a.size, a.channels, pubs, a.window)
                st = b.stats()
            finally:
                b.stop()
            rate = n / elapsed
            us = cpu / n * 1e6
            journal = st.get("log_bytes", 0)
            print(f"{policy:>9} {mode:>7} {pubs:>4} {rate:>10,.0f} {cpu:>10.2f}s {us:>7.2f} "
                  f"{(1e6 / us if us else 0):>11,.0f} {journal:>12,}", flush=True)
            results.append((policy, mode, rate, us))
            if not a.keep:
                shutil.rmtree(work, ignore_errors=True)
    return results


def run_recovery(a, base):
    n = a.n_recovery
    channels = a.recovery_channels
    hmax = -(-n // channels)
    work = Path(tempfile.mkdtemp(prefix="bench-recovery-", dir=base))
    data_dir = work / "data"
    print(f"recovery: {n} messages of {a.size} bytes in {channels} channels "
          f"(history_max {hmax}), fsync {a.fsync or 'everysec'}")
    b = Broker(a.broker, work, data_dir, a.fsync or "everysec", history_max=hmax)
    b.start()
    elapsed, _ = publish(b, "push", n, a.size, channels, 2)
    st = b.stats()
    print(f"  filled in {elapsed:.1f} s ({n / elapsed:,.0f} msgs/s); "
          f"messages_stored {st['messages_stored']}, compactions {st['compactions']}")
    b.stop()
    size = (data_dir / "journal").stat().st_size
    print(f"  journal on disk: {size:,} bytes ({size / n:.1f} bytes/message); "
          f"du: {subprocess.run(['du', '-sh', str(data_dir)], capture_output=True, text=True).stdout.split()[0]}")
    # drop the journal from the page cache? Not without root tricks: report warm.
    t = b.start()
    st = b.stats()
    text = b.log.read_text()
    m = list(re.finditer(r"recovered (\d+) messages in (\d+) channels from (\d+) bytes in "
                         r"(\d+) ms", text))[-1]
    print(f"  restart: answering PING after {t * 1000:.0f} ms; broker says: {m.group(0)}; "
          f"messages_stored {st['messages_stored']}")
    rss = 0
    with open(f"/proc/{b.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                rss = int(line.split()[1])
    print(f"  broker RSS after recovery: {rss / 1024:.0f} MiB")
    b.stop()
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["ingest", "recovery", "all"])
    p.add_argument("--broker", default=DEFAULT_BIN)
    p.add_argument("-n", type=int, default=300000, help="messages per ingest run")
    p.add_argument("--req-n", type=int, default=100000, help="messages per REQ run")
    p.add_argument("--n-recovery", type=int, default=1000000)
    p.add_argument("--recovery-channels", type=int, default=1000)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--channels", type=int, default=100)
    p.add_argument("--publishers", type=int, default=0)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--fsync", choices=["memory", "no", "everysec", "always"])
    p.add_argument("--mode", choices=["push", "req", "dealer"])
    p.add_argument("--dir", help="where the journals go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the journals")
    a = p.parse_args()
    mp.set_start_method("fork")
    base = a.dir or tempfile.mkdtemp(prefix="persist-bench-")
    Path(base).mkdir(parents=True, exist_ok=True)
    try:
        if a.what in ("ingest", "all"):
            run_ingest(a, base)
        if a.what in ("recovery", "all"):
            if a.fsync == "memory":
                sys.exit("recovery needs a journal")
            run_recovery(a, base)
    finally:
        if not a.dir and not a.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
