"""Seed 2 (partner API: 300 requests per minute per client IP) against
examples/per-ip-partner-api.yaml (GCRA 300/min, burst 300) over real HTTP:
X-RateLimit-Limit/Remaining/Reset on every response (the doc's "241" after
59 calls), and once the 300 are spent a 429 with the documented
"Retry-After: 60" and JSON body, byte for byte. Client addresses via X-Forwarded-For (127.0.0.1
is a trusted proxy in the example)."""
import subprocess
import time

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


def get(s, d, ip, listener="gateway", path="/v1/balances"):
    return s.get(d.url(listener, path), headers={"X-Forwarded-For": ip}, timeout=T)


def test_headers_count_down_per_ip(sluice, example):
    d = sluice(example("per-ip-partner-api.yaml"))
    s = requests.Session()
    t0 = time.monotonic()
    for i in range(59):
        r = get(s, d, "192.0.2.1")
        assert r.status_code == 200
        assert r.headers["X-RateLimit-Limit"] == "300"
        # GCRA: one unit comes back every 0.2 s (bounded by the time the
        # client saw pass).
        regained = int((time.monotonic() - t0) / 0.2)
        assert 299 - i <= int(r.headers["X-RateLimit-Remaining"]) <= min(299, 299 - i + regained)
        reset = int(r.headers["X-RateLimit-Reset"])
        assert time.time() - 1 <= reset <= time.time() + 61
    if time.monotonic() - t0 < 0.2:
        assert r.headers["X-RateLimit-Remaining"] == "241"  # the doc's example value
    # Another address has its own counter; no API key is needed.
    r = get(s, d, "192.0.2.2")
    assert r.headers["X-RateLimit-Remaining"] == "299"
    assert "Retry-After" not in r.headers


def test_the_request_over_the_limit_gets_the_documented_429(sluice, example):
    d = sluice(example("per-ip-partner-api.yaml"))
    s = requests.Session()
    n = 0
    t0 = time.monotonic()
    for i in range(400):
        r = get(s, d, "192.0.2.3")
        if r.status_code != 200:
            break
        n += 1
    elapsed = time.monotonic() - t0
    # 300 at once, plus one per 0.2 s that passed meanwhile.
    assert r.status_code == 429
    assert 300 <= n <= 300 + int(elapsed / 0.2) + 1, (n, elapsed)
    # The doc's "Retry-After: 60", exactly: the bucket refills in (59.8, 60] s.
    assert r.headers["Retry-After"] == "60"
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.text == BODY % 60
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert r.headers["X-RateLimit-Limit"] == "300"
    # Every 429 says 60.
    for _ in range(3):
        r = get(s, d, "192.0.2.3")
        if r.status_code == 429:
            assert r.headers["Retry-After"] == "60" and r.text == BODY % 60
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
