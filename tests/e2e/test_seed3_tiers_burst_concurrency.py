"""Seed 3 (per-key tiers with a burst allowance, concurrent-request caps and
stricter per-endpoint limits) against
examples/tiers-burst-concurrency-endpoints.yaml over real HTTP. The proxy
forwards to a slow test upstream (the example's `upstream: static` is
pointed at it) so requests are really in flight at once: the free tier's 5
concurrent slots hold under 8 parallel clients and come back when the
responses end. Also: the burst of 10 then 429 with Retry-After and the
documented body, POST /oauth/token at 30/min per IP, POST
/v1/messages/batch at 10/min per key."""
import concurrent.futures
import http.server
import socket
import threading
import time

import pytest
import requests

T = 10
BODY = ('{"error":{"code":"RATE_LIMITED","message":"Rate limit exceeded. Retry after %d '
        'seconds.","retryAfter":%d}}')



class Server(http.server.ThreadingHTTPServer):
    # The default listen backlog (5) overflows when a proxy opens 20+
    # connections at once, and a dropped SYN costs a 1 s retransmit.
    request_queue_size = 256

class SlowHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are two writes
    wbufsize = 65536  # ... so buffer them into one
    delay = 0.0
    inflight = 0
    peak = 0
    lock = threading.Lock()

    def _serve(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        cls = type(self)
        with cls.lock:
            cls.inflight += 1
            cls.peak = max(cls.peak, cls.inflight)
        time.sleep(cls.delay)
        with cls.lock:
            cls.inflight -= 1
        body = b'{"upstream":true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _serve

    def log_message(self, *a):
        pass


@pytest.fixture
def upstream():
    """start(port, delay) -> the handler class (inflight/peak counters)."""
    servers = []

    def start(port, delay):
        h = type("H", (SlowHandler,), {"delay": delay, "inflight": 0, "peak": 0,
                                       "lock": threading.Lock()})
        srv = Server(("127.0.0.1", port), h)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return h

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def start(sluice, example, upstream, delay):
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        port = so.getsockname()[1]
    h = upstream(port, delay)
    d = sluice(example("tiers-burst-concurrency-endpoints.yaml", upstream=True),
               ports={"upstream": port})
    return d, h


def get(s, d, key, path="/v1/channels", method="GET"):
    h = {"Authorization": "Bearer " + key} if key else {}
    return s.request(method, d.url("gateway", path), headers=h, timeout=T)


def check_429(r):
    ra = int(r.headers["Retry-After"])
    assert ra >= 1
    assert r.text == BODY % (ra, ra)
    assert r.headers["X-RateLimit-Remaining"] == "0"
    return ra


def test_free_tier_burst_of_10_then_429(sluice, example, upstream):
    d, _ = start(sluice, example, upstream, 0)
    s = requests.Session()
    t0 = time.monotonic()
    codes = [get(s, d, "key_test_free").status_code for _ in range(10)]
    r = get(s, d, "key_test_free")
    elapsed = time.monotonic() - t0
    assert codes == [200] * 10
    if elapsed < 1.0:  # 60/min regains one request per second
        assert r.status_code == 429
        assert check_429(r) == 1
        assert r.headers["X-RateLimit-Limit"] == "60"
    # Every response carries the x-ratelimit preset.
    r = get(s, d, "key_live_starter")
    assert r.status_code == 200 and r.json() == {"upstream": True}
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
        assert int(r.headers[name]) >= 0
    assert "Retry-After" not in r.headers


def test_concurrency_cap_holds_under_parallel_clients(sluice, example, upstream):
    # the upstream holds each request 2.5 s: every client is decided while
    # the first five hold their slots, even on a loaded machine
    d, h = start(sluice, example, upstream, 2.5)

    def one(_):
        with requests.Session() as s:
            t = time.monotonic()
            r = get(s, d, "key_test_free")
            return r, time.monotonic() - t

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as ex:
        res = list(ex.map(one, range(8)))
    ok = [r for r, _ in res if r.status_code == 200]
    refused = [(r, t) for r, t in res if r.status_code != 200]
    assert len(ok) == 5, [r.status_code for r, _ in res]
    assert h.peak <= 5
    for r, t in refused:
        assert r.status_code == 429
        check_429(r)
        assert t < 2  # refused at once, not after the upstream
    # The slots come back when the responses end: five more in parallel pass
    # (the burst of 10 still has room: 5 used, nothing consumed by the 429s).
    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as ex:
        res = list(ex.map(one, range(5)))
    assert [r.status_code for r, _ in res] == [200] * 5


def test_starter_tier_caps_25_in_flight(sluice, example, upstream):
    d, h = start(sluice, example, upstream, 2.5)  # every client decided while 25 hold

    def one(_):
        with requests.Session() as s:
            return get(s, d, "key_live_starter").status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as ex:
        codes = list(ex.map(one, range(32)))
    assert codes.count(200) == 25, codes
    assert codes.count(429) == 7
    assert h.peak <= 25


def test_oauth_token_30_per_minute_per_ip(sluice, example, upstream):
    d, _ = start(sluice, example, upstream, 0)
    s = requests.Session()
    t0 = time.monotonic()
    n = 0
    for i in range(40):
        r = get(s, d, None, "/oauth/token", "POST")
        if r.status_code != 200:
            break
        n += 1
    elapsed = time.monotonic() - t0
    assert r.status_code == 429
    assert 30 <= n <= 30 + int(elapsed / 2.0) + 1
    check_429(r)
    # Other endpoints are not limited by it (and a keyless GET skips the
    # per-key limits: the API itself would answer 401).
    assert get(s, d, None, "/v1/channels").status_code == 200


def test_batch_endpoint_10_per_minute_per_key(sluice, example, upstream):
    d, _ = start(sluice, example, upstream, 0)
    s = requests.Session()
    codes = [get(s, d, "key_live_starter", "/v1/messages/batch", "POST").status_code
             for _ in range(11)]
    assert codes[:10] == [200] * 10
    assert codes[10] == 429
    # The general per-key rate still has room, and another key its own batch budget.
    assert get(s, d, "key_live_starter", "/v1/messages").status_code == 200
    assert get(s, d, "key_live_pro", "/v1/messages/batch", "POST").status_code == 200
    # transactional has its own 10/min.
    assert get(s, d, "key_live_starter", "/v1/messages/transactional", "POST").status_code == 200
