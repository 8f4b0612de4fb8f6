"""The check listener (forward-auth) of DESIGN.md section 5: it decides for
the original request named by X-Original-Method/X-Original-URI (nginx
auth_request) or X-Forwarded-Method/X-Forwarded-Uri (Traefik, Caddy), else
for the request itself (Envoy ext_authz); 200 with the rate-limit headers,
or the rejection with its status, headers and body; a queued decision
answers after its delay without blocking other requests."""
import threading
import time

import requests

T = 5

CONFIG = """
server: {{ workers: 2 }}
listeners:
  - {{ name: auth, listen: "127.0.0.1:{check}", mode: check }}
admin: {{ listen: "127.0.0.1:{admin}" }}
routes:
  - name: login
    match: {{ method: POST, path: /login }}
    limits: [ {{ name: login, key: ip, rate: 2/min }} ]
  - name: search
    match: {{ path: "/search/*" }}
    limits: [ {{ name: search, key: ip, rate: 60/min, burst: 1, queue: 2 }} ]
limits:
  - {{ name: ip, key: ip, rate: 1000/min }}
"""


def check(d, headers=None, path="/auth", method="GET"):
    return requests.request(method, d.url("check", path), headers=headers or {}, timeout=T)


def test_nginx_auth_request_headers_decide_for_original_uri(sluice):
    d = sluice(CONFIG)
    h = {"X-Original-Method": "POST", "X-Original-URI": "/login?next=/home"}
    a, b = check(d, h), check(d, h)
    assert a.status_code == b.status_code == 200
    assert a.headers["X-RateLimit-Limit"] == "2"
    assert a.headers["X-RateLimit-Remaining"] == "1"
    assert b.headers["X-RateLimit-Remaining"] == "0"
    c = check(d, h)
    assert c.status_code == 429
    assert int(c.headers["Retry-After"]) >= 1
    assert c.headers.get("X-RateLimit-DeniedBy", "login") == "login"
    assert c.content  # the rendered rejection body
    # GET /login is not the login route: only the ip limit applies
    g = check(d, {"X-Original-Method": "GET", "X-Original-URI": "/login"})
    assert g.status_code == 200 and g.headers["X-RateLimit-Limit"] == "1000"


def test_traefik_forwarded_headers(sluice):
    d = sluice(CONFIG)
    h = {"X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/login"}
    assert [check(d, h).status_code for _ in range(3)] == [200, 200, 429]


def test_envoy_style_decides_for_the_request_itself(sluice):
    d = sluice(CONFIG)
    codes = [check(d, path="/login", method="POST").status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_queued_decision_answers_after_the_delay(sluice):
    d = sluice(CONFIG)
    h = {"X-Original-Method": "GET", "X-Original-URI": "/search/x"}
    results = []

    def one():
        t0 = time.monotonic()
        r = check(d, h)
        results.append((r.status_code, time.monotonic() - t0))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    # while those wait, other requests are answered at once
    t0 = time.monotonic()
    assert check(d, {"X-Original-URI": "/other"}).status_code == 200
    assert time.monotonic() - t0 < 0.9  # not held: the first queued one waits ~1 s
    for t in threads:
        t.join(T)
    codes = sorted(c for c, _ in results)
    assert codes == [200, 200, 200, 429]  # burst 1 + queue 2, then rejected
    waits = sorted(w for c, w in results if c == 200)
    assert waits[0] < 0.9 and waits[2] > 1.5  # the queued ones waited ~1 s and ~2 s


CONCURRENCY = """
listeners:
  - {{ name: auth, listen: "127.0.0.1:{check}", mode: check }}
admin: {{ listen: "127.0.0.1:{admin}" }}
limits:
  - {{ name: inflight, key: ip, concurrency: 1, lease: 2s }}
"""


def test_concurrency_retry_after_is_the_lease_lapse(sluice):
    """The check listener never sees the response, so nothing releases the
    slot: it frees when its lease lapses (2 s after the acquire), and the
    429 says so instead of the proxy's 1 s."""
    d = sluice(CONCURRENCY)
    h = {"X-Original-Method": "GET", "X-Original-URI": "/x"}
    t0 = time.monotonic()
    assert check(d, h).status_code == 200
    r = check(d, h)
    left = 2.0 - (time.monotonic() - t0)  # seconds of the lease still to run
    assert r.status_code == 429
    retry = int(r.headers["Retry-After"])
    assert left <= retry <= left + 1.0, (retry, left)  # whole seconds, rounded up
    time.sleep(retry)
    assert check(d, h).status_code == 200


def test_validate_warns_about_check_only_concurrency(tmp_path):
    """`sluice validate` says where a concurrency limit is reached only
    through check listeners, as file:line:col: warning:, and still exits 0."""
    import subprocess

    from conftest import SLUICE

    cfg = tmp_path / "sluice.yaml"
    cfg.write_text(CONCURRENCY.format(check=18081, admin=19901))  # line 1 is empty
    r = subprocess.run([SLUICE, "validate", "-c", str(cfg)], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "%s: ok" % cfg
    warn = "%s:6:5: warning: concurrency limit 'inflight' is reached only through check" % cfg
    assert r.stderr.startswith(warn), r.stderr
