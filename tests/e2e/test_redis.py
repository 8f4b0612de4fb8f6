"""End to end: sluice daemons sharing one real redis-server (store.type:
redis). Real processes on free loopback ports, real HTTP clients in
threads:

- several nodes admit exactly the limit in total under concurrent clients,
  and the X-RateLimit-Remaining values they hand out are each used once;
- a multi-limit decision (ip + key + account) denied by its last limit
  consumes nothing on the others;
- Redis killed or paused mid-run: on_error deny answers 503, allow lets
  requests through, nothing hangs, sluice_store_errors_total grows, and the
  nodes recover by themselves when Redis is back on the same port;
- local_cache: a rejected key is answered 429 locally while Redis is
  paused.

Every redis-server is started here (--save '' --appendonly no, its own temp
dir) and stopped by PID at the end, also on failure. The helpers are
shared with test_redis_cluster.py."""
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest
import requests

import redis as redis_py

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server not installed")

HTTP_TIMEOUT = 5.0  # s: a request still open after this counts as hung


# ---- redis-server processes ----

def port_bindable(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_redis_port(cluster=False):
    """A free port; for a cluster node also its bus port (+10000, < 65536)."""
    rnd = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(1000):
        p = rnd.randrange(20000, 40000)
        if port_bindable(p) and (not cluster or port_bindable(p + 10000)):
            return p
    raise RuntimeError("no free port")


class RedisProc:
    """One redis-server on 127.0.0.1:port, working in dir, stopped by PID."""

    def __init__(self, port, workdir, extra=()):
        self.port = port
        self.dir = workdir
        self.extra = list(extra)
        self.proc = None
        self.start()

    def start(self, timeout=10.0):
        log = open(os.path.join(self.dir, "redis-%d.log" % self.port), "ab")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--loglevel", "warning", *self.extra],
            cwd=self.dir, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server on %d exited: %s" % (self.port, self.log()))
            try:
                if self.client().ping():
                    return
            except redis_py.RedisError:
                time.sleep(0.02)
        raise RuntimeError("redis-server on %d did not answer PING" % self.port)

    def log(self):
        try:
            with open(os.path.join(self.dir, "redis-%d.log" % self.port), "rb") as f:
                return f.read().decode(errors="replace")[-2000:]
        except OSError:
            return ""

    @property
    def pid(self):
        return self.proc.pid

    def client(self, timeout=1.0):
        return redis_py.Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout,
                              socket_connect_timeout=timeout)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def pause(self):
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self):
        os.kill(self.pid, signal.SIGCONT)

    def kill(self):
        """SIGKILL (after SIGCONT, in case it is paused) and reap."""
        if self.alive():
            os.kill(self.pid, signal.SIGCONT)
            os.kill(self.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)


@pytest.fixture
def redis_servers():
    """Factory: redis_servers(port=None, extra=()) -> RedisProc. Every
    server is killed by PID when the test ends, its temp dir removed."""
    procs = []
    tmp = tempfile.mkdtemp(prefix="sluice-e2e-redis-")

    def start(port=None, extra=(), cluster=False):
        r = RedisProc(port or free_redis_port(cluster), tmp, extra)
        procs.append(r)
        return r

    try:
        yield start
    finally:
        for r in procs:
            try:
                r.kill()
            except Exception:  # keep stopping the others
                pass
        shutil.rmtree(tmp, ignore_errors=True)


# ---- HTTP traffic ----

