"""/metrics as a Grafana user reads it: the text passes `promtool check
metrics` (Prometheus's own linter: names, units, suffixes, HELP/TYPE), and
every series of issue 9 moves as requests are sent: build info, requests by
listener and status class, upstream responses by class and the upstream
latency histogram, requests waiting in a queue delay, config reloads (ok
and failed) with the loaded config's hash and time, store failures by kind,
and the gauges other subsystems set (accounts/keys loaded). Real daemon,
real upstream, real SIGHUP; every call has a timeout."""
import http.server
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests

from test_redis import free_redis_port

T = 5  # seconds, per HTTP call
PROMTOOL = shutil.which("promtool")

CONFIG = """server: {{ workers: 2 }}
listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: "http://127.0.0.1:{upstream}" }}
  - {{ name: check, listen: "127.0.0.1:{check}", mode: check }}
admin: {{ listen: "127.0.0.1:{admin}" }}
identify:
  key: {{ from: ["header:X-Api-Key"], required: false }}
  accounts:
    - {{ account: acme, plan: pro, keys: ["sk_acme_1", "sk_acme_2"] }}
    - {{ account: bee, plan: pro, keys: ["sk_bee_1"] }}
plans:
  pro: {{ title: Pro }}
limits:
  - {{ name: per_key, key: key, quota: 5/hour }}
  - {{ name: queued, key: "header:X-Queue", rate: 1/min, burst: 1, queue: 3 }}
  - {{ name: short_queue, key: "header:X-Short", rate: 1/s, burst: 1, queue: 3 }}
"""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        code = int(self.path.rsplit("/", 1)[1]) if self.path.startswith("/status/") else 200
        if self.path.startswith("/slow"):
            time.sleep(0.05)
        body = b'{"up":true}'
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        if self.path.startswith("/slow"):
            # no pooled connection outlives the server in the failure test
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def upstream():
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    started = []

    def start(port):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.shutdown()
        srv.server_close()


def scrape(d):
    r = requests.get(d.url("admin", "/metrics"), timeout=T)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return r.text


def promtool_ok(text):
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=30)
    assert p.returncode == 0, (p.stdout + p.stderr).decode()
    # promtool prints lint findings (and still exits 0 for some): none.
    assert (p.stdout + p.stderr).strip() == b"", (p.stdout + p.stderr).decode()


