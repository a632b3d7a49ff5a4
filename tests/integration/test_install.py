"""`make install` / `make uninstall`.

  test_destdir_*          install into a DESTDIR (no privileges needed) and check the
                          exact layout, modes and contents; run the staged binaries.
  test_system_apache_*    a real install into Debian's system Apache: a2enmod push,
                          apachectl start on a loopback port chosen here, a message
                          round trip, apachectl stop, make uninstall, and the machine
                          restored to what it was.  Runs only as root with Debian's
                          apache2 package (CI runs it); skipped otherwise, and skipped
                          when the system Apache is already running.

Run:  /usr/bin/python3 -m pytest -v tests/integration/test_install.py   (or `make integration`)

The real-install test changes /etc/apache2 (ports.conf, mods-enabled, a conf snippet),
/var/lib/apache2 (a2enmod state), installs files under /usr/local, /etc and
/lib/systemd/system and creates the system user pushbrokerd.  Everything is backed up
first and restored in a finalizer, also when the test fails; the restore is then
checked file by file.  A tarball of /etc/apache2 and /var/lib/apache2 as they were is
kept in the test's tmp_path for manual recovery.  No systemd is needed: the test
starts the installed pushbrokerd itself (as the unit would: user pushbrokerd, group
www-data, umask 0007, a 0750 runtime directory of its own) and stops it by its PID.
"""
import fcntl
import grp
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import HOST, ROOT, SSEClient, pid_alive, tail, unique_channel, wait_until

APXS = shutil.which("apxs") or "/usr/bin/apxs"
A2ENMOD = Path("/usr/sbin/a2enmod")
APACHECTL = Path("/usr/sbin/apachectl")
APACHE_PIDFILE = Path("/var/run/apache2/apache2.pid")
APACHE_ERROR_LOG = Path("/var/log/apache2/error.log")
SYSTEM_USER = "pushbrokerd"
TIMEOUT = 30.0          # upper bound of every wait; nothing asserts speed


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def clean_env(**extra):
    """The environment for make/apachectl: no outer make's flags, no Apache or
    sanitizer settings inherited from the caller."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "DESTDIR", "prefix")
           and not k.startswith(("APACHE_", "ASAN_", "UBSAN_", "LSAN_"))}
    env["LANG"] = "C"
    env["LC_ALL"] = "C"
    env.update(extra)
    return env


def run(cmd, check=True, timeout=300, **kw):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                       env=kw.pop("env", clean_env()), timeout=timeout, **kw)
    if check and p.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


def make(*args, check=True):
    return run(["make", "-C", ROOT, *args], check=check)


def apxs_q(var):
    return run([APXS, "-q", var]).stdout.strip()


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def files_under(root):
    """Every non-directory below root, as paths relative to it."""
    out = set()
    for d, _dirs, names in os.walk(root):
        for n in names:
            out.add(str((Path(d) / n).relative_to(root)))
    return out


def free_tcp_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def help_options(text):
    """The long options a --help text lists."""
    return sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z-]*[a-z]", text)) - {"--"})


def render_man(path):
    """man -l with warnings on; returns (text, warnings)."""
    p = run(["man", "--warnings", "-l", path], check=False,
            env=clean_env(MANWIDTH="80", PAGER="cat"))
    assert p.returncode == 0, p.stderr
    plain = re.sub(r".\x08", "", p.stdout)
    return plain, p.stderr.strip()


def unit_settings(text):
    """[Service]/[Unit]/[Install] key=value pairs of a unit file (last one wins)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def start_broker(binary, args, log, **popen_kw):
    """Start pushbrokerd in the foreground; returns the Popen once it answers."""
    logf = open(log, "ab")
    try:
        proc = subprocess.Popen([str(binary), "-f", *map(str, args)], stdin=subprocess.DEVNULL,
                                stdout=logf, stderr=subprocess.STDOUT, env=clean_env(),
                                **popen_kw)
    finally:
        logf.close()
    return proc


def stop_process(proc, timeout=TIMEOUT):
    """SIGTERM by PID, wait; SIGKILL after timeout.  Returns the exit status."""
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        pytest.fail(f"pid {proc.pid} ignored SIGTERM for {timeout}s")


def wait_pushctl_ping(pushctl, api, proc, log):
    def pong():
        if proc.poll() is not None:
            pytest.fail(f"pushbrokerd exited with {proc.returncode}:\n{tail(log)}")
        p = run([pushctl, "--api", api, "--timeout", "500", "ping"], check=False, timeout=30)
        return p.returncode == 0 and p.stdout.startswith("epoch=")
    wait_until(pong, TIMEOUT, "pushbrokerd to answer pushctl ping")


