"""Peeking at usage (DESIGN.md section 7): GET /v1/accounts/{account}/usage
on the admin listener, the gateway's responses.usage_path, and the honest
/v1/decide ("cost":0 is a peek, unknown fields and accounts are refused).
A peek consumes nothing in any algorithm: remaining stays the same after 100
peeks, on the memory store and on a real redis-server. Real daemon, real
HTTP clients and raw sockets; every call has a timeout."""
import http.client
import json
import socket
import time

import pytest
import requests

from test_redis import REDIS_SERVER, redis_servers  # noqa: F401 (fixture)

T = 5  # seconds, per HTTP call

BODY = """
identify:
  key:
    from: ["header:X-Api-Key"]
    required: false
  accounts:
    - account: acme
      plan: pro
      keys: ["sk_acme_1"]
    - account: "w eird/na%me"
      plan: free
      keys: ["sk_weird_1"]
    - account: ent
      plan: enterprise
      keys: ["sk_ent_1"]
plans:
  free: {{ title: Free }}
  pro: {{ title: Pro }}
  enterprise: {{ title: Enterprise }}
limits:
  - {{ name: per_ip, key: ip, rate: 1000/min }}
  - {{ name: per_key, key: key, rate: 500/min }}
  - name: minute
    key: account
    rate: {{ free: 10/min, pro: 60/min, enterprise: unlimited }}
  - name: hourly
    key: account
    quota: {{ free: 100/hour, pro: 1000/hour, enterprise: unlimited }}
  - {{ name: smooth, key: account, sliding: 300/hour }}
  - name: inflight
    key: account
    concurrency: {{ free: 2, pro: 5, enterprise: 50 }}
  - {{ name: everyone, key: global, quota: 100000/day }}
routes:
  - name: search
    match: {{ path: /search }}
    limits:
      - {{ name: search_rate, key: account, rate: 5/min }}
"""


def config(store="store: {{ type: memory }}", usage_path=True, workers=2):
    resp = "responses:\n  usage_path: /rate_limit\n" if usage_path else ""
    return ("server: {{ workers: %d }}\n" % workers) + """listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: static }}
  - {{ name: check, listen: "127.0.0.1:{check}", mode: check }}
admin: {{ listen: "127.0.0.1:{admin}", lease_ttl: 30s }}
""" + store + "\n" + resp + BODY


def peek(d, account, **kw):
    return requests.get(d.url("admin", "/v1/accounts/%s/usage" % account), timeout=T, **kw)


def decide(d, body):
    return requests.post(d.url("admin", "/v1/decide"), json=body, timeout=T)


def by_name(j):
    return {x["name"]: x for x in j["limits"]}


def test_peek_lists_every_limit_of_the_account_with_its_numbers(sluice):
    d = sluice(config())
    t0 = time.time()
    r = peek(d, "acme")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    j = r.json()
    assert j["account"] == "acme" and j["plan"] == "pro"
    lim = by_name(j)
    # ip- and key-keyed limits and route limits need a request: not shown.
    assert set(lim) == {"minute", "hourly", "smooth", "inflight", "everyone"}
    for x in j["limits"]:
        assert set(x) == {"name", "limit", "remaining", "reset", "window_seconds", "unlimited"}
        assert x["unlimited"] is False
    assert lim["minute"]["limit"] == 60 and lim["minute"]["remaining"] == 60
    assert lim["minute"]["window_seconds"] == 60
    assert lim["hourly"]["limit"] == 1000 and lim["hourly"]["remaining"] == 1000
    assert lim["hourly"]["window_seconds"] == 3600
    assert lim["hourly"]["reset"] % 3600 == 0 and t0 < lim["hourly"]["reset"] <= t0 + 3601
    assert lim["smooth"]["limit"] == 300 and lim["smooth"]["window_seconds"] == 3600
    assert lim["inflight"]["limit"] == 5 and lim["inflight"]["remaining"] == 5
    assert lim["inflight"]["window_seconds"] is None
    assert lim["everyone"]["window_seconds"] == 86400 and lim["everyone"]["reset"] % 86400 == 0


def test_peek_shows_unlimited_limits(sluice):
    d = sluice(config())
    lim = by_name(peek(d, "ent").json())
    for name in ("minute", "hourly"):
        assert lim[name] == {"name": name, "limit": None, "remaining": None, "reset": None,
                             "window_seconds": None, "unlimited": True}
    assert lim["inflight"]["limit"] == 50


