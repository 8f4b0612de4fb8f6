"""Seed 4 (subscription plans, per user and per API, nginx-style burst
queue, daily quota) against examples/plans-daily-quota-burst-queue.yaml over
real HTTP. The headline: the Mega plan (900/min, burst 15, queue 5) given 23
requests in one instant serves 15 at once, holds 5 and serves the k-th of
them about k*T later (T = 60 s / 900 = 66.7 ms), and rejects 3 with 429 and
the documented body. The 23 requests go out on 23 pre-opened connections
from one thread so they arrive within a millisecond or two, and every
response is timestamped as it completes."""
import selectors
import socket
import time

import requests

T = 5
INTERVAL = 60.0 / 900  # s, the Mega plan's emission interval
BODY = """{
  "get": "",
  "parameters": [],
  "errors": { "rateLimit": "Too many requests. You have exceeded the limit of requests per minute of your subscription." },
  "results": 0,
  "paging": { "current": 1, "total": 1 },
  "response": []
}
"""


def burst(port, raw_requests, timeout=5.0):
    """Send each request on its own fresh connection at (nearly) the same
    instant; return [(status, headers dict (lower-case), body bytes, seconds
    from the first send to the response's last byte)] in completion order."""
    socks = []
    for _ in raw_requests:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(s)
    sel = selectors.DefaultSelector()
    t0 = time.monotonic()
    for s, raw in zip(socks, raw_requests):
        s.sendall(raw)
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, bytearray())
    out = []
    deadline = t0 + timeout
    while len(out) < len(socks) and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.05):
            buf = key.data
            chunk = key.fileobj.recv(65536)
            if chunk:
                buf += chunk
            head, sep, body = bytes(buf).partition(b"\r\n\r\n")
            if not sep:
                if not chunk:
                    raise AssertionError("connection closed before a response head")
                continue
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0"))
            if len(body) >= n:
                out.append((int(lines[0].split()[1]), headers, body[:n], time.monotonic() - t0))
                sel.unregister(key.fileobj)
    for s in socks:
        s.close()
    sel.close()
    assert len(out) == len(socks), "responses missing after %.1f s" % timeout
    return out


def raw_get(path, key, extra=""):
    return ("GET %s HTTP/1.1\r\nHost: api.test\r\nX-Api-Key: %s\r\n%s\r\n"
            % (path, key, extra)).encode()


def check_queue(res):
    ok = sorted(t for st, _, _, t in res if st == 200)
    rejected = [(h, b, t) for st, h, b, t in res if st == 429]
    assert len(ok) == 20 and len(rejected) == 3, " ".join(str(st) for st, _, _, _ in res)
    immediate, delayed = ok[:15], ok[15:]
    # 15 at once (under one interval), then the k-th held request about k*T
    # after the burst arrived: never early (but for the arrival spread), and
    # late only by what a loaded machine adds
    assert immediate[-1] < INTERVAL, immediate
    for k, t in enumerate(delayed, 1):
        assert k * INTERVAL - 0.03 < t < k * INTERVAL + 0.15, (k, t, delayed)
    for h, b, t in rejected:
        assert t < INTERVAL  # refused at once, not queued
        assert int(h["retry-after"]) >= 1
        assert h["content-type"].startswith("application/json")
        assert b.decode() == BODY
    return delayed


def one_worker(text):
    """The example on one worker. The 20th of 23 sits exactly on the queue's
    edge: with two workers, a decision of one that read the clock just
    before the other committed sees that much more backlog and is refused
    (a decision used to take the time of its whole loop pass, and one was
    refused so in make check; it now reads the clock when it is made, and
    tests/e2e/test_workers_clock.py covers the two-worker case). The burst
    arithmetic is what these tests check, so they take the race out."""
    assert "server: { workers: auto }" in text
    return text.replace("server: { workers: auto }", "server: { workers: 1 }")


def test_23_requests_in_one_instant_via_the_proxy(sluice, example):
    d = sluice(example("plans-daily-quota-burst-queue.yaml", edit=one_worker))
    res = burst(d.ports["gateway"], [raw_get("/weather/fixtures?live=all", "key-bob")] * 23)
    check_queue(res)
    # Responses carry the per-minute and per-day figures.
    for st, h, b, t in res:
        if st == 200:
            assert h["x-ratelimit-limit"] == "900"
            assert h["x-ratelimit-requests-limit"] == "150000"
            assert b == b'{"ok":true}'
    remaining_day = sorted(int(h["x-ratelimit-requests-remaining"]) for st, h, _, _ in res
                           if st == 200)
    assert remaining_day == list(range(149980, 150000))


