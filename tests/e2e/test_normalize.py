"""One canonical form of a request (docs/normalize.md, issue 10 item 6),
over real sockets with a real upstream: every spelling of a route's path
hits that route's limit (proxy and check listeners), Host variants count
together, an absolute-form target is keyed and forwarded with its authority
as Host, IPv6 clients in one /64 share a counter, heads RFC 9112 refuses
(two Hosts, no Host on 1.1, whitespace before a colon) and a key header
given twice are 400 with a JSON body and never reach the upstream, the
upstream's own X-RateLimit-* are replaced by sluice's, and the client's
bytes are forwarded unless `normalize: forward` is set. Requests are raw
bytes (clients such as requests/urllib3 would tidy the spellings first);
loopback only, every socket has a timeout."""
import http.server
import json
import socket
import threading

from conftest import free_port
from test_proxy import Upstream

T = 5  # seconds per socket operation

CONFIG = """
server: {{ workers: 1 }}
listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: "http://127.0.0.1:{upstream}" }}
  - {{ name: auth, listen: "127.0.0.1:{check}", mode: check }}
admin: {{ listen: "127.0.0.1:{admin}" }}
identify:
  ip: {{ trusted_proxies: ["127.0.0.0/8"] }}
  key: {{ from: ["header:X-Api-Key"], required: false }}
limits:
  - {{ name: ip, key: ip, rate: 1000/min }}
routes:
  - name: login
    match: {{ path: /auth/login }}
    limits: [ {{ name: login, key: ip, rate: 3/min }} ]
  - name: hosted
    match: {{ path: "/h/*" }}
    limits: [ {{ name: per_host, key: host, rate: 3/min }} ]
{extra}
"""

SPELLINGS = ["/auth/login/", "//auth/login", "/./auth/login", "/auth/%6cogin", "/AUTH/login",
             "/auth//login", "/x/../auth/login", "/%61uth/LOGIN/", "/auth/login/.",
             "/auth/%2e/login", "/../auth/login"]


class Handler(http.server.BaseHTTPRequestHandler):
    """Echoes what it received, and sends rate-limit headers of its own."""
    protocol_version = "HTTP/1.1"
    seen = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        Handler.seen.append(self.path)
        body = json.dumps({"target": self.path, "host": self.headers.get_all("Host"),
                           "keys": self.headers.get_all("X-Api-Key")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-RateLimit-Limit", "999999")
        self.send_header("x-ratelimit-remaining", "999998")
        self.send_header("X-RateLimit-Policy-Upstream", "kept")
        self.send_header("Retry-After", "7")
        self.end_headers()
        self.wfile.write(body)


def start(sluice, extra=""):
    port = free_port()
    up = Upstream(port, Handler)
    extra = extra.replace("{", "{{").replace("}", "}}")
    d = sluice(CONFIG.replace("{extra}", extra), ports={"upstream": port})
    return d, up


class Resp:
    def __init__(self, raw):
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1]) if lines[0].startswith("HTTP/1.1 ") else None
        self.headers = [tuple(x.strip() for x in l.split(":", 1)) for l in lines[1:] if ":" in l]

    def all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)


def send(port, data):
    """One request on its own connection (the head says Connection: close
    when built by req()); returns the parsed response."""
    s = socket.create_connection(("127.0.0.1", port), timeout=T)
    try:
        s.sendall(data)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    finally:
        s.close()
    return Resp(out)


def req(target, host="a.example", headers=(), version="1.1"):
    h = "GET %s HTTP/%s\r\n" % (target, version)
    if host is not None:
        h += "Host: %s\r\n" % host
    for k, v in headers:
        h += "%s: %s\r\n" % (k, v)
    return (h + "Connection: close\r\n\r\n").encode("latin-1")


def xff(ip):
    return [("X-Forwarded-For", ip)]


def test_every_spelling_hits_the_route_limit(sluice):
    d, up = start(sluice)
    port = d.ports["gateway"]
    try:
        for i, spelling in enumerate(SPELLINGS):
            # three canonical requests, then the spelling is the 4th
            ip = "10.1.%d.1" % i
            for _ in range(3):
                assert send(port, req("/auth/login", headers=xff(ip))).status == 200
            r = send(port, req(spelling, headers=xff(ip)))
            assert r.status == 429, spelling
            assert r.all("X-RateLimit-Limit") == ["3"]
            # three by the spelling, then the canonical path is the 4th
            ip = "10.2.%d.1" % i
            for _ in range(3):
                r = send(port, req(spelling, headers=xff(ip)))
                assert r.status == 200, spelling
                assert r.all("X-RateLimit-Limit") == ["3"], spelling
            assert send(port, req("/auth/login", headers=xff(ip))).status == 429, spelling
        # not spellings of it: other paths, an encoded slash
        for other in ("/auth/login2", "/auth/login%2F", "/auth", "/auth/login;x"):
            assert send(port, req(other, headers=xff("10.1.0.1"))).status == 200, other
    finally:
        up.close()


