#!/bin/sh
# tools/install.sh install|uninstall — what `make install` and `make uninstall` run.
#
# The Makefile passes (all optional here, defaults in brackets):
#   DESTDIR         staging root for packaging                    [empty: the real system]
#   prefix          [/usr/local]; bindir [$prefix/bin], sbindir [$prefix/sbin],
#                   mandir [$prefix/share/man]
#   sysconfdir      where pushbrokerd.conf goes                   [/etc]
#   systemdunitdir  where pushbrokerd.service goes                [/lib/systemd/system]
#   APXS            apxs of the target Apache                      [apxs]
#   MODULE_SO, BIN_BROKER, BIN_PUSHCTL   the built files (relative to the source root)
#
# Installed:
#   $(apxs -q LIBEXECDIR)/mod_push.so
#   $(apxs -q SYSCONFDIR)/mods-available/push.load, push.conf   (Debian-style Apache only,
#                                       i.e. SYSCONFDIR is /etc/apache2; otherwise printed)
#   $sbindir/pushbrokerd, $bindir/pushctl
#   $sysconfdir/pushbrokerd.conf        (never overwritten)
#   $systemdunitdir/pushbrokerd.service (ExecStart uses $sbindir and $sysconfdir)
#   $mandir/man8/pushbrokerd.8, $mandir/man1/pushctl.1
# As root with an empty DESTDIR, install also creates the system user "pushbrokerd".
#
# uninstall removes all of these except $sysconfdir/pushbrokerd.conf (your settings)
# and the pushbrokerd user; with an empty DESTDIR it first disables the module
# (a2dismod push) so that Apache is not left with a dangling LoadModule.
set -eu

cd "$(dirname "$0")/.."

ACTION=${1:-}
DESTDIR=${DESTDIR:-}
prefix=${prefix:-/usr/local}
bindir=${bindir:-$prefix/bin}
sbindir=${sbindir:-$prefix/sbin}
mandir=${mandir:-$prefix/share/man}
sysconfdir=${sysconfdir:-/etc}
systemdunitdir=${systemdunitdir:-/lib/systemd/system}
APXS=${APXS:-apxs}
MODULE_SO=${MODULE_SO:-mod_push/.libs/mod_push.so}
BIN_BROKER=${BIN_BROKER:-pushbrokerd/pushbrokerd}
BIN_PUSHCTL=${BIN_PUSHCTL:-clients/c/pushctl}
SYSTEM_USER=pushbrokerd

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "  $*"; }