# ---------------------------------------------------------------------------
# (a) make install DESTDIR=...
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def apxs_dirs():
    if not Path(APXS).exists():
        pytest.skip("apxs is not installed (apt-get install apache2-dev)")
    return apxs_q("LIBEXECDIR"), apxs_q("SYSCONFDIR").rstrip("/")


def expected_layout(moduledir, confdir, prefix):
    """relative path -> mode of every file make install puts into a DESTDIR."""
    rel = lambda p: str(p).lstrip("/")   # noqa: E731
    layout = {
        rel(f"{moduledir}/mod_push.so"): 0o644,
        rel(f"{prefix}/sbin/pushbrokerd"): 0o755,
        rel(f"{prefix}/bin/pushctl"): 0o755,
        "etc/pushbrokerd.conf": 0o644,
        "lib/systemd/system/pushbrokerd.service": 0o644,
        rel(f"{prefix}/share/man/man8/pushbrokerd.8"): 0o644,
        rel(f"{prefix}/share/man/man1/pushctl.1"): 0o644,
    }
    if confdir == "/etc/apache2":
        layout["etc/apache2/mods-available/push.load"] = 0o644
        layout["etc/apache2/mods-available/push.conf"] = 0o644
    return layout


@pytest.fixture(scope="module")
def staged(apxs_dirs, tmp_path_factory):
    """make install DESTDIR=<tmp> prefix=/usr, once for the module."""
    dest = tmp_path_factory.mktemp("destdir")
    passwd_before = Path("/etc/passwd").read_bytes()
    out = make("install", f"DESTDIR={dest}", "prefix=/usr").stdout
    assert Path("/etc/passwd").read_bytes() == passwd_before, "install with DESTDIR created a user"
    return dest, out


def test_destdir_layout(staged, apxs_dirs):
    dest, out = staged
    moduledir, confdir = apxs_dirs
    layout = expected_layout(moduledir, confdir, "/usr")
    assert files_under(dest) == set(layout), out
    for rel, mode in layout.items():
        p = dest / rel
        assert p.is_file() and not p.is_symlink(), rel
        assert mode_of(p) == mode, f"{rel}: mode {oct(mode_of(p))}, expected {oct(mode)}"
    # nothing is enabled: that is a2enmod's job
    assert not (dest / "etc/apache2/mods-enabled").exists()
    # the installed files are the built ones
    for built, rel in ((ROOT / "mod_push/.libs/mod_push.so", f"{moduledir}/mod_push.so"),
                       (ROOT / "pushbrokerd/pushbrokerd", "usr/sbin/pushbrokerd"),
                       (ROOT / "clients/c/pushctl", "usr/bin/pushctl"),
                       (ROOT / "man/pushbrokerd.8", "usr/share/man/man8/pushbrokerd.8"),
                       (ROOT / "man/pushctl.1", "usr/share/man/man1/pushctl.1")):
        assert (dest / rel.lstrip("/")).read_bytes() == built.read_bytes(), rel


def test_destdir_apache_files(staged, apxs_dirs, tmp_path):
    dest, _ = staged
    moduledir, confdir = apxs_dirs
    if confdir != "/etc/apache2":
        pytest.skip(f"apxs SYSCONFDIR is {confdir}: not a Debian-style Apache")
    load = (dest / "etc/apache2/mods-available/push.load").read_text()
    assert not re.search(r"@[A-Z_]+@", load), load
    loadmodule = [ln for ln in load.splitlines() if ln.startswith("LoadModule")]
    assert loadmodule == [f"LoadModule push_module {moduledir}/mod_push.so"]
    # a2enmod reads "# Depends:" from the first comment lines: the event MPM comes along
    depends = re.search(r"^# Depends:\s*(.*)$", load, re.M)
    assert depends and "mpm_event" in depends.group(1).split(), load

    conf = (dest / "etc/apache2/mods-available/push.conf").read_text()
    active = "\n".join(ln.strip() for ln in conf.splitlines() if not ln.strip().startswith("#"))
    assert "PushBroker ipc:///run/pushbrokerd/link.sock" in active
    sub = re.search(r"<Location /sub/>(.*?)</Location>", active, re.S)
    pub = re.search(r"<Location /pub/>(.*?)</Location>", active, re.S)
    assert sub and "SetHandler push-subscriber" in sub.group(1)
    assert pub and "SetHandler push-publisher" in pub.group(1) and "Require local" in pub.group(1)
    assert "AsyncRequestWorkerFactor" in conf and "AsyncRequestWorkerFactor" not in active

    # Apache accepts it: load the staged module and include the staged push.conf
    httpd = shutil.which("apache2") or "/usr/sbin/apache2"
    mods = Path(moduledir)
    t = tmp_path / "t.conf"
    t.write_text(f"""ServerRoot {tmp_path}
ServerName 127.0.0.1
PidFile {tmp_path}/httpd.pid
ErrorLog {tmp_path}/error.log
DefaultRuntimeDir {tmp_path}
Listen 127.0.0.1:{free_tcp_port()}
LoadModule mpm_event_module {mods}/mod_mpm_event.so
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule authz_host_module {mods}/mod_authz_host.so
{loadmodule[0].replace(f"{moduledir}/", f"{dest}/{moduledir.lstrip('/')}/")}
Include {dest}/etc/apache2/mods-available/push.conf
""")
    p = run([httpd, "-t", "-f", t], check=False)
    assert p.returncode == 0 and "Syntax OK" in p.stderr + p.stdout, p.stdout + p.stderr