def test_every_spelling_hits_the_route_limit_on_the_check_listener(sluice):
    d, up = start(sluice)
    up.close()
    port = d.ports["check"]
    for i, spelling in enumerate(SPELLINGS[:6]):
        ip = "10.3.%d.1" % i
        for _ in range(3):
            h = xff(ip) + [("X-Original-URI", "/auth/login"), ("X-Original-Method", "GET")]
            assert send(port, req("/check", headers=h)).status == 200
        h = xff(ip) + [("X-Original-URI", spelling), ("X-Original-Method", "GET")]
        assert send(port, req("/check", headers=h)).status == 429, spelling


def test_case_and_trailing_slash_can_be_strict(sluice):
    d, up = start(sluice, "normalize: { case: sensitive, trailing_slash: strict }\n")
    port = d.ports["gateway"]
    try:
        for _ in range(3):
            assert send(port, req("/auth/login", headers=xff("10.4.0.1"))).status == 200
        # still one resource: escapes, dot segments, merged slashes
        assert send(port, req("//auth/./%6cogin", headers=xff("10.4.0.1"))).status == 429
        # but these are other paths now
        for other in ("/AUTH/login", "/auth/login/"):
            assert send(port, req(other, headers=xff("10.4.0.1"))).status == 200, other
    finally:
        up.close()


def test_malformed_heads_and_twice_given_key_are_400_json(sluice):
    d, up = start(sluice)
    port = d.ports["gateway"]
    try:
        Handler.seen.clear()
        bad = [
            b"GET /info HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
            b"GET /info HTTP/1.1\r\nHost: a.example\r\nhost: a.example\r\n\r\n",
            b"GET /info HTTP/1.1\r\nConnection: close\r\n\r\n",
            b"GET http://a.example/info HTTP/1.1\r\n\r\n",
            b"GET /info HTTP/1.1\r\nHost: a.example\r\nX-Api-Key : k\r\n\r\n",
            b"GET /info HTTP/1.1\r\nHost : a.example\r\n\r\n",
            b"GET /info HTTP/1.1\r\nHost: a.example\r\nX-Api-Key\t: k\r\n\r\n",
            b"GET /info HTTP/1.1\r\nHost: a.example\r\nX-Api-Key: k1\r\nX-Api-Key: k2\r\n\r\n",
            b"GET /info HTTP/1.1\r\nHost: a.example\r\nX-Api-Key: k\r\nx-api-key: k\r\n\r\n",
            # CGI-style upstreams read X_Api_Key as the same HTTP_X_API_KEY
            b"GET /info HTTP/1.1\r\nHost: a.example\r\nX-Api-Key: k1\r\nX_Api_Key: k2\r\n\r\n",
            b"GET /info HTTP/1.1\r\nHost: user@a.example\r\n\r\n",
            b"GET /info%zz HTTP/1.1\r\nHost: a.example\r\n\r\n",
            b"GET /info%00.json HTTP/1.1\r\nHost: a.example\r\n\r\n",
        ]
        for data in bad:
            r = send(port, data)
            assert r.status == 400, data
            assert r.all("Content-Type") == ["application/json"], data
            assert r.json()["error"]["status"] == 400, data
        assert Handler.seen == []
        # the well-formed neighbours go through
        ok = [b"GET /info HTTP/1.0\r\n\r\n",
              b"GET /info HTTP/1.1\r\nHost: a.example\r\nX-Api-Key: k\r\nConnection: close\r\n\r\n"]
        for data in ok:
            assert send(port, data).status == 200, data
        assert len(Handler.seen) == 2
    finally:
        up.close()


def test_host_variants_count_together(sluice):
    d, up = start(sluice)
    port = d.ports["gateway"]
    try:
        for host in ("a.example", "A.EXAMPLE", "a.example:80", "a.example."):
            last = send(port, req("/h/x", host=host))
        assert last.status == 429
        assert send(port, req("/h/x", host="A.Example.:80")).status == 429
        assert send(port, req("/h/x", host="a.example:8080")).status == 200
        assert send(port, req("/h/x", host="b.example")).status == 200
    finally:
        up.close()


