"""The admin listener of DESIGN.md section 5 over real HTTP: POST /v1/decide
(fields, plan lookup, rejections, rendered headers and body), leases and
POST /v1/release, lease expiry after admin.lease_ttl, GET /metrics in the
Prometheus text format, GET /healthz, the bearer token, and bad input.
Clients: python requests and curl. Every call has a timeout."""
import concurrent.futures
import json
import re
import subprocess
import time

import pytest
import requests

T = 5  # seconds, per HTTP call

CONFIG = """
server:
  workers: 2
listeners:
  - name: gateway
    listen: "127.0.0.1:{gateway}"
    mode: proxy
    upstream: static
admin:
  listen: "127.0.0.1:{admin}"
  lease_ttl: 30s
store:
  type: memory
identify:
  key:
    from: ["header:X-Api-Key"]
    required: false
  accounts:
    - account: acme
      plan: pro
      keys: ["sk_acme_1"]
    - account: tiny
      plan: free
      keys: ["sk_tiny_1"]
    - account: bee
      plan: free
      keys: ["sk_bee_1"]
    - account: para
      plan: pro
      keys: ["sk_para_1"]
    - account: ttl
      plan: free
      keys: ["sk_ttl_1"]
plans:
  free:
    title: Free
  pro:
    title: Pro
limits:
  - name: ip
    key: ip
    rate: 1000/min
  - name: hourly
    key: account
    quota:
      free: 3/hour
      pro: 100/hour
    message: "Hourly limit reached: {{limit}} requests/hour on {{plan_title}} plan"
  - name: inflight
    key: account
    concurrency:
      free: 2
      pro: 5
responses:
  headers:
    X-RateLimit-Limit: "{{limit}}"
    X-RateLimit-Remaining: "{{remaining}}"
    X-RateLimit-Reset: "{{reset}}"
  rejected:
    status: 429
    headers:
      Retry-After: "{{retry_after}}"
      X-RateLimit-DeniedBy: "{{denied_by}}"
    body: '{{"error":"rate_limit_exceeded","message":"{{message}}","retry_after":{{retry_after}}}}'
"""
# Leases outlive any test's requests but these two, which watch one expire.
# The sweep runs every 125 ms and frees a lease up to one period early.
SHORT_TTL = CONFIG.replace("lease_ttl: 30s", "lease_ttl: 1s")

TOKEN_CONFIG = """
listeners:
  - name: gateway
    listen: "127.0.0.1:{gateway}"
    mode: proxy
    upstream: static
admin:
  listen: "127.0.0.1:{admin}"
  token: "s3cret-admin-token"
identify:
  key:
    from: ["header:X-Api-Key"]
    required: true
  accounts:
    - account: acme
      plan: pro
      keys: ["sk_acme_1"]
plans:
  pro:
    title: Pro
limits:
  - name: key
    key: key
    rate: 100/min
"""


def decide(d, body, **kw):
    return requests.post(d.url("admin", "/v1/decide"), json=body, timeout=T, **kw)


def release(d, lease, **kw):
    return requests.post(d.url("admin", "/v1/release"), json={"lease": lease}, timeout=T, **kw)


def test_healthz_answers_200(sluice):
    d = sluice(CONFIG)
    r = requests.get(d.url("admin", "/healthz"), timeout=T)
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_decide_allowed_has_every_field(sluice):
    d = sluice(CONFIG)
    r = decide(d, {"ip": "203.0.113.7", "account": "acme", "method": "GET", "path": "/v1/x?y=1",
                   "host": "api.example", "headers": {"User-Agent": "bot/1"}, "cost": 1})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    j = r.json()
    assert set(j) >= {"allowed", "status", "delay_ms", "denied_by", "retry_after", "lease",
                      "headers", "body", "limits"}
    assert j["allowed"] is True and j["status"] == 200
    assert j["delay_ms"] == 0 and j["denied_by"] is None and j["body"] is None
    # The account's plan (pro) was looked up: hourly 100, inflight 5.
    limits = {x["name"]: x for x in j["limits"]}
    assert set(limits) == {"ip", "hourly", "inflight"}
    assert limits["ip"]["limit"] == 1000 and limits["ip"]["remaining"] == 999
    assert limits["hourly"]["limit"] == 100 and limits["hourly"]["remaining"] == 99
    assert limits["hourly"]["reset"] % 3600 == 0 and limits["hourly"]["reset"] > time.time()
    assert limits["inflight"]["limit"] == 5 and limits["inflight"]["remaining"] == 4
    # It took a concurrency slot, so it carries a lease.
    assert isinstance(j["lease"], str) and j["lease"]
    # Rendered headers: the most restrictive windowed limit is hourly (the
    # concurrency slots speak only when no windowed limit applies).
    assert j["headers"]["X-RateLimit-Limit"] == "100"
    assert j["headers"]["X-RateLimit-Remaining"] == "99"
    assert "Retry-After" not in j["headers"]


