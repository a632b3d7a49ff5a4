"""CURVE security and IPC socket permissions (issue #6, part 3), against a real
pushbrokerd and a real Apache.

Keys come from `pushctl keygen`.  A broker with curve_secret_key_file and
curve_authorized_keys:
  - a publisher with the right keys publishes (pushctl, Python, PHP, raw ZeroMQ;
    api and push endpoints);
  - a publisher without any key, with a key that is not listed, or given
    another server key gets no answer; the broker's log says why, once per
    peer however often it retries; nothing it sent is stored;
  - SIGHUP reads the allow-list again; a list that has become bad is refused
    and the old one stays;
  - bad key files stop the broker at start with status 2, naming the file.
mod_push with PushBrokerServerKey / PushBrokerClientKeys delivers over a
CURVE link; with a wrong server key, or a key the broker does not list, its
subscribers get the usual 503 "unavailable", and both logs say why.  Bad key
directives stop Apache at start, naming the file.  ipc:// socket files get
ipc_mode (0660 by default) and ipc_group.
"""
import grp
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import zmq
from zmq.utils import z85

from conftest import (EVENT_TIMEOUT, HOST, HTTPD, PUSHCTL, ROOT, Apache, Broker, Stack,
                      tail, unique_channel, wait_until)

PHP_PUBLISH = ROOT / "clients" / "php" / "publish.php"
PY_PUBLISH = ROOT / "clients" / "python" / "publish.py"
REFUSED_WAIT = 1.5          # seconds a refused request waits for the answer that never comes


# ---------------------------------------------------------------------------
# keys and a CURVE broker
# ---------------------------------------------------------------------------

def keygen(base):
    """pushctl keygen BASE; returns (public, secret) as bytes."""
    p = subprocess.run([str(PUSHCTL), "keygen", str(base)], capture_output=True, text=True,
                       timeout=20)
    assert p.returncode == 0, p.stderr
    return read_key(f"{base}.pub"), read_key(f"{base}.secret")


