"""Caddy forward_auth in front of an API, sluice's check listener deciding
(DESIGN.md section 5): a real `caddy run` on examples/Caddyfile.forward-auth
(only its three addresses replaced by free loopback ports), the real sluice
daemon, and a tiny in-process HTTP API that echoes what it received.

What is checked over real HTTP through Caddy: allowed requests reach the API
with sluice's X-RateLimit-* headers (on the API's request and on the client's
response); sluice decides for the original method and URI (a route limit on
POST /login counts only that method and path); over a limit the client gets
sluice's own 429 (Retry-After, X-RateLimit-*, JSON body); a missing or
unknown API key gets sluice's 401 and an entitlement its 403, none of them
reaching the API; with sluice down Caddy answers 502 without calling the API.

Caddy is started with HOME/XDG_* pointing into a temp dir (it writes nothing
elsewhere) and stopped by PID."""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import EXAMPLES, free_port, wait_port

CADDY = os.environ.get("CADDY_BIN", "/usr/bin/caddy")
CADDYFILE = os.path.join(EXAMPLES, "Caddyfile.forward-auth")

# The addresses examples/Caddyfile.forward-auth uses: Caddy's site, sluice's
# check listener, the API.
SITE, CHECK, API = "127.0.0.1:8000", "127.0.0.1:8081", "127.0.0.1:9000"

# A key is required (missing/unknown -> 401); per-key rates by plan; POST
# /login is limited per IP on top; /premium/* is for pro accounts only (403).
CONFIG = """
listeners:
  - { name: auth, listen: "127.0.0.1:{check}", mode: check }
admin: { listen: "127.0.0.1:{admin}" }
store: { type: memory }
identify:
  ip: { trusted_proxies: ["127.0.0.0/8"] }
  key: { from: ["header:X-Api-Key", "bearer"], required: true }
  accounts:
    - { account: acme, plan: pro, keys: ["sk_acme"] }
    - { account: tiny, plan: free, keys: ["sk_tiny"] }
plans:
  free: { title: Free }
  pro: { title: Pro }
limits:
  - { name: per-ip, key: ip, rate: 1000/min }
  - { name: per-key, key: key, rate: { free: 3/min, pro: 100/min } }
  - { name: tier, key: account, rate: { free: 10/min, pro: 1000/min } }
routes:
  - name: login
    match: { method: POST, path: /login }
    limits: [ { name: login, key: ip, rate: 3/min } ]
  - name: premium
    match: { path: "/premium/*" }
    limits:
      - { name: premium, key: account, rate: { free: deny }, status: 403,
          message: "premium needs the Pro plan" }
responses:
  preset: x-ratelimit
  headers: { X-RateLimit-Tier-Remaining: "{limits.tier.remaining}" }
  rejected:
    status: 429
    headers: { X-RateLimit-DeniedBy: "{denied_by}" }
    body: '{"error":"rate_limited","denied_by":"{denied_by}","retry_after":{retry_after}}'
"""
# For the harness's format(): every brace escaped but the two port placeholders.
CONFIG = (CONFIG.replace("{", "{{").replace("}", "}}")
          .replace("{{check}}", "{check}").replace("{{admin}}", "{admin}"))

TIMEOUT = 5


