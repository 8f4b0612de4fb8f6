"""The proxy listener of DESIGN.md section 5 over real sockets: `upstream:
static`, and a real upstream (a threaded Python HTTP/1.1 server started on
the {upstream} port) with keep-alive pooling, pipelining, chunked uploads
streamed through, large responses streamed, X-Forwarded-For, 502 when the
upstream is down, 504 when it is slower than server.upstream_timeout, and
concurrency slots released when the response ends or the client leaves.
Loopback only; every socket and request has a timeout."""
import hashlib
import http.server
import json
import socket
import threading
import time

import requests

T = 5  # seconds per HTTP call

STATIC = """
server: {{ workers: 2 }}
listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: static }}
admin: {{ listen: "127.0.0.1:{admin}" }}
limits:
  - {{ name: ip, key: ip, rate: 3/min }}
"""

UPSTREAM = """
server: {{ workers: 2, upstream_timeout: 800ms }}
listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: "http://127.0.0.1:{upstream}" }}
admin: {{ listen: "127.0.0.1:{admin}" }}
limits:
  - {{ name: ip, key: ip, rate: 10000/min }}
routes:
  - name: held
    match: {{ path: "/hold/*" }}
    limits: [ {{ name: inflight, key: ip, concurrency: 1 }} ]
"""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # released once per /hold/ or /slow request that reached the upstream: a
    # test waits on it, not on a sleep, to know a request is in flight
    arrived = threading.Semaphore(0)

    def log_message(self, *a):
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            chunks = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out), chunks
                out += self.rfile.read(size)
                self.rfile.readline()
                chunks += 1
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n), 0

    def send(self, code, body, ctype="application/json", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path
        if path.startswith("/info"):
            body = json.dumps({"path": path, "xff": self.headers.get("X-Forwarded-For"),
                               "port": self.client_address[1],
                               "host": self.headers.get("Host")}).encode()
            self.send(200, body, extra=[("X-Upstream", "yes")])
        elif path.startswith("/big"):
            n = int(path.split("=")[1])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            block = b"x" * 65536
            left = n
            while left:
                k = min(left, len(block))
                self.wfile.write(b"%x\r\n" % k + block[:k] + b"\r\n")
                left -= k
            self.wfile.write(b"0\r\n\r\n")
        elif path.startswith("/not-modified"):
            # RFC 9110 8.6: a 304 may carry the representation's length
            self.send_response(304)
            self.send_header("ETag", '"v1"')
            self.send_header("Content-Length", "1234")
            self.end_headers()
        elif path.startswith("/slow") or path.startswith("/hold/"):
            Handler.arrived.release()
            time.sleep(float(path.split("=")[1]))
            self.send(200, b'{"slow":true}')
        else:
            self.send(404, b"{}")

    def do_POST(self):
        body, chunks = self.read_body()
        self.send(200, json.dumps({"len": len(body), "sha": hashlib.sha256(body).hexdigest(),
                                   "chunks": chunks,
                                   "te": self.headers.get("Transfer-Encoding")}).encode())


class Upstream:
    """A threaded HTTP upstream on 127.0.0.1:port; handler defaults to this
    file's Handler."""

    def __init__(self, port, handler=None):
        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler or Handler)
        self.srv.daemon_threads = True
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def raw(port, data, timeout=T):
    """Send bytes, read until the peer closes or goes quiet; returns bytes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except socket.timeout:
        pass
    s.close()
    return out


def test_static_answers_ok_with_headers(sluice):
    d = sluice(STATIC)
    r = requests.get(d.url("gateway", "/anything?x=1"), timeout=T)
    assert r.status_code == 200
    assert r.json() == {"ok": True}
    assert r.headers["X-RateLimit-Limit"] == "3"
    assert r.headers["X-RateLimit-Remaining"] == "2"
    assert int(r.headers["X-RateLimit-Reset"]) > time.time() - 5
    for _ in range(2):
        assert requests.get(d.url("gateway", "/"), timeout=T).status_code == 200
    r = requests.get(d.url("gateway", "/"), timeout=T)
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert r.headers["X-RateLimit-Remaining"] == "0"


def test_static_keep_alive_and_http10(sluice):
    d = sluice(STATIC)
    port = d.ports["gateway"]
    out = raw(port, b"GET / HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ")
    assert b"Connection: close" in out and out.endswith(b'{"ok":true}')
    with requests.Session() as s:
        a = s.get(d.url("gateway", "/a"), timeout=T)
        b = s.get(d.url("gateway", "/b"), timeout=T)
        assert a.status_code == b.status_code == 200


def test_forwards_with_headers_and_x_forwarded_for(sluice):
    d = sluice(UPSTREAM)
    up = Upstream(d.ports["upstream"])
    try:
        r = requests.get(d.url("gateway", "/info?q=1"), headers={"X-Forwarded-For": "10.9.8.7"},
                         timeout=T)
        assert r.status_code == 200
        j = r.json()
        assert j["path"] == "/info?q=1"
        assert j["xff"] == "10.9.8.7, 127.0.0.1"
        assert r.headers["X-Upstream"] == "yes"
        assert r.headers["X-RateLimit-Limit"] == "10000"
        assert "X-RateLimit-Remaining" in r.headers
    finally:
        up.close()


def test_upstream_connections_are_kept_alive(sluice):
    d = sluice(UPSTREAM.replace("workers: 2", "workers: 1"))
    up = Upstream(d.ports["upstream"])
    try:
        ports = set()
        with requests.Session() as s:
            for _ in range(5):
                ports.add(s.get(d.url("gateway", "/info"), timeout=T).json()["port"])
        assert len(ports) == 1  # one pooled upstream connection served all five
    finally:
        up.close()


def test_304_with_content_length_has_no_body(sluice):
    """A 304 ends at its head whatever its Content-Length says (the parser
    used to wait for 1234 body bytes that never come, then cut the
    response), and the connections go on being used."""
    d = sluice(UPSTREAM.replace("workers: 2", "workers: 1"))
    up = Upstream(d.ports["upstream"])
    try:
        with requests.Session() as s:
            for _ in range(2):
                t0 = time.monotonic()
                r = s.get(d.url("gateway", "/not-modified"), timeout=T)
                assert r.status_code == 304 and r.headers["ETag"] == '"v1"'
                # the bug waited for the upstream_timeout (800 ms)
                assert time.monotonic() - t0 < 0.75
                assert s.get(d.url("gateway", "/info"), timeout=T).status_code == 200
    finally:
        up.close()


def test_pipelined_requests_answered_in_order(sluice):
    d = sluice(UPSTREAM)
    up = Upstream(d.ports["upstream"])
    try:
        reqs = b"".join(b"GET /info?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(4))
        reqs += b"GET /info?n=4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        out = raw(d.ports["gateway"], reqs)
        assert out.count(b"HTTP/1.1 200 ") == 5
        pos = [out.index(b'"/info?n=%d"' % i) for i in range(5)]
        assert pos == sorted(pos)
    finally:
        up.close()


def test_chunked_upload_streamed_through(sluice):
    d = sluice(UPSTREAM)
    up = Upstream(d.ports["upstream"])
    try:
        parts = [bytes([65 + i % 26]) * (50000 + i) for i in range(20)]  # ~1 MB
        r = requests.post(d.url("gateway", "/upload"), data=iter(parts), timeout=T)
        assert r.status_code == 200
        j = r.json()
        body = b"".join(parts)
        assert j["len"] == len(body)
        assert j["sha"] == hashlib.sha256(body).hexdigest()
        assert j["te"] == "chunked"
        r = requests.post(d.url("gateway", "/upload"), data=b"z" * 300000, timeout=T)
        assert r.json()["len"] == 300000
    finally:
        up.close()


def test_large_response_streamed(sluice):
    d = sluice(UPSTREAM)
    up = Upstream(d.ports["upstream"])
    try:
        n = 8 * 1024 * 1024
        r = requests.get(d.url("gateway", "/big?n=%d" % n), timeout=T, stream=True)
        assert r.status_code == 200
        assert "X-RateLimit-Limit" in r.headers
        got = sum(len(b) for b in r.iter_content(65536))
        assert got == n
    finally:
        up.close()


def test_upstream_down_is_502(sluice):
    d = sluice(UPSTREAM)  # nothing listens on {upstream}
    r = requests.get(d.url("gateway", "/info"), timeout=T)
    assert r.status_code == 502


def test_slow_upstream_is_504(sluice):
    d = sluice(UPSTREAM)
    up = Upstream(d.ports["upstream"])
    try:
        t0 = time.monotonic()
        r = requests.get(d.url("gateway", "/slow?s=2"), timeout=T)
        assert r.status_code == 504
        assert 0.6 < time.monotonic() - t0 < 1.9
        # the gateway keeps working
        assert requests.get(d.url("gateway", "/info"), timeout=T).status_code == 200
    finally:
        up.close()


def test_concurrency_slot_released_when_response_ends(sluice):
    d = sluice(UPSTREAM)
    up = Upstream(d.ports["upstream"])
    try:
        res = {}

        def first():
            res["a"] = requests.get(d.url("gateway", "/hold/a?s=0.6"), timeout=T)

        Handler.arrived = threading.Semaphore(0)
        t = threading.Thread(target=first)
        t.start()
        assert Handler.arrived.acquire(timeout=5)  # a holds the slot
        b = requests.get(d.url("gateway", "/hold/b?s=0"), timeout=T)
        assert b.status_code == 429
        assert b.headers.get("X-RateLimit-DeniedBy", "inflight") == "inflight"
        t.join(T)
        assert res["a"].status_code == 200
        c = requests.get(d.url("gateway", "/hold/c?s=0"), timeout=T)
        assert c.status_code == 200
        assert requests.get(d.url("gateway", "/hold/d?s=0"), timeout=T).status_code == 200
    finally:
        up.close()


def test_concurrency_slot_released_when_client_leaves(sluice):
    d = sluice(UPSTREAM.replace("800ms", "5s"))
    up = Upstream(d.ports["upstream"])
    try:
        Handler.arrived = threading.Semaphore(0)
        s = socket.create_connection(("127.0.0.1", d.ports["gateway"]), timeout=T)
        s.sendall(b"GET /hold/a?s=3 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert Handler.arrived.acquire(timeout=5)  # a holds the slot
        assert requests.get(d.url("gateway", "/hold/b?s=0"), timeout=T).status_code == 429
        s.close()  # gone before the upstream answers
        # the slot comes back when sluice sees the close, well before the
        # upstream's answer at 3 s
        t0 = time.monotonic()
        while True:
            r = requests.get(d.url("gateway", "/hold/c?s=0"), timeout=T)
            if r.status_code == 200 or time.monotonic() - t0 > 2:
                break
            time.sleep(0.05)
        assert r.status_code == 200
    finally:
        up.close()


SCRIPTED = """
listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: "http://127.0.0.1:{upstream}" }}
admin: {{ listen: "127.0.0.1:{admin}" }}
limits:
  - {{ name: ip, key: ip, rate: 1000/min }}
