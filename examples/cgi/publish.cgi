#!/bin/sh
# publish.cgi — publish one message to pushbrokerd from a CGI script, through pushctl.
#
#   POST /examples/cgi/publish.cgi   (application/x-www-form-urlencoded: channel=..&message=..)
#   GET  /examples/cgi/publish.cgi?channel=..&message=..
#
# Answers JSON, like POST /pub/<channel>:
#   200 {"channel":"news","id":8,"subscribers":3}
#   400 {"error":"bad_channel"|"bad_request","message":".."}   bad input, nothing published
#   405, 413 (form or message too large), 415 (other content types)
#   502 {"error":"<pushctl's code>","message":"<pushctl's error>"}  pushctl failed
#
# Environment (set by examples/apache-examples.conf with SetEnv):
#   PUSHCTL   path of pushctl (default: pushctl from PATH)
#   PUSH_API  the broker's api endpoint, passed as --api (pushctl's default when unset)
#
# Safety: the form is never evaluated by the shell.  The channel and the message
# are decoded into files, the channel is checked against the protocol's rule,
# and pushctl gets the channel as one argument after "--" and the message on
# its standard input ("-"), byte for byte (NUL bytes and trailing newlines
# included).
set -u
umask 077
LC_ALL=C
export LC_ALL

MAX_FORM=204800         # bytes of urlencoded form: a 65536-byte message fully %-encoded fits

pushctl=${PUSHCTL:-pushctl}
tmp=

cleanup() { [ -n "$tmp" ] && rm -rf -- "$tmp"; }
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# JSON string body of $1: backslash and quote escaped, lines joined with \n,
# other control characters dropped.
json_str() {
    printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr -d '\000-\011\013-\037\177' |
        awk 'NR > 1 { printf "\\n" } { printf "%s", $0 }'
}

# Read what is left of the request body: a script that exits with part of
# the body unread makes the socket to mod_cgid reset, and the client gets a
# truncated answer instead of the error.  (LimitRequestBody bounds it.)
body_left=0             # bytes still to read; -1: up to EOF
drain() {
    case $body_left in
        0) ;;
        -1) cat > /dev/null ;;
        *) head -c "$body_left" > /dev/null ;;
    esac
    body_left=0
}

# reply STATUS CODE MESSAGE [extra header line]: a JSON error and exit.
reply_error() {
    drain
    printf 'Status: %s\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n' "$1"
    [ $# -ge 4 ] && printf '%s\r\n' "$4"
    printf '\r\n{"error":"%s","message":"%s"}\n' "$2" "$(json_str "$3")"
    exit 0
}

# Percent-decoding, in three steps that never hand data to the shell parser:
# "+" becomes a space, every backslash is doubled, and awk turns each %HH
# into the escape \0ooo (octal); printf %b then writes the bytes.  awk exits 1
# on a malformed escape ("%", "%4", "%zz").
PCT_AWK='
BEGIN { for (i = 0; i < 16; i++) { d = substr("0123456789abcdef", i + 1, 1); v[d] = i; v[toupper(d)] = i } }
{
    n = split($0, part, "%")
    printf "%s", part[1]
    for (k = 2; k <= n; k++) {
        h = substr(part[k], 1, 2)
        if (h !~ /^[0-9A-Fa-f][0-9A-Fa-f]$/) { bad = 1; exit 1 }
        printf "\\0%03o%s", v[substr(h, 1, 1)] * 16 + v[substr(h, 2, 1)], substr(part[k], 3)
    }
}
END { if (bad) exit 1 }'

# decode FILE: the decoded bytes of the urlencoded value in FILE on stdout.
decode() {
    esc=$(tr '+' ' ' < "$1" | sed 's/\\/\\\\/g' | awk "$PCT_AWK") || return 1
    printf '%b' "$esc"
}

# field NAME: writes the raw (still encoded) value of the first NAME=... of
# the form to $tmp/NAME.raw; status 1 when the form has no such field.
field() {
    tr '&' '\n' < "$tmp/form" | sed -n "/^$1=/{s///p;q;}" | tr -d '\n' > "$tmp/$1.raw"
    tr '&' '\n' < "$tmp/form" | grep -q "^$1="
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/push-cgi.XXXXXX") || {
    tmp=
    reply_error '500 Internal Server Error' internal 'cannot create a temporary directory'
}

# ---- read the form ---------------------------------------------------------
case ${CONTENT_LENGTH:-} in     # what drain() has to read (mod_cgid ends the body with EOF)
    '') [ "${REQUEST_METHOD:-}" = GET ] || body_left=-1 ;;
    *[!0-9]*) ;;
    *) [ "${#CONTENT_LENGTH}" -le 18 ] && body_left=$CONTENT_LENGTH ;;