def test_peek_reflects_traffic_and_consumes_nothing(sluice):
    d = sluice(config())
    for _ in range(3):
        r = requests.get(d.url("gateway", "/x"), headers={"X-Api-Key": "sk_acme_1"}, timeout=T)
        assert r.status_code == 200
    first = by_name(peek(d, "acme").json())
    assert first["hourly"]["remaining"] == 997
    assert first["smooth"]["remaining"] == 297
    assert first["minute"]["remaining"] in (57, 58)  # GCRA regains one per second
    for _ in range(100):
        assert peek(d, "acme").status_code == 200
    after = by_name(peek(d, "acme").json())
    assert after["hourly"]["remaining"] == 997
    assert after["smooth"]["remaining"] == 297
    assert after["inflight"]["remaining"] == 5
    assert after["minute"]["remaining"] >= first["minute"]["remaining"]
    assert after["everyone"]["remaining"] == first["everyone"]["remaining"]
    # The next real request sees exactly the units the three took.
    r = requests.get(d.url("gateway", "/x"), headers={"X-Api-Key": "sk_acme_1"}, timeout=T)
    assert r.headers["X-RateLimit-Limit"]  # rendered


def test_peek_does_not_take_a_concurrency_slot(sluice):
    d = sluice(config())
    leases = []
    for _ in range(2):
        j = decide(d, {"account": "w eird/na%me"}).json()
        assert j["allowed"] is True and j["lease"]
        leases.append(j["lease"])
    for _ in range(20):
        lim = by_name(peek(d, "w%20eird%2Fna%25me").json())
        assert lim["inflight"]["remaining"] == 0
    # Both slots are held; a peek never was one: releasing frees exactly two.
    for lease in leases:
        assert requests.post(d.url("admin", "/v1/release"), json={"lease": lease},
                             timeout=T).status_code == 200
    assert by_name(peek(d, "w%20eird%2Fna%25me").json())["inflight"]["remaining"] == 2


def test_peek_unknown_account_is_404_and_bad_paths_are_refused(sluice):
    d = sluice(config())
    r = peek(d, "nobody")
    assert r.status_code == 404 and r.json()["error"] == "unknown_account"
    # requests would re-escape a bad escape: send these bytes as they are.
    for bad in ("ac%zzme", "ac%00me", "ac%4"):
        conn = http.client.HTTPConnection("127.0.0.1", d.ports["admin"], timeout=T)
        conn.request("GET", "/v1/accounts/%s/usage" % bad)
        resp = conn.getresponse()
        assert resp.status == 400, bad
        assert json.loads(resp.read())["error"] == "bad_account"
        conn.close()
    assert peek(d, "x" * 300).status_code == 400
    assert requests.get(d.url("admin", "/v1/accounts//usage"), timeout=T).status_code == 404
    r = requests.post(d.url("admin", "/v1/accounts/acme/usage"), timeout=T)
    assert r.status_code == 405 and "GET" in r.headers["Allow"]
    r = requests.head(d.url("admin", "/v1/accounts/acme/usage"), timeout=T)
    assert r.status_code == 200 and r.content == b""
    # The account name is compared exactly.
    assert peek(d, "ACME").status_code == 404