"""


def scripted_upstream(pieces):
    """A one-connection upstream that reads the request, then sends each of
    `pieces` (bytes) 0.3 s apart and lingers 1 s. Returns (port, socket)."""
    import threading
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)

    def serve():
        try:
            c, _ = lsock.accept()
            c.recv(65536)
            for i, p in enumerate(pieces):
                if i:
                    time.sleep(0.3)
                c.sendall(p)
            time.sleep(1)
            c.close()
        except OSError:
            pass
    threading.Thread(target=serve, daemon=True).start()
    return lsock.getsockname()[1], lsock


def test_upstream_head_larger_than_the_buffer_is_502_at_once(sluice):
    """An upstream response head that fills sluice's whole 64 KiB upstream
    buffer can never complete: 502 at once, not a stall until
    upstream_timeout (30 s by default)."""
    port, lsock = scripted_upstream([b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000])
    d = sluice(SCRIPTED, ports={"upstream": port})
    t0 = time.monotonic()
    r = requests.get(d.url("gateway", "/x"), timeout=10)
    assert r.status_code == 502
    assert time.monotonic() - t0 < 3
    lsock.close()


def test_upstream_head_split_across_reads_is_not_forwarded_raw(sluice):
    """A response head that arrives in two TCP segments: its first part used
    to be written to the client raw, ahead of the head sluice composes, so
    the client saw two status lines and a corrupt response."""
    port, lsock = scripted_upstream([b"HTTP/1.1 200 OK\r\nX-Part: one\r\n",
                                     b"Content-Length: 2\r\n\r\nok"])
    d = sluice(SCRIPTED, ports={"upstream": port})
    out = raw(d.ports["gateway"], b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.count(b"HTTP/1.1 ") == 1, out
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"X-Part: one" in head and b"X-RateLimit-Limit: 1000" in head
    assert body == b"ok"
    lsock.close()