def test_decide_plan_given_overrides_lookup(sluice):
    d = sluice(CONFIG)
    j = decide(d, {"account": "tiny", "plan": "pro"}).json()
    limits = {x["name"]: x for x in j["limits"]}
    assert limits["hourly"]["limit"] == 100


def test_decide_a_cost_no_limit_can_hold_says_retry_after_1_as_its_headers(sluice):
    """A cost above the quota's whole size is refused whatever the wait
    (the store says "never": retry_after 0); DESIGN 4: retry_after >= 1 on
    a rejection, and the rendered Retry-After header already said 1 while
    the JSON said 0."""
    d = sluice(CONFIG)
    j = decide(d, {"account": "tiny", "cost": 50}).json()  # free: 3/hour
    assert j["allowed"] is False and j["status"] == 429, j
    assert j["retry_after"] == 1, j
    assert j["headers"]["Retry-After"] == "1"


def test_decide_rejection_renders_429_headers_and_body(sluice):
    d = sluice(CONFIG)
    # tiny is on free: 3/hour. Release each lease so only the quota binds.
    for i in range(3):
        j = decide(d, {"account": "tiny"}).json()
        assert j["allowed"] is True, j
        assert release(d, j["lease"]).status_code == 200
    j = decide(d, {"account": "tiny"}).json()
    assert j["allowed"] is False and j["status"] == 429
    assert j["denied_by"] == "hourly"
    assert j["lease"] is None
    assert 1 <= j["retry_after"] <= 3600
    assert j["headers"]["Retry-After"] == str(j["retry_after"])
    assert j["headers"]["X-RateLimit-DeniedBy"] == "hourly"
    assert j["body"] == ('{"error":"rate_limit_exceeded","message":"Hourly limit reached: 3 '
                         'requests/hour on Free plan","retry_after":%d}' % j["retry_after"])
    limits = {x["name"]: x for x in j["limits"]}
    assert limits["hourly"]["remaining"] == 0


def test_decide_by_key_identifies_the_account(sluice):
    d = sluice(CONFIG)
    j = decide(d, {"key": "sk_bee_1"}).json()
    j2 = decide(d, {"account": "bee"}).json()
    h1 = {x["name"]: x for x in j["limits"]}["hourly"]
    h2 = {x["name"]: x for x in j2["limits"]}["hourly"]
    assert (h1["limit"], h1["remaining"]) == (3, 2)
    assert (h2["limit"], h2["remaining"]) == (3, 1)  # same account counter


def test_bad_json_is_400_with_json_error(sluice):
    d = sluice(CONFIG)
    url = d.url("admin", "/v1/decide")
    for body in (b"{not json", b"", b"[1,2]", b'"str"', b'{"ip": 5}', b'{"cost": -1}',
                 b'{"cost": 1.5}', b'{"headers": []}', b'{"headers": {"a": 1}}',
                 b'{"ip": "not-an-ip"}'):
        r = requests.post(url, data=body, headers={"Content-Type": "application/json"},
                          timeout=T)
        assert r.status_code == 400, body
        assert r.headers["Content-Type"].startswith("application/json")
        assert "error" in r.json()
    r = requests.post(d.url("admin", "/v1/release"), data=b"{", timeout=T)
    assert r.status_code == 400 and "error" in r.json()
    r = requests.post(d.url("admin", "/v1/release"), json={"lease": 7}, timeout=T)
    assert r.status_code == 400


def test_unknown_path_and_wrong_method(sluice):
    d = sluice(CONFIG)
    assert requests.get(d.url("admin", "/nope"), timeout=T).status_code == 404
    r = requests.get(d.url("admin", "/v1/decide"), timeout=T)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    r = requests.post(d.url("admin", "/metrics"), timeout=T)
    assert r.status_code == 405