def test_23_requests_in_one_instant_via_the_check_listener(sluice, example):
    d = sluice(example("plans-daily-quota-burst-queue.yaml", edit=one_worker))
    raw = raw_get("/", "key-bob", "X-Original-Method: GET\r\n"
                  "X-Original-URI: /weather/teams?league=39\r\n")
    check_queue(burst(d.ports["check"], [raw] * 23))


def test_limits_are_per_user_and_per_api(sluice, example):
    # one worker: the 20th of 23 sits exactly on the queue's edge (see above)
    d = sluice(example("plans-daily-quota-burst-queue.yaml", edit=one_worker))
    res = burst(d.ports["gateway"], [raw_get("/weather/fixtures", "key-bob")] * 23)
    assert sum(1 for r in res if r[0] == 429) == 3
    s = requests.Session()
    h = {"X-Api-Key": "key-bob"}
    r = s.get(d.url("gateway", "/stocks/games"), headers=h, timeout=T)
    assert r.status_code == 200
    assert r.headers["X-RateLimit-Remaining"] == "14"  # stocks's own burst of 15
    assert r.headers["x-ratelimit-requests-remaining"] == "149999"
    # Another user on the same API is not affected either.
    r = s.get(d.url("gateway", "/weather/fixtures"), headers={"X-Api-Key": "key-carol"},
              timeout=T)
    assert r.status_code == 200
    assert r.headers["X-RateLimit-Limit"] == "1200"


def test_free_plan_10_per_minute_and_401_without_key(sluice, example):
    d = sluice(example("plans-daily-quota-burst-queue.yaml"))
    s = requests.Session()
    h = {"X-Api-Key": "key-alice"}
    t0 = time.monotonic()
    codes = [s.get(d.url("gateway", "/weather/leagues"), headers=h, timeout=T).status_code
             for _ in range(11)]
    if time.monotonic() - t0 < 6.0:  # 10/min regains one request per 6 s
        assert codes == [200] * 10 + [429]
    r = s.get(d.url("gateway", "/weather/leagues"), timeout=T)
    assert r.status_code == 401


def test_daily_counts_survive_a_restart(sluice, example):
    cfg = example("plans-daily-quota-burst-queue.yaml")
    d = sluice(cfg)
    s = requests.Session()
    h = {"X-Api-Key": "key-alice"}
    for i in range(3):
        r = s.get(d.url("gateway", "/weather/leagues"), headers=h, timeout=T)
    assert r.headers["x-ratelimit-requests-limit"] == "100"
    assert r.headers["x-ratelimit-requests-remaining"] == "97"
    s.close()
    assert d.stop() == 0  # graceful: writes the snapshot
    d2 = sluice(cfg)  # same working directory, so the same snapshot file
    r = requests.get(d2.url("gateway", "/weather/leagues"), headers=h, timeout=T)
    assert r.status_code == 200
    assert r.headers["x-ratelimit-requests-remaining"] == "96"


def test_decide_reports_the_queue_delay(sluice, example):
    """/v1/decide answers at once and tells the caller how long to hold."""
    d = sluice(example("plans-daily-quota-burst-queue.yaml"))
    s = requests.Session()
    t0 = time.monotonic()
    res = [s.post(d.url("admin", "/v1/decide"), json={"account": "bob", "method": "GET",
                                                      "path": "/weather/fixtures"},
                  timeout=T).json() for _ in range(23)]
    elapsed = time.monotonic() - t0
    assert [j["delay_ms"] for j in res[:15]] == [0] * 15
    assert all(j["allowed"] for j in res[:20])
    for k, j in enumerate(res[15:20], 1):
        want = k * INTERVAL * 1000
        assert want - elapsed * 1000 - 1 <= j["delay_ms"] <= want + 1, (k, j["delay_ms"])
    if elapsed < INTERVAL:
        assert [j["status"] for j in res[20:]] == [429] * 3
        assert all(j["denied_by"] == "minute" for j in res[20:])
        assert res[20]["body"] == BODY
