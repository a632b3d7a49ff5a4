"""The open-file guard (mod_push/reactor.c, push_hold_new): a child stops
taking new push connections short of its open-file limit, answering 503
{"error":"limit"}, instead of letting httpd's accept() fail with EMFILE,
which makes httpd stop the whole child and end every stream it holds.

Apache runs with RLIMIT_NOFILE 200 here: the guard keeps a tenth of the
limit and 64 for connections httpd is serving, so one child holds at most
200 - (64 + 20) = 116 connections."""
import json

import pytest

from conftest import (EVENT_TIMEOUT, Apache, Broker, Stack, SSEClient, unique_channel,
                      wait_until)
from test_websocket_util import RawWS

NOFILE = 200
MAX_HOLDS = NOFILE - (64 + NOFILE // 10)


@pytest.fixture(scope="module")
def guard_stack(tmp_path_factory):
    base = tmp_path_factory.mktemp("fdguard")
    broker = Broker(base / "broker", name="fdguard-broker")
    apache = Apache(base / "apache", broker.link, name="fdguard", max_workers=25,
                    nofile=NOFILE)
    s = Stack(broker, apache).start()
    yield s
    s.stop()


def child_nofile(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError(f"no open-file limit for {pid}")


def check_refused(status, headers, body):
    assert status == 503, (status, body)
    assert headers("Retry-After") == "5", headers
    doc = json.loads(body)
    assert doc == {"error": "limit",
                   "message": "this server process holds as many connections as its "
                              "open-file limit allows; retry later"}, doc


def test_full_child_refuses_new_subscribers_and_keeps_the_others(guard_stack):
    s = guard_stack
    kids = s.apache.child_pids()
    assert len(kids) == 1, f"one child expected (MaxRequestWorkers 25): {kids}"
    child = kids[0]
    assert child_nofile(child) == NOFILE
    ch = unique_channel("full")
    held = []
    try:
        for _ in range(MAX_HOLDS):
            held.append(s.subscribe(ch))
        offset = s.apache.log_offset()
        # one more of each kind is refused: SSE, long poll, WebSocket
        for extra in (s.sse(ch), SSEClient(s.port, f"/sub/{ch}?last_id=0", accept=None)):
            try:
                head = extra.read_head()
                check_refused(head.status, head.header, extra.read_body())
            finally:
                extra.close()
        ws = RawWS(s.port, f"/sub/{ch}", expect_101=False)
        try:
            check_refused(ws.status, ws.header, ws.body)
        finally:
            ws.close()
        # the child did not stop and every held subscriber gets the next message
        ack = s.publish_ok(ch, "for all")
        for c in held:
            ev = c.next_event(EVENT_TIMEOUT)
            assert (ev.int_id, ev.data) == (ack["id"], "for all")
        assert s.apache.child_pids() == [child]
        log = s.apache.error_log_text()[offset:]
        assert log.count("AH20096") == 1, log        # once a minute, not per refusal
        assert f"this process holds {MAX_HOLDS} connections" in log, log
        # room again once some leave
        for c in held[:5]:
            c.close()
        del held[:5]

        def accepted():
            c = s.sse(ch)
            if c.read_head().status == 200:
                held.append(c)
                return True
            c.close()
            return False
        wait_until(accepted, EVENT_TIMEOUT, "a subscriber accepted after others left",
                   interval=0.2)
    finally:
        for c in held:
            c.close()
