"""The real Debian nginx in front of sluice's proxy listener, configured by
examples/nginx-proxy.conf exactly as shipped (only its three loopback ports
are rewritten) and run with the flags its run command gives; sluice runs
examples/three-layer-ip-key-tier.yaml with its upstream pointed at a small
Python API.

What is asserted: every answer sluice makes reaches the client as sluice
wrote it, with nothing retyped in nginx.conf: 200 from the API with the
rate-limit headers; 429 with sluice's own Retry-After, X-RateLimit-* and
JSON body (byte for byte what `/v1/decide` renders); 401 with sluice's body;
per-IP limits count the client behind nginx; no line in nginx's error log
for any of it; sluice down is a JSON 503 without reaching the API."""
import os
import shutil
import tempfile
import threading
import time

import pytest
import requests

from test_nginx import NGINX, Api, Server, free_port, start_nginx

HERE = os.path.dirname(os.path.abspath(__file__))
CONF = os.path.join(HERE, "..", "..", "examples", "nginx-proxy.conf")
T = 5

pytestmark = pytest.mark.skipif(not os.access(NGINX, os.X_OK), reason="nginx not installed")


@pytest.fixture
def stack(sluice, example):
    cleanups = []
    api_port, nginx_port = free_port(), free_port()
    api_cls = type("A", (Api,), {"hits": 0})
    api = Server(("127.0.0.1", api_port), api_cls)
    api.daemon_threads = True
    threading.Thread(target=api.serve_forever, daemon=True).start()
    cleanups.append(lambda: (api.shutdown(), api.server_close()))
    d = sluice(example("three-layer-ip-key-tier.yaml", upstream=True),
               ports={"upstream": api_port})

    tmp = tempfile.mkdtemp(prefix="sluice-nginx-")
    cleanups.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
    with open(CONF) as f:
        conf = f.read()
    for old, new in (("127.0.0.1:8080", d.ports["gateway"]), ("127.0.0.1:8000", nginx_port)):
        assert old in conf
        conf = conf.replace(old, "127.0.0.1:%d" % new)
    # the run command of the example's header, with this test's directory
    err, stop = start_nginx(conf, tmp, nginx_port)
    cleanups.append(stop)

    class Stack:
        pass
    st = Stack()
    st.sluice, st.api, st.err = d, api_cls, err
    st.url = lambda path: "http://127.0.0.1:%d%s" % (nginx_port, path)
    st.error_lines = lambda: [l for l in open(err).read().splitlines()
                              if "[error]" in l or "[crit]" in l or "[alert]" in l]
    yield st
    for f in reversed(cleanups):
        f()


def get(st, ip, key=None, path="/api/v2/services", s=requests):
    h = {"X-Forwarded-For": ip}
    if key:
        h["X-Api-Key"] = key
    return s.get(st.url(path), headers=h, timeout=T)


def decide(st, ip, key):
    """What sluice itself renders for that caller now (consumes one unit)."""
    return requests.post(st.sluice.url("admin", "/v1/decide"),
                         json={"ip": ip, "key": key, "path": "/api/v2/services",
                               "method": "GET"}, timeout=T).json()


def test_allowed_request_reaches_the_api_with_sluices_headers(stack):
    r = get(stack, "203.0.113.1", "sk_live_acme_1")
    assert r.status_code == 200, r.text
    assert r.json() == {"api": True}
    assert r.headers["X-RateLimit-Limit"] == "100"
    assert r.headers["X-RateLimit-Remaining"] == "99"
    assert r.headers["X-RateLimit-Tier-Remaining"] == "2999"
    assert "Retry-After" not in r.headers and "X-RateLimit-DeniedBy" not in r.headers
    assert stack.api.hits == 1


def refused_pair(stack, s):
    """A 429 through nginx and sluice's own decision right after it, both
    refused. The key limit gives a unit back every 600 ms, and a pair that
    straddles one is taken again (a loaded machine is slow enough)."""
    for _ in range(5):
        r = get(stack, "203.0.113.2", "sk_live_acme_1", s=s)
        if r.status_code != 429:
            continue
        want = decide(stack, "203.0.113.2", "sk_live_acme_1")
        if want["status"] == 429:
            return r, want
    raise AssertionError("no 429 and refusing decision in a row")


def test_429_is_sluices_own_answer_and_nginx_logs_nothing(stack):
    s = requests.Session()
    for i in range(150):
        r = get(stack, "203.0.113.2", "sk_live_acme_1", s=s)
        if r.status_code != 200:
            break
    assert r.status_code == 429, (r.status_code, r.text)
    assert i >= 100
    assert stack.api.hits == i  # the refused requests never reached the API
    # byte for byte what sluice renders for this caller over the limit
    r, want = refused_pair(stack, s)
    assert r.text == want["body"].replace(
        '"retry_after":%d' % want["retry_after"], '"retry_after":%s' % r.headers["Retry-After"])
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["X-RateLimit-DeniedBy"] == "key"
    assert int(r.headers["Retry-After"]) >= 1
    assert r.headers["X-RateLimit-Remaining"] == "0"
    # more 429s: still nothing in nginx's error log (a unit that came back
    # meanwhile, one per 600 ms, is served)
    t0 = time.monotonic()
    codes = [get(stack, "203.0.113.2", "sk_live_acme_1", s=s).status_code for _ in range(5)]
    assert set(codes) <= {200, 429}
    assert codes.count(200) <= 1 + int((time.monotonic() - t0) / 0.6), codes
    assert stack.error_lines() == []
    # another key from the same address still passes
    assert get(stack, "203.0.113.2", "sk_live_acme_2", s=s).status_code == 200


def test_per_ip_layer_counts_the_client_behind_nginx(stack):
    s = requests.Session()
    keys = ["sk_live_acme_1", "sk_live_acme_2", "sk_live_smallshop", "sk_live_bigagency"]
    t0 = time.monotonic()
    for i in range(420):
        r = get(stack, "203.0.113.3", keys[i % 4], s=s)
        if r.status_code != 200:
            break
    assert r.status_code == 429 and r.headers["X-RateLimit-DeniedBy"] == "ip"
    # 300 at once, plus what came back while they were sent (one per 200 ms)
    assert 300 <= i <= 300 + int((time.monotonic() - t0) / 0.2) + 1, i
    # another client behind the same nginx is not affected
    assert get(stack, "203.0.113.33", "sk_live_acme_1", s=s).status_code == 200


def test_401_is_sluices_own_body(stack):
    for key in (None, "sk_nope"):
        r = get(stack, "203.0.113.4", key)
        assert r.status_code == 401
        want = decide(stack, "203.0.113.4", key)
        assert want["status"] == 401
        assert r.text == want["body"]
        assert r.headers["Content-Type"].startswith("application/json")
    assert stack.api.hits == 0
    assert stack.error_lines() == []


def test_sluice_down_fails_closed_with_json_503(stack):
    assert get(stack, "203.0.113.5", "sk_live_acme_1").status_code == 200
    stack.sluice.stop()
    r = get(stack, "203.0.113.5", "sk_live_acme_1")
    assert r.status_code == 503
    assert r.json() == {"error": "rate_limiter_unavailable"}
    assert stack.api.hits == 1
