"""Seed 2 (partner API: 300 requests per minute per client IP) against
examples/per-ip-partner-api.yaml over real HTTP: X-RateLimit-Limit/
Remaining/Reset on every response (the doc's "241" after 59 calls), and on
the 301st call a 429 with Retry-After and the documented JSON body, byte for
byte with the real values. Client addresses via X-Forwarded-For (127.0.0.1
is a trusted proxy in the example)."""
import subprocess
import time

import pytest
import requests

T = 5

BODY = """{
  "error": "Rate limit exceeded",
  "message": "You have exceeded the maximum number of requests allowed (300 requests/min). Please try again later.",
  "retry_after": %d,
  "limit": 300,
  "window": "1 minute"
}
"""


@pytest.fixture(autouse=True)
def not_near_a_minute_boundary():
    """A sliding window weighs the previous minute by its overlap; starting
    (a fresh daemon) at least 5 s before a boundary keeps every count of
    a test inside one window."""
    left = 60 - time.time() % 60
    if left < 5:
        time.sleep(left + 0.2)


def get(s, d, ip, listener="gateway", path="/v1/balances"):
    return s.get(d.url(listener, path), headers={"X-Forwarded-For": ip}, timeout=T)


def test_headers_count_down_per_ip(sluice, example):
    d = sluice(example("per-ip-partner-api.yaml"))
    s = requests.Session()
    for i in range(59):
        r = get(s, d, "192.0.2.1")
        assert r.status_code == 200
        assert r.headers["X-RateLimit-Limit"] == "300"
        assert r.headers["X-RateLimit-Remaining"] == str(299 - i)
        reset = int(r.headers["X-RateLimit-Reset"])
        assert time.time() - 1 <= reset <= time.time() + 121
    assert r.headers["X-RateLimit-Remaining"] == "241"  # the doc's example value
    # Another address has its own counter; no API key is needed.
    r = get(s, d, "192.0.2.2")
    assert r.headers["X-RateLimit-Remaining"] == "299"
    assert "Retry-After" not in r.headers


def test_301st_request_gets_the_documented_429(sluice, example):
    d = sluice(example("per-ip-partner-api.yaml"))
    s = requests.Session()
    n = 0
    for i in range(310):
        r = get(s, d, "192.0.2.3")
        if r.status_code != 200:
            break
        n += 1
    # A sliding window: the 301st call in the same rolling minute is refused
    # (one more may fit if the minute boundary passed mid-burst).
    assert r.status_code == 429
    assert n in (300, 301), n
    ra = int(r.headers["Retry-After"])
    assert 1 <= ra <= 60
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.text == BODY % ra
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert r.headers["X-RateLimit-Limit"] == "300"
    # The limit is per address.
    assert get(s, d, "192.0.2.4").status_code == 200


def test_check_listener_with_curl(sluice, example):
    d = sluice(example("per-ip-partner-api.yaml"))
    out = subprocess.run(["curl", "-sS", "-D", "-", "-o", "/dev/null", "--max-time", "5",
                          "-H", "X-Original-Method: GET", "-H", "X-Original-URI: /v1/balances",
                          "-H", "X-Forwarded-For: 192.0.2.9", d.url("check", "/")],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    head = out.stdout.lower().splitlines()  # text mode: CRLF already folded
    assert head[0].startswith("http/1.1 200")
    assert "x-ratelimit-limit: 300" in head
    assert "x-ratelimit-remaining: 299" in head