class Api:
    """The upstream API: answers 200 with a JSON echo of the request it got
    and records it."""

    def __init__(self):
        api = self
        self.seen = []
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def handle_one(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode(errors="replace") if n else ""
                rec = {"method": self.command, "uri": self.path, "body": body,
                       "headers": {k.lower(): v for k, v in self.headers.items()}}
                with api.lock:
                    api.seen.append(rec)
                out = json.dumps(rec).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_DELETE = handle_one

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return len(self.seen)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(TIMEOUT)


class Caddy:
    def __init__(self, caddyfile_text, port, tmpdir):
        self.port = port
        self.tmpdir = tmpdir
        self.path = os.path.join(tmpdir, "Caddyfile")
        with open(self.path, "w") as f:
            f.write(caddyfile_text)
        env = dict(os.environ)
        env.update(HOME=tmpdir, XDG_DATA_HOME=os.path.join(tmpdir, "data"),
                   XDG_CONFIG_HOME=os.path.join(tmpdir, "config"),
                   XDG_CACHE_HOME=os.path.join(tmpdir, "cache"))
        self.log_path = os.path.join(tmpdir, "caddy.log")
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen([CADDY, "run", "--config", self.path, "--adapter", "caddyfile"],
                                     stdout=self.log_file, stderr=subprocess.STDOUT, cwd=tmpdir,
                                     env=env)
        if not wait_port(port, timeout=15, proc=self.proc):
            self.stop()
            raise RuntimeError("caddy did not listen:\n" + self.log())

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def log(self):
        if not self.log_file.closed:
            self.log_file.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log_file.close()


def caddyfile_for(site_port, check_port, api_port):
    """examples/Caddyfile.forward-auth with only its addresses replaced."""
    with open(CADDYFILE) as f:
        text = f.read()
    config_lines = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
    for addr in (SITE, CHECK, API):
        n = config_lines.count(addr)
        assert n == 1, "%s appears %d times in the example's directives" % (addr, n)
    return (text.replace(SITE, "127.0.0.1:%d" % site_port)
            .replace(CHECK, "127.0.0.1:%d" % check_port)
            .replace(API, "127.0.0.1:%d" % api_port))


@pytest.fixture
def stack(sluice, request):
    """(caddy, sluice daemon, api) wired as in the example."""
    if not os.access(CADDY, os.X_OK):
        pytest.skip("caddy is not installed (scripts/install-deps.sh installs it)")
    d = sluice(CONFIG)
    api = Api()
    tmp = tempfile.mkdtemp(prefix="sluice-caddy-")
    caddy = None
    try:
        port = free_port()
        caddy = Caddy(caddyfile_for(port, d.ports["check"], api.port), port, tmp)
        yield caddy, d, api
    finally:
        failed = request.node.rep_call.failed if hasattr(request.node, "rep_call") else False
        if caddy is not None:
            caddy.stop()
            if failed:
                print("---- caddy log ----\n" + caddy.log())
        api.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def get(caddy, path, key="sk_acme", method="GET", headers=None, **kw):
    h = {} if key is None else {"X-Api-Key": key}
    h.update(headers or {})
    return requests.request(method, caddy.url(path), headers=h, timeout=TIMEOUT, **kw)


def test_allowed_request_reaches_the_api_with_the_rate_limit_headers(stack):
    caddy, _, api = stack
    t1 = time.monotonic()
    # A forged value from the client must not survive to the API or back.
    r = get(caddy, "/items?page=2", headers={"X-RateLimit-Remaining": "999999"})
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["method"] == "GET" and seen["uri"] == "/items?page=2"
    assert seen["headers"]["x-api-key"] == "sk_acme"
    # copy_headers: sluice's answer is on the request the API got.
    assert seen["headers"]["x-ratelimit-limit"] == "100"
    assert seen["headers"]["x-ratelimit-remaining"] == "99"
    assert re.fullmatch(r"\d{10}", seen["headers"]["x-ratelimit-reset"])
    # and on the response the client got.
    assert r.headers["X-RateLimit-Limit"] == "100"
    assert r.headers["X-RateLimit-Remaining"] == "99"
    assert r.headers["X-RateLimit-Reset"] == seen["headers"]["x-ratelimit-reset"]
    assert abs(int(r.headers["X-RateLimit-Reset"]) - time.time()) < 120

    r = get(caddy, "/items")
    assert r.status_code == 200
    # 100/min gives a unit back every 600 ms: 98 unless that much passed
    want = "98" if time.monotonic() - t1 < 0.6 else r.headers["X-RateLimit-Remaining"]
    assert r.headers["X-RateLimit-Remaining"] == want and int(want) >= 98
    assert r.json()["headers"]["x-ratelimit-remaining"] == want
    assert api.count() == 2


def test_every_header_sluice_sends_on_200_is_copied(stack):
    caddy, _, api = stack
    r = get(caddy, "/items")
    assert r.status_code == 200
    assert r.headers["X-RateLimit-Tier-Remaining"] == "999"
    assert r.json()["headers"]["x-ratelimit-tier-remaining"] == "999"
    r = get(caddy, "/items", key="sk_tiny")
    assert r.status_code == 200
    assert r.headers["X-RateLimit-Tier-Remaining"] == "9"
    assert r.json()["headers"]["x-ratelimit-tier-remaining"] == "9"


def listening_addresses(port):
    """Local addresses of the sockets listening on TCP `port`."""
    out = []
    for path, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            lines = open(path).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            addr, p = f[1].split(":")
            if f[3] == "0A" and int(p, 16) == port:
                out.append(addr)
    return out


def test_the_example_listens_on_loopback_only(stack):
    caddy, _, _ = stack
    addrs = listening_addresses(caddy.port)
    assert addrs, "nothing listens on %d" % caddy.port
    # 127.0.0.1 in /proc's little-endian hex; never 0.0.0.0 or ::
    assert set(addrs) == {"0100007F"}, addrs


def test_route_limit_counts_only_post_login_and_answers_sluices_429(stack):
    caddy, _, api = stack
    # Other methods and paths do not touch the login counter.
    for method, path in (("GET", "/login"), ("POST", "/logins"), ("POST", "/other/login"),
                         ("PUT", "/login")):
        r = get(caddy, path, method=method, data="x=1")
        assert r.status_code == 200, (method, path, r.text)
        assert r.headers["X-RateLimit-Limit"] == "100", (method, path)

    # POST /login (with or without a query) is counted: 3 per minute per IP.
    # A client-sent X-Forwarded-For does not move it to another IP's counter:
    # Caddy replaces it with the connection's address.
    for i, path in enumerate(("/login", "/login?next=/home", "/login")):
        r = get(caddy, path, method="POST", data="user=a&pw=b",
                headers={"X-Forwarded-For": "203.0.113.%d" % (i + 7)})
        assert r.status_code == 200, r.text
        assert r.json()["headers"]["x-forwarded-for"] == "127.0.0.1"
        assert r.headers["X-RateLimit-Limit"] == "3"
        assert r.headers["X-RateLimit-Remaining"] == str(2 - i)
        seen = r.json()
        assert seen["method"] == "POST" and seen["uri"] == path
        assert seen["body"] == "user=a&pw=b"  # forward_auth leaves the body for the API
        assert seen["headers"]["x-ratelimit-limit"] == "3"
    before = api.count()

    r = get(caddy, "/login", method="POST", data="user=a&pw=b")
    assert r.status_code == 429
    assert api.count() == before  # the API never saw it
    retry = int(r.headers["Retry-After"])
    assert 1 <= retry <= 60
    assert r.headers["X-RateLimit-DeniedBy"] == "login"
    assert r.headers["X-RateLimit-Limit"] == "3"
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"error": "rate_limited", "denied_by": "login", "retry_after": retry}

    # Still only POST /login: GET /login and POST elsewhere go through.
    assert get(caddy, "/login?next=/home", method="POST").status_code == 429
    assert get(caddy, "/login").status_code == 200
    assert get(caddy, "/other", method="POST").status_code == 200