case "$DESTDIR" in
    ""|/*) ;;
    *) die "DESTDIR must be an absolute path (got '$DESTDIR')" ;;
esac

MODULEDIR=$("$APXS" -q LIBEXECDIR) || die "'$APXS -q LIBEXECDIR' failed"
HTTPD_CONFDIR=$("$APXS" -q SYSCONFDIR) || die "'$APXS -q SYSCONFDIR' failed"
[ -n "$MODULEDIR" ] || die "'$APXS -q LIBEXECDIR' printed nothing"
HTTPD_CONFDIR=${HTTPD_CONFDIR%/}
if [ "$HTTPD_CONFDIR" = /etc/apache2 ]; then DEBIAN_APACHE=yes; else DEBIAN_APACHE=no; fi
MODS_AVAILABLE=$HTTPD_CONFDIR/mods-available

# Root, no DESTDIR: this machine itself.
REAL=no
[ -z "$DESTDIR" ] && [ "$(id -u)" = 0 ] && REAL=yes
SYSTEMD_RUNNING=no
[ "$REAL" = yes ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 && SYSTEMD_RUNNING=yes

# inst MODE SRC DST: copy through a temporary name and rename, so that a running
# Apache or broker never sees a half-written file.
inst() {
    mode=$1 src=$2 dst=$3
    install -d -m 0755 "$(dirname "$dst")"
    install -m "$mode" "$src" "$dst.tmp.$$"
    mv -f "$dst.tmp.$$" "$dst"
    say "$dst"
}

# subst SRC: SRC with the @...@ placeholders filled in, on stdout.
subst() {
    sed -e "s|@MODULEDIR@|$MODULEDIR|g" -e "s|@SBINDIR@|$sbindir|g" \
        -e "s|@BINDIR@|$bindir|g" -e "s|@SYSCONFDIR@|$sysconfdir|g" "$1"
}

create_user() {
    if getent passwd "$SYSTEM_USER" >/dev/null 2>&1; then
        return
    fi
    if command -v adduser >/dev/null 2>&1; then
        adduser --quiet --system --group --no-create-home --home /var/lib/pushbrokerd \
            --shell /usr/sbin/nologin --gecos "pushbrokerd (mod_push broker)" "$SYSTEM_USER"
    else
        useradd --system --user-group --no-create-home --home-dir /var/lib/pushbrokerd \
            --shell /usr/sbin/nologin --comment "pushbrokerd (mod_push broker)" "$SYSTEM_USER"
    fi
    say "created the system user $SYSTEM_USER"
}

do_install() {
    for f in "$MODULE_SO" "$BIN_BROKER" "$BIN_PUSHCTL"; do
        [ -f "$f" ] || die "$f is missing: run make first"
    done
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT

    echo "Installing mod_push into ${DESTDIR:-/} (prefix $prefix):"
    inst 0644 "$MODULE_SO" "$DESTDIR$MODULEDIR/mod_push.so"
    subst conf/debian/push.load.in > "$tmp/push.load"
    if [ "$DEBIAN_APACHE" = yes ]; then
        inst 0644 "$tmp/push.load" "$DESTDIR$MODS_AVAILABLE/push.load"
        inst 0644 conf/debian/push.conf "$DESTDIR$MODS_AVAILABLE/push.conf"
    fi
    inst 0755 "$BIN_BROKER" "$DESTDIR$sbindir/pushbrokerd"
    inst 0755 "$BIN_PUSHCTL" "$DESTDIR$bindir/pushctl"
    if [ -e "$DESTDIR$sysconfdir/pushbrokerd.conf" ]; then
        say "$DESTDIR$sysconfdir/pushbrokerd.conf exists: kept (the shipped one is conf/debian/pushbrokerd.conf)"
    else
        inst 0644 conf/debian/pushbrokerd.conf "$DESTDIR$sysconfdir/pushbrokerd.conf"
    fi
    subst conf/systemd/pushbrokerd.service.in > "$tmp/pushbrokerd.service"
    inst 0644 "$tmp/pushbrokerd.service" "$DESTDIR$systemdunitdir/pushbrokerd.service"
    inst 0644 man/pushbrokerd.8 "$DESTDIR$mandir/man8/pushbrokerd.8"
    inst 0644 man/pushctl.1 "$DESTDIR$mandir/man1/pushctl.1"

    if [ "$REAL" = yes ]; then
        create_user
        getent group www-data >/dev/null 2>&1 ||
            say "warning: there is no group www-data; set Group= in pushbrokerd.service to Apache's group"
        if [ "$SYSTEMD_RUNNING" = yes ]; then
            systemctl daemon-reload || true
        fi
    fi

    if [ "$DEBIAN_APACHE" = yes ]; then
        if [ -z "$DESTDIR" ]; then
            printf '\nNext: systemctl enable --now pushbrokerd; a2enmod push; systemctl restart apache2\n'
        fi
    else
        echo
        echo "This Apache is not Debian-style (apxs SYSCONFDIR is $HTTPD_CONFDIR, not /etc/apache2),"
        echo "so no push.load/push.conf were installed. Add to $HTTPD_CONFDIR/httpd.conf (or a file it includes):"
        sed -n 's/^LoadModule/    LoadModule/p' "$tmp/push.load"
        echo "and the PushBroker line and <Location> blocks of conf/debian/push.conf."
        echo "Then start pushbrokerd (pushbrokerd.service assumes Apache's group is www-data)."
    fi
}

rm_file() {
    if [ -e "$1" ] || [ -L "$1" ]; then
        rm -f "$1"
        say "removed $1"
    fi
}

do_uninstall() {
    echo "Uninstalling mod_push from ${DESTDIR:-/} (prefix $prefix):"
    if [ "$DEBIAN_APACHE" = yes ]; then
        enabled=$DESTDIR$HTTPD_CONFDIR/mods-enabled
        if [ -L "$enabled/push.load" ] || [ -L "$enabled/push.conf" ]; then
            if [ -z "$DESTDIR" ] && command -v a2dismod >/dev/null 2>&1 && a2dismod -q push; then
                say "disabled the module (a2dismod push): restart Apache"
            else
                rm_file "$enabled/push.load"
                rm_file "$enabled/push.conf"
            fi
        fi
        rm_file "$DESTDIR$MODS_AVAILABLE/push.load"
        rm_file "$DESTDIR$MODS_AVAILABLE/push.conf"
    fi
    rm_file "$DESTDIR$MODULEDIR/mod_push.so"
    if [ "$SYSTEMD_RUNNING" = yes ] && [ -e "$systemdunitdir/pushbrokerd.service" ]; then
        systemctl disable --now pushbrokerd.service >/dev/null 2>&1 || true
    fi
    rm_file "$DESTDIR$systemdunitdir/pushbrokerd.service"
    [ "$SYSTEMD_RUNNING" = yes ] && { systemctl daemon-reload || true; }
    rm_file "$DESTDIR$sbindir/pushbrokerd"
    rm_file "$DESTDIR$bindir/pushctl"
    rm_file "$DESTDIR$mandir/man8/pushbrokerd.8"
    rm_file "$DESTDIR$mandir/man1/pushctl.1"
    echo
    echo "Kept: $DESTDIR$sysconfdir/pushbrokerd.conf (your settings; remove it yourself)."
    if [ -z "$DESTDIR" ] && getent passwd "$SYSTEM_USER" >/dev/null 2>&1; then
        echo "Kept: the system user $SYSTEM_USER (remove it with: deluser --system $SYSTEM_USER)"
        echo "      and /var/lib/pushbrokerd, /var/log/pushbrokerd if systemd created them."
    fi
}

case "$ACTION" in
    install) do_install ;;
    uninstall) do_uninstall ;;
    *) die "usage: $0 install|uninstall" ;;
esac