def test_destdir_broker_config_and_unit(staged, tmp_path):
    dest, _ = staged
    conf = (dest / "etc/pushbrokerd.conf").read_text()
    keys = dict(ln.split(None, 1) for ln in conf.splitlines()
                if ln.strip() and not ln.lstrip().startswith("#"))
    assert keys["link"].strip() == "ipc:///run/pushbrokerd/link.sock"
    assert keys["api"].strip() == "tcp://127.0.0.1:7701"
    assert keys["push"].strip() == "tcp://127.0.0.1:7702"

    unit_text = (dest / "lib/systemd/system/pushbrokerd.service").read_text()
    unit = unit_settings(unit_text)
    assert unit["ExecStart"] == "/usr/sbin/pushbrokerd -f -c /etc/pushbrokerd.conf"
    expect = {"Type": "simple", "Restart": "on-failure", "User": "pushbrokerd",
              "Group": "www-data", "UMask": "0007", "RuntimeDirectory": "pushbrokerd",
              "RuntimeDirectoryMode": "0750", "StateDirectory": "pushbrokerd",
              "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
              "PrivateTmp": "yes", "WantedBy": "multi-user.target"}
    assert {k: unit.get(k) for k in expect} == expect
    assert not re.search(r"@[A-Z_]+@", unit_text), "an unsubstituted @PLACEHOLDER@"
    analyze = shutil.which("systemd-analyze")
    if analyze:
        # systemd's own parser: no unknown keys or bad values.  (Complaints about
        # the missing binary or a missing sysinit.target, without systemd running,
        # are about this machine, not the unit.)
        p = run([analyze, "verify", "--man=no", dest / "lib/systemd/system/pushbrokerd.service"],
                check=False)
        bad = [ln for ln in (p.stdout + p.stderr).splitlines()
               if re.search(r"Unknown (key|section)|Failed to parse|Invalid|ignoring", ln)]
        assert not bad, "\n".join(bad)

    # the staged binaries run, and the staged config parses: the broker reads it,
    # with its endpoints overridden on the command line (command line wins)
    broker, pushctl = dest / "usr/sbin/pushbrokerd", dest / "usr/bin/pushctl"
    for b in (broker, pushctl):
        assert run([b, "--help"]).stdout.startswith("Usage:")
        assert "0.1.0" in run([b, "--version"]).stdout
    api = f"tcp://{HOST}:{free_tcp_port()}"
    log = tmp_path / "broker.log"
    proc = start_broker(broker, ["-c", dest / "etc/pushbrokerd.conf", "--api", api,
                                 "--push", f"tcp://{HOST}:{free_tcp_port()}",
                                 "--link", f"ipc://{tmp_path}/link.sock"], log)
    try:
        wait_pushctl_ping(pushctl, api, proc, log)
        p = run([pushctl, "--api", api, "publish", "staged", "hello"])
        assert p.stdout.startswith("id=1 ")
    finally:
        rc = stop_process(proc)
    assert rc == 0, tail(log)


@pytest.mark.parametrize("page,binary", [("usr/share/man/man8/pushbrokerd.8", "usr/sbin/pushbrokerd"),
                                         ("usr/share/man/man1/pushctl.1", "usr/bin/pushctl")])
