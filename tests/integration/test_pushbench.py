"""bench/pushbench against a real mod_push (Apache + broker of the harness).

Small scenarios only: SSE subscribers with ZeroMQ publishing, WebSocket
subscribers with HTTP POST publishing, long polls, a JSON publish body, the
ESTABLISHED line of a hold-only run and the exit statuses.  Every assertion is
on counts read from the RESULT line, never on timings."""
import json
import subprocess
import uuid

import pytest

from conftest import ROOT, free_port

BENCH_DIR = ROOT / "bench"
PUSHBENCH = BENCH_DIR / "pushbench"
RUN_TIMEOUT = 60            # a bound against hangs, not a measurement


@pytest.fixture(scope="module")
def pushbench():
    """Build bench/pushbench (make -C bench; a no-op when up to date)."""
    p = subprocess.run(["make", "-s", "-C", str(BENCH_DIR), "pushbench"],
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        pytest.fail(f"make -C bench failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    return PUSHBENCH


def prefix():
    """A channel prefix of its own for each run (names are prefix + 6 digits)."""
    return "pb" + uuid.uuid4().hex[:10] + "x"


def run(pushbench, *args, expect_rc=0):
    p = subprocess.run([str(pushbench), *[str(a) for a in args]], capture_output=True,
                       text=True, timeout=RUN_TIMEOUT)
    assert p.returncode == expect_rc, \
        f"pushbench exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 1, f"no single RESULT line:\n{p.stdout}\n{p.stderr}"
    res = json.loads(lines[0][len("RESULT "):])
    return res, p


def assert_clean(res, subscribers, messages, channels, out):
    assert res["subscribers"] == subscribers
    assert res["established"] == subscribers, out
    assert res["failed"] == 0, out
    assert res["published"] == messages, out
    per_channel = [messages // channels + (1 if c < messages % channels else 0)
                   for c in range(channels)]
    assert res["expected"] == sum(per_channel[i % channels] for i in range(subscribers))
    assert res["delivered"] == res["expected"], out
    assert res["lost"] == 0, out
    assert res["duplicated"] == 0, out
    assert res["reordered"] == 0, out
    assert res["closed_by_server"] == 0, out


REQUIRED_KEYS = {"label", "transport", "subscribers", "established", "failed", "channels",
                 "published", "expected", "delivered", "deliveries_per_s", "publish_rate",
                 "lat_p50_ms", "lat_p90_ms", "lat_p99_ms", "lat_max_ms", "lost", "duplicated",
                 "reordered", "closed_by_server", "connect_s", "duration_s"}


def test_sse_subscribers_zeromq_publisher(stack, pushbench):
    res, p = run(pushbench, "--transport", "sse",
                 "--sub-url", f"http://127.0.0.1:{stack.port}/sub/{{ch}}",
                 "--subscribers", 50, "--channels", 5, "--channel-prefix", prefix(),
                 "--publish", f"zmq:{stack.broker.push}", "--messages", 200,
                 "--rate", 2000, "--drain", 20, "--label", 'sse "zmq"')
    assert REQUIRED_KEYS <= set(res), set(res) ^ REQUIRED_KEYS
    assert res["label"] == 'sse "zmq"' and res["transport"] == "sse"
    assert res["channels"] == 5
    assert_clean(res, 50, 200, 5, p.stdout)
    assert res["expected"] == 2000


def test_websocket_subscribers_http_publisher(stack, pushbench):
    res, p = run(pushbench, "--transport", "ws",
                 "--sub-url", f"ws://127.0.0.1:{stack.port}/sub/{{ch}}",
                 "--subscribers", 50, "--channels", 5, "--channel-prefix", prefix(),
                 "--publish", f"http:http://127.0.0.1:{stack.port}/pub/{{ch}}",
                 "--pub-conns", 3, "--messages", 200, "--drain", 20,
                 "--source-addrs", "127.0.0.1,127.0.0.2")
    assert res["transport"] == "ws"
    assert_clean(res, 50, 200, 5, p.stdout)


def test_longpoll_subscribers(stack, pushbench):
    # a long poll is "established" once its request is sent; --hold lets the
    # server park every one of them before the first message
    res, p = run(pushbench, "--transport", "longpoll",
                 "--sub-url", f"http://127.0.0.1:{stack.port}/sub/{{ch}}",
                 "--subscribers", 20, "--channels", 4, "--channel-prefix", prefix(),
                 "--hold", 1, "--publish", f"zmq:{stack.broker.push}", "--messages", 100,
                 "--rate", 200, "--drain", 20)
    assert res["transport"] == "longpoll"
    assert_clean(res, 20, 100, 4, p.stdout)


def test_json_publish_body_and_query_template(stack, pushbench):
    # the body template (as Pushpin needs one) against mod_push's JSON publish
    res, p = run(pushbench, "--sub-url", f"http://127.0.0.1:{stack.port}/sub/{{ch}}?x=1",
                 "--subscribers", 10, "--channels", 2, "--channel-prefix", prefix(),
                 "--publish", f"http:http://127.0.0.1:{stack.port}/pub/{{ch}}",
                 "--pub-body-template", '{"data":"{data}"}',
                 "--messages", 40, "--payload-size", 200, "--drain", 20,
                 "--header", "X-Bench: 1")
    assert_clean(res, 10, 40, 2, p.stdout)


def test_hold_only_prints_established(stack, pushbench):
    res, p = run(pushbench, "--transport", "ws",
                 "--sub-url", f"http://127.0.0.1:{stack.port}/sub/{{ch}}",
                 "--subscribers", 30, "--channels", 3, "--channel-prefix", prefix(),
                 "--hold", 0.3)
    assert "ESTABLISHED 30" in p.stdout.splitlines()
    assert res["established"] == 30 and res["published"] == 0


def test_refused_connections_and_usage_errors(pushbench):
    port = free_port()           # nobody listens there
    res, p = run(pushbench, "--sub-url", f"http://127.0.0.1:{port}/sub/{{ch}}",
                 "--subscribers", 5, expect_rc=1)
    assert res["established"] == 0 and res["failed"] == 5
    assert "Connection refused" in p.stdout
    for bad in (["--transport", "carrier-pigeon"], ["--subscribers", "3"],
                ["--messages", "5"], ["--no-such-option"]):
        q = subprocess.run([str(pushbench), *bad], capture_output=True, text=True,
                           timeout=RUN_TIMEOUT)
        assert q.returncode == 2, (bad, q.stdout, q.stderr)
