"""Daemon lifecycle: SIGHUP reloads the config (a valid one takes over on
open connections and keeps every counter; an invalid one is logged with
file:line:col and the old one keeps serving), SIGTERM drains requests in
flight, saves the memory store snapshot and exits 0."""
import os
import re
import signal
import socket
import threading
import time

import requests

from test_proxy import Handler, Upstream

T = 5

BASE = """
server: {{ workers: 2, drain_timeout: 5s }}
listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: static }}
  - {{ name: slow, listen: "127.0.0.1:{check}", mode: proxy, upstream: "http://127.0.0.1:{upstream}" }}
admin: {{ listen: "127.0.0.1:{admin}" }}
store: {{ type: memory, snapshot: state.snap }}
limits:
  - {{ name: ip, key: ip, rate: 10/min }}
"""

RELOADED = BASE + """
responses:
  preset: x-ratelimit
  headers:
    X-Config: "two"
"""

BAD = BASE + """
routes:
  - name: broken
    match: {{ path: /x }}
    limits: [ {{ name: b, key: ip, rate: lots/min }} ]
"""


def get_on(sock, path="/"):
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    n = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    while len(body) < n:
        body += sock.recv(65536)
    return head.decode()


def header(head, name):
    m = re.search(r"(?im)^%s: (.*)\r?$" % re.escape(name), head)
    return m.group(1).strip() if m else None


def wait_log(d, pattern, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, d.log()):
            return True
        time.sleep(0.05)
    return False


def test_good_reload_keeps_counters_and_connections(sluice):
    d = sluice(BASE)
    s = socket.create_connection(("127.0.0.1", d.ports["gateway"]), timeout=T)
    for i in range(3):
        h = get_on(s)
    assert header(h, "X-RateLimit-Remaining") == "7"
    assert header(h, "X-Config") is None
    d.write_config(RELOADED)
    d.signal(signal.SIGHUP)
    assert wait_log(d, r"reloaded")
    h = get_on(s)  # same connection, new config, same counter
    assert h.startswith("HTTP/1.1 200")
    assert header(h, "X-Config") == "two"
    assert header(h, "X-RateLimit-Remaining") == "6"
    r = requests.get(d.url("gateway", "/"), timeout=T)  # new connections too
    assert r.headers["X-Config"] == "two" and r.headers["X-RateLimit-Remaining"] == "5"
    s.close()


def test_bad_reload_is_logged_and_old_config_keeps_serving(sluice):
    d = sluice(BASE)
    assert requests.get(d.url("gateway", "/"), timeout=T).headers["X-RateLimit-Remaining"] == "9"
    d.write_config(BAD)
    d.signal(signal.SIGHUP)
    assert wait_log(d, r"sluice\.yaml:\d+:\d+: "), d.log()
    assert wait_log(d, r"old config keeps serving")
    r = requests.get(d.url("gateway", "/x"), timeout=T)
    assert r.status_code == 200
    assert r.headers["X-RateLimit-Remaining"] == "8"
    assert d.proc.poll() is None


def test_sigterm_drains_in_flight_and_exits_0(sluice):
    d = sluice(BASE)
    up = Upstream(d.ports["upstream"])
    try:
        assert requests.get(d.url("gateway", "/"), timeout=T).status_code == 200
        res = {}

        def slow():
            res["r"] = requests.get(d.url("check", "/slow?s=1"), timeout=T)

        Handler.arrived = threading.Semaphore(0)
        t = threading.Thread(target=slow)
        t.start()
        assert Handler.arrived.acquire(timeout=5)  # in flight at the upstream
        d.signal(signal.SIGTERM)
        t.join(T)
        assert res["r"].status_code == 200 and res["r"].json() == {"slow": True}
        assert d.proc.wait(T) == 0
        assert os.path.exists(os.path.join(d.tmpdir, "state.snap"))
        try:
            socket.create_connection(("127.0.0.1", d.ports["gateway"]), timeout=1).close()
            refused = False
        except OSError:
            refused = True
        assert refused
    finally:
        up.close()


def test_sigterm_with_idle_keepalive_connections_exits_promptly(sluice):
    d = sluice(BASE)
    socks = [socket.create_connection(("127.0.0.1", d.ports["gateway"]), timeout=T)
             for _ in range(5)]
    get_on(socks[0])
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.proc.wait(T) == 0
    assert time.monotonic() - t0 < 2
    for s in socks:
        s.close()


def test_reload_says_which_changes_wait_for_a_restart(sluice):
    """A reload that changes what is fixed at start (workers, connection
    tables, listeners, the store) applies the rest and names each deferred
    setting in one line; the running values keep serving."""
    d = sluice(BASE)
    assert requests.get(d.url("gateway", "/"), timeout=T).status_code == 200
    changed = (BASE.replace("workers: 2", "workers: 3, max_connections: 500")
               .replace("snapshot: state.snap", "snapshot: other.snap")
               + "responses:\n  headers:\n    X-Config: \"three\"\n")
    d.write_config(changed)
    d.signal(signal.SIGHUP)
    assert wait_log(d, r"reloaded"), d.log()
    log = d.log()
    for what in ("server.workers", "server.max_connections", "store.snapshot"):
        assert re.search(r"reload: %s change takes effect on restart" % re.escape(what), log), log
    # the rest applied at once
    r = requests.get(d.url("gateway", "/"), timeout=T)
    assert r.headers["X-Config"] == "three"
    assert d.stop() == 0
    # the running snapshot path was kept: written on drain where it was
    assert os.path.exists(os.path.join(d.tmpdir, "state.snap"))
    assert not os.path.exists(os.path.join(d.tmpdir, "other.snap"))