def test_lease_release_frees_the_slot(sluice):
    d = sluice(CONFIG)
    leases = []
    for i in range(5):
        j = decide(d, {"account": "acme"}).json()
        assert j["allowed"] is True
        leases.append(j["lease"])
    assert len(set(leases)) == 5
    j = decide(d, {"account": "acme"}).json()
    assert j["allowed"] is False and j["denied_by"] == "inflight" and j["status"] == 429
    assert j["lease"] is None
    r = release(d, leases[0])
    assert r.status_code == 200
    # Released twice, or never issued: 404.
    assert release(d, leases[0]).status_code == 404
    assert release(d, "0-999-deadbeef").status_code == 404
    assert release(d, "garbage").status_code == 404
    j = decide(d, {"account": "acme"}).json()
    assert j["allowed"] is True and j["lease"]
    inflight = {x["name"]: x for x in j["limits"]}["inflight"]
    assert inflight["remaining"] == 0


def test_lease_expires_after_ttl(sluice):
    d2 = sluice(SHORT_TTL)  # lease_ttl: 1s; account ttl is on free: 2 slots
    t_grant = time.monotonic()  # before the grants: no lease is freed before 0.875 s from here
    a = decide(d2, {"account": "ttl"}).json()
    b = decide(d2, {"account": "ttl"}).json()
    assert a["allowed"] and b["allowed"]
    assert decide(d2, {"account": "ttl"}).json()["denied_by"] == "inflight"
    t0 = time.monotonic()
    # No release: the sweep gives the slots back after ~1 s (plus a sweep period).
    while time.monotonic() - t0 < 5:
        time.sleep(0.1)
        r = requests.post(d2.url("admin", "/v1/decide"),
                          json={"account": "ttl", "plan": "free"}, timeout=T).json()
        if r["allowed"]:
            break
    waited = time.monotonic() - t0
    assert r["allowed"], r
    assert time.monotonic() - t_grant >= 0.8, time.monotonic() - t_grant
    assert waited <= 2.5, waited
    # The expired lease is gone: releasing it now is 404.
    assert release(d2, a["lease"]).status_code == 404


def test_parallel_decides_grant_exactly_the_cap(sluice):
    d = sluice(CONFIG)

    def one(_):
        return decide(d, {"account": "para"}).json()

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as ex:
        res = list(ex.map(one, range(24)))
    granted = [x for x in res if x["allowed"]]
    assert len(granted) == 5
    assert all(x["denied_by"] == "inflight" for x in res if not x["allowed"])
    assert len({x["lease"] for x in granted}) == 5
    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as ex:
        codes = list(ex.map(lambda x: release(d, x["lease"]).status_code, granted))
    assert codes == [200] * 5
    assert decide(d, {"account": "para"}).json()["allowed"]


METRIC_LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*",?)*\})? '
                         r'[0-9.e+-]+$')


def metrics(d):
    r = requests.get(d.url("admin", "/metrics"), timeout=T)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    for line in r.text.splitlines():
        assert line.startswith("#") or METRIC_LINE.match(line), line
    return r.text