def read_key(path):
    words = [ln.split()[0] for ln in Path(path).read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert len(words) == 1, words
    return words[0].encode()


class Keys:
    """Key pairs made by pushctl keygen: broker, app (listed), apache
    (listed), other (not listed), and the allow-list file."""

    def __init__(self, d):
        self.dir = Path(d)
        for name in ("broker", "app", "apache", "other"):
            pub, sec = keygen(self.dir / name)
            setattr(self, name, (pub, sec))
        self.allowed = self.dir / "authorized_keys"
        self.allowed.write_text(f"# publishers\n{self.app[0].decode()}  # app\n\n"
                                f"# the Apache server\n{self.apache[0].decode()}\n")

    def file(self, name, kind):
        return self.dir / f"{name}.{kind}"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return Keys(tmp_path_factory.mktemp("keys"))


def curve_socket(ctx, kind, server=None, pair=None, timeout=REFUSED_WAIT):
    """A socket, a CURVE client when server is given (pair: (public, secret);
    None: a throwaway pair)."""
    s = ctx.socket(kind)
    s.linger = 0
    s.rcvtimeo = s.sndtimeo = int(timeout * 1000)
    if server:
        pub, sec = pair or zmq.curve_keypair()
        s.curve_serverkey, s.curve_publickey, s.curve_secretkey = server, pub, sec
    return s


def request(endpoint, frames, server=None, pair=None, timeout=10.0):
    """One REQ exchange; returns the reply, or None when none came in time."""
    s = curve_socket(zmq.Context.instance(), zmq.REQ, server, pair, timeout)
    try:
        s.connect(endpoint)
        s.send_multipart([f if isinstance(f, bytes) else str(f).encode() for f in frames])
        return s.recv_multipart()
    except zmq.Again:
        return None
    finally:
        s.close()


class CurveBroker(Broker):
    """A broker whose tcp:// endpoints are CURVE servers; the harness's own
    requests (the start-up PING) use the listed key pair "app"."""

    def __init__(self, workdir, keys, name="curve-broker", allow_list=True, args=()):
        self.keys = keys
        extra = ["--curve-secret-key-file", keys.file("broker", "secret")]
        if allow_list:
            extra += ["--curve-authorized-keys", keys.allowed]
        super().__init__(workdir, name, args=[*extra, *args])

    def req(self, frames, pair="app", server="broker", endpoint=None, timeout=10.0):
        pair = getattr(self.keys, pair) if isinstance(pair, str) else pair
        server = getattr(self.keys, server)[0] if isinstance(server, str) else server
        return request(endpoint or self.api, frames, server, pair, timeout)

    def ping(self, timeout=5.0):
        rep = self.req([b"PING"], timeout=timeout)
        if rep is None:
            raise zmq.Again()
        return rep

    def history(self, channel):
        rep = self.req([b"HISTORY", channel, b"0"])
        assert rep and rep[0] == b"OK", rep
        return [rep[i + 2] for i in range(3, len(rep), 4)]   # the data frames

    def log_text(self):
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def cbroker(keys, tmp_path_factory):
    b = CurveBroker(tmp_path_factory.mktemp("cbroker"), keys).start()
    yield b
    b.stop()


def count_lines(text, pattern):
    return len(re.findall(pattern, text))


# ---------------------------------------------------------------------------
# pushctl keygen
# ---------------------------------------------------------------------------

def test_keygen_prints_a_key_pair():
    p = subprocess.run([str(PUSHCTL), "keygen"], capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, p.stderr
    m = re.fullmatch(r"public=(\S{40})\nsecret=(\S{40})\n", p.stdout)
    assert m, p.stdout
    pub, sec = m.group(1).encode(), m.group(2).encode()
    assert len(z85.decode(pub)) == len(z85.decode(sec)) == 32
    assert zmq.curve_public(sec) == pub
    p2 = subprocess.run([str(PUSHCTL), "keygen"], capture_output=True, text=True, timeout=20)
    assert p2.stdout != p.stdout, "two key pairs must differ"


def test_keygen_files_modes_and_no_overwrite(tmp_path):
    base = tmp_path / "app"
    p = subprocess.run([str(PUSHCTL), "keygen", str(base)], capture_output=True, text=True,
                       timeout=20)
    assert p.returncode == 0, p.stderr
    pub, sec = read_key(f"{base}.pub"), read_key(f"{base}.secret")
    assert p.stdout == (f"public={pub.decode()}\npublic_file={base}.pub\n"
                        f"secret_file={base}.secret\n")
    assert zmq.curve_public(sec) == pub
    assert stat.S_IMODE(os.stat(f"{base}.secret").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(f"{base}.pub").st_mode) & 0o7133 == 0   # at most 0644
    assert Path(f"{base}.pub").read_text().startswith("# ")

    # never overwritten without --force: exit 2, both files unchanged
    before = Path(f"{base}.secret").read_bytes(), Path(f"{base}.pub").read_bytes()
    p = subprocess.run([str(PUSHCTL), "keygen", str(base)], capture_output=True, text=True,
                       timeout=20)
    assert p.returncode == 2 and p.stdout == ""
    assert f"{base}.pub exists; not overwritten (--force replaces it)" in p.stderr
    assert (Path(f"{base}.secret").read_bytes(), Path(f"{base}.pub").read_bytes()) == before
    # only the secret file there: still refused, and no public file is made
    os.unlink(f"{base}.pub")
    p = subprocess.run([str(PUSHCTL), "keygen", str(base)], capture_output=True, text=True,
                       timeout=20)
    assert p.returncode == 2 and f"{base}.secret exists" in p.stderr
    assert not Path(f"{base}.pub").exists()

    # --force replaces, and the secret file is 0600 again even if it was opened up
    os.chmod(f"{base}.secret", 0o644)
    p = subprocess.run([str(PUSHCTL), "keygen", "--force", str(base)], capture_output=True,
                       text=True, timeout=20)
    assert p.returncode == 0, p.stderr
    assert read_key(f"{base}.secret") != sec
    assert stat.S_IMODE(os.stat(f"{base}.secret").st_mode) == 0o600
    assert zmq.curve_public(read_key(f"{base}.secret")) == read_key(f"{base}.pub")


def test_keygen_bad_uses(tmp_path):
    cases = [
        (["keygen", str(tmp_path / "nodir" / "k")], 3, "cannot create"),
        (["keygen", "a", "b"], 2, "unexpected argument 'b'"),
        (["keygen", ""], 2, "empty base name"),
        (["publish", "c", "d", "--force"], 2, "--force is only valid with 'keygen'"),
    ]
    for args, rc, msg in cases:
        p = subprocess.run([str(PUSHCTL), *args], capture_output=True, text=True, timeout=20)
        assert p.returncode == rc and msg in p.stderr, (args, p.returncode, p.stderr)


# ---------------------------------------------------------------------------
# the broker with CURVE
# ---------------------------------------------------------------------------

def test_listed_publisher_publishes(cbroker, keys):
    ch = unique_channel("curve")
    rep = cbroker.req([b"PUB", ch, b"hello"])
    assert rep is not None and rep[0] == b"OK", rep
    # the fire-and-forget endpoint too
    s = curve_socket(zmq.Context.instance(), zmq.PUSH, keys.broker[0], keys.app)
    try:
        s.connect(cbroker.push)
        s.send_multipart([b"PUB", ch.encode(), b"pushed"])
        wait_until(lambda: cbroker.history(ch) == [b"hello", b"pushed"], EVENT_TIMEOUT,
                   "the PUSH message in history")
    finally:
        s.close()
    assert "CURVE on the tcp:// endpoints: server public key " + keys.broker[0].decode() \
        in cbroker.log_text()


def test_pushctl_python_php_with_keys(cbroker, keys):
    ch = unique_channel("curve-clients")
    refusals = count_lines(cbroker.log_text(), "refused a client")
    env = dict(os.environ, PUSH_API=cbroker.api, PUSH_PUSH=cbroker.push, PUSH_TIMEOUT="5000")
    server, client = str(keys.file("broker", "pub")), str(keys.file("app", "secret"))
    p = subprocess.run([str(PUSHCTL), "--server-key", server, "--client-key", client,
                        "publish", ch, "from-pushctl"], capture_output=True, text=True,
                       env=env, timeout=30)
    assert p.returncode == 0 and p.stdout.startswith("id=1 "), p.stderr
    # the keys from the environment, inline (Z85) and as files
    curve_env = dict(env, PUSH_CURVE_SERVER_KEY=keys.broker[0].decode(),
                     PUSH_CURVE_CLIENT_KEY=client)
    p = subprocess.run([str(PUSHCTL), "publish", ch, "nowait", "--no-ack"],
                       capture_output=True, text=True, env=curve_env, timeout=30)
    assert p.returncode == 0, p.stderr
    for cmd in (["/usr/bin/python3", str(PY_PUBLISH)], ["php", str(PHP_PUBLISH)]):
        p = subprocess.run([*cmd, ch, "from-" + Path(cmd[-1]).suffix[1:]], capture_output=True,
                           text=True, env=dict(curve_env, PUSH_CURVE_SERVER_KEY=server),
                           timeout=30)
        assert p.returncode == 0 and p.stdout.startswith("id="), (cmd, p.stdout, p.stderr)
    wait_until(lambda: cbroker.history(ch) == [b"from-pushctl", b"nowait", b"from-py",
                                               b"from-php"], EVENT_TIMEOUT, "four messages")
    p = subprocess.run([str(PUSHCTL), "history", ch], capture_output=True, text=True,
                       env=curve_env, timeout=30)
    assert p.returncode == 0 and p.stdout.count("\n") == 4, p.stderr
    # clients with keys never try without them first: no refusal was logged
    time.sleep(0.3)
    assert count_lines(cbroker.log_text(), "refused a client") == refusals, tail(cbroker.log)


def test_publisher_without_key_is_refused(cbroker):
    ch = unique_channel("nokey")
    assert request(cbroker.api, [b"PUB", ch, b"sneaky"]) is None
    s = curve_socket(zmq.Context.instance(), zmq.PUSH)      # fire-and-forget, no key
    s.immediate = True
    try:
        s.connect(cbroker.push)
        with pytest.raises(zmq.Again):                      # never connected: nothing queued
            s.send_multipart([b"PUB", ch.encode(), b"sneaky push"])
    finally:
        s.close()
    wait_until(lambda: re.search(r"WARN: refused a client of the api endpoint "
                                 + re.escape(cbroker.api), cbroker.log_text()),
               EVENT_TIMEOUT, "the refusal in the broker's log")
    assert cbroker.history(ch) == []
    # the clients of the shipped tools time out, as documented
    p = subprocess.run([str(PUSHCTL), "--api", cbroker.api, "--push", cbroker.push,
                        "--timeout", "1000", "publish", ch, "x"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 3 and "timeout" in p.stderr, p.stderr
    assert cbroker.history(ch) == []


def test_unlisted_key_is_refused(cbroker, keys):
    ch = unique_channel("unlisted")
    assert cbroker.req([b"PUB", ch, b"sneaky"], pair="other", timeout=REFUSED_WAIT) is None
    other = keys.other[0].decode()
    pattern = (r"WARN: refused a client of the api endpoint from 127\.0\.0\.1: its CURVE "
               r"public key " + re.escape(other) + r" is not in curve_authorized_keys "
               + re.escape(str(keys.allowed)))
    wait_until(lambda: re.search(pattern, cbroker.log_text()), EVENT_TIMEOUT, "the ZAP refusal")
    # a throwaway key pair is not listed either
    assert cbroker.req([b"PUB", ch, b"sneaky"], pair=None, timeout=REFUSED_WAIT) is None
    assert cbroker.history(ch) == []
    # pushctl with the unlisted key
    p = subprocess.run([str(PUSHCTL), "--api", cbroker.api, "--push", cbroker.push,
                        "--server-key", str(keys.file("broker", "pub")), "--client-key",
                        str(keys.file("other", "secret")), "--timeout", "1000", "publish", ch,
                        "x"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 3 and "refused the CURVE handshake: check the keys" in p.stderr
    assert cbroker.history(ch) == []


def test_wrong_server_key_is_refused(cbroker, keys):
    ch = unique_channel("wrongserver")
    assert cbroker.req([b"PUB", ch, b"x"], server="other", timeout=REFUSED_WAIT) is None
    pattern = (r"WARN: refused a client of the api endpoint \S+: its CURVE handshake does not "
               r"decrypt \(was it given another server public key than this broker's, "
               + re.escape(keys.broker[0].decode()))
    wait_until(lambda: re.search(pattern, cbroker.log_text()), EVENT_TIMEOUT,
               "the refusal of a client with another server key")
    assert cbroker.history(ch) == []


def test_refusals_are_logged_once_per_peer(cbroker, keys):
    """A refused client retries every 100 ms or so: one log line, not one per try."""
    other = keys.other[0].decode()
    ctx = zmq.Context.instance()
    s = curve_socket(ctx, zmq.DEALER, keys.broker[0], keys.other)
    s.reconnect_ivl = 50
    s.connect(cbroker.api)
    ns = curve_socket(ctx, zmq.DEALER)                  # and one without any key
    ns.reconnect_ivl = 50
    ns.connect(cbroker.api)
    try:
        time.sleep(3)
    finally:
        s.close()
        ns.close()
    text = cbroker.log_text()
    assert count_lines(text, r"api endpoint from 127\.0\.0\.1: its CURVE public key "
                             + re.escape(other)) == 1, tail(cbroker.log)
    assert count_lines(text, r"refused a client of the api endpoint tcp://\S+: the connection "
                             r"ended|refused a client of the api endpoint tcp://\S+: it does "
                             r"not use CURVE") <= 2, tail(cbroker.log)


def test_ipc_endpoints_ignore_curve(keys, tmp_path):
    """CURVE is for tcp://; an ipc:// endpoint of the same broker is guarded by its
    file's permissions and takes clients without keys."""
    push = f"ipc://{tmp_path}/push.sock"
    b = CurveBroker(tmp_path, keys, name="ipc-curve", args=["--push", push]).start()
    s = curve_socket(zmq.Context.instance(), zmq.PUSH)
    try:
        s.connect(push)
        s.send_multipart([b"PUB", b"ipc-plain", b"no key needed"])
        wait_until(lambda: b.history("ipc-plain") == [b"no key needed"], EVENT_TIMEOUT,
                   "the message sent over ipc:// without keys")
        assert stat.S_IMODE(os.stat(f"{tmp_path}/push.sock").st_mode) == 0o660
    finally:
        s.close()
        b.stop()


def test_sighup_reads_the_allow_list_again(keys, tmp_path):
    allowed = tmp_path / "allowed"
    allowed.write_text(keys.app[0].decode() + "\n")
    b = CurveBroker(tmp_path, keys, name="hup", allow_list=False,
                    args=["--curve-authorized-keys", allowed]).start()
    try:
        assert b.req([b"PING"], pair="other", timeout=REFUSED_WAIT) is None
        allowed.write_text(f"{keys.app[0].decode()}\n{keys.other[0].decode()}  # added\n")
        b.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "read again: 2 client keys" in b.log_text(), EVENT_TIMEOUT,
                   "the allow-list read again")
        rep = b.req([b"PING"], pair="other")
        assert rep and rep[0] == b"PONG", rep
        # a list that has become bad is refused, and the old one stays in force
        allowed.write_text("not-a-key\n")
        b.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "keeping the 2 client keys read before" in b.log_text(),
                   EVENT_TIMEOUT, "the bad list refused")
        assert f"curve_authorized_keys: {allowed}:1: not a CURVE key" in b.log_text()
        rep = b.req([b"PING"], pair="other")
        assert rep and rep[0] == b"PONG", rep
    finally:
        b.stop()


def test_no_allow_list_accepts_any_client_with_the_server_key(keys, tmp_path):
    b = CurveBroker(tmp_path, keys, name="open", allow_list=False).start()
    try:
        rep = b.req([b"PING"], pair=None)                   # a throwaway key pair
        assert rep and rep[0] == b"PONG", rep
        assert "any client that has this key is accepted" in b.log_text()
        assert request(b.api, [b"PING"], timeout=REFUSED_WAIT) is None     # no key at all
        assert b.req([b"PING"], server="other", timeout=REFUSED_WAIT) is None
    finally:
        b.stop()


def run_broker(args, timeout=30):
    bin_ = os.environ.get("PUSH_BROKER_BIN") or str(ROOT / "pushbrokerd" / "pushbrokerd")
    return subprocess.run([bin_, "-f", "--api", "tcp://127.0.0.1:1", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def test_bad_keys_stop_the_broker(keys, tmp_path):
    short = tmp_path / "short.secret"
    short.write_text("# a key that lost its end\n" + keys.app[1].decode()[:39] + "\n")
    badchar = tmp_path / "badchar.secret"
    badchar.write_text(keys.app[1].decode()[:39] + ",\n")
    two = tmp_path / "two.secret"
    two.write_text(keys.app[1].decode() + "\n" + keys.other[1].decode() + "\n")
    empty = tmp_path / "empty.secret"
    empty.write_text("# nothing\n")
    badlist = tmp_path / "badlist"
    badlist.write_text(keys.app[0].decode() + "\n" + keys.app[0].decode() + " app\n")
    unreadable = tmp_path / "unreadable.secret"
    unreadable.write_text(keys.app[1].decode())
    secret = keys.file("broker", "secret")
    cases = [
        (["--curve-secret-key-file", tmp_path / "missing"],
         f"curve_secret_key_file: {tmp_path}/missing: cannot open: No such file or directory"),
        (["--curve-secret-key-file", short],
         f"curve_secret_key_file: {short}:2: not a CURVE key: a Z85 key has 40 characters, "
         "this one 39"),
        (["--curve-secret-key-file", badchar],
         f"curve_secret_key_file: {badchar}:1: not a CURVE key: ',' (column 40) is not a Z85 "
         "character"),
        (["--curve-secret-key-file", two], f"{two}: 2 keys in the file; exactly one"),
        (["--curve-secret-key-file", empty], f"{empty}: no key in the file"),
        (["--curve-secret-key-file", tmp_path], f"{tmp_path}: not a regular file"),
        (["--curve-secret-key-file", secret, "--curve-authorized-keys", badlist],
         f"curve_authorized_keys: {badlist}:2: text after the key"),
        (["--curve-authorized-keys", keys.allowed],
         "curve_authorized_keys needs curve_secret_key_file"),
        (["--ipc-mode", "0800"], "ipc_mode: \"0800\" is not an octal mode"),
        (["--ipc-group", "no-such-group-xyz"], "ipc_group: there is no group"),
    ]
    for args, msg in cases:
        p = run_broker(args)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert msg in p.stderr, (args, p.stderr)
    # a config file names its own line for a bad value, the key file for a bad key
    conf = tmp_path / "broker.conf"
    conf.write_text(f"curve_secret_key_file {short}\n")
    p = run_broker(["-c", conf])
    assert p.returncode == 2 and f"{short}:2: not a CURVE key" in p.stderr, p.stderr
    if os.geteuid() != 0:      # root reads anything
        os.chmod(unreadable, 0)
        p = run_broker(["--curve-secret-key-file", unreadable])
        assert p.returncode == 2 and "Permission denied" in p.stderr


# ---------------------------------------------------------------------------
# ipc:// socket files
# ---------------------------------------------------------------------------

def socket_stat(path):
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    return stat.S_IMODE(st.st_mode), st.st_gid


def ipc_ping(endpoint):
    """Broker.ping for a broker whose api endpoint is ipc://."""
    def ping(timeout=5.0):
        rep = request(endpoint, [b"PING"], timeout=timeout)
        if rep is None:
            raise zmq.Again()
        return rep
    return ping


def test_ipc_socket_modes(tmp_path):
    eps = {n: f"ipc://{tmp_path}/{n}.sock" for n in ("api", "push", "link")}
    b = Broker(tmp_path, name="ipc-default", args=["--api", eps["api"], "--push", eps["push"],
                                                  "--link", eps["link"]])
    b.ping = ipc_ping(eps["api"])
    old = os.umask(0)                 # even with an open umask the files are 0660
    try:
        b.start()
    finally:
        os.umask(old)
    try:
        for n in eps:
            assert socket_stat(f"{tmp_path}/{n}.sock")[0] == 0o660, n
    finally:
        b.stop()

    d2 = tmp_path / "m"
    d2.mkdir()
    api = f"ipc://{d2}/api.sock"
    group = next((g for g in ("daemon", "www-data", "nogroup") if _group(g)), None)
    args = ["--api", api, "--ipc-mode", "0600"]
    if group and os.geteuid() == 0:
        args += ["--ipc-group", group]
    b = Broker(d2, name="ipc-mode", args=args)
    b.ping = ipc_ping(api)
    b.start()
    try:
        mode, gid = socket_stat(f"{d2}/api.sock")
        assert mode == 0o600
        if "--ipc-group" in args:
            assert gid == grp.getgrnam(group).gr_gid
    finally:
        b.stop()


def _group(name):
    try:
        return grp.getgrnam(name)
    except KeyError:
        return None


# ---------------------------------------------------------------------------
# mod_push over a CURVE link
# ---------------------------------------------------------------------------

def apache_conf(keys, server="broker", client="apache", client_files=2):
    lines = [f"PushBrokerServerKey {keys.file(server, 'pub')}"]
    if client and client_files == 2:
        lines.append(f"PushBrokerClientKeys {keys.file(client, 'pub')} "
                     f"{keys.file(client, 'secret')}")
    elif client:
        lines.append(f"PushBrokerClientKeys {keys.file(client, 'secret')}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def curve_stack(keys, tmp_path):
    made = []

    def make(conf, require_broker=True):
        broker = CurveBroker(tmp_path / f"b{len(made)}", keys, name=f"curve-b{len(made)}")
        apache = Apache(tmp_path / f"a{len(made)}", broker.link, name=f"curve-a{len(made)}",
                        max_workers=25, extra_conf=conf)
        st = Stack(broker, apache)
        made.append(st)
        broker.start()
        apache.start(require_broker=require_broker)
        return st

    yield make
    for st in made:
        st.stop()


def test_mod_push_links_with_curve_and_delivers(keys, curve_stack):
    st = curve_stack(apache_conf(keys))
    ch = unique_channel("curve-sse")
    with st.subscribe(ch) as sub:
        rep = st.broker.req([b"PUB", ch, b"over CURVE", b"greeting"])
        assert rep and rep[0] == b"OK" and rep[2] == b"1", rep
        ev = sub.next_event()
        assert (ev.data, ev.event, ev.id) == ("over CURVE", "greeting", "1")
    # an HTTP publish goes over the same link
    assert st.publish_ok(ch, "via http")["id"] == 2
    log = st.apache.error_log_text()
    assert re.search(r"AH20003: linked to pushbrokerd at tcp://\S+ \(epoch \d+\) with CURVE, as "
                     r"public key " + re.escape(keys.apache[0].decode()), log), log


def test_mod_push_secret_key_file_alone(keys, curve_stack):
    """One argument: the secret key; the public key is derived from it."""
    st = curve_stack(apache_conf(keys, client_files=1))
    ch = unique_channel("curve-one")
    assert st.publish_ok(ch, "x")["id"] == 1


def unavailable(st, ch):
    """An SSE subscriber and a long poll get mod_push's usual 503."""
    for headers in ({"Accept": "text/event-stream"}, {}):
        r = st.request("GET", f"/sub/{ch}?last_id=0", headers=headers, timeout=30)
        assert r.status == 503, r
        assert r.json()["error"] == "unavailable", r
        assert r.header("Retry-After"), r


def test_mod_push_wrong_server_key_answers_503(keys, curve_stack):
    st = curve_stack(apache_conf(keys, server="other"), require_broker=False)
    ch = unique_channel("curve-wrong")
    unavailable(st, ch)
    wait_until(lambda: "AH20095: the handshake with pushbrokerd at " in
               st.apache.error_log_text(), EVENT_TIMEOUT, "AH20095 in the error log")
    assert "is PushBrokerServerKey the broker's public key?" in st.apache.error_log_text()
    wait_until(lambda: "its CURVE handshake does not decrypt" in st.broker.log_text(),
               EVENT_TIMEOUT, "the refusal in the broker's log")
    assert "AH20003" not in st.apache.error_log_text()
    assert st.broker.history(ch) == []


def test_mod_push_unlisted_key_answers_503(keys, curve_stack):
    st = curve_stack(apache_conf(keys, client="other"), require_broker=False)
    ch = unique_channel("curve-unlisted")
    unavailable(st, ch)
    other = keys.other[0].decode()
    wait_until(lambda: f"refused this server's CURVE public key {other}" in
               st.apache.error_log_text(), EVENT_TIMEOUT, "AH20093 in the error log")
    wait_until(lambda: f"its CURVE public key {other} is not in" in st.broker.log_text(),
               EVENT_TIMEOUT, "the ZAP refusal in the broker's log")
    # every child says it once, however often the link retries
    log = st.apache.error_log_text()
    assert count_lines(log, "AH20093") <= len(st.apache.child_pids()) + 1, log


def test_mod_push_throwaway_keys_refused_by_an_allow_list(keys, curve_stack):
    st = curve_stack(apache_conf(keys, client=None), require_broker=False)
    unavailable(st, unique_channel("curve-throwaway"))
    wait_until(lambda: "AH20093" in st.apache.error_log_text(), EVENT_TIMEOUT, "AH20093")


def test_mod_push_without_keys_to_a_curve_broker(keys, curve_stack):
    st = curve_stack("", require_broker=False)
    unavailable(st, unique_channel("curve-none"))
    wait_until(lambda: re.search(r"AH2009[45]", st.apache.error_log_text()), EVENT_TIMEOUT,
               "the handshake failure in the error log")


def httpd_start_fails(tmp_path, conf, name):
    """Start Apache with conf; it must refuse.  Returns its output and error log."""
    a = Apache(tmp_path / name, f"tcp://{HOST}:1", name=name, extra_conf=conf)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASAN_", "UBSAN_"))}
    p = subprocess.run(a.args() + ["-k", "start"], capture_output=True, text=True, env=env,
                       timeout=60)
    time.sleep(0.5)
    if a.pidfile.exists():            # started after all: stop it by its pid, then fail
        a.master_pid = int(a.pidfile.read_text().strip())
        a.stop()
        pytest.fail(f"Apache started with {conf!r}")
    assert p.returncode != 0, (conf, p.stdout, p.stderr)
    return p.stdout + p.stderr + a.error_log_text()


def test_bad_key_directives_stop_apache(keys, tmp_path):
    short = tmp_path / "short.pub"
    short.write_text(keys.broker[0].decode()[:30] + "\n")
    cases = [
        (f"PushBrokerServerKey {tmp_path}/missing.pub\n",
         f"PushBrokerServerKey: {tmp_path}/missing.pub: cannot open: No such file or directory"),
        (f"PushBrokerServerKey {short}\n",
         f"PushBrokerServerKey: {short}:1: not a CURVE key: a Z85 key has 40 characters, "
         "this one 30"),
        (f"PushBrokerServerKey {keys.broker[0].decode()[:39]},\n", "PushBrokerServerKey: "),
        (f"PushBrokerServerKey {keys.file('broker', 'pub')}\n"
         f"PushBrokerClientKeys {keys.file('apache', 'pub')} {keys.file('other', 'secret')}\n",
         f"PushBrokerClientKeys: the public key in {keys.file('apache', 'pub')} does not "
         f"belong to the secret key in {keys.file('other', 'secret')}"),
        (f"PushBrokerServerKey {keys.file('broker', 'pub')}\n"
         f"PushBrokerClientKeys {tmp_path}/none.secret\n",
         f"PushBrokerClientKeys: {tmp_path}/none.secret: cannot open"),
        (f"<VirtualHost 127.0.0.1:1>\nPushBrokerServerKey {keys.file('broker', 'pub')}\n"
         "</VirtualHost>\n", "PushBrokerServerKey cannot occur within"),
        (f"PushBrokerClientKeys {keys.file('apache', 'secret')}\n",
         "AH20090: PushBrokerClientKeys needs PushBrokerServerKey"),
    ]
    for i, (conf, msg) in enumerate(cases):
        out = httpd_start_fails(tmp_path, conf, f"bad{i}")
        assert msg in out, (conf, out)


@pytest.fixture
def open_dir():
    """A directory the Apache children (user daemon) can reach: pytest's own
    temporary directories are private to root."""
    d = Path(tempfile.mkdtemp(prefix="push-ipc-", dir="/tmp"))
    os.chmod(d, 0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_ipc_link_group_lets_apache_in(keys, tmp_path, open_dir):
    """The socket file is 0660: Apache's children (user and group daemon in
    conf/httpd.conf) connect when ipc_group is their group.  PushBrokerServerKey,
    given as the key itself, is not used on an ipc:// link (AH20092)."""
    if os.geteuid() != 0 or not _group("daemon"):
        pytest.skip("needs root (Apache's children run as daemon) and a group daemon")
    link = f"ipc://{open_dir}/link.sock"
    broker = CurveBroker(tmp_path / "b", keys, name="ipc-link",
                         args=["--link", link, "--ipc-group", "daemon"])
    apache = Apache(tmp_path / "a", link, name="ipc-link", max_workers=25,
                    extra_conf=f"PushBrokerServerKey {keys.broker[0].decode()}\n")
    st = Stack(broker, apache)
    try:
        st.start()
        assert socket_stat(f"{open_dir}/link.sock") == (0o660, grp.getgrnam("daemon").gr_gid)
        assert "AH20092: PushBrokerServerKey is not used: PushBroker ipc://" in \
            apache.error_log_text()
        assert st.publish_ok(unique_channel("ipc-link"), "x")["id"] == 1
    finally:
        st.stop()


def test_ipc_link_without_the_group_keeps_apache_out(tmp_path, open_dir):
    if os.geteuid() != 0:
        pytest.skip("needs root (Apache's children run as daemon)")
    link = f"ipc://{open_dir}/link.sock"
    broker = Broker(tmp_path / "b", name="ipc-closed", args=["--link", link])
    apache = Apache(tmp_path / "a", link, name="ipc-closed", max_workers=25)
    st = Stack(broker, apache)
    try:
        broker.start()
        apache.start(require_broker=False)
        assert socket_stat(f"{open_dir}/link.sock") == (0o660, 0)
        unavailable(st, unique_channel("ipc-closed"))
    finally:
        st.stop()