def sample(text, name, **labels):
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            got = dict(re.findall(r'([a-zA-Z_]+)="([^"]*)"', line.split(" ")[0]))
            if all(got.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def types(text):
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def wait_for(fn, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    return fn()


needs_promtool = pytest.mark.skipif(PROMTOOL is None,
                                    reason="promtool (Debian prometheus) not installed")


@needs_promtool
def test_promtool_passes_on_a_fresh_and_a_busy_daemon(sluice, upstream):
    d = sluice(CONFIG)
    upstream(d.ports["upstream"])
    promtool_ok(scrape(d))
    s = requests.Session()
    for i in range(30):
        s.get(d.url("gateway", "/status/%d" % (200, 404, 503)[i % 3]),
              headers={"X-Api-Key": "sk_acme_%d" % (1 + i % 2)}, timeout=T)
    requests.get(d.url("check", "/x"), headers={"X-Api-Key": "nope"}, timeout=T)
    requests.post(d.url("admin", "/v1/decide"), json={"account": "bee"}, timeout=T)
    text = scrape(d)
    promtool_ok(text)
    ty = types(text)
    for name, kind in (("sluice_build_info", "gauge"),
                       ("sluice_requests_total", "counter"),
                       ("sluice_upstream_responses_total", "counter"),
                       ("sluice_upstream_seconds", "histogram"),
                       ("sluice_requests_delayed", "gauge"),
                       ("sluice_config_reloads_total", "counter"),
                       ("sluice_config_last_reload_successful", "gauge"),
                       ("sluice_config_loaded_timestamp_seconds", "gauge"),
                       ("sluice_config_info", "gauge"),
                       ("sluice_store_decision_errors_total", "counter"),
                       ("sluice_accounts_loaded", "gauge"),
                       ("sluice_keys_loaded", "gauge"),
                       ("sluice_connections_open", "gauge"),
                       ("sluice_connections_accepted_total", "counter")):
        assert ty.get(name) == kind, name


def test_build_info_and_config_series(sluice):
    d = sluice(CONFIG)
    t0 = time.time()
    text = scrape(d)
    assert re.search(r'^sluice_build_info\{version="\d+\.\d+\.\d+"\} 1$', text, re.M)
    assert sample(text, "sluice_accounts_loaded") == 2
    assert sample(text, "sluice_keys_loaded") == 3
    assert sample(text, "sluice_config_reloads_total", result="ok") == 0
    assert sample(text, "sluice_config_reloads_total", result="failed") == 0
    assert sample(text, "sluice_config_last_reload_successful") == 1
    loaded = sample(text, "sluice_config_loaded_timestamp_seconds")
    assert t0 - 30 < loaded <= t0 + 1
    h1 = re.search(r'^sluice_config_info\{hash="([0-9a-f]{16})"\} 1$', text, re.M).group(1)
    # A usage flush lag never set is not rendered (no misleading 0).
    assert "sluice_usage_flush_lag_seconds" not in text

    # A good reload: counted, new hash, new time, one account more.
    cfg = CONFIG.replace('    - {{ account: bee, plan: pro, keys: ["sk_bee_1"] }}\n',
                         '    - {{ account: bee, plan: pro, keys: ["sk_bee_1"] }}\n'
                         '    - {{ account: cat, plan: pro, keys: ["sk_cat_1"] }}\n')
    d.write_config(cfg)
    time.sleep(0.01)
    d.signal(signal.SIGHUP)
    text = wait_for(lambda: (lambda t: t if sample(t, "sluice_config_reloads_total",
                                                   result="ok") == 1 else None)(scrape(d)))
    assert text, "the reload was not counted"
    h2 = re.search(r'sluice_config_info\{hash="([0-9a-f]{16})"\}', text).group(1)
    assert h2 != h1
    assert sample(text, "sluice_config_loaded_timestamp_seconds") >= loaded
    assert sample(text, "sluice_accounts_loaded") == 3
    assert sample(text, "sluice_config_last_reload_successful") == 1

    # A bad reload: counted as failed; the config in force keeps its hash.
    d.write_config(cfg + "limits: [oops\n")
    d.signal(signal.SIGHUP)
    text = wait_for(lambda: (lambda t: t if sample(t, "sluice_config_reloads_total",
                                                   result="failed") == 1 else None)(scrape(d)))
    assert text, "the failed reload was not counted"
    assert sample(text, "sluice_config_last_reload_successful") == 0
    assert re.search(r'sluice_config_info\{hash="([0-9a-f]{16})"\}', text).group(1) == h2
    assert sample(text, "sluice_config_reloads_total", result="ok") == 1


def test_requests_by_listener_and_status_class_move(sluice, upstream):
    d = sluice(CONFIG)
    upstream(d.ports["upstream"])
    s = requests.Session()
    for _ in range(4):
        assert s.get(d.url("gateway", "/ok"), headers={"X-Api-Key": "sk_acme_1"},
                     timeout=T).status_code == 200
    assert s.get(d.url("gateway", "/status/404"), headers={"X-Api-Key": "sk_acme_1"},
                 timeout=T).status_code == 404
    # the quota of 5 is used up: 429s, answered by sluice
    for _ in range(3):
        assert s.get(d.url("gateway", "/ok"), headers={"X-Api-Key": "sk_acme_1"},
                     timeout=T).status_code == 429
    assert s.get(d.url("gateway", "/ok"), headers={"X-Api-Key": "bad"},
                 timeout=T).status_code == 401
    # HTTP/1.0 and Connection: close requests are counted too
    with socket.create_connection(("127.0.0.1", d.ports["gateway"]), timeout=T) as c:
        c.sendall(b"GET /ok HTTP/1.0\r\nX-Api-Key: sk_bee_1\r\n\r\n")
        while c.recv(65536):
            pass
    requests.get(d.url("gateway", "/ok"), headers={"X-Api-Key": "sk_bee_1",
                                                   "Connection": "close"}, timeout=T)
    requests.get(d.url("check", "/x"), headers={"X-Api-Key": "sk_bee_1"}, timeout=T)
    text = scrape(d)
    assert sample(text, "sluice_requests_total", listener="gateway", code="2xx") == 6
    assert sample(text, "sluice_requests_total", listener="gateway", code="4xx") == 5
    assert sample(text, "sluice_requests_total", listener="gateway", code="5xx") == 0
    assert sample(text, "sluice_requests_total", listener="check", code="2xx") == 1
    text = scrape(d)  # the scrape before this one is an admin request
    assert sample(text, "sluice_requests_total", listener="admin", code="2xx") >= 1
    # upstream: what the upstream said (429/401 never reached it)
    assert sample(text, "sluice_upstream_responses_total", listener="gateway",
                  code="2xx") == 6
    assert sample(text, "sluice_upstream_responses_total", listener="gateway",
                  code="4xx") == 1
    assert sample(text, "sluice_upstream_responses_total", listener="gateway",
                  code="none") == 0
    assert sample(text, "sluice_upstream_seconds_count", listener="gateway") == 7
    assert sample(text, "sluice_upstream_seconds_bucket", listener="gateway", le="+Inf") == 7
    assert sample(text, "sluice_upstream_seconds_sum", listener="gateway") > 0
    # no upstream series for a listener without one
    assert sample(text, "sluice_upstream_seconds_count", listener="check") is None


def test_upstream_latency_lands_in_its_bucket_and_failures_count_as_none(sluice, upstream):
    d = sluice(CONFIG)
    srv = upstream(d.ports["upstream"])
    for _ in range(3):
        assert requests.get(d.url("gateway", "/slow"), headers={"X-Api-Key": "sk_bee_1"},
                            timeout=T).status_code == 200
    text = scrape(d)
    # 50 ms each: none under 25 ms, all under 2.5 s
    assert sample(text, "sluice_upstream_seconds_bucket", listener="gateway", le="0.025") == 0
    assert sample(text, "sluice_upstream_seconds_bucket", listener="gateway", le="2.5") == 3
    assert sample(text, "sluice_upstream_seconds_sum", listener="gateway") >= 0.15
    srv.shutdown()
    srv.server_close()
    r = requests.get(d.url("gateway", "/ok"), headers={"X-Api-Key": "sk_bee_1"}, timeout=T)
    assert r.status_code == 502
    text = scrape(d)
    assert sample(text, "sluice_upstream_responses_total", listener="gateway",
                  code="none") == 1
    assert sample(text, "sluice_requests_total", listener="gateway", code="5xx") == 1
    assert sample(text, "sluice_upstream_seconds_count", listener="gateway") == 3


def test_delayed_requests_in_flight_gauge(sluice, upstream):
    d = sluice(CONFIG)
    upstream(d.ports["upstream"])
    assert sample(scrape(d), "sluice_requests_delayed") == 0
    # short_queue: 1/s, burst 1: the 2nd and 3rd wait 1 s and 2 s
    hs = {"X-Short": "s1", "X-Api-Key": "sk_bee_1"}
    assert requests.get(d.url("gateway", "/ok"), headers=hs, timeout=T).status_code == 200
    socks = []
    for _ in range(2):
        c = socket.create_connection(("127.0.0.1", d.ports["gateway"]), timeout=T)
        c.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Short: s1\r\nX-Api-Key: sk_bee_1\r\n"
                  b"Connection: close\r\n\r\n")
        socks.append(c)
    # each connection may land on either worker and is read on its next loop
    # pass: poll, well inside the first one's 1 s delay
    assert wait_for(lambda: sample(scrape(d), "sluice_requests_delayed") == 2,
                    timeout=0.8), sample(scrape(d), "sluice_requests_delayed")
    for c in socks:  # both are answered once their delay ends
        data = b""
        while True:
            b = c.recv(65536)
            if not b:
                break
            data += b
        assert data.startswith(b"HTTP/1.1 200"), data[:40]
        c.close()
    assert wait_for(lambda: sample(scrape(d), "sluice_requests_delayed") == 0)
    assert sample(scrape(d), "sluice_decisions_total", listener="gateway",
                  limit="short_queue", outcome="delayed") == 2

    # queue: 1/min: a 60 s wait, whose client goes away; the count stays
    # until sluice notices the close and never goes below zero
    hq = {"X-Queue": "q1", "X-Api-Key": "sk_bee_1"}
    assert requests.get(d.url("gateway", "/ok"), headers=hq, timeout=T).status_code == 200
    c = socket.create_connection(("127.0.0.1", d.ports["gateway"]), timeout=T)
    c.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Queue: q1\r\nX-Api-Key: sk_bee_1\r\n\r\n")
    assert wait_for(lambda: sample(scrape(d), "sluice_requests_delayed") == 1)
    c.close()
    v = sample(scrape(d), "sluice_requests_delayed")
    assert v in (0, 1)


def test_store_failures_are_counted_by_kind(sluice):
    port = free_redis_port()  # nothing listens there
    cfg = CONFIG.replace(
        'admin: {{ listen: "127.0.0.1:{admin}" }}\n',
        'admin: {{ listen: "127.0.0.1:{admin}" }}\n'
        'store: {{ type: redis, url: "redis://127.0.0.1:%d", on_error: allow, '
        'timeout: 200ms }}\n' % port).replace(
        'upstream: "http://127.0.0.1:{upstream}"', "upstream: static")
    d = sluice(cfg)
    for _ in range(3):
        assert requests.get(d.url("gateway", "/ok"), headers={"X-Api-Key": "sk_bee_1"},
                            timeout=T).status_code == 200  # on_error: allow
    text = scrape(d)
    kinds = {k: sample(text, "sluice_store_decision_errors_total", kind=k)
             for k in ("io", "timeout", "protocol")}
    assert sum(v for v in kinds.values() if v) == 3, kinds
    assert sample(text, "sluice_decisions_total", listener="gateway", outcome="error") == 3


def test_metrics_stay_bounded_with_many_listener_names_and_a_scrape_under_load(sluice):
    d = sluice(CONFIG.replace('upstream: "http://127.0.0.1:{upstream}"', "upstream: static"))
    stop = threading.Event()

    def load():
        s = requests.Session()
        while not stop.is_set():
            s.get(d.url("gateway", "/ok"), headers={"X-Api-Key": "sk_bee_1"}, timeout=T)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        last = 0
        for _ in range(10):
            text = scrape(d)
            n = sum(sample(text, "sluice_requests_total", listener="gateway", code=c) or 0
                    for c in ("2xx", "4xx"))
            assert n >= last  # counters never go back
            last = n
            time.sleep(0.02)
    finally:
        stop.set()
        t.join(10)
    assert last > 0