def test_destdir_man_pages(staged, page, binary):
    dest, _ = staged
    if not shutil.which("man"):
        pytest.skip("man is not installed")
    text, warnings = render_man(dest / page)
    assert not warnings, warnings
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "FILES",
                    "EXAMPLES", "SEE ALSO"):
        assert re.search(rf"^{section}$", text, re.M), f"{page}: no {section} section"
    # every option of --help is documented
    help_text = run([dest / binary, "--help"]).stdout
    missing = [o for o in help_options(help_text) if o not in text]
    assert not missing, f"{page} does not document {missing}"
    if "pushbrokerd" in page:
        # every config key --help lists ("Config file keys: a, b, ...") has an entry
        listed = re.search(r"Config file keys:(.*?)\.(\s|$)", help_text, re.S)
        assert listed, help_text
        keys = [k.strip() for k in listed.group(1).replace("\n", " ").split(",")]
        assert "link" in keys and "log_level" in keys, keys
        for key in keys:
            assert re.search(rf"^\s+{key}\b", text, re.M), f"config key {key} not documented"
        assert "/etc/pushbrokerd.conf" in text and "SIGHUP" in text
    else:
        for cmd in ("publish", "history", "stats", "ping", "PUSH_API", "PUSH_TIMEOUT"):
            assert cmd in text


def test_destdir_reinstall_keeps_config_then_uninstall(staged, apxs_dirs):
    dest, _ = staged
    moduledir, confdir = apxs_dirs
    cfg = dest / "etc/pushbrokerd.conf"
    cfg.write_text(cfg.read_text() + "\nhistory_max 5\n")
    mine = cfg.read_bytes()
    out = make("install", f"DESTDIR={dest}", "prefix=/usr").stdout
    assert cfg.read_bytes() == mine, "make install overwrote an existing pushbrokerd.conf"
    assert "kept" in out
    assert files_under(dest) == set(expected_layout(moduledir, confdir, "/usr"))

    out = make("uninstall", f"DESTDIR={dest}", "prefix=/usr").stdout
    assert files_under(dest) == {"etc/pushbrokerd.conf"}, out
    assert cfg.read_bytes() == mine
    assert "pushbrokerd.conf" in out and "Kept" in out
    make("uninstall", f"DESTDIR={dest}", "prefix=/usr")     # a second time is harmless


def test_destdir_default_prefix(apxs_dirs, tmp_path):
    moduledir, confdir = apxs_dirs
    make("install", f"DESTDIR={tmp_path}")
    assert files_under(tmp_path) == set(expected_layout(moduledir, confdir, "/usr/local"))
    unit = unit_settings((tmp_path / "lib/systemd/system/pushbrokerd.service").read_text())
    assert unit["ExecStart"] == "/usr/local/sbin/pushbrokerd -f -c /etc/pushbrokerd.conf"


def test_destdir_non_debian_apache(tmp_path):
    """An Apache whose apxs does not say /etc/apache2: no mods-available files,
    the LoadModule line is printed instead."""
    fake = tmp_path / "apxs"
    # answers the two queries install asks; anything else (a rebuild) is the real apxs
    fake.write_text(f"""#!/bin/sh
case "$1 $2" in
  "-q LIBEXECDIR") echo /opt/httpd/modules ;;
  "-q SYSCONFDIR") echo /opt/httpd/conf ;;
  *) exec {APXS} "$@" ;;
esac
""")
    fake.chmod(0o755)
    dest = tmp_path / "dest"
    out = make("install", f"DESTDIR={dest}", f"APXS={fake}").stdout
    assert "opt/httpd/modules/mod_push.so" in files_under(dest)
    assert not (dest / "etc/apache2").exists() and not (dest / "opt/httpd/conf").exists()
    assert "LoadModule push_module /opt/httpd/modules/mod_push.so" in out


def test_destdir_must_be_absolute(tmp_path):
    p = make("install", "DESTDIR=relative/dir", check=False)
    assert p.returncode != 0 and "absolute" in p.stderr


# ---------------------------------------------------------------------------
# (b) a real install into Debian's system Apache
# ---------------------------------------------------------------------------

