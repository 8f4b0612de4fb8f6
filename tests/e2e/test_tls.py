"""TLS (docs/tls.md) over real sockets: a test CA and server certificates
made with the `openssl` CLI in a tmp dir; real `curl --cacert` and
`openssl s_client -alpn http/1.1` against TLS proxy and check listeners;
a TLS listener in front of a plain upstream and a plain listener in front
of an https upstream (a Python `ssl` server with the test CA), pooled;
verification failures (wrong CA, wrong name) answered 502 with a log line;
unfriendly clients (garbage, a ClientHello and gone, plain HTTP on the TLS
port, a handshake that stalls past header_timeout); Connection: close,
HTTP/1.0 and pipelining over TLS; large bodies both ways; SIGHUP swapping
the certificate (s_client sees the new serial) and refusing a bad one.
Loopback only; every socket, process and request has a timeout."""
import http.server
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

T = 10  # seconds per client call


def run(*args, input=None, timeout=T):
    return subprocess.run(list(args), input=input, capture_output=True, timeout=timeout)


class PKI:
    """A CA, a second (untrusted) CA, and server certificates for
    localhost / 127.0.0.1 made with the openssl CLI."""

    def __init__(self, d):
        self.d = d
        self.ca = self.make_ca("ca", "sluice test CA")
        self.other_ca = self.make_ca("other", "someone else's CA")
        self.cert, self.key = self.make_cert("srv", 4242, "ca")

    def p(self, name):
        return os.path.join(self.d, name)

    def make_ca(self, name, cn):
        r = run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=" + cn, "-keyout", self.p(name + ".key"),
                "-out", self.p(name + ".pem"))
        assert r.returncode == 0, r.stderr
        return self.p(name + ".pem")

    def make_cert(self, name, serial, ca="ca"):
        ext = self.p(name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        r = run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                "-keyout", self.p(name + ".key"), "-out", self.p(name + ".csr"))
        assert r.returncode == 0, r.stderr
        r = run("openssl", "x509", "-req", "-in", self.p(name + ".csr"), "-CA",
                self.p(ca + ".pem"), "-CAkey", self.p(ca + ".key"), "-set_serial",
                str(serial), "-days", "2", "-extfile", ext, "-out", self.p(name + ".pem"))
        assert r.returncode == 0, r.stderr
        return self.p(name + ".pem"), self.p(name + ".key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(str(tmp_path_factory.mktemp("pki")))


def tls_config(pki, extra_listener="", server="workers: 2", upstream="static"):
    return """
server: {{ %s }}
listeners:
  - name: gateway
    listen: "127.0.0.1:{gateway}"
    mode: proxy
    upstream: %s
    tls:
      cert: %s
      key: %s
%s
admin: {{ listen: "127.0.0.1:{admin}" }}
limits:
  - {{ name: ip, key: ip, rate: 100000/min }}
""" % (server, upstream, pki.cert, pki.key, extra_listener)


def curl(*args):
    r = run("curl", "-sS", "--max-time", str(T), *args)
    return r


def client_ctx(pki):
    ctx = ssl.create_default_context(cafile=pki.ca)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def tls_sock(pki, port):
    raw = socket.create_connection(("127.0.0.1", port), timeout=T)
    return client_ctx(pki).wrap_socket(raw, server_hostname="localhost")


def read_until_closed(s, limit=1 << 24):
    out = b""
    while len(out) < limit:
        try:
            b = s.recv(65536)
        except (ssl.SSLError, ConnectionResetError):
            break
        if not b:
            break
        out += b
    return out


def responses(data):
    """Split a byte stream of HTTP/1.1 responses with Content-Length."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        m = re.search(rb"(?i)content-length:\s*(\d+)", head)
        n = int(m.group(1)) if m else 0
        out.append((head, rest[:n]))
        data = rest[n:]
    return out


def serial_seen(pki, port):
    r = run("openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername",
            "localhost", "-CAfile", pki.ca, "-alpn", "http/1.1", input=b"")
    pem = re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", r.stdout,
                    re.S)
    assert pem, r.stdout + r.stderr
    x = run("openssl", "x509", "-noout", "-serial", input=pem.group(0))
    return x.stdout.decode().strip()


def client_hello():
    """The bytes of a real ClientHello (Python's ssl over memory BIOs)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


# ---- upstreams ----

class Up(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    conns = set()
    reused = []  # per TLS connection: whether it resumed a session
    lock = threading.Lock()

    def log_message(self, *a):
        pass

    def setup(self):
        super().setup()
        with Up.lock:
            Up.conns.add(self.client_address)
            if isinstance(self.connection, ssl.SSLSocket):
                Up.reused.append(self.connection.session_reused)

    def do_GET(self):
        m = re.match(r"/big/(\d+)", self.path)
        if m:
            n = int(m.group(1))
            body = bytes(range(256)) * (n // 256) + b"x" * (n % 256)
        else:
            body = ("up %s xff=%s" % (self.path, self.headers.get("X-Forwarded-For"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        if self.path == "/close":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(n)
        body = ("got %d sum %d" % (len(data), sum(data) % 65521)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture
def upstream():
    """upstream(port, ctx=None) -> a started (TLS when ctx) HTTP/1.1 server."""
    servers = []

    def start(port, ctx=None):
        s = Server(("127.0.0.1", port), Up)
        if ctx is not None:
            s.socket = ctx.wrap_socket(s.socket, server_side=True)
        threading.Thread(target=s.serve_forever, daemon=True).start()
        servers.append(s)
        Up.conns = set()
        Up.reused = []
        return s

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def server_ctx(pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.cert, pki.key)
    return ctx


def wait_log(d, pattern, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, d.log()):
            return True
        time.sleep(0.05)
    return False


# ---- the listener ----

def test_curl_with_the_test_ca_gets_the_answer_and_the_rate_limit_headers(sluice, pki):
    d = sluice(tls_config(pki))
    url = "https://localhost:%d/v1/x" % d.ports["gateway"]
    r = curl("-v", "--cacert", pki.ca, "-D", "-", url)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.startswith("HTTP/1.1 200"), out
    assert "X-RateLimit-Limit: 100000" in out
    assert out.endswith('{"ok":true}')
    err = r.stderr.decode()
    assert re.search(r"ALPN.*accepted.*http/1.1", err), err
    assert re.search(r"TLSv1\.[23]", err), err
    # without the CA curl refuses the certificate: it is really verified
    r = curl("-o", "/dev/null", url)
    assert r.returncode == 60, r.stderr


def test_s_client_negotiates_alpn_http11_tls13_and_no_compression(sluice, pki):
    d = sluice(tls_config(pki))
    port = d.ports["gateway"]
    r = run("openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername",
            "localhost", "-CAfile", pki.ca, "-alpn", "http/1.1", "-ign_eof",
            input=b"GET /s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    out = r.stdout.decode(errors="replace")
    assert "ALPN protocol: http/1.1" in out, out
    assert "Verify return code: 0 (ok)" in out, out
    assert "Compression: NONE" in out, out
    assert "TLSv1.3" in out, out
    assert "HTTP/1.1 200 OK" in out and '{"ok":true}' in out, out
    # TLS 1.2 with a forward-secret AEAD suite
    r = run("openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-tls1_2", "-CAfile",
            pki.ca, input=b"")
    out = r.stdout.decode(errors="replace")
    assert re.search(r"Cipher is ECDHE-RSA-AES\d+-GCM-SHA\d+", out), out
    # the server's order wins: a client preferring ChaCha20 gets AES-128-GCM
    r = run("openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-tls1_2", "-cipher",
            "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256", "-CAfile", pki.ca,
            input=b"")
    out = r.stdout.decode(errors="replace")
    assert "Cipher is ECDHE-RSA-AES128-GCM-SHA256" in out, out
    # TLS 1.1 and below are refused (the client allows them at seclevel 0)
    r = run("openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-tls1_1", "-cipher",
            "DEFAULT@SECLEVEL=0", input=b"")
    assert r.returncode != 0
    assert "Cipher is (NONE)" in r.stdout.decode(errors="replace")
    # a TLS 1.2 client asking to renegotiate is refused ("R" is s_client's command)
    r = run("openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-tls1_2", "-CAfile",
            pki.ca, input=b"R\n")
    out = (r.stdout + r.stderr).decode(errors="replace")
    assert "RENEGOTIATING" in out and "no renegotiation" in out, out
    # a client offering only h2 gets no_application_protocol, not h2
    r = run("openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-alpn", "h2",
            "-CAfile", pki.ca, input=b"")
    assert r.returncode != 0
    assert "no application protocol" in (r.stdout + r.stderr).decode(errors="replace")


def test_session_resumption_with_a_ticket(sluice, pki, tmp_path):
    d = sluice(tls_config(pki))
    port = d.ports["gateway"]
    sess = str(tmp_path / "sess.pem")
    base = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", pki.ca,
            "-tls1_2"]
    r = run(*base, "-sess_out", sess, input=b"")
    assert r.returncode == 0 and os.path.getsize(sess) > 0, r.stderr
    r = run(*base, "-sess_in", sess, input=b"")
    assert "Reused, TLSv1.2" in r.stdout.decode(errors="replace"), r.stdout


def test_check_listener_over_tls(sluice, pki):
    check = """
  - name: auth
    listen: "127.0.0.1:{check}"
    mode: check
    tls:
      cert: %s
      key: %s
""" % (pki.cert, pki.key)
    d = sluice(tls_config(pki, extra_listener=check))
    r = curl("--cacert", pki.ca, "-D", "-", "-o", "/dev/null", "-H", "X-Original-URI: /v1/a",
             "-H", "X-Original-Method: GET", "https://localhost:%d/auth" % d.ports["check"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"HTTP/1.1 200") and b"X-RateLimit-Remaining" in r.stdout


def test_plain_http_on_the_tls_port_gets_a_400_saying_so(sluice, pki):
    d = sluice(tls_config(pki))
    with socket.create_connection(("127.0.0.1", d.ports["gateway"]), timeout=T) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = read_until_closed(s)
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n"), data
    assert b"plain HTTP request sent to a TLS port" in data
    assert curl("--cacert", pki.ca, "https://localhost:%d/" % d.ports["gateway"]).returncode == 0


def test_garbage_and_vanishing_clients_do_not_hurt_the_daemon(sluice, pki):
    d = sluice(tls_config(pki))
    port = d.ports["gateway"]
    hello = client_hello()
    for i in range(20):
        with socket.create_connection(("127.0.0.1", port), timeout=T) as s:
            if i % 4 == 0:
                s.sendall(os.urandom(3000))  # garbage
                assert read_until_closed(s) is not None
            elif i % 4 == 1:
                s.sendall(hello)  # a ClientHello, then gone
            elif i % 4 == 2:
                s.sendall(hello[:20])  # half a ClientHello, then gone
            else:
                s.sendall(b"\x16\x03\x01\xff\xff" + b"\x00" * 100)  # a record too long
                s.shutdown(socket.SHUT_WR)
                assert read_until_closed(s) is not None
    # a ClientHello, then a reset in the middle of the handshake
    s = socket.create_connection(("127.0.0.1", port), timeout=T)
    s.sendall(hello)
    s.recv(100)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()
    r = curl("--cacert", pki.ca, "https://localhost:%d/after" % port)
    assert r.returncode == 0 and r.stdout == b'{"ok":true}', r.stderr
    assert d.proc.poll() is None


def test_a_stalled_handshake_is_closed_after_header_timeout(sluice, pki):
    d = sluice(tls_config(pki, server="workers: 1, header_timeout: 1s"))
    hello = client_hello()
    s = socket.create_connection(("127.0.0.1", d.ports["gateway"]), timeout=T)
    t0 = time.monotonic()
    s.sendall(hello[: len(hello) // 2])  # the rest never comes
    data = read_until_closed(s)
    took = time.monotonic() - t0
    s.close()
    assert data == b""
    assert 0.8 <= took < 4, took


def test_connection_close_and_http10_over_tls(sluice, pki):
    d = sluice(tls_config(pki))
    with tls_sock(pki, d.ports["gateway"]) as s:
        assert s.selected_alpn_protocol() == "http/1.1"
        s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = read_until_closed(s)
    (head, body), = responses(data)
    assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head
    assert body == b'{"ok":true}'
    with tls_sock(pki, d.ports["gateway"]) as s:
        s.sendall(b"GET /b HTTP/1.0\r\n\r\n")
        data = read_until_closed(s)
    (head, body), = responses(data)
    assert head.startswith(b"HTTP/1.1 200") and body == b'{"ok":true}'


def test_pipelining_and_keep_alive_over_tls(sluice, pki):
    # a quota, not the 100000/min rate: that gives a unit back every 0.6 ms,
    # and on a loaded CI machine two pipelined requests over TLS under ASan
    # were that far apart and showed the same Remaining
    d = sluice(tls_config(pki).replace("rate: 100000/min", "quota: 100000/day"))
    with tls_sock(pki, d.ports["gateway"]) as s:
        s.sendall(b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(10)) +
                  b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = read_until_closed(s)
    rs = responses(data)
    assert len(rs) == 11
    assert all(h.startswith(b"HTTP/1.1 200") and b == b'{"ok":true}' for h, b in rs)
    # remaining counts down in request order
    rem = [int(re.search(rb"X-RateLimit-Remaining: (\d+)", h).group(1)) for h, _ in rs]
    assert rem == sorted(rem, reverse=True) and len(set(rem)) == 11


def test_tls_listener_to_a_plain_upstream_streams_large_bodies(sluice, pki, upstream):
    d = sluice(tls_config(pki, upstream='"http://127.0.0.1:{upstream}"'))
    upstream(d.ports["upstream"])
    base = "https://localhost:%d" % d.ports["gateway"]
    r = curl("--cacert", pki.ca, base + "/v1/a")
    assert r.stdout == b"up /v1/a xff=127.0.0.1", r.stderr
    n = 3 * 1024 * 1024 + 17
    r = curl("--cacert", pki.ca, base + "/big/%d" % n)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) == n
    assert r.stdout[:512] == bytes(range(256)) * 2
    payload = os.urandom(2 * 1024 * 1024 + 5)
    r = run("curl", "-sS", "--max-time", str(T), "--cacert", pki.ca, "--data-binary", "@-",
            "-H", "Content-Type: application/octet-stream", base + "/up", input=payload)
    assert r.stdout == b"got %d sum %d" % (len(payload), sum(payload) % 65521), r.stderr
    # a slow reader of a big response is back-pressured, not buffered: it still
    # gets every byte
    with tls_sock(pki, d.ports["gateway"]) as s:
        s.sendall(b"GET /big/%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % n)
        time.sleep(0.5)
        data = read_until_closed(s, limit=n + 4096)
    (head, body), = responses(data)
    assert head.startswith(b"HTTP/1.1 200") and len(body) == n


def https_config(pki, ca=None, sni=None, verify=None):
    lines = []
    if ca:
        lines.append("      ca: %s" % ca)
    if sni:
        lines.append("      sni: %s" % sni)
    if verify is not None:
        lines.append("      verify: %s" % ("true" if verify else "false"))
    tls = ("    upstream_tls:\n" + "\n".join(lines)) if lines else ""
    return """
server: {{ workers: 1, upstream_timeout: 3s }}
listeners:
  - name: gateway
    listen: "127.0.0.1:{gateway}"
    mode: proxy
    upstream: "https://127.0.0.1:{upstream}"
%s
admin: {{ listen: "127.0.0.1:{admin}" }}
limits:
  - {{ name: ip, key: ip, rate: 100000/min }}
""" % tls


def test_plain_listener_to_an_https_upstream_verifies_and_pools(sluice, pki, upstream):
    d = sluice(https_config(pki, ca=pki.ca))
    upstream(d.ports["upstream"], server_ctx(pki))
    base = "http://127.0.0.1:%d" % d.ports["gateway"]
    for i in range(15):
        r = curl(base + "/k%d" % i)
        assert r.stdout == b"up /k%d xff=127.0.0.1" % i, (r.stdout, r.stderr, d.log())
    # one worker, one request at a time: one pooled TLS connection served all
    assert len(Up.conns) == 1, Up.conns
    n = 1024 * 1024 + 3
    r = curl(base + "/big/%d" % n)
    assert len(r.stdout) == n
    payload = os.urandom(1024 * 1024 + 9)
    r = run("curl", "-sS", "--max-time", str(T), "--data-binary", "@-", base + "/up",
            input=payload)
    assert r.stdout == b"got %d sum %d" % (len(payload), sum(payload) % 65521), r.stderr


def test_the_upstream_closing_a_pooled_tls_connection_is_retried(sluice, pki, upstream):
    d = sluice(https_config(pki, ca=pki.ca))
    srv = upstream(d.ports["upstream"], server_ctx(pki))
    base = "http://127.0.0.1:%d" % d.ports["gateway"]
    assert curl(base + "/one").stdout == b"up /one xff=127.0.0.1"
    srv.shutdown()
    srv.server_close()  # the pooled connection's peer is gone with its server
    upstream(d.ports["upstream"], server_ctx(pki))
    time.sleep(0.2)
    r = curl(base + "/two")
    assert r.stdout == b"up /two xff=127.0.0.1", (r.stdout, d.log())


def test_a_plain_upstream_behind_https_fails_with_502(sluice, pki, upstream):
    d = sluice(https_config(pki, ca=pki.ca))
    upstream(d.ports["upstream"])  # speaks plain HTTP
    r = curl("-w", "%{http_code}", "-o", "/dev/null", "http://127.0.0.1:%d/x" % d.ports["gateway"])
    assert r.stdout == b"502"
    assert wait_log(d, r"upstream https://127\.0\.0\.1:\d+ .*TLS: .*answered 502"), d.log()


@pytest.mark.parametrize("case", ["wrong_ca", "system_store", "wrong_name"])
def test_upstream_verification_failure_is_a_502_and_a_log_line(sluice, pki, upstream, case):
    if case == "wrong_ca":
        cfg, why = https_config(pki, ca=pki.other_ca), "unable to get local issuer certificate"
    elif case == "system_store":
        cfg, why = https_config(pki), "unable to get local issuer certificate"
    else:
        cfg, why = https_config(pki, ca=pki.ca, sni="wrong.example"), "hostname mismatch"
    d = sluice(cfg)
    upstream(d.ports["upstream"], server_ctx(pki))
    t0 = time.monotonic()
    for _ in range(6):
        r = curl("-D", "-", "http://127.0.0.1:%d/x" % d.ports["gateway"])
        assert r.stdout.startswith(b"HTTP/1.1 502"), r.stdout
        assert b'"status":502' in r.stdout
    took = time.monotonic() - t0
    assert wait_log(d, r"TLS: certificate verify failed: " + why + r"; answered 502"), d.log()
    # at most one line per second: the repeats are counted, not each logged
    lines = len(re.findall("certificate verify failed", d.log()))
    assert 1 <= lines <= 1 + int(took), (lines, took, d.log())
    if lines < 6:  # some were left out: the next line says how many
        time.sleep(1.1)
        curl("-o", "/dev/null", "http://127.0.0.1:%d/x" % d.ports["gateway"])
        assert wait_log(d, r"answered 502 \(\d+ more since the last report\)"), d.log()


def test_sni_names_the_certificate_host_and_verify_false_accepts_any(sluice, pki, upstream):
    d = sluice(https_config(pki, ca=pki.ca, sni="localhost"))
    upstream(d.ports["upstream"], server_ctx(pki))
    assert curl("http://127.0.0.1:%d/s" % d.ports["gateway"]).stdout == b"up /s xff=127.0.0.1"
    d.stop()
    d2 = sluice(https_config(pki, ca=pki.other_ca, verify=False))
    upstream(d2.ports["upstream"], server_ctx(pki))
    assert curl("http://127.0.0.1:%d/v" % d2.ports["gateway"]).stdout == b"up /v xff=127.0.0.1"


def test_tls_listener_to_an_https_upstream(sluice, pki, upstream):
    cfg = tls_config(pki, server="workers: 2", upstream='"https://localhost:{upstream}"')
    cfg = cfg.replace("admin:", "    upstream_tls:\n      ca: %s\nadmin:" % pki.ca, 1)
    d = sluice(cfg)
    upstream(d.ports["upstream"], server_ctx(pki))
    n = 2 * 1024 * 1024
    r = curl("--cacert", pki.ca, "https://localhost:%d/big/%d" % (d.ports["gateway"], n))
    assert r.returncode == 0 and len(r.stdout) == n, r.stderr


# ---- reload ----

def test_sighup_swaps_the_certificate_and_refuses_a_bad_one(sluice, pki, tmp_path):
    cert, key = str(tmp_path / "live.pem"), str(tmp_path / "live.key")
    with open(pki.cert, "rb") as a, open(cert, "wb") as b:
        b.write(a.read())
    with open(pki.key, "rb") as a, open(key, "wb") as b:
        b.write(a.read())
    cfg = tls_config(pki).replace(pki.cert, cert).replace(pki.key, key)
    d = sluice(cfg)
    port = d.ports["gateway"]
    assert serial_seen(pki, port) == "serial=1092"  # 4242
    # a client kept open across the reload goes on with the old session
    old = tls_sock(pki, port)
    old.sendall(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = b""
    while not buf.endswith(b'{"ok":true}'):
        b = old.recv(4096)
        assert b, buf
        buf += b
    assert buf.startswith(b"HTTP/1.1 200")
    new_cert, new_key = pki.make_cert("renewed", 0xBEEF)
    for src, dst in ((new_cert, cert), (new_key, key)):
        with open(src, "rb") as a, open(dst + ".tmp", "wb") as b:
            b.write(a.read())
        os.rename(dst + ".tmp", dst)
    d.signal(signal.SIGHUP)
    assert wait_log(d, r"reloaded"), d.log()
    assert serial_seen(pki, port) == "serial=BEEF"
    old.sendall(b"GET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert read_until_closed(old).startswith(b"HTTP/1.1 200")
    old.close()
    # a broken certificate is refused with file:line:col; the last good one serves
    with open(cert, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    d.signal(signal.SIGHUP)
    assert wait_log(d, r"reload of .* failed"), d.log()
    assert re.search(r"sluice\.yaml:\d+:\d+: listener tls: cert file '.*live\.pem'", d.log()), \
        d.log()
    assert serial_seen(pki, port) == "serial=BEEF"
    # a key that does not match is refused too
    with open(new_cert, "rb") as a, open(cert, "wb") as b:
        b.write(a.read())
    with open(pki.key, "rb") as a, open(key, "wb") as b:
        b.write(a.read())
    d.signal(signal.SIGHUP)
    assert wait_log(d, r"key file '.*live\.key' does not match cert file"), d.log()
    assert serial_seen(pki, port) == "serial=BEEF"
    assert d.proc.poll() is None


# ---- config errors ----

def validate(tmp_path, text):
    path = tmp_path / "v.yaml"
    path.write_text(text)
    r = run(os.environ.get("SLUICE_BIN", "build/sluice"), "validate", "-c", str(path))
    return r.returncode, r.stderr.decode() + r.stdout.decode()


def test_config_errors_name_file_line_col(tmp_path, pki):
    base = """listeners:
  - name: gateway
    listen: "127.0.0.1:18080"
    mode: proxy
    upstream: %s
%s
limits:
  - { name: ip, key: ip, rate: 10/min }
"""
    rc, out = validate(tmp_path, base % ("static", "    tls: { cert: nope.pem, key: %s }" % pki.key))
    assert rc == 1 and re.search(r"v\.yaml:6:18: listener tls: cert file '.*/nope\.pem': "
                                 r"No such file or directory", out), out
    rc, out = validate(tmp_path, base % ("static", "    tls: { cert: %s, key: %s }" %
                                         (pki.cert, pki.p("other.key"))))
    assert rc == 1 and re.search(r"v\.yaml:6:\d+: listener tls: key file '.*other\.key' does "
                                 r"not match cert file", out), out
    rc, out = validate(tmp_path, base % ("static", "    tls: { cert: %s, key: %s, ciphers: x }"
                                         % (pki.cert, pki.key)))
    assert rc == 1 and re.search(r"v\.yaml:6:\d+: .*unknown key 'ciphers'", out), out
    rc, out = validate(tmp_path, base % ("static", "    tls: { cert: %s }" % pki.cert))
    assert rc == 1 and re.search(r"v\.yaml:6:10: listener tls: missing required key 'key'",
                                 out), out
    rc, out = validate(tmp_path, base % ('"https://127.0.0.1:9"',
                                         "    upstream_tls: { ca: none.pem, verfy: true }"))
    assert rc == 1 and re.search(r"v\.yaml:6:\d+: .*unknown key 'verfy'", out), out
    rc, out = validate(tmp_path, base % ('"https://127.0.0.1:9"', "    upstream_tls: { ca: none.pem }"))
    assert rc == 1 and re.search(r"v\.yaml:6:\d+: upstream_tls: ca file '.*none\.pem': No such",
                                 out), out
    rc, out = validate(tmp_path, base % ('"http://127.0.0.1:9"',
                                         "    upstream_tls: { ca: %s }" % pki.ca))
    assert rc == 1 and re.search(r"v\.yaml:6:19: upstream_tls applies to an https:// upstream",
                                 out), out
    rc, out = validate(tmp_path, base % ('"https://127.0.0.1:9"', "    upstream_tls: { ca: %s, "
                                         "sni: 'bad name' }" % pki.ca))
    assert rc == 1 and re.search(r"v\.yaml:6:\d+: upstream_tls.sni: 'bad name' is not a host",
                                 out), out
    rc, out = validate(tmp_path, base % ('"https://localhost:9"', "    upstream_tls: { ca: %s }"
                                         % pki.ca))
    assert rc == 0, out


# ---- load, rejections, reload and drain with TLS connections open ----

def test_concurrent_tls_clients_each_get_every_answer(sluice, pki):
    d = sluice(tls_config(pki))
    port = d.ports["gateway"]
    errors, counts = [], []

    def client(k):
        try:
            with tls_sock(pki, port) as s:
                got = 0
                for i in range(25):
                    s.sendall(b"GET /c%d/%d HTTP/1.1\r\nHost: x\r\n\r\n" % (k, i))
                    buf = b""
                    while b'{"ok":true}' not in buf:
                        b = s.recv(4096)
                        if not b:
                            raise RuntimeError("closed after %d" % got)
                        buf += b
                    got += 1
                counts.append(got)
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert counts == [25] * 16


def test_a_rejection_over_tls_carries_its_body_and_headers(sluice, pki):
    cfg = tls_config(pki).replace("rate: 100000/min", "rate: 2/min")
    d = sluice(cfg)
    url = "https://localhost:%d/r" % d.ports["gateway"]
    codes = []
    for _ in range(3):
        r = curl("--cacert", pki.ca, "-D", "-", url)
        codes.append(r.stdout.split(b" ", 2)[1])
    assert codes == [b"200", b"200", b"429"], codes
    assert b"Retry-After:" in r.stdout and b"\r\n\r\n{" in r.stdout


def test_reload_during_a_tls_download_and_drain_with_tls_clients_open(sluice, pki, upstream):
    d = sluice(tls_config(pki, upstream='"http://127.0.0.1:{upstream}"'))
    upstream(d.ports["upstream"])
    port = d.ports["gateway"]
    n = 8 * 1024 * 1024
    s = tls_sock(pki, port)
    s.sendall(b"GET /big/%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % n)
    first = s.recv(65536)
    d.signal(signal.SIGHUP)  # mid-transfer
    assert wait_log(d, r"reloaded"), d.log()
    (head, body), = responses(first + read_until_closed(s, limit=n + 65536))
    s.close()
    assert head.startswith(b"HTTP/1.1 200") and len(body) == n
    assert body[:256] == bytes(range(256))
    # idle keep-alive TLS clients and one mid-handshake do not hold the drain
    idle = [tls_sock(pki, port) for _ in range(3)]
    for c in idle:
        c.sendall(b"GET /i HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while not buf.endswith(b"up /i xff=127.0.0.1"):
            b = c.recv(4096)
            assert b, buf
            buf += b
        assert buf.startswith(b"HTTP/1.1 200")
    half = socket.create_connection(("127.0.0.1", port), timeout=T)
    half.sendall(client_hello()[:30])
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    assert d.proc.wait(15) == 0
    assert time.monotonic() - t0 < 12
    assert "AddressSanitizer" not in d.log() and "LeakSanitizer" not in d.log(), d.log()
    for c in idle:
        assert read_until_closed(c) == b""
        c.close()
    half.close()


def test_a_new_upstream_connection_resumes_the_tls_session(sluice, pki, upstream):
    d = sluice(https_config(pki, ca=pki.ca))
    upstream(d.ports["upstream"], server_ctx(pki))
    base = "http://127.0.0.1:%d" % d.ports["gateway"]
    assert curl(base + "/a").stdout == b"up /a xff=127.0.0.1"
    assert curl(base + "/close").stdout == b"up /close xff=127.0.0.1"  # the upstream closes
    assert curl(base + "/b").stdout == b"up /b xff=127.0.0.1"  # a fresh connection
    assert len(Up.conns) == 2, Up.conns
    assert Up.reused == [False, True], Up.reused


def test_an_upstream_that_stalls_the_handshake_is_a_504_after_upstream_timeout(sluice, pki):
    d = sluice(https_config(pki, ca=pki.ca).replace("upstream_timeout: 3s",
                                                     "upstream_timeout: 1s"))
    mute = socket.socket()  # accepts (the kernel's backlog) and never speaks TLS
    mute.bind(("127.0.0.1", d.ports["upstream"]))
    mute.listen(8)
    try:
        t0 = time.monotonic()
        r = curl("-w", "%{http_code}", "-o", "/dev/null",
                 "http://127.0.0.1:%d/x" % d.ports["gateway"])
        took = time.monotonic() - t0
        assert r.stdout == b"504", (r.stdout, d.log())
        assert 0.9 <= took < 4, took
    finally:
        mute.close()
    assert d.proc.poll() is None


def test_bad_requests_over_tls_get_their_http_errors(sluice, pki):
    d = sluice(tls_config(pki, server="workers: 1, max_header_bytes: 4KB"))
    port = d.ports["gateway"]
    with tls_sock(pki, port) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
        data = read_until_closed(s)
    assert data.startswith(b"HTTP/1.1 431"), data[:200]
    with tls_sock(pki, port) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        data = read_until_closed(s)
    assert data.startswith(b"HTTP/1.1 400"), data[:200]
    assert b"Connection: close" in data
    r = curl("--cacert", pki.ca, "https://localhost:%d/ok" % port)
    assert r.stdout == b'{"ok":true}'
