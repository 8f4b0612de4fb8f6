"""Connection lifetime under unfriendly clients: every connection sluice
accepts is freed again, whatever way its request ends. A leaked connection
counts against max_connections forever, so with a small cap a few hundred
requests of each kind would wedge the worker; the daemon must then still
answer /healthz and finish SIGTERM within its drain timeout.

Kinds: Connection: close, HTTP/1.0, 429 answers, pipelined requests ending
in close, a head whose forwarded copy overflows the upstream buffer (local
431), a client that vanishes mid-head or mid-response, on the static, check
and admin listeners, and on a real-upstream proxy listener."""
import re
import signal
import socket
import time

import pytest

from conftest import free_port
from test_proxy import Upstream

ROUNDS = 120  # per kind: far above the cap of 4 per worker

CONFIG = """
server: {{ workers: 2, max_connections: 4, drain_timeout: 3s, header_timeout: 2s }}
listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: static }}
  - {{ name: auth,    listen: "127.0.0.1:{check}",   mode: check }}
admin: {{ listen: "127.0.0.1:{admin}" }}
limits:
  - {{ name: ip, key: ip, rate: 1000000/min }}
routes:
  - name: tiny
    match: {{ path: /tiny }}
    limits: [ {{ name: tiny, key: ip, rate: 1/hour }} ]
"""


def exchange(port, raw, timeout=3.0):
    """Send raw bytes, read until the server closes; return what came."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                raise AssertionError("no close from the server; got %r" % data[:200])
            if not chunk:
                return data
            data += chunk


def statuses(data):
    return [int(m) for m in re.findall(rb"HTTP/1\.[01] (\d{3}) ", data)]


def healthy(d):
    data = exchange(d.ports["admin"], b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert statuses(data) == [200]


def stop_in_time(d, limit=6.0):
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    rc = d.proc.wait(limit)
    assert time.monotonic() - t0 < limit
    assert rc == 0, d.log()


KINDS = {
    "close": ("gateway", b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", [200]),
    "http10": ("gateway", b"GET /x HTTP/1.0\r\n\r\n", [200]),
    "http10_keepalive_off": ("gateway", b"GET /x HTTP/1.0\r\nHost: x\r\n\r\n", [200]),
    "check_close": ("check", b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", [200]),
    "check_http10": ("check", b"GET /x HTTP/1.0\r\n\r\n", [200]),
    "admin_close": ("admin", b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", [200]),
    "admin_404_close": ("admin", b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", [404]),
    "bad_request": ("gateway", b"GET /x HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", [400]),
    "pipelined_close": ("gateway", b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                        b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
                        b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", [200, 200, 200]),
    "post_body_close": ("gateway", b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                        b"Connection: close\r\n\r\nhello", [200]),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_local_answer_frees_its_connection(sluice, kind):
    d = sluice(CONFIG)
    listener, raw, want = KINDS[kind]
    for _ in range(ROUNDS):
        assert statuses(exchange(d.ports[listener], raw)) == want
    healthy(d)
    stop_in_time(d)


def test_rejections_with_close_free_their_connection(sluice):
    d = sluice(CONFIG)
    raw = b"GET /tiny HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    got = [statuses(exchange(d.ports["gateway"], raw))[0] for _ in range(ROUNDS)]
    assert got[0] == 200 and set(got[1:]) == {429}
    got = [statuses(exchange(d.ports["check"], raw))[0] for _ in range(ROUNDS)]
    assert set(got) == {429}
    healthy(d)
    stop_in_time(d)


def test_sigterm_after_one_close_request_finishes(sluice):
    """The original report: one Connection: close request, then SIGTERM
    hung past drain_timeout (6 of 6 runs)."""
    for _ in range(3):
        d = sluice(CONFIG)
        assert statuses(exchange(d.ports["gateway"], KINDS["close"][1])) == [200]
        stop_in_time(d)


def test_vanishing_clients_free_their_connections(sluice):
    d = sluice(CONFIG)
    for i in range(ROUNDS):
        s = socket.create_connection(("127.0.0.1", d.ports["gateway"]), timeout=3)
        if i % 3 == 0:
            s.sendall(b"GET /x HTTP/1.1\r\nHo")  # mid-head
        elif i % 3 == 1:
            s.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n" * 50)  # never reads
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # RST
    time.sleep(0.3)
    for _ in range(20):
        assert statuses(exchange(d.ports["gateway"], KINDS["close"][1])) == [200]
    healthy(d)
    stop_in_time(d)


PROXY_CONFIG = """
server: {{ workers: 2, max_connections: 4, drain_timeout: 3s, max_header_bytes: 32768 }}
listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: "http://127.0.0.1:{upstream}" }}
admin: {{ listen: "127.0.0.1:{admin}" }}
identify:
  ip: {{ trusted_proxies: ["127.0.0.0/8"] }}