def sample(text, name, **labels):
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            got = dict(re.findall(r'([a-zA-Z_]+)="([^"]*)"', line.split(" ")[0]))
            if all(got.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_count_decisions(sluice):
    d = sluice(CONFIG)
    for i in range(4):
        decide(d, {"account": "bee", "plan": "free"})
    for i in range(3):
        requests.get(d.url("gateway", "/x"), timeout=T)
    text = metrics(d)
    assert "# TYPE sluice_decisions_total counter" in text
    assert "# TYPE sluice_decision_seconds histogram" in text
    # bee: 2 allowed (the inflight cap of free is 2), then 2 rejected by inflight.
    assert sample(text, "sluice_decisions_total", listener="admin", limit="inflight",
                  outcome="rejected") == 2
    allowed = sum(v for v in [sample(text, "sluice_decisions_total", listener="admin",
                                     limit=n, outcome="allowed") for n in ("ip", "hourly",
                                                                           "inflight")] if v)
    assert allowed == 2
    assert sample(text, "sluice_decision_seconds_count", listener="admin") == 4
    assert sample(text, "sluice_decision_seconds_bucket", listener="admin", le="+Inf") == 4
    assert sample(text, "sluice_store_states") is not None
    assert sample(text, "sluice_store_evicted_total") == 0
    assert sample(text, "sluice_store_errors_total") == 0
    # The gateway's decisions are counted by the server under its listener name.
    gw = sample(text, "sluice_decision_seconds_count", listener="gateway")
    assert gw == 3


def test_metrics_gateway_latency_is_measured(sluice):
    d = sluice(CONFIG)
    s = requests.Session()
    for i in range(20):
        s.get(d.url("gateway", "/x"), timeout=T)
    text = metrics(d)
    assert sample(text, "sluice_decision_seconds_count", listener="gateway") == 20
    assert sample(text, "sluice_decision_seconds_sum", listener="gateway") > 0
    assert sample(text, "sluice_decision_seconds_sum", listener="admin") is None


def test_metrics_and_decide_with_curl(sluice):
    d = sluice(CONFIG)
    out = subprocess.run(["curl", "-sS", "--max-time", "5", "-X", "POST",
                          "-H", "Content-Type: application/json",
                          "--data", '{"account":"acme","cost":2}',
                          d.url("admin", "/v1/decide")],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    j = json.loads(out.stdout)
    assert j["allowed"] is True
    assert {x["name"]: x for x in j["limits"]}["hourly"]["remaining"] == 98
    out = subprocess.run(["curl", "-sS", "--max-time", "5", "-o", "/dev/null",
                          "-w", "%{http_code}", d.url("admin", "/metrics")],
                         capture_output=True, text=True, timeout=10)
    assert out.stdout == "200"


def test_token_required_when_set(sluice):
    d = sluice(TOKEN_CONFIG)
    url = d.url("admin", "/v1/decide")
    r = requests.post(url, json={"key": "sk_acme_1"}, timeout=T)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = requests.post(url, json={"key": "sk_acme_1"}, timeout=T,
                      headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    r = requests.get(d.url("admin", "/metrics"), timeout=T)
    assert r.status_code == 401
    ok = {"Authorization": "Bearer s3cret-admin-token"}
    r = requests.post(url, json={"key": "sk_acme_1"}, timeout=T, headers=ok)
    assert r.status_code == 200 and r.json()["allowed"] is True
    assert requests.get(d.url("admin", "/metrics"), headers=ok, timeout=T).status_code == 200
    # Health probes need no token.
    assert requests.get(d.url("admin", "/healthz"), timeout=T).status_code == 200
    # An unknown key is decided (HTTP 200) as a 401 with a body.
    j = requests.post(url, json={"key": "sk_nope"}, timeout=T, headers=ok).json()
    assert j["allowed"] is False and j["status"] == 401 and j["body"]


def test_admin_off_loopback_without_token_refuses_to_start(sluice):
    bad = TOKEN_CONFIG.replace('listen: "127.0.0.1:{admin}"\n  token: "s3cret-admin-token"',
                               'listen: "0.0.0.0:{admin}"')
    assert "0.0.0.0" in bad
    d = sluice(bad, wait=False)
    rc = d.proc.wait(15)
    assert rc != 0
    assert "token" in d.log()


REDIS = "/usr/bin/redis-server"


def test_decide_and_release_through_the_redis_store(sluice, tmp_path):
    """The same decide/lease/release over the Redis store, whose batches
    complete later (the handler's asynchronous path)."""
    import os
    import pytest
    import socket as so
    if not os.access(REDIS, os.X_OK):
        pytest.skip("redis-server not installed")
    with so.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    redis = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(tmp_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                so.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        cfg = SHORT_TTL.replace("store:\n  type: memory\n",
                             'store:\n  type: redis\n  url: "redis://127.0.0.1:%d"\n'
                             '  on_error: deny\n' % port)
        assert "type: redis" in cfg
        try:
            d = sluice(cfg)
        except RuntimeError as e:
            if "not available" in str(e):
                pytest.skip("this build's daemon has no Redis store yet")
            raise
        leases = []
        t_grant = time.monotonic()  # no lease is freed before 0.875 s from here
        for i in range(5):
            j = decide(d, {"account": "acme"}).json()
            assert j["allowed"] is True, j
            leases.append(j["lease"])
        j = decide(d, {"account": "acme"}).json()
        assert j["allowed"] is False and j["denied_by"] == "inflight"
        assert release(d, leases[0]).status_code == 200
        assert release(d, leases[0]).status_code == 404
        j = decide(d, {"account": "acme"}).json()
        assert j["allowed"] is True
        assert {x["name"]: x for x in j["limits"]}["hourly"]["remaining"] == 94
        # Leases still expire after lease_ttl (1 s).
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5:
            time.sleep(0.1)
            if decide(d, {"account": "acme"}).json()["allowed"]:
                break
        assert time.monotonic() - t_grant >= 0.8 and time.monotonic() - t0 <= 2.5
    finally:
        redis.terminate()
        redis.wait(10)