def test_peek_needs_the_admin_token_when_one_is_set(sluice):
    cfg = config().replace('lease_ttl: 30s }}', 'lease_ttl: 30s, token: "tok-123" }}')
    d = sluice(cfg)
    assert peek(d, "acme").status_code == 401
    assert peek(d, "acme", headers={"Authorization": "Bearer nope"}).status_code == 401
    r = peek(d, "acme", headers={"Authorization": "Bearer tok-123"})
    assert r.status_code == 200 and r.json()["account"] == "acme"


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server not installed")
def test_peek_on_redis_consumes_nothing(sluice, redis_servers):  # noqa: F811
    rs = redis_servers()
    store = ('store: {{ type: redis, url: "redis://127.0.0.1:%d", on_error: deny, '
             'timeout: 500ms, pool: 2 }}' % rs.port)
    d = sluice(config(store=store))
    for _ in range(4):
        r = requests.get(d.url("gateway", "/x"), headers={"X-Api-Key": "sk_acme_1"}, timeout=T)
        assert r.status_code == 200
    lease = decide(d, {"account": "acme"}).json()["lease"]
    assert lease
    # a gateway request's slot is given back after its response is written
    # (on Redis, a call later): wait for the four, then only the lease holds one
    deadline = time.monotonic() + 5
    while (by_name(peek(d, "acme").json())["inflight"]["remaining"] != 4
           and time.monotonic() < deadline):
        time.sleep(0.02)
    first = by_name(peek(d, "acme").json())
    assert first["hourly"]["remaining"] == 995
    assert first["smooth"]["remaining"] == 295
    assert first["inflight"]["remaining"] == 4
    client = rs.client()
    snap = {k: client.get(k) for k in client.keys("*")}
    for _ in range(100):
        assert peek(d, "acme").status_code == 200
    after = by_name(peek(d, "acme").json())
    assert after["hourly"]["remaining"] == 995
    assert after["smooth"]["remaining"] == 295
    assert after["inflight"]["remaining"] == 4
    assert after["minute"]["remaining"] >= first["minute"]["remaining"]
    # Nothing in Redis was written by the peeks (the GCRA TAT is a timestamp:
    # a write would move it).
    assert {k: client.get(k) for k in client.keys("*")} == snap


# ---- responses.usage_path on the gateway ----

def raw(port, data, timeout=T):
    """Send bytes, read until the server closes or timeout; returns bytes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def responses_of(data):
    """Split raw HTTP/1.x responses with Content-Length bodies."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            hdrs[k.strip().lower().decode()] = v.strip().decode()
        n = int(hdrs.get("content-length", "0"))
        out.append((lines[0].decode(), status, hdrs, rest[:n]))
        data = rest[n:]
    return out


def test_usage_path_answers_for_the_key_with_headers_and_consumes_nothing(sluice):
    d = sluice(config())
    h = {"X-Api-Key": "sk_acme_1"}
    for _ in range(2):
        assert requests.get(d.url("gateway", "/x"), headers=h, timeout=T).status_code == 200
    first = None
    for _ in range(100):
        r = requests.get(d.url("gateway", "/rate_limit"), headers=h, timeout=T)
        assert r.status_code == 200
        first = first or r.json()
    j = r.json()
    assert j["account"] == "acme" and j["plan"] == "pro"
    lim = by_name(j)
    # The caller as identified: its ip and its key's limits too.
    assert set(lim) == {"per_ip", "per_key", "minute", "hourly", "smooth", "inflight",
                        "everyone"}
    assert lim["hourly"]["remaining"] == 998 and by_name(first)["hourly"]["remaining"] == 998
    assert lim["smooth"]["remaining"] == 298
    assert lim["inflight"]["remaining"] == 5
    assert lim["per_key"]["limit"] == 500
    # The usual rate-limit headers, for the most restrictive limit.
    assert r.headers["Content-Type"] == "application/json"
    assert "X-RateLimit-Limit" in r.headers and "X-RateLimit-Remaining" in r.headers
    # The admin peek agrees: the 101 self-serve calls took nothing.
    assert by_name(peek(d, "acme").json())["hourly"]["remaining"] == 998


def test_usage_path_without_a_key_shows_the_ip_limits(sluice):
    d = sluice(config())
    r = requests.get(d.url("gateway", "/rate_limit"), timeout=T)
    assert r.status_code == 200
    j = r.json()
    assert j["account"] is None and j["plan"] is None
    assert set(by_name(j)) == {"per_ip", "everyone"}
    assert by_name(j)["per_ip"]["limit"] == 1000


def test_usage_path_with_an_unknown_key_is_401(sluice):
    d = sluice(config())
    r = requests.get(d.url("gateway", "/rate_limit"), headers={"X-Api-Key": "sk_nope"},
                     timeout=T)
    assert r.status_code == 401
    assert "error" in r.json()


def test_usage_path_on_the_check_listener(sluice):
    d = sluice(config())
    r = requests.get(d.url("check", "/auth"), timeout=T,
                     headers={"X-Api-Key": "sk_acme_1", "X-Original-URI": "/rate_limit",
                              "X-Original-Method": "GET"})
    assert r.status_code == 200
    assert r.json()["account"] == "acme"
    # A check request for another path is decided as usual (no body).
    r = requests.get(d.url("check", "/auth"), timeout=T,
                     headers={"X-Api-Key": "sk_acme_1", "X-Original-URI": "/x"})
    assert r.status_code == 200 and r.content == b""
    assert by_name(peek(d, "acme").json())["hourly"]["remaining"] == 999