def test_absolute_form_is_keyed_and_forwarded_on_its_authority(sluice):
    d, up = start(sluice)
    port = d.ports["gateway"]
    try:
        r = send(port, req("http://b.example/info?q=1", host="a.example"))
        assert r.status == 200
        j = r.json()
        assert j["host"] == ["b.example"]  # RFC 9112 3.2.2: Host replaced, only one
        assert j["target"] == "/info?q=1"  # origin-form upstream
        # keyed on the authority too: counts with Host: c.example
        for _ in range(2):
            assert send(port, req("/h/y", host="c.example")).status == 200
        assert send(port, req("http://C.example/h/y", host="elsewhere.example")).status == 200
        assert send(port, req("/h/y", host="c.example")).status == 429
    finally:
        up.close()


def test_ipv6_clients_in_one_64_share_a_counter(sluice):
    d, up = start(sluice)
    port = d.ports["gateway"]
    try:
        for ip in ("2001:db8:1:2::a", "2001:db8:1:2::b", "2001:db8:1:2:ffff:eeee:dddd:cccc"):
            assert send(port, req("/auth/login", headers=xff(ip))).status == 200
        assert send(port, req("/auth/login", headers=xff("2001:db8:1:2::d"))).status == 429
        assert send(port, req("/auth/login", headers=xff("[2001:db8:1:2::e]"))).status == 429
        assert send(port, req("/auth/login", headers=xff("2001:db8:1:3::a"))).status == 200
    finally:
        up.close()


def test_ipv6_prefix_is_configurable(sluice):
    port_up = free_port()
    up = Upstream(port_up, Handler)
    text = CONFIG.replace("{extra}", "").replace(
        'trusted_proxies: ["127.0.0.0/8"]', 'trusted_proxies: ["127.0.0.0/8"], ipv6_prefix: 48')
    d = sluice(text, ports={"upstream": port_up})
    port = d.ports["gateway"]
    try:
        for ip in ("2001:db8:1:2::a", "2001:db8:1:3::a", "2001:db8:1:ffff::a"):
            assert send(port, req("/auth/login", headers=xff(ip))).status == 200
        assert send(port, req("/auth/login", headers=xff("2001:db8:1::1"))).status == 429
        assert send(port, req("/auth/login", headers=xff("2001:db8:2::1"))).status == 200
    finally:
        up.close()


def test_upstream_rate_limit_headers_are_replaced(sluice):
    d, up = start(sluice)
    port = d.ports["gateway"]
    try:
        r = send(port, req("/info"))
        assert r.status == 200
        assert r.all("X-RateLimit-Limit") == ["1000"]  # sluice's, and only it
        assert r.all("X-RateLimit-Remaining") == ["999"]
        assert len(r.all("X-RateLimit-Reset")) == 1
        # names sluice does not render on a forwarded response stay
        assert r.all("X-RateLimit-Policy-Upstream") == ["kept"]
        assert r.all("Retry-After") == ["7"]
    finally:
        up.close()


# no leading "//": Python's http.server folds that itself
TARGET = "/info//./a/../b%7e%41/x%2fy?q=%41&k=%7e"


def test_original_bytes_forwarded_unless_normalize_forward(sluice):
    d, up = start(sluice)
    try:
        j = send(d.ports["gateway"], req(TARGET, host="A.Example.:80")).json()
        assert j["target"] == TARGET
        assert j["host"] == ["A.Example.:80"]
    finally:
        up.close()

    d, up = start(sluice, "normalize: forward\n")
    try:
        j = send(d.ports["gateway"], req(TARGET, host="A.Example.:80")).json()
        assert j["target"] == "/info/b~A/x%2Fy?q=%41&k=%7e"  # the query is left as it is
        assert j["host"] == ["a.example"]
    finally:
        up.close()

    d, up = start(sluice, "normalize: { forward: canonical, case: sensitive }\n")
    try:
        j = send(d.ports["gateway"], req("/AUTH//login/", host="a.example:8080")).json()
        assert j["target"] == "/AUTH/login/"  # case and trailing slash are matching rules
        assert j["host"] == ["a.example:8080"]
    finally:
        up.close()


def test_a_host_that_is_empty_once_canonical_is_400(sluice):
    """"Host: .", ":80", an empty Host on HTTP/1.1 and "http:///x" would
    leave the canonical host empty, which a `host` key reads as missing:
    the host limit was skipped for them. RFC 9110 4.2.1: reject."""
    d, up = start(sluice)
    port = d.ports["gateway"]
    try:
        for host in (".", "...", ":80", "", " ", "[]:80"):
            r = send(port, req("/h/x", host=host))
            assert r.status == 400, host
            assert json.loads(r.body)["error"]["status"] == 400
        assert send(port, req("http:///x", host="real.example")).status == 400
        assert send(port, req("/h/x", host="a.example")).status == 200
    finally:
        up.close()