esac
case ${REQUEST_METHOD:-} in
    GET)
        printf '%s' "${QUERY_STRING:-}" > "$tmp/form"
        ;;
    POST)
        case ${CONTENT_TYPE:-} in
            application/x-www-form-urlencoded|application/x-www-form-urlencoded\;*) ;;
            *) reply_error '415 Unsupported Media Type' bad_request \
                   'send the form as application/x-www-form-urlencoded' ;;
        esac
        len=${CONTENT_LENGTH:-}
        case $len in
            '')    head -c "$((MAX_FORM + 1))" > "$tmp/form" ;;   # no length (chunked): to EOF
            *[!0-9]*) reply_error '400 Bad Request' bad_request 'malformed Content-Length' ;;
            *)     [ "${#len}" -gt 9 ] || [ "$len" -gt "$MAX_FORM" ] &&
                       reply_error '413 Content Too Large' too_large "form larger than $MAX_FORM bytes"
                   head -c "$len" > "$tmp/form"
                   body_left=0 ;;
        esac
        [ "$(wc -c < "$tmp/form")" -gt "$MAX_FORM" ] &&
            reply_error '413 Content Too Large' too_large "form larger than $MAX_FORM bytes"
        ;;
    *)
        reply_error '405 Method Not Allowed' bad_request 'use GET or POST' 'Allow: GET, POST'
        ;;
esac

# An urlencoded form is printable ASCII; tolerate line ends (a trailing newline
# from a hand-written body), refuse anything else.
tr -d '\r\n' < "$tmp/form" > "$tmp/form.clean" && mv "$tmp/form.clean" "$tmp/form"
[ "$(tr -d '\041-\176' < "$tmp/form" | wc -c)" -eq 0 ] ||
    reply_error '400 Bad Request' bad_request 'malformed form data (not urlencoded)'

# ---- channel -----------------------------------------------------------------
field channel || reply_error '400 Bad Request' bad_channel 'missing field: channel'
decode "$tmp/channel.raw" > "$tmp/channel" ||
    reply_error '400 Bad Request' bad_channel 'malformed %-escape in channel'
channel=$(cat "$tmp/channel"; printf x)    # the x keeps trailing newlines
channel=${channel%x}
# 1-128 bytes of A-Z a-z 0-9 _ . : @ ~ - ; the byte count of the file catches
# NUL bytes, which a shell variable cannot hold.
case $channel in
    ''|*[!A-Za-z0-9_.:@~-]*) ok=no ;;
    *) ok=yes ;;
esac
if [ $ok = no ] || [ "${#channel}" -gt 128 ] || [ "$(wc -c < "$tmp/channel")" -ne "${#channel}" ]; then
    reply_error '400 Bad Request' bad_channel \
        'invalid channel name: 1-128 characters of A-Z a-z 0-9 _ . : @ ~ -'
fi

# ---- message -----------------------------------------------------------------
field message || reply_error '400 Bad Request' bad_request 'missing field: message'
decode "$tmp/message.raw" > "$tmp/message" ||
    reply_error '400 Bad Request' bad_request 'malformed %-escape in message'

# ---- publish -----------------------------------------------------------------
set -- --api "${PUSH_API:-}"
[ -n "${PUSH_API:-}" ] || set --
"$pushctl" "$@" publish -- "$channel" - < "$tmp/message" > "$tmp/out" 2> "$tmp/err"
rc=$?
if [ $rc -ne 0 ]; then
    err=$(cat "$tmp/err")
    [ -n "$err" ] || err="pushctl exited with status $rc"
    code=publish_failed
    case $err in            # "error: <code>: <message>"
        'error: '*:*) code=${err#error: }; code=${code%%:*} ;;
    esac
    case $code in ''|*[!a-z_]*) code=publish_failed ;; esac
    case $code in
        too_large) reply_error '413 Content Too Large' too_large "$err" ;;
        *)         reply_error '502 Bad Gateway' "$code" "$err" ;;
    esac
fi

read -r line < "$tmp/out" || line=
id=${line#id=}
id=${id%% *}
subscribers=${line##*subscribers=}
case $id$subscribers in
    ''|*[!0-9]*) reply_error '502 Bad Gateway' protocol "unexpected pushctl output: $line" ;;
esac
[ -n "$id" ] && [ -n "$subscribers" ] ||
    reply_error '502 Bad Gateway' protocol "unexpected pushctl output: $line"

printf 'Status: 200 OK\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n\r\n'
printf '{"channel":"%s","id":%s,"subscribers":%s}\n' "$channel" "$id" "$subscribers"