def test_usage_path_http10_close_and_pipelined(sluice):
    d = sluice(config())
    port = d.ports["gateway"]
    # HTTP/1.0: answered, then closed.
    out = responses_of(raw(port, b"GET /rate_limit HTTP/1.0\r\nX-Api-Key: sk_acme_1\r\n\r\n"))
    assert len(out) == 1 and out[0][1] == 200
    assert out[0][0].startswith("HTTP/1.")
    assert json.loads(out[0][3])["account"] == "acme"
    # Connection: close
    out = responses_of(raw(port, b"GET /rate_limit HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                 b"X-Api-Key: sk_acme_1\r\n\r\n"))
    assert len(out) == 1 and out[0][1] == 200
    assert out[0][2].get("connection") == "close"
    # Pipelined: peek, a real request, peek, with a query string, then close.
    req = (b"GET /rate_limit HTTP/1.1\r\nHost: x\r\nX-Api-Key: sk_acme_1\r\n\r\n"
           b"GET /x HTTP/1.1\r\nHost: x\r\nX-Api-Key: sk_acme_1\r\n\r\n"
           b"GET /rate_limit?verbose=1 HTTP/1.1\r\nHost: x\r\nX-Api-Key: sk_acme_1\r\n"
           b"Connection: close\r\n\r\n")
    out = responses_of(raw(port, req))
    assert [o[1] for o in out] == [200, 200, 200]
    a, b = json.loads(out[0][3]), json.loads(out[2][3])
    assert b"ok" in out[1][3]
    assert by_name(a)["hourly"]["remaining"] == 1000
    assert by_name(b)["hourly"]["remaining"] == 999  # only the /x request counted
    # HEAD: the headers without the body.
    r = requests.head(d.url("gateway", "/rate_limit"), headers={"X-Api-Key": "sk_acme_1"},
                      timeout=T)
    assert r.status_code == 200 and r.content == b"" and int(r.headers["Content-Length"]) > 0


def test_usage_path_is_off_when_not_set(sluice):
    d = sluice(config(usage_path=False))
    h = {"X-Api-Key": "sk_acme_1"}
    r = requests.get(d.url("gateway", "/rate_limit"), headers=h, timeout=T)
    assert r.status_code == 200 and r.json() == {"ok": True}  # the upstream answered
    assert by_name(peek(d, "acme").json())["hourly"]["remaining"] == 999


def test_usage_path_must_be_a_path(sluice, tmp_path):
    import subprocess
    from conftest import SLUICE
    for bad in ("rate_limit", "/rate?x", "/a b"):
        cfg = tmp_path / "s.yaml"
        cfg.write_text(config().replace("usage_path: /rate_limit", 'usage_path: "%s"' % bad)
                       .format(gateway=1, check=2, admin=3))
        p = subprocess.run([SLUICE, "validate", "-c", str(cfg)], capture_output=True,
                           timeout=10)
        assert p.returncode == 1
        assert b"usage_path must be a path" in p.stderr + p.stdout


# ---- an honest /v1/decide ----

def test_decide_cost_0_is_a_peek_without_a_lease(sluice):
    d = sluice(config())
    j = decide(d, {"account": "w eird/na%me", "cost": 1}).json()
    assert j["allowed"] is True and j["lease"]
    for _ in range(100):
        p = decide(d, {"account": "w eird/na%me", "cost": 0, "ip": "203.0.113.9",
                       "path": "/search"}).json()
        assert p["allowed"] is True and p["lease"] is None
    lim = by_name(p)
    # The whole request is evaluated (ip and route limits too) at cost 0.
    assert {"per_ip", "search_rate", "hourly", "inflight"} <= set(lim)
    assert lim["hourly"]["remaining"] == 99
    assert lim["inflight"]["remaining"] == 1  # the one lease, no more
    assert lim["search_rate"]["remaining"] == 5
    assert lim["per_ip"]["remaining"] == 1000
    # A real decision still has both slots' worth: 1 left, then denied.
    assert decide(d, {"account": "w eird/na%me"}).json()["allowed"] is True
    j = decide(d, {"account": "w eird/na%me"}).json()
    assert j["allowed"] is False and j["denied_by"] == "inflight"
    # A peek of a full limit answers its numbers, takes nothing, fails nothing.
    p = decide(d, {"account": "w eird/na%me", "cost": 0}).json()
    assert by_name(p)["inflight"]["remaining"] == 0 and p["lease"] is None


def test_decide_cost_0_on_a_queued_rate_is_not_delayed(sluice):
    cfg = """listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: static }}
admin: {{ listen: "127.0.0.1:{admin}" }}
identify: {{ key: {{ required: false }} }}
limits:
  - {{ name: q, key: account, rate: 2/min, burst: 2, queue: 5 }}
"""
    d = sluice(cfg)
    delays = [decide(d, {"account": "t"}).json()["delay_ms"] for _ in range(4)]
    assert delays[:2] == [0, 0] and delays[2] > 0 and delays[3] > delays[2]
    for _ in range(20):
        p = decide(d, {"account": "t", "cost": 0}).json()
        assert p["delay_ms"] == 0 and p["status"] == 200 and p["lease"] is None
        assert by_name(p)["q"]["remaining"] == 0
    # the peeks queued nothing: the next one waits just one interval more
    nxt = decide(d, {"account": "t"}).json()["delay_ms"]
    assert delays[3] < nxt <= delays[3] + 30000 + 1000


def test_decide_unknown_field_is_400_naming_it(sluice):
    d = sluice(config())
    r = decide(d, {"acount": "acme"})
    assert r.status_code == 400
    j = r.json()
    assert j["error"] == "unknown_field" and '"acount"' in j["message"]
    r = decide(d, {"account": "acme", "Cost": 1})
    assert r.status_code == 400 and '"Cost"' in r.json()["message"]
    # nothing was consumed by the refused calls
    assert by_name(peek(d, "acme").json())["hourly"]["remaining"] == 1000


def test_decide_unknown_account_or_plan_is_refused(sluice):
    d = sluice(config())
    r = decide(d, {"account": "nobody"})
    assert r.status_code == 404 and r.json()["error"] == "unknown_account"
    r = decide(d, {"account": "acme", "plan": "platinum"})
    assert r.status_code == 400 and r.json()["error"] == "unknown_plan"
    # A known key decides for its account whatever account is named.
    r = decide(d, {"key": "sk_acme_1", "account": "nobody"})
    assert r.status_code == 200 and r.json()["allowed"] is True


def test_decide_without_configured_accounts_keeps_free_form_accounts(sluice):
    cfg = """listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: static }}
admin: {{ listen: "127.0.0.1:{admin}" }}
identify: {{ key: {{ required: false }} }}
limits:
  - {{ name: tenant, key: account, quota: 3/hour }}
"""
    d = sluice(cfg)
    for want in (2, 1, 0):
        j = decide(d, {"account": "tenant-7"}).json()
        assert j["allowed"] is True and by_name(j)["tenant"]["remaining"] == want
    assert decide(d, {"account": "tenant-7"}).json()["allowed"] is False
    j = decide(d, {"account": "tenant-7", "cost": 0}).json()
    assert j["allowed"] is True and by_name(j)["tenant"]["remaining"] == 0


def test_peeks_when_the_store_is_down_are_503_not_made_up_numbers(sluice):
    from test_redis import free_redis_port
    store = ('store: {{ type: redis, url: "redis://127.0.0.1:%d", on_error: allow, '
             'timeout: 200ms }}' % free_redis_port())  # nothing listens there
    d = sluice(config(store=store))
    r = peek(d, "acme")
    assert r.status_code == 503 and r.json()["error"] == "store_unavailable"
    r = requests.get(d.url("gateway", "/rate_limit"), headers={"X-Api-Key": "sk_acme_1"},
                     timeout=T)
    assert r.status_code == 503
    assert "X-RateLimit-Remaining" not in r.headers
    # on_error: allow still lets real traffic through
    r = requests.get(d.url("gateway", "/x"), headers={"X-Api-Key": "sk_acme_1"}, timeout=T)
    assert r.status_code == 200
    # an unknown account is still 404 (found before the store is asked)
    assert peek(d, "nobody").status_code == 404


def test_peek_follows_a_reload_and_a_bad_reload_keeps_the_old_answer(sluice):
    import signal as sig
    d = sluice(config())
    assert peek(d, "acme").json()["plan"] == "pro"
    d.write_config(config().replace("      plan: pro\n      keys: [\"sk_acme_1\"]",
                                    "      plan: free\n      keys: [\"sk_acme_1\"]"))
    d.signal(sig.SIGHUP)
    deadline = time.monotonic() + 5
    while peek(d, "acme").json()["plan"] != "free" and time.monotonic() < deadline:
        time.sleep(0.05)
    j = peek(d, "acme").json()
    assert j["plan"] == "free" and by_name(j)["hourly"]["limit"] == 100
    d.write_config("limits: [broken\n")
    d.signal(sig.SIGHUP)
    time.sleep(0.3)
    j = peek(d, "acme").json()
    assert j["plan"] == "free" and by_name(j)["inflight"]["limit"] == 2


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server not installed")
def test_peek_whose_client_vanishes_while_redis_is_slow(sluice, redis_servers):  # noqa: F811
    rs = redis_servers()
    store = ('store: {{ type: redis, url: "redis://127.0.0.1:%d", on_error: deny, '
             'timeout: 2s, pool: 1 }}' % rs.port)
    d = sluice(config(store=store, workers=1))
    assert peek(d, "acme").status_code == 200
    rs.client().execute_command("CLIENT", "PAUSE", "400", "ALL")
    for port, req in ((d.ports["admin"], b"GET /v1/accounts/acme/usage HTTP/1.1\r\nHost: x\r\n\r\n"),
                      (d.ports["gateway"], b"GET /rate_limit HTTP/1.1\r\nHost: x\r\n"
                                           b"X-Api-Key: sk_acme_1\r\n\r\n")):
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", port), timeout=T)
            s.sendall(req)
            s.close()  # gone before the store answers
    time.sleep(0.6)
    assert d.proc.poll() is None
    j = peek(d, "acme").json()
    assert by_name(j)["hourly"]["remaining"] == 1000
    r = requests.get(d.url("gateway", "/rate_limit"), headers={"X-Api-Key": "sk_acme_1"},
                     timeout=T)
    assert r.status_code == 200 and by_name(r.json())["hourly"]["remaining"] == 1000


LIVE_ONLY = """
listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: static }}
admin: {{ listen: "127.0.0.1:{admin}" }}
plans: {{ pro: {{ title: Pro }} }}
accounts: {{ store: sqlite }}
responses:
  usage_path: /rate_limit
limits:
  - {{ name: ip, key: ip, rate: 100000/min }}
  - {{ name: hourly, key: account, quota: {{ pro: 1000/hour }} }}
"""


def test_usage_path_with_only_live_keys_refuses_unknown_revoked_and_suspended(sluice):
    """Keys only in the live store (no static key in the config): an unknown
    or revoked key on the usage path is 401 and a suspended account 403, as
    on any other path (they used to get 200 and the ip limit's numbers);
    an operator's peek by account name still answers."""
    from test_accounts import admin, create, issue
    d = sluice(LIVE_ONLY)
    create(d, "acme", plan="pro")
    k = issue(d, "acme")

    def usage(key):
        return requests.get(d.url("gateway", "/rate_limit"), headers={"X-Api-Key": key},
                            timeout=T)
    r = usage(k["key"])
    assert r.status_code == 200 and r.json()["account"] == "acme"
    r = usage("sk_live_nosuchkey")
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert admin(d, "PATCH", "/v1/accounts/acme", {"status": "suspended"}).status_code == 200
    r = usage(k["key"])
    assert r.status_code == 403 and r.json()["error"] == "account_suspended"
    assert requests.get(d.url("gateway", "/x"), headers={"X-Api-Key": k["key"]},
                        timeout=T).status_code == 403
    assert admin(d, "GET", "/v1/accounts/acme/usage").status_code == 200
    assert admin(d, "PATCH", "/v1/accounts/acme", {"status": "active"}).status_code == 200
    assert admin(d, "DELETE", "/v1/keys/%s" % k["id"]).status_code == 204
    r = usage(k["key"])
    assert r.status_code == 401
    assert by_name(peek(d, "acme").json())["hourly"]["remaining"] == 1000
