#!/usr/bin/python3
"""publish.py -- publish one message to pushbrokerd from Python (Debian: python3-zmq).

The core of an acknowledged publish:

    req = zmq.Context.instance().socket(zmq.REQ); req.connect("tcp://127.0.0.1:7701")
    req.send_multipart([b"PUB", b"news", b"hello world"])   # optional 4th frame: event name
    status, *rest = req.recv_multipart()                    # [b"OK", id, n] or [b"ERR", code, message]

Below, the same with a timeout (a broker that is down must not hang the
caller) and error handling.  Fire-and-forget: a zmq.PUSH socket connected to
the push endpoint (tcp://127.0.0.1:7702), same frames, no reply.

Usage:  publish.py <channel> <data> [event]      ("-" as data: read stdin)
Env: PUSH_API (default tcp://127.0.0.1:7701), PUSH_TIMEOUT (ms, default 5000).
Prints "id=<id> subscribers=<n>"; exit 1 when the broker refuses the message
(ERR), 2 on usage errors, 3 on timeout or other failures.
"""
import os
import sys

import zmq


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
    print(f"id={msg_id} subscribers={subscribers}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