limits:
  - {{ name: ip, key: ip, rate: 1000000/min }}
"""


def test_forwarded_copy_overflow_is_431_and_frees(sluice):
    """A head that fits max_header_bytes but whose forwarded copy (plus
    X-Forwarded-For) does not fit the 16 KiB upstream head buffer is
    answered 431 locally; each one used to leak its connection."""
    port = free_port()
    up = Upstream(port)
    try:
        d = sluice(PROXY_CONFIG, ports={"upstream": port})
        big = b"X-Pad: " + b"a" * 16360 + b"\r\n"
        raw = b"GET /x HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n"
        for _ in range(40):
            assert statuses(exchange(d.ports["gateway"], raw)) == [431]
        ok = b"GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        for _ in range(40):
            assert statuses(exchange(d.ports["gateway"], ok)) == [200]
        healthy(d)
        stop_in_time(d)
    finally:
        up.close()


def test_proxy_close_and_http10_free(sluice):
    port = free_port()
    up = Upstream(port)
    try:
        d = sluice(PROXY_CONFIG, ports={"upstream": port})
        for raw in (b"GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    b"GET /info HTTP/1.0\r\n\r\n"):
            for _ in range(60):
                assert statuses(exchange(d.ports["gateway"], raw)) == [200]
        healthy(d)
        stop_in_time(d)
    finally:
        up.close()


def test_http10_flood_does_not_grow_memory(sluice):
    """19,838 HTTP/1.0 requests used to take RSS from 6.8 MB to 355 MB."""
    d = sluice(CONFIG.replace("max_connections: 4", "max_connections: 10000"))
    raw = KINDS["http10"][1]

    def rss_kb():
        with open("/proc/%d/status" % d.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    for _ in range(300):
        exchange(d.ports["gateway"], raw)
    before = rss_kb()
    for _ in range(3000):
        exchange(d.ports["gateway"], raw)
    after = rss_kb()
    assert after - before < 20 * 1024, (before, after)
    stop_in_time(d)


def test_reloads_in_the_middle_lose_no_connection(sluice):
    """SIGHUP while Connection: close and HTTP/1.0 requests are flowing:
    every request is answered, and the drain still finishes in time."""
    import threading
    d = sluice(CONFIG)
    errors, done = [], threading.Event()

    def client(raw):
        while not done.is_set():
            try:
                if statuses(exchange(d.ports["gateway"], raw)) != [200]:
                    errors.append("status")
            except Exception as e:  # noqa: BLE001 - any failure counts
                errors.append(repr(e))
    ts = [threading.Thread(target=client, args=(KINDS[k][1],)) for k in ("close", "http10")]
    for t in ts:
        t.start()
    for i in range(1, 6):
        time.sleep(0.2)
        d.signal(signal.SIGHUP)
        # each reload is logged before the next signal (a loaded machine
        # would otherwise see them pile up or count before the last one)
        deadline = time.monotonic() + 5
        while d.log().count("reloaded") < i and time.monotonic() < deadline:
            time.sleep(0.02)
    time.sleep(0.3)
    done.set()
    for t in ts:
        t.join(10)
    assert errors == []
    assert d.log().count("reloaded") == 5
    healthy(d)
    stop_in_time(d)


@pytest.mark.parametrize("listener,path", [("gateway", "/x"), ("check", "/x"),
                                           ("admin", "/healthz"), ("admin", "/metrics")])
def test_head_answers_carry_no_body(sluice, listener, path):
    """HEAD gets the GET's headers (Content-Length included) and no body
    bytes, so the next keep-alive response starts where the client expects
    it (a body after HEAD is read as garbage before the next status line)."""
    d = sluice(CONFIG)
    with socket.create_connection(("127.0.0.1", d.ports[listener]), timeout=3) as s:
        s.sendall(("HEAD %s HTTP/1.1\r\nHost: x\r\n\r\nGET %s HTTP/1.1\r\nHost: x\r\n"
                   "Connection: close\r\n\r\n" % (path, path)).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    first, sep, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 ")
    assert re.search(rb"(?i)\r\ncontent-length: \d", first)
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:80]