class Tally:
    """Thread-safe record of responses: (status, remaining header, seconds)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rows = []

    def add(self, row):
        with self.lock:
            self.rows.append(row)

    def statuses(self):
        with self.lock:
            return [r[0] for r in self.rows]

    def count(self, status):
        return sum(1 for s in self.statuses() if s == status)

    def remaining_of(self, status):
        with self.lock:
            return [r[1] for r in self.rows if r[0] == status]

    def slowest(self):
        with self.lock:
            return max((r[2] for r in self.rows), default=0.0)


def one_request(session, url, headers, tally):
    t0 = time.monotonic()
    try:
        r = session.get(url, headers=headers, timeout=HTTP_TIMEOUT)
        status, rem = r.status_code, r.headers.get("X-RateLimit-Remaining")
    except requests.RequestException as e:
        status, rem = "error: %s" % type(e).__name__, None
    tally.add((status, rem, time.monotonic() - t0))
    return status


def hammer(urls, headers, total, threads=8, deadline_s=30.0):
    """Send `total` GETs from `threads` threads, request i to
    urls[i % len(urls)] with `headers`, or headers(i) when it is a
    function. Returns the Tally."""
    tally = Tally()
    lock = threading.Lock()
    next_i = [0]
    stop_at = time.monotonic() + deadline_s

    def worker():
        s = requests.Session()
        try:
            while time.monotonic() < stop_at:
                with lock:
                    i = next_i[0]
                    if i >= total:
                        return
                    next_i[0] += 1
                one_request(s, urls[i % len(urls)],
                            headers(i) if callable(headers) else headers, tally)
        finally:
            s.close()

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(deadline_s + HTTP_TIMEOUT + 5)
    assert not any(t.is_alive() for t in ts), "client threads did not finish"
    assert len(tally.rows) == total, "only %d of %d requests done in %.0f s" % (
        len(tally.rows), total, deadline_s)
    return tally


def metric(daemon, name):
    text = requests.get(daemon.url("admin", "/metrics"), timeout=HTTP_TIMEOUT).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("%s not in /metrics" % name)


def decide(daemon, body):
    r = requests.post(daemon.url("admin", "/v1/decide"), json=body, timeout=HTTP_TIMEOUT)
    assert r.status_code == 200, r.text
    return r.json()


def limits_by_name(answer):
    return {lim["name"]: lim for lim in answer["limits"]}


def wait_until(pred, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def redis_keys_ending(client, value):
    """Keys of the store whose descriptor bytes end with `value` (each
    descriptor part is stored as kind, 2-byte length, bytes)."""
    tail = struct.pack(">H", len(value)) + value.encode()
    return [k for k in client.scan_iter(match="sl2:*", count=1000) if k.endswith(tail)]


def key_entries(client, key):
    """{limit id hex: (expires ns, v1, v2)} of a store key
    "sl2:{<tag>}:<bytes>": a version byte 3 and the key's TTL deadline
    (ms, int64), then one 32-byte entry per limit on that descriptor value
    (src/store/redis_lib.lua): the limit id's low 53 bits, its expiry as ns
    before the deadline, v1, v2; little-endian int64s."""
    v = client.get(key) or b""
    assert v[:1] == b"\x03" and len(v) >= 9 and (len(v) - 9) % 32 == 0, v
    (dl,) = struct.unpack_from("<q", v, 1)
    out = {}
    for off in range(9, len(v), 32):
        lid, d, v1, v2 = struct.unpack_from("<qqqq", v, off)
        out["%x" % lid] = (dl * 10**6 - d, v1, v2)
    return out


def key_limit_id(key, client):
    """The limit id of the one limit whose state a store key holds."""
    (lid,) = key_entries(client, key).keys()
    return lid


def quota_used(client, value, limit_id):
    """Units used of the quota state of (limit_id, descriptor value) in
    this Redis, 0 when there is none. Read straight from Redis: a
    /v1/decide of cost 0 would cost 1 (0 means the default cost), and a
    local cache could answer it."""
    for k in redis_keys_ending(client, value):
        ent = key_entries(client, k)
        if limit_id in ent:
            return ent[limit_id][1]
    return 0


def learn_limit_id(client, node, headers):
    """The limit id of the one limit a decide with `headers` (one header
    with a value unique to this call) checks."""
    (value,) = headers.values()
    ans = decide(node, {"headers": headers})
    assert ans["allowed"], ans
    keys = redis_keys_ending(client, value)
    assert len(keys) == 1, keys
    return key_limit_id(keys[0], client)


# ---- configs ----

def store_yaml(url, cluster=False, on_error="deny", timeout="500ms", pool=2, local_cache=False):
    return ('store: {{{{ type: redis, url: "{url}", cluster: {cluster}, on_error: {on_error}, '
            'timeout: {timeout}, pool: {pool}, local_cache: {lc} }}}}').format(
                url=url, cluster="true" if cluster else "false", on_error=on_error,
                timeout=timeout, pool=pool, lc="true" if local_cache else "false")


def node_config(body, workers=2):
    """A sluice node's config: one static gateway, the admin listener, the
    store (a `%s` filled by store_yaml() later) and then `body` (identify,
    plans, limits; braces doubled for the harness's format())."""
    return ("server: {{ workers: %d }}\n" % workers) + """listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: static }}
admin: {{ listen: "127.0.0.1:{admin}" }}
%s
""" + body


# Two limits on different headers (a request carrying one header is checked
# by that limit only): a quota and a rate whose emission interval (36 s) is
# longer than the test, so both admit exactly their N.
SHARED = node_config("""
identify:
  key: {{ required: false }}
limits:
  - {{ name: hourly, key: "header:X-Client", quota: 200/hour }}
  - {{ name: smooth, key: "header:X-Rate-Client", rate: 100/hour }}
""")


def shared_config(url, **kw):
    return SHARED % store_yaml(url, **kw)


def test_nodes_sharing_one_redis_admit_exactly_the_limit(sluice, redis_servers):
    r = redis_servers()
    url = "redis://127.0.0.1:%d" % r.port
    nodes = [sluice(shared_config(url)) for _ in range(3)]
    urls = [n.url("gateway", "/api") for n in nodes]

    t = hammer(urls, {"X-Client": "tenant-1"}, total=260, threads=8)
    assert sorted(set(t.statuses())) == [200, 429], t.statuses()
    assert t.count(200) == 200 and t.count(429) == 60
    # every admission took one unit atomically: each remaining value once
    assert sorted(int(x) for x in t.remaining_of(200)) == list(range(200))
    assert set(t.remaining_of(429)) == {"0"}

    t = hammer(urls, {"X-Rate-Client": "tenant-1"}, total=140, threads=8)
    assert t.count(200) == 100 and t.count(429) == 40, t.statuses()
    assert sorted(int(x) for x in t.remaining_of(200)) == list(range(100))

    # the counters are Redis's: every node sees the same exhausted state
    # (a denied decision consumes nothing)
    for n in nodes:
        a = decide(n, {"headers": {"X-Client": "tenant-1"}})
        assert not a["allowed"] and limits_by_name(a)["hourly"]["remaining"] == 0
    hourly = learn_limit_id(r.client(), nodes[0], {"X-Client": "learn-hourly"})
    assert quota_used(r.client(), "tenant-1", hourly) == 200
    assert metric(nodes[0], "sluice_store_errors_total") == 0
    assert sum(len(key_entries(r.client(), k)) for k in redis_keys_ending(r.client(), "tenant-1")) \
        == 2


MULTI = node_config("""
identify:
  key: {{ from: ["header:X-Api-Key"] }}
  accounts:
    - {{ account: acme, plan: basic, keys: ["k-acme-1", "k-acme-2"] }}
    - {{ account: beta, plan: basic, keys: ["k-beta-1"] }}
plans:
  basic: {{ title: Basic }}
limits:
  - {{ name: ip,      key: ip,      quota: 100/hour }}
  - {{ name: key,     key: key,     quota: 50/hour }}
  - {{ name: account, key: account, quota: 3/hour }}
""")


def test_multi_limit_denial_by_the_last_limit_consumes_nothing(sluice, redis_servers):
    r = redis_servers()
    cfg = MULTI % store_yaml("redis://127.0.0.1:%d" % r.port)
    a, b = sluice(cfg), sluice(cfg)

    def ask(node, key, ip="10.1.1.1"):
        return decide(node, {"ip": ip, "key": key, "path": "/v1/x"})

    for i, node in enumerate([a, b, a]):
        ans = ask(node, "k-acme-1")
        assert ans["allowed"], ans
        lim = limits_by_name(ans)
        assert (lim["ip"]["remaining"], lim["key"]["remaining"], lim["account"]["remaining"]) \
            == (99 - i, 49 - i, 2 - i)
    # concurrent denials by the account limit, on both nodes, both keys
    errors = []

    def deny_some(node, key):
        try:
            for _ in range(10):
                ans = ask(node, key)
                assert not ans["allowed"] and ans["status"] == 429, ans
                assert ans["denied_by"] == "account", ans
        except AssertionError as e:
            errors.append(e)

    ts = [threading.Thread(target=deny_some, args=(n, k))
          for n in (a, b) for k in ("k-acme-1", "k-acme-2")]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not errors, errors[0]
    # nothing of the 40 denials was taken from ip or key
    lim = limits_by_name(ask(b, "k-acme-1"))
    assert lim["ip"]["remaining"] == 97 and lim["key"]["remaining"] == 47
    ans = ask(a, "k-beta-1")  # same ip, another account: allowed, ip count 97 -> 96
    assert ans["allowed"]
    assert limits_by_name(ans)["ip"]["remaining"] == 96
    assert limits_by_name(ans)["key"]["remaining"] == 49
    # the same through the proxy: the 429 carries the account limit's headers
    resp = requests.get(b.url("gateway", "/v1/x"), headers={"X-Api-Key": "k-acme-2"},
                        timeout=HTTP_TIMEOUT)
    assert resp.status_code == 429
    assert resp.headers["X-RateLimit-Limit"] == "3"
    assert resp.headers["X-RateLimit-Remaining"] == "0"
    lim = limits_by_name(decide(a, {"ip": "127.0.0.1", "key": "k-acme-2"}))  # denied
    assert lim["key"]["remaining"] == 50 and lim["ip"]["remaining"] == 100


# ---- faults ----

FAULT = node_config("""
identify:
  key: {{ required: false }}
limits:
  - {{ name: hourly, key: "header:X-Client", quota: 1000/hour }}
""")

TIMEOUT_S = 0.2  # the store timeout of the fault configs
NO_HANG_S = 1.0  # every request must finish well before this


def fault_nodes(sluice, r, on_error):
    cfg = FAULT % store_yaml("redis://127.0.0.1:%d" % r.port, on_error=on_error,
                             timeout="%dms" % (TIMEOUT_S * 1000))
    return [sluice(cfg), sluice(cfg)]


def burst(nodes, n, client="c1", threads=4):
    return hammer([d.url("gateway", "/x") for d in nodes], {"X-Client": client}, n, threads)


def decided_again(nodes, client, tries=12):
    """Every node answers decided 200s (with rate-limit headers) again, on
    `tries` fresh connections each: SO_REUSEPORT spreads connections over
    a node's workers, and each worker reconnects on its own back-off
    schedule, so one answer per node does not show that all recovered."""
    def ok():
        for d in nodes:
            for _ in range(tries):
                try:
                    resp = requests.get(d.url("gateway", "/x"), headers={"X-Client": client},
                                        timeout=HTTP_TIMEOUT)
                except requests.RequestException:
                    return False
                if resp.status_code != 200 or "X-RateLimit-Remaining" not in resp.headers:
                    return False
        return True
    return ok


@pytest.mark.parametrize("on_error,status", [("deny", 503), ("allow", 200)])
def test_redis_killed_and_restarted(sluice, redis_servers, on_error, status):
    r = redis_servers()
    nodes = fault_nodes(sluice, r, on_error)
    t = burst(nodes, 20)
    assert t.statuses() == [200] * 20
    errors0 = sum(metric(d, "sluice_store_errors_total") for d in nodes)

    r.kill()
    t = burst(nodes, 40)
    assert t.statuses() == [status] * 40, t.statuses()
    assert t.slowest() < NO_HANG_S, t.slowest()
    if on_error == "allow":  # passed, but not decided: no rate-limit headers
        assert t.remaining_of(200) == [None] * 40
    errors1 = sum(metric(d, "sluice_store_errors_total") for d in nodes)
    assert errors1 >= errors0 + 40
    # the operator sees the outage once per node, not once per worker or
    # pooled connection or request (issue 12: store connection lost)
    lost = "store: redis 127.0.0.1:%d connection lost" % r.port
    for d in nodes:
        assert wait_until(lambda: lost in d.log(), 5.0), d.log()
        assert d.log().count(lost) == 1, d.log()

    r.start()  # same port, empty data set
    assert wait_until(decided_again(nodes, "c2"), 10.0), "nodes did not recover in 10 s"
    back = "store: redis 127.0.0.1:%d connection restored after " % r.port
    for d in nodes:
        assert wait_until(lambda: back in d.log(), 5.0), d.log()
        assert d.log().count(back) == 1, d.log()
    t = burst(nodes, 30, client="c3")
    assert t.statuses() == [200] * 30
    assert sorted(int(x) for x in t.remaining_of(200)) == list(range(970, 1000))


def test_redis_paused_requests_fail_within_the_timeout(sluice, redis_servers):
    r = redis_servers()
    nodes = fault_nodes(sluice, r, "deny")
    assert burst(nodes, 10).statuses() == [200] * 10
    errors0 = sum(metric(d, "sluice_store_errors_total") for d in nodes)
    r.pause()
    try:
        t = burst(nodes, 16, threads=8)
    finally:
        r.resume()
    assert t.statuses() == [503] * 16, t.statuses()
    assert t.slowest() < NO_HANG_S, t.slowest()
    assert sum(metric(d, "sluice_store_errors_total") for d in nodes) >= errors0 + 16
    assert wait_until(decided_again(nodes, "c4"), 10.0), "nodes did not recover in 10 s"
    # a hung server is named as such, once, and its return too
    for d in nodes:
        log = d.log()
        assert log.count("store: redis 127.0.0.1:%d connection lost: no answer within "
                         "store.timeout" % r.port) == 1, log
        assert wait_until(lambda: "connection restored after" in d.log(), 5.0), d.log()


# ---- local over-limit cache ----

CACHE = node_config("""
identify:
  key: {{ required: false }}
limits:
  - {{ name: hourly, key: "header:X-Client", quota: 3/hour }}
""", workers=1)


def test_local_cache_answers_rejections_without_redis(sluice, redis_servers):
    r = redis_servers()
    d = sluice(CACHE % store_yaml("redis://127.0.0.1:%d" % r.port, on_error="deny",
                                  timeout="300ms", local_cache=True))
    s = requests.Session()
    url = d.url("gateway", "/x")

    def get(client):
        t0 = time.monotonic()
        resp = s.get(url, headers={"X-Client": client}, timeout=HTTP_TIMEOUT)
        return resp, time.monotonic() - t0

    assert [get("hot")[0].status_code for _ in range(3)] == [200] * 3
    first, _ = get("hot")
    assert first.status_code == 429
    retry = int(first.headers["Retry-After"])
    errors0 = metric(d, "sluice_store_errors_total")
    r.pause()
    try:
        for _ in range(5):
            resp, took = get("hot")
            assert resp.status_code == 429, (resp.status_code, resp.text)
            assert resp.headers["X-RateLimit-Remaining"] == "0"
            assert resp.headers["X-RateLimit-Limit"] == "3"
            assert 0 < int(resp.headers["Retry-After"]) <= retry
            assert took < NO_HANG_S
        # a key never rejected does need Redis: it fails (on_error deny)
        resp, took = get("cold")
        assert resp.status_code == 503 and took < NO_HANG_S
    finally:
        r.resume()
    assert metric(d, "sluice_store_errors_total") == errors0 + 1
    assert wait_until(lambda: get("cold2")[0].status_code == 200, 10.0)
    assert get("hot")[0].status_code == 429
    # Redis holds exactly the 3 admitted units of "hot"
    (key,) = redis_keys_ending(r.client(), "hot")
    assert quota_used(r.client(), "hot", key_limit_id(key, r.client())) == 3
