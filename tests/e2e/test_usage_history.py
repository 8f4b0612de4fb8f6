"""The usage history of DESIGN.md section 7 over real HTTP: every decision
(gateway, check and /v1/decide, keep-alive, Connection: close, HTTP/1.0,
pipelined) counted per account and deciding limit; history sums equal the
requests sent in every bucket; top ordering; every bad parameter a 400
naming it; the token rule; restart keeps flushed history; kill -9 loses
at most one flush interval; a database that cannot open leaves the
gateway serving and the endpoints answering 503. Every call has a
timeout."""
import http.client
import json
import re
import signal
import socket
import time

import pytest
import requests

T = 5  # seconds per HTTP call

CONFIG = """
server:
  workers: 2
listeners:
  - name: gateway
    listen: "127.0.0.1:{gateway}"
    mode: proxy
    upstream: static
  - name: check
    listen: "127.0.0.1:{check}"
    mode: check
admin:
  listen: "127.0.0.1:{admin}"
identify:
  key:
    from: ["header:X-Api-Key"]
  accounts:
    - account: acme
      plan: pro
      keys: ["sk_acme"]
    - account: bolt
      plan: pro
      keys: ["sk_bolt"]
    - account: cove
      plan: pro
      keys: ["sk_cove"]
plans:
  pro:
    title: Pro
limits:
  - name: hourly
    key: account
    rate: 6/hour
usage:
  flush_interval: 1s
%s
"""


def start(sluice, extra=""):
    return sluice(CONFIG % extra)


def get(d, path, **kw):
    return requests.get(d.url("admin", path), timeout=T, **kw)


def history(d, account, **params):
    r = get(d, "/v1/accounts/%s/usage/history" % account, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def totals(h):
    s = {"allowed": 0, "delayed": 0, "rejected": 0, "cost": 0, "by": {}}
    for p in h["series"]:
        for k in ("allowed", "delayed", "rejected", "cost"):
            s[k] += p[k]
        for lim, n in p["rejected_by"].items():
            s["by"][lim] = s["by"].get(lim, 0) + n
    return s


def gateway(d, key, n):
    codes = []
    with requests.Session() as s:
        for _ in range(n):
            codes.append(s.get(d.url("gateway", "/x"), headers={"X-Api-Key": key}, timeout=T).status_code)
    return codes


def raw(d, listener, data, want_responses):
    """Send raw bytes, read until want_responses status lines came back."""
    with socket.create_connection(("127.0.0.1", d.ports[listener]), timeout=T) as s:
        s.sendall(data)
        buf = b""
        deadline = time.monotonic() + T
        while buf.count(b"HTTP/1.") < want_responses and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return [int(m) for m in re.findall(rb"HTTP/1\.[01] (\d{3}) ", buf)]


def test_history_sums_equal_the_requests_sent(sluice):
    d = start(sluice)
    codes = gateway(d, "sk_acme", 4)
    # Connection: close, HTTP/1.0 and three pipelined requests: 5 more
    codes += raw(d, "gateway", b"GET /a HTTP/1.1\r\nHost: x\r\nX-Api-Key: sk_acme\r\nConnection: close\r\n\r\n", 1)
    codes += raw(d, "gateway", b"GET /b HTTP/1.0\r\nX-Api-Key: sk_acme\r\n\r\n", 1)
    codes += raw(d, "gateway", b"GET /c HTTP/1.1\r\nHost: x\r\nX-Api-Key: sk_acme\r\n\r\n" * 3, 3)
    # the check listener and /v1/decide count too
    codes.append(requests.get(d.url("check", "/auth"), headers={"X-Api-Key": "sk_acme"}, timeout=T).status_code)
    r = requests.post(d.url("admin", "/v1/decide"), json={"account": "acme", "cost": 1}, timeout=T)
    codes.append(429 if not r.json()["allowed"] else 200)
    assert len(codes) == 11
    allowed, rejected = codes.count(200), codes.count(429)
    assert allowed == 6 and rejected == 5, codes
    # an unknown key (401) is not an account's decision
    assert gateway(d, "sk_nobody", 1) == [401]

    for bucket in ("minute", "hour", "day"):
        h = history(d, "acme", bucket=bucket)
        assert h["bucket"] == bucket
        s = totals(h)
        assert s["allowed"] == allowed and s["rejected"] == rejected, (bucket, s)
        assert s["delayed"] == 0
        assert s["cost"] == allowed
        assert s["by"] == {"hourly": rejected}
    h = history(d, "acme")
    assert h["bucket"] == "minute"
    assert 60 <= len(h["series"]) <= 61  # the last hour of minutes, dense
    starts = [p["start"] for p in h["series"]]
    assert starts == sorted(starts) and all(b - a == 60 for a, b in zip(starts, starts[1:]))
    assert len(history(d, "acme", bucket="hour")["series"]) in (24, 25)
    assert len(history(d, "acme", bucket="day")["series"]) in (30, 31)
    # another account's history is its own; an account never seen is zeros
    assert totals(history(d, "bolt"))["allowed"] == 0
    assert totals(history(d, "nobody-at-all"))["allowed"] == 0


def test_from_and_to_take_unix_seconds_and_rfc3339(sluice):
    d = start(sluice)
    gateway(d, "sk_acme", 2)
    now = int(time.time())
    hour = now - now % 3600
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(hour))
    h = history(d, "acme", bucket="hour", **{"from": iso, "to": str(now)})
    assert h["series"][0]["start"] == hour
    assert totals(h)["allowed"] == 2
    off = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(hour + 3600)) + ".250+01:00"
    h2 = history(d, "acme", bucket="hour", **{"from": off, "to": str(now)})
    assert h2["series"][0]["start"] == hour
    # a range that ends before the traffic holds none of it
    h3 = history(d, "acme", bucket="minute", **{"from": str(now - 7200), "to": str(now - 3700)})
    assert totals(h3)["allowed"] == 0