def test_key_limit_429_passes_through_caddy(stack):
    caddy, _, api = stack
    for i in range(3):
        r = get(caddy, "/x", key="sk_tiny")
        assert r.status_code == 200
        assert r.headers["X-RateLimit-Remaining"] == str(2 - i)
    r = get(caddy, "/x", key="sk_tiny")
    assert r.status_code == 429
    assert r.headers["X-RateLimit-DeniedBy"] == "per-key"
    assert int(r.headers["Retry-After"]) >= 1
    assert r.json()["denied_by"] == "per-key"
    assert api.count() == 3
    # Another key has its own counter.
    assert get(caddy, "/x", key="sk_acme").status_code == 200


def test_missing_or_unknown_key_gets_sluices_401_and_entitlement_its_403(stack):
    caddy, _, api = stack
    for key in ("sk_nope", None):
        r = get(caddy, "/items", key=key)
        assert r.status_code == 401, r.text
        assert r.headers["Content-Type"].startswith("application/json")
        assert "error" in r.json()
    r = requests.get(caddy.url("/items"), headers={"Authorization": "Bearer sk_wrong"},
                     timeout=TIMEOUT)
    assert r.status_code == 401
    assert api.count() == 0

    r = get(caddy, "/premium/report", key="sk_tiny")
    assert r.status_code == 403
    assert r.headers["X-RateLimit-DeniedBy"] == "premium"
    assert api.count() == 0
    r = get(caddy, "/premium/report", key="sk_acme")
    assert r.status_code == 200
    assert api.count() == 1


def test_sluice_down_fails_closed(stack):
    caddy, d, api = stack
    assert get(caddy, "/items").status_code == 200
    d.stop()
    r = get(caddy, "/items")
    assert r.status_code == 502
    assert api.count() == 1
