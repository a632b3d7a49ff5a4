#!/usr/bin/python3
"""publish.py -- publish one message to pushbrokerd from Python (Debian: python3-zmq).

The core of an acknowledged publish:

    req = zmq.Context.instance().socket(zmq.REQ); req.connect("tcp://127.0.0.1:7701")
    req.send_multipart([b"PUB", b"news", b"hello world"])   # optional 4th frame: event name
    status, *rest = req.recv_multipart()                    # [b"OK", id, n] or [b"ERR", code, message]

Below, the same with a timeout (a broker that is down must not hang the
caller) and error handling.  Fire-and-forget: a zmq.PUSH socket connected to
the push endpoint (tcp://127.0.0.1:7702), same frames, no reply.

CURVE (a broker with curve_secret_key_file; tcp:// endpoints only): set
PUSH_CURVE_SERVER_KEY to the broker's public key and PUSH_CURVE_CLIENT_KEY to
this client's secret key (each 40 characters of Z85, or the name of a file
written by `pushctl keygen`); without a client key a throwaway key pair is
used, which a broker with curve_authorized_keys refuses.  A refused client
gets no answer: it times out.

Usage:  publish.py <channel> <data> [event]      ("-" as data: read stdin)
Env: PUSH_API (default tcp://127.0.0.1:7701), PUSH_TIMEOUT (ms, default 5000),
PUSH_CURVE_SERVER_KEY, PUSH_CURVE_CLIENT_KEY.
Prints "id=<id> subscribers=<n>"; exit 1 when the broker refuses the message
(ERR), 2 on usage errors (a bad key too), 3 on timeout or other failures.
"""
import os
import sys

import zmq
from zmq.utils import z85


def _z85_key(word):
    try:
        return word if len(word) == 40 and len(z85.decode(word)) == 32 else None
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def read_key(value):
    """A CURVE key given as its 40 Z85 characters or as a key file: one key
    line, '#' comment lines, as pushctl keygen writes them.  Returns bytes."""
    key = _z85_key(value.encode())
    if key:
        return key
    with open(value, "rb") as f:
        words = [ln.split()[0] for ln in f.read().splitlines()
                 if ln.strip() and not ln.lstrip().startswith(b"#")]
    keys = [_z85_key(w) for w in words]
    if len(keys) != 1 or not keys[0]:
        raise ValueError(f"{value}: expected exactly one CURVE key (40 characters of Z85)")
    return keys[0]


def use_curve(sock, endpoint, server_key=None, client_key=None):
    """Make sock a CURVE client when a server key is given (argument, else
    PUSH_CURVE_SERVER_KEY) and the endpoint is tcp://."""
    server_key = server_key or os.environ.get("PUSH_CURVE_SERVER_KEY")
    client_key = client_key or os.environ.get("PUSH_CURVE_CLIENT_KEY")
    if not server_key or not endpoint.startswith("tcp://"):
        return
    if client_key:
        secret = read_key(client_key)
        public = zmq.curve_public(secret)
    else:
        public, secret = zmq.curve_keypair()
    sock.curve_serverkey = read_key(server_key)
    sock.curve_publickey = public
    sock.curve_secretkey = secret


def publish(channel, data, event=None, endpoint=None, timeout_ms=None):
    """Publish data (bytes) on channel; return (id, subscribers).

    Raises RuntimeError(code, message) when the broker answers ERR and
    TimeoutError when no reply arrives within timeout_ms.
    """
    endpoint = endpoint or os.environ.get("PUSH_API") or "tcp://127.0.0.1:7701"
    timeout_ms = timeout_ms or int(os.environ.get("PUSH_TIMEOUT") or 5000)
    ctx = zmq.Context.instance()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)          # never wait for the broker at close
    req.setsockopt(zmq.SNDTIMEO, timeout_ms)
    req.setsockopt(zmq.RCVTIMEO, timeout_ms)
    try:
        use_curve(req, endpoint)
        req.connect(endpoint)
        frames = [b"PUB", channel.encode("utf-8", "surrogateescape"), data]
        if event:
            frames.append(event.encode("utf-8", "surrogateescape"))
        try:
            req.send_multipart(frames)
            reply = req.recv_multipart()
        except zmq.Again:
            raise TimeoutError(f"no reply from {endpoint} within {timeout_ms} ms") from None
    finally:
        req.close()
    if reply[0] == b"OK" and len(reply) >= 3:
        return int(reply[1]), int(reply[2])
    if reply[0] == b"ERR":
        parts = [f.decode(errors="replace") for f in reply[1:3]] + ["", ""]
        raise RuntimeError(parts[0], parts[1])
    raise RuntimeError("protocol", f"unexpected reply {reply[0]!r}")


def main(argv):
    if len(argv) not in (3, 4):
        print("usage: publish.py <channel> <data> [event]", file=sys.stderr)
        return 2
    try:
        timeout_ms = int(os.environ.get("PUSH_TIMEOUT") or 5000)
    except ValueError:
        print("error: PUSH_TIMEOUT is not a number of milliseconds", file=sys.stderr)
        return 2
    data = sys.stdin.buffer.read() if argv[2] == "-" else os.fsencode(argv[2])
    try:
        msg_id, subscribers = publish(argv[1], data, argv[3] if len(argv) == 4 else None,
                                      timeout_ms=timeout_ms)
    except TimeoutError as e:
        print(f"error: timeout: {e}", file=sys.stderr)
        return 3
    except RuntimeError as e:
        print(f"error: {e.args[0]}: {e.args[1]}", file=sys.stderr)
        return 3 if e.args[0] == "protocol" else 1
    except zmq.ZMQError as e:   # e.g. a malformed endpoint
        print(f"error: zmq: {e}", file=sys.stderr)
        return 3
    except (OSError, ValueError) as e:   # a CURVE key that cannot be read
        print(f"error: key: {e}", file=sys.stderr)
        return 2
    print(f"id={msg_id} subscribers={subscribers}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