def test_top_orders_accounts(sluice):
    d = start(sluice)
    gateway(d, "sk_acme", 8)   # 6 allowed, 2 rejected
    gateway(d, "sk_bolt", 10)  # 6 allowed, 4 rejected
    gateway(d, "sk_cove", 3)   # 3 allowed
    r = get(d, "/v1/usage/top")
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["by"] == "rejected" and j["window"] == 3600
    names = [a["account"] for a in j["accounts"]]
    assert names == ["bolt", "acme", "cove"]
    assert j["accounts"][0]["rejected"] == 4 and j["accounts"][0]["rejected_by"] == {"hourly": 4}
    assert j["accounts"][2]["rejected_by"] == {}
    assert j["rejected_by"] == {"hourly": 6}
    j = get(d, "/v1/usage/top", params={"by": "allowed", "n": "1", "window": "30m"}).json()
    assert [a["account"] for a in j["accounts"]] == ["acme"]  # ties (6) by name
    assert j["window"] == 1800
    j = get(d, "/v1/usage/top", params={"by": "cost", "window": "7d"}).json()
    assert [a["cost"] for a in j["accounts"]] == [6, 6, 3]


BAD_HISTORY = [
    ({"bucket": "week"}, "bucket"),
    ({"bucket": ""}, "bucket"),
    ({"from": "yesterday"}, "from"),
    ({"from": "2026-13-01T00:00:00Z"}, "from"),
    ({"from": "2026-02-29T00:00:00Z"}, "from"),
    ({"from": "2026-12-01T00:00:00"}, "from"),
    ({"to": "12abc"}, "to"),
    ({"to": "9999999999999"}, "to"),
    ({"from": "200", "to": "100"}, "from"),
    ({"bucket": "minute", "from": "0"}, "from"),
    ({"limit": "5"}, "limit"),
]