def _fingerprint(root):
    """relative path -> (kind, content or target, mode, uid, gid) of a whole tree."""
    out = {}
    root = Path(root)
    if not root.exists():
        return out

    def walk(d):
        for e in sorted(os.scandir(d), key=lambda e: e.name):
            st = os.lstat(e.path)
            rel = str(Path(e.path).relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(e.path), 0, st.st_uid, st.st_gid)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", None, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
                walk(e.path)
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", Path(e.path).read_bytes(), stat.S_IMODE(st.st_mode),
                            st.st_uid, st.st_gid)
            else:
                out[rel] = ("other", None, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    walk(root)
    return out


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _restore_tree(root, snap):
    """Make the tree below root exactly snap again (content, links, modes, owners)."""
    root = Path(root)
    cur = _fingerprint(root)
    for rel in sorted(cur, reverse=True):            # children before their parents
        if rel not in snap or snap[rel][0] != cur[rel][0] or snap[rel][0] == "other":
            if os.path.lexists(root / rel):
                _remove(root / rel)
    for rel in sorted(snap):                          # parents before their children
        kind, data, mode, uid, gid = snap[rel]
        p = root / rel
        if kind == "dir":
            p.mkdir(exist_ok=True)
        elif kind == "link":
            if not p.is_symlink() or os.readlink(p) != data:
                _remove(p)
                os.symlink(data, p)
        elif kind == "file":
            if not p.is_file() or p.read_bytes() != data:
                _remove(p)
                p.write_bytes(data)
        else:
            continue
        os.lchown(p, uid, gid)
        if kind != "link":
            os.chmod(p, mode)


class Machine:
    """What the real install test changes, saved before and put back after."""

    TREES = ("/etc/apache2", "/var/lib/apache2")
    ACCOUNT_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow")
    RUN_DIRS = ("/var/run/apache2", "/var/lock/apache2")
    LOG_DIR = Path("/var/log/apache2")

    def __init__(self, workdir, install_files):
        self.workdir = Path(workdir)
        self.install_files = [Path(f) for f in install_files]
        self.apache_pid = None
        self.apache_children = []
        self.broker = None
        self.broker_dir = None
        self.restored = False

    # --- snapshot --------------------------------------------------------
    def snapshot(self):
        self.tarball = self.workdir / "system-apache-before.tgz"
        subprocess.run(["tar", "-C", "/", "-czpf", str(self.tarball),
                        *[t.lstrip("/") for t in self.TREES if Path(t).exists()]], check=True)
        self.trees = {t: _fingerprint(t) for t in self.TREES}
        self.files = {}
        self.new_dirs = set()
        for f in self.install_files:
            self.files[f] = (f.read_bytes(), os.stat(f)) if f.exists() else None
            d = f.parent
            while not d.exists():
                self.new_dirs.add(d)
                d = d.parent
        self.accounts = {f: Path(f).read_bytes() for f in self.ACCOUNT_FILES if Path(f).exists()}
        self.account_backups = {f + "-": Path(f + "-").read_bytes() if Path(f + "-").exists()
                                else None for f in self.ACCOUNT_FILES}
        self.user_existed = _getpw(SYSTEM_USER) is not None
        self.group_existed = _getgr(SYSTEM_USER) is not None
        self.run_dirs = {d: os.path.lexists(d) for d in self.RUN_DIRS}
        self.logs = {p: p.stat().st_size for p in self.LOG_DIR.glob("*")} \
            if self.LOG_DIR.is_dir() else {}
        # a pushbrokerd.conf of an earlier install would be kept by `make install`:
        # set it aside so that the installed (shipped) one is what is tested
        cfg = Path("/etc/pushbrokerd.conf")
        if cfg.exists():
            cfg.unlink()

    # --- Apache ----------------------------------------------------------
    def apache_master(self):
        try:
            pid = int(APACHE_PIDFILE.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None

    def children_of(self, ppid):
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    st = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(st[1]) == ppid and st[0] != "Z":
                    out.append(int(d))
        return out

    def stop_apache(self):
        """apachectl stop; then, should anything be left, SIGKILL by PID."""
        pid = self.apache_pid or self.apache_master()
        if not pid:
            return
        kids = self.children_of(pid) + self.apache_children
        run([APACHECTL, "stop"], check=False, timeout=120)
        deadline = time.monotonic() + TIMEOUT
        while any(pid_alive(p) for p in [pid] + kids) and time.monotonic() < deadline:
            time.sleep(0.1)
        for p in [pid] + kids:
            if pid_alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.apache_pid = None

    # --- restore ---------------------------------------------------------
    def restore(self):
        if self.restored:
            return
        self.restored = True
        errors = []

        def step(fn, *a):
            try:
                fn(*a)
            except Exception as e:  # noqa: BLE001 - restore the rest too
                errors.append(f"{fn.__name__}{a}: {e!r}")

        step(self.stop_apache)
        step(lambda: stop_process(self.broker) if self.broker else None)
        if self.broker_dir:
            step(shutil.rmtree, self.broker_dir, True)
        for t, snap in self.trees.items():
            step(_restore_tree, t, snap)
        for f, saved in self.files.items():
            if saved is None:
                step(lambda f=f: f.unlink() if os.path.lexists(f) else None)
            else:
                data, st = saved
                step(lambda f=f, data=data, st=st: (f.write_bytes(data), os.chmod(f, st.st_mode),
                                                    os.chown(f, st.st_uid, st.st_gid)))
        for d in sorted(self.new_dirs, key=lambda d: -len(d.parts)):
            step(lambda d=d: d.rmdir() if d.is_dir() and not any(d.iterdir()) else None)
        if not self.user_existed and _getpw(SYSTEM_USER):
            step(run, ["userdel", SYSTEM_USER])
        if not self.group_existed and _getgr(SYSTEM_USER):
            step(run, ["groupdel", SYSTEM_USER])
        for f, data in self.account_backups.items():      # passwd- and friends
            if data is None:
                step(lambda f=f: os.unlink(f) if os.path.lexists(f) else None)
            elif Path(f).read_bytes() != data:
                step(Path(f).write_bytes, data)
        for d, existed in self.run_dirs.items():
            if not existed and os.path.lexists(d):
                step(_remove, os.path.realpath(d))
        if self.LOG_DIR.is_dir():
            for p in self.LOG_DIR.glob("*"):
                if p not in self.logs:
                    step(p.unlink)
                elif p.is_file() and p.stat().st_size > self.logs[p]:
                    step(os.truncate, p, self.logs[p])
        if errors:
            pytest.fail("restoring the machine failed (the state before is in "
                        f"{self.tarball}):\n" + "\n".join(errors))

    def differences(self):
        """What is not as it was (empty when restored)."""
        diff = []
        for t, snap in self.trees.items():
            now = _fingerprint(t)
            for rel in sorted(set(snap) | set(now)):
                if snap.get(rel) != now.get(rel):
                    diff.append(f"{t}/{rel}")
        for f, saved in self.files.items():
            if saved is None and os.path.lexists(f):
                diff.append(f"{f} left behind")
            elif saved is not None and (not f.exists() or f.read_bytes() != saved[0]):
                diff.append(f"{f} not restored")
        for d in self.new_dirs:
            if d.exists():
                diff.append(f"directory {d} left behind")
        for f, data in self.accounts.items():
            if Path(f).read_bytes() != data:
                diff.append(f"{f} changed")
        for d, existed in self.run_dirs.items():
            if not existed and os.path.lexists(d):
                diff.append(f"{d} left behind")
        if self.apache_master():
            diff.append(f"an Apache is running (pid {self.apache_master()})")
        return diff


def _getpw(name):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _getgr(name):
    try:
        return grp.getgrnam(name)
    except KeyError:
        return None


def _real_install_skip_reason():
    if os.geteuid() != 0:
        return "needs root: installs into the system Apache (CI runs this test as root)"
    if not A2ENMOD.exists() or not APACHECTL.exists():
        return "Debian's apache2 package is not installed (no /usr/sbin/a2enmod)"
    if not Path(APXS).exists() or apxs_q("SYSCONFDIR").rstrip("/") != "/etc/apache2":
        return "apxs does not describe Debian's system Apache"
    if _getgr("www-data") is None:
        return "there is no www-data group"
    return None


@pytest.fixture
def machine(tmp_path):
    reason = _real_install_skip_reason()
    if reason:
        pytest.skip(reason)
    # one real-install test at a time on this machine (two test runs in parallel
    # would fight over /etc/apache2): an exclusive lock on the directory itself,
    # which leaves nothing behind
    lock = os.open("/etc/apache2", os.O_RDONLY)
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail("another real-install test holds the lock on /etc/apache2")
                time.sleep(0.5)
        pid = None
        try:
            pid = int(APACHE_PIDFILE.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
        if pid and pid_alive(pid):
            pytest.skip(f"the system Apache is running (pid {pid}): not reconfiguring it")
        prefix = "/usr/local"
        moduledir = apxs_q("LIBEXECDIR")
        files = [f"{moduledir}/mod_push.so", f"{prefix}/sbin/pushbrokerd",
                 f"{prefix}/bin/pushctl", "/etc/pushbrokerd.conf",
                 "/lib/systemd/system/pushbrokerd.service",
                 f"{prefix}/share/man/man8/pushbrokerd.8", f"{prefix}/share/man/man1/pushctl.1"]
        m = Machine(tmp_path, files)
        m.prefix, m.moduledir = prefix, moduledir
        m.snapshot()
        try:
            yield m
        finally:
            m.restore()
            left = m.differences()
            assert not left, "the machine was not restored:\n" + "\n".join(left)
    finally:
        os.close(lock)


def _http(port, method, path, body=None, headers=None, timeout=TIMEOUT):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def _error_log_since(offset):
    try:
        with open(APACHE_ERROR_LOG, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def test_system_apache_install_roundtrip_uninstall(machine, tmp_path):
    m = machine
    port = free_tcp_port()
    broker_log = tmp_path / "pushbrokerd.log"
    sbin, bindir = Path(m.prefix) / "sbin", Path(m.prefix) / "bin"
    pushctl = bindir / "pushctl"
    log_offset = APACHE_ERROR_LOG.stat().st_size if APACHE_ERROR_LOG.exists() else 0

    def fail(msg):
        pytest.fail(f"{msg}\n--- /var/log/apache2/error.log (this run):\n"
                    f"{_error_log_since(log_offset)[-6000:]}\n--- broker log:\n{tail(broker_log)}")

    # --- make install, for real ------------------------------------------------
    out = make("install", f"prefix={m.prefix}").stdout
    for f in m.files:
        assert f.is_file(), f"{f} not installed:\n{out}"
    assert Path("/etc/apache2/mods-available/push.load").is_file()
    assert Path("/etc/apache2/mods-available/push.conf").is_file()
    assert _getpw(SYSTEM_USER), f"make install did not create the user {SYSTEM_USER}:\n{out}"
    if not m.user_existed:
        assert f"created the system user {SYSTEM_USER}" in out
    if shutil.which("man"):     # found on the default manpath
        p = run(["man", "-w", "pushctl"], check=False)
        assert os.path.realpath(p.stdout.strip()) == f"{m.prefix}/share/man/man1/pushctl.1", \
            p.stdout + p.stderr

    # --- Apache: loopback only, event MPM, the module enabled -------------------
    Path("/etc/apache2/ports.conf").write_text(
        f"# mod_push install test: temporary, restored after the test\nListen {HOST}:{port}\n")
    run(["a2dismod", "-q", "mpm_prefork", "mpm_worker"], check=False)
    run(["a2enmod", "-q", "mpm_event"])

    # --- the installed broker, as its unit would run it, on a link of our own ---
    pb, www = _getpw(SYSTEM_USER), _getgr("www-data")
    m.broker_dir = Path(tempfile.mkdtemp(prefix="mod_push-test-", dir="/run"))
    os.chown(m.broker_dir, pb.pw_uid, www.gr_gid)
    os.chmod(m.broker_dir, 0o750)
    link = f"ipc://{m.broker_dir}/link.sock"
    api = f"tcp://{HOST}:{free_tcp_port()}"
    m.broker = start_broker(sbin / "pushbrokerd",
                            ["-c", "/etc/pushbrokerd.conf", "--api", api,
                             "--push", f"tcp://{HOST}:{free_tcp_port()}", "--link", link],
                            broker_log, user=pb.pw_uid, group=www.gr_gid, extra_groups=[],
                            umask=0o007, cwd="/")
    wait_pushctl_ping(pushctl, api, m.broker, broker_log)
    sock = os.stat(m.broker_dir / "link.sock")
    assert stat.S_ISSOCK(sock.st_mode) and sock.st_gid == www.gr_gid
    assert stat.S_IMODE(sock.st_mode) & 0o067 == 0o060, oct(sock.st_mode)

    # a conf snippet, read after mods-enabled/push.conf, points the module at it
    # (the last PushBroker wins); plus a site on our port and push's info logs
    snippet = Path("/etc/apache2/conf-available/mod-push-install-test.conf")
    snippet.write_text(f"""# mod_push install test: temporary, removed after the test
PushBroker {link}
LogLevel warn push:info
<VirtualHost {HOST}:{port}>
    ServerName 127.0.0.1
    DocumentRoot /var/www/html
</VirtualHost>
""")
    run(["a2enconf", "-q", "mod-push-install-test"])
    run(["a2enmod", "-q", "push"])
    assert run(["a2query", "-m", "push"], check=False).returncode == 0
    assert run(["a2query", "-M"]).stdout.strip() == "event"
    p = run([APACHECTL, "configtest"], check=False)
    assert p.returncode == 0, p.stdout + p.stderr

    # --- apachectl start ------------------------------------------------------------
    p = run([APACHECTL, "start"], check=False, timeout=120)
    if p.returncode != 0:
        fail(f"apachectl start failed ({p.returncode}): {p.stdout}{p.stderr}")
    m.apache_pid = wait_until(m.apache_master, TIMEOUT, "the Apache pid file")

    def ready():
        kids = set(m.children_of(m.apache_pid))
        m.apache_children = list(kids)
        linked = {int(x) for x in re.findall(r"\[pid (\d+):tid \d+\] AH20003: linked",
                                             _error_log_since(log_offset))}
        if not kids or not kids <= linked:
            return False
        return _http(port, "GET", "/sub/x?poll=1", timeout=5)[0] == 200
    try:
        wait_until(ready, TIMEOUT, f"the system Apache on {HOST}:{port} (all children linked)")
    except BaseException:
        fail("the system Apache did not become ready")
    if shutil.which("curl"):
        p = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                 f"http://{HOST}:{port}/sub/x?poll=1"], check=False)
        assert p.stdout == "200", p.stdout + p.stderr

    # --- round trip: an SSE subscriber gets pushctl's and an HTTP POST's message ----
    chan = unique_channel("install")
    # Accept-Encoding: gzip, as browsers send it: Debian enables mod_deflate
    with SSEClient(port, f"/sub/{chan}", {"Accept-Encoding": "gzip, deflate"}) as sse:
        head = sse.wait_preamble()
        assert head.header("Content-Type", "").startswith("text/event-stream")
        assert head.header("Content-Encoding") is None, head.headers
        p = run([pushctl, "--api", api, "publish", chan, "hello from pushctl", "--event", "greet"])
        assert re.fullmatch(r"id=1 subscribers=\d+\n", p.stdout), p.stdout
        ev = sse.next_event()
        assert (ev.int_id, ev.event, ev.data) == (1, "greet", "hello from pushctl")

        status, _, body = _http(port, "POST", f"/pub/{chan}", b"hello over HTTP",
                                {"Content-Type": "text/plain"})
        assert status == 200, body
        assert json.loads(body)["id"] == 2
        ev = sse.next_event()
        assert (ev.int_id, ev.data) == (2, "hello over HTTP")

        # Debian's mod_status reads the scoreboard while the stream is held
        status, _, body = _http(port, "GET", "/server-status?auto")
        assert status == 200 and b"BusyWorkers" in body, body[:300]

    # short poll and long poll through the same server
    status, _, body = _http(port, "GET", f"/sub/{chan}?poll=1&last_id=0")
    assert status == 200 and [x["id"] for x in json.loads(body)["messages"]] == [1, 2]
    status, _, body = _http(port, "GET", f"/sub/{chan}?last_id=1")
    assert status == 200 and json.loads(body)["messages"][0]["data"] == "hello over HTTP"
    # the history the broker kept agrees
    p = run([pushctl, "--api", api, "history", chan])
    assert p.stdout.count("id=") == 2

    log = _error_log_since(log_offset)
    bad = [ln for ln in log.splitlines()
           if re.search(r"\[(push|core):(error|crit|alert|emerg)\]|AH20040|AH20041|Segmentation|"
                        r"exit signal", ln)]
    assert not bad, "\n".join(bad)

    # --- apachectl stop, broker stop, make uninstall ------------------------------------
    pid, kids = m.apache_pid, m.children_of(m.apache_pid)
    p = run([APACHECTL, "stop"], check=False, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    wait_until(lambda: not any(pid_alive(x) for x in [pid] + kids), TIMEOUT,
               "the system Apache to exit")
    m.apache_pid = None
    assert not APACHE_PIDFILE.exists()
    assert stop_process(m.broker) == 0, tail(broker_log)
    m.broker = None

    out = make("uninstall", f"prefix={m.prefix}").stdout
    assert run(["a2query", "-m", "push"], check=False).returncode != 0, out
    for f in m.files:
        if f != Path("/etc/pushbrokerd.conf"):
            assert not f.exists(), f"{f} left by make uninstall"
    assert Path("/etc/pushbrokerd.conf").exists(), "uninstall must keep pushbrokerd.conf"
    assert not Path("/etc/apache2/mods-available/push.load").exists()
    assert not Path("/etc/apache2/mods-available/push.conf").exists()

    # --- and the machine is as it was -----------------------------------------------
    # (a2query runs apache2ctl, which recreates /run/apache2: asked before the restore)
    m.restore()
    left = m.differences()
    assert not left, "not restored:\n" + "\n".join(left)
    assert not os.path.lexists("/etc/apache2/mods-enabled/push.load")
    assert not Path("/etc/pushbrokerd.conf").exists() or m.files[Path("/etc/pushbrokerd.conf")]
    assert (Path("/etc/apache2/ports.conf").read_bytes()
            == m.trees["/etc/apache2"]["ports.conf"][1])
    assert m.apache_master() is None