@pytest.mark.parametrize("params,name", BAD_HISTORY)
def test_bad_history_parameters_are_400_naming_them(sluice, params, name):
    d = start(sluice)
    r = get(d, "/v1/accounts/acme/usage/history", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_parameter"
    assert "'%s'" % name in r.json()["message"]


BAD_TOP = [
    ("by=denied", "by"), ("window=0s", "window"), ("window=soon", "window"),
    ("window=20y", "window"), ("n=0", "n"), ("n=1001", "n"), ("n=ten", "n"), ("n=", "n"),
    ("n=1&n=2", "n"), ("top=3", "top"),
]


@pytest.mark.parametrize("query,name", BAD_TOP)
def test_bad_top_parameters_are_400_naming_them(sluice, query, name):
    d = start(sluice)
    r = requests.get(d.url("admin", "/v1/usage/top?" + query), timeout=T)
    assert r.status_code == 400, r.text
    assert "'%s'" % name in r.json()["message"]


def test_bad_paths_and_methods(sluice):
    d = start(sluice)
    long = "a" * 200
    for path in ("/v1/accounts/%s/usage/history" % long, "/v1/accounts/%zz/usage/history",
                 "/v1/accounts/a%00b/usage/history", "/v1/accounts/%4/usage/history"):
        c = http.client.HTTPConnection("127.0.0.1", d.ports["admin"], timeout=T)
        c.request("GET", path)  # as written: requests would re-escape it
        r = c.getresponse()
        body = json.loads(r.read())
        c.close()
        assert r.status == 400, (path, body)
        assert body["error"] == "bad_account"
    r = requests.post(d.url("admin", "/v1/accounts/acme/usage/history"), timeout=T)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
    r = requests.delete(d.url("admin", "/v1/usage/top"), timeout=T)
    assert r.status_code == 405
    # an escaped account name is decoded
    assert gateway(d, "sk_acme", 1) == [200]
    h = history(d, "%61c%6De")
    assert h["account"] == "acme" and totals(h)["allowed"] == 1


def test_token_guards_history_but_not_the_dashboard_page(sluice):
    d = start(sluice, "")
    d.stop()
    d = sluice((CONFIG % "").replace('listen: "127.0.0.1:{admin}"',
                                     'listen: "127.0.0.1:{admin}"\n  token: "s3cret"'))
    assert get(d, "/v1/accounts/acme/usage/history").status_code == 401
    assert get(d, "/v1/usage/top").status_code == 401
    ok = get(d, "/v1/usage/top", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    page = get(d, "/dashboard")
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert "s3cret" not in page.text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert get(d, "/dashboard/dashboard.js").headers["Content-Type"].startswith("text/javascript")
    assert get(d, "/dashboard/nope.js").status_code == 404
    assert requests.post(d.url("admin", "/dashboard"), timeout=T).status_code == 405


def total_allowed(d, account):
    return totals(history(d, account, bucket="day"))["allowed"]


def test_restart_keeps_flushed_history(sluice):
    d = start(sluice)
    assert gateway(d, "sk_acme", 5) == [200] * 5
    assert d.stop() == 0  # SIGTERM: drain, then the last flush
    d = start(sluice)
    assert total_allowed(d, "acme") == 5
    assert gateway(d, "sk_acme", 1) == [200]
    assert total_allowed(d, "acme") == 6


def flushes_ok(d):
    m = re.search(r'^sluice_usage_flushes_total\{result="ok"\} (\S+)$', get(d, "/metrics").text,
                  re.M)
    return float(m.group(1)) if m else 0.0


def test_kill_9_loses_at_most_one_flush_interval(sluice):
    d = start(sluice)
    assert gateway(d, "sk_acme", 4) == [200] * 4
    # two flushes after these (a scrape does not flush): the second began
    # after they were counted, so it wrote them
    before = flushes_ok(d)
    deadline = time.monotonic() + 10
    while flushes_ok(d) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert flushes_ok(d) >= before + 2
    gateway(d, "sk_bolt", 3)  # may or may not be flushed before the kill
    d.signal(signal.SIGKILL)
    d.proc.wait(T)
    d = start(sluice)
    assert total_allowed(d, "acme") == 4
    assert total_allowed(d, "bolt") in (0, 1, 2, 3)
    m = get(d, "/metrics").text
    assert "sluice_usage_flushes_total{result=\"ok\"}" in m


# Accounts not in the config: /v1/decide takes any account name then.
FREE_FORM = """
server:
  workers: 2
admin:
  listen: "127.0.0.1:{admin}"
limits:
  - name: hourly
    key: account
    rate: 6/hour
usage:
  flush_interval: 1s
  max_series: 64
"""


def test_metrics_report_the_usage_tables(sluice):
    d = sluice(FREE_FORM)
    for _ in range(2):
        requests.post(d.url("admin", "/v1/decide"), json={"account": "acme"}, timeout=T)
    # free-form names, escaped in the path, are decoded
    requests.post(d.url("admin", "/v1/decide"), json={"account": "a b/c"}, timeout=T)
    h = history(d, "a%20b%2Fc")
    assert h["account"] == "a b/c" and totals(h)["allowed"] == 1
    # 300 accounts pipelined on one connection (one worker), faster than
    # the flusher's 100 ms look at a half-full table: past the 56 it takes
    reqs = b""
    for i in range(300):
        body = b'{"account":"acc%d"}' % i
        reqs += b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    assert len(raw(d, "admin", reqs, 300)) == 300
    m = get(d, "/metrics").text
    vals = {}
    for line in m.splitlines():
        if line.startswith("sluice_usage_") and " " in line:
            k, v = line.rsplit(" ", 1)
            vals[k] = float(v)
    assert vals["sluice_usage_table_capacity"] == 64
    assert vals["sluice_usage_counted_total"] + vals["sluice_usage_dropped_total"] == 303
    assert vals["sluice_usage_dropped_total"] >= 1
    assert vals["sluice_usage_flush_lag_seconds"] < 5


def test_history_off_and_unopenable(sluice, tmp_path):
    d = start(sluice, "  enabled: false")
    assert gateway(d, "sk_acme", 1) == [200]
    r = get(d, "/v1/accounts/acme/usage/history")
    assert r.status_code == 503 and r.json()["error"] == "usage_off"
    d.stop()
    d = start(sluice, "  path: /proc/no/such/usage.db")
    assert gateway(d, "sk_acme", 1) == [200]
    assert get(d, "/v1/usage/top").status_code == 503
    assert "usage history off" in d.log()
