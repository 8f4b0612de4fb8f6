"""Zero-downtime upgrade and restart (docs/daemon.md "Upgrades and
restarts"): `sluice serve -c FILE --takeover` started beside the running
one takes its listening sockets, its idle connections and its counters;
the old one drains and exits 0. A bounded load across it sees no failed
request, a quota counter is exact across it, a changed config binds new
listeners and closes removed ones, and every failure of the handover
(no old process, a hung one, a garbage client, kill -9 of the new one
mid-way) leaves the old one serving."""
import http.client
import http.server
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import ROOT, SLUICE, free_port, wait_port
from test_proxy import Upstream
from test_redis import redis_servers  # noqa: F401 (fixture)

T = 5

CONFIG = """
server: {{ workers: 2, drain_timeout: 5s }}
listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: "http://127.0.0.1:{upstream}" }}
admin: {{ listen: "127.0.0.1:{admin}" }}
store: {{ type: memory, snapshot: state.snap }}
limits:
  - {{ name: daily, key: ip, quota: 100000/day }}
  - {{ name: inflight, key: ip, concurrency: 50 }}
"""

STATIC = """
server: {{ workers: 2 }}
listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: static }}
admin: {{ listen: "127.0.0.1:{admin}" }}
store: {{ type: memory{snapshot} }}
limits:
  - {{ name: daily, key: ip, quota: 1000/day }}
"""


class SlowHandler(http.server.BaseHTTPRequestHandler):
    """An upstream that takes 20 ms, so requests are in flight at the
    handover."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        time.sleep(0.02)
        body = b'{"up":true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def takeover():
    """takeover(d, env=None) -> Popen of `sluice serve -c d's config
    --takeover` (stderr in proc.log()); killed at the end if still alive."""
    procs = []

    def start(d, env=None):
        path = os.path.join(d.tmpdir, "new-%d.log" % len(procs))
        err = open(path, "wb")
        e = dict(os.environ)
        e.update(env or {})
        p = subprocess.Popen([SLUICE, "serve", "-c", d.config_path, "--takeover"],
                             stdout=subprocess.DEVNULL, stderr=err, cwd=d.tmpdir, env=e)
        err.close()
        p.log = lambda: open(path, "rb").read().decode(errors="replace")
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def wait_log(read, text, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in read():
            return True
        time.sleep(0.02)
    return False


WELCOME = b"SLTK\x01\x0c\x00\x00\x00\x00\x00\x00"  # version 1, type 12, no payload


def serving(d):
    """d once its control socket is there (made after the listeners)."""
    assert wait_log(d.log, "serving"), d.log()
    return d


def remaining(d, path="/", timeout=T):
    r = requests.get(d.url("gateway", path), headers={"Connection": "close"}, timeout=timeout)
    assert r.status_code == 200, r.text
    return int(r.headers["X-RateLimit-Remaining"])


def test_load_across_takeover_has_no_failed_request(sluice, takeover):
    up = Upstream(free_port(), SlowHandler)
    try:
        d = serving(sluice(CONFIG, ports={"upstream": up.srv.server_address[1]}))
        port = d.ports["gateway"]
        ok, failed, lock = [0], [], threading.Lock()
        stop = threading.Event()

        def keep_alive():
            with requests.Session() as s:
                while not stop.is_set():
                    try:
                        r = s.get("http://127.0.0.1:%d/ka" % port, timeout=T)
                        good = r.status_code == 200
                    except Exception as e:  # every failure counts
                        good, r = False, e
                    with lock:
                        ok[0] += good
                        if not good:
                            failed.append(repr(r))

        def close_each():
            while not stop.is_set():
                try:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=T)
                    c.request("GET", "/close", headers={"Connection": "close"})
                    r = c.getresponse()
                    r.read()
                    good = r.status == 200 and r.getheader("Connection") == "close"
                    c.close()
                except Exception as e:
                    good, r = False, e
                with lock:
                    ok[0] += good
                    if not good:
                        failed.append(repr(r))

        threads = [threading.Thread(target=f, daemon=True)
                   for f in (keep_alive, keep_alive, close_each, close_each)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while ok[0] < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        new = takeover(d)
        assert d.proc.wait(20) == 0, d.log()
        at_exit = ok[0]
        while ok[0] < at_exit + 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join(T + 1)
        assert failed == [], failed[:5]
        assert ok[0] >= 200 and ok[0] < 5000, ok[0]
        assert new.poll() is None, new.log()
        assert "handed over to pid %d" % new.pid in d.log()
        # every allowed request was counted once, by one of the two
        rem = remaining(d)
        assert rem == 100000 - ok[0] - 1, (rem, ok[0])
        # the keep-alive connections idle at the handover went over whole
        assert wait_log(new.log, "finished ("), new.log()
        took = re.search(r"finished \((\d+) connections and (\d+) releases", new.log())
        assert int(took.group(1)) >= 1 and int(took.group(2)) >= 1, new.log()
        # concurrency slots of the old one's in-flight requests came back
        r = requests.post(d.url("admin", "/v1/decide"), json={"ip": "127.0.0.1"}, timeout=T)
        lim = {x["name"]: x for x in r.json()["limits"]}
        assert lim["inflight"]["remaining"] == 49, (r.json(), new.log())
        new.send_signal(signal.SIGTERM)
        assert new.wait(10) == 0, new.log()
    finally:
        up.close()


@pytest.mark.parametrize("snapshot", [", snapshot: state.snap", ""])
def test_quota_exact_across_takeover(sluice, takeover, snapshot):
    d = serving(sluice(STATIC.replace("{snapshot}", snapshot)))
    for _ in range(7):
        remaining(d)
    assert remaining(d) == 1000 - 8
    new = takeover(d)
    assert d.proc.wait(20) == 0, d.log() + new.log()
    for _ in range(4):
        remaining(d)
    assert remaining(d) == 1000 - 8 - 5, new.log()
    assert "counters loaded from" in new.log()
    # the handover file of a store without a snapshot is removed once loaded
    leftovers = [f for f in os.listdir(d.tmpdir) if f.endswith(".ctl.snap")]
    assert leftovers == []
    # and it can be taken over again: the new one has the control socket
    newer = takeover(d)
    assert new.wait(20) == 0, new.log() + newer.log()
    assert remaining(d) == 1000 - 14, newer.log()


CHANGED_OLD = """
server: {{ workers: 2 }}
listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: static }}
  - {{ name: check, listen: "127.0.0.1:{check}", mode: check }}
store: {{ type: memory }}
limits:
  - {{ name: daily, key: ip, quota: 1000/day }}
"""

CHANGED_NEW = """
server: {{ workers: 3 }}
listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: static }}
  - {{ name: fresh, listen: "127.0.0.1:{upstream}", mode: check }}
store: {{ type: memory }}
limits:
  - {{ name: daily, key: ip, quota: 1000/day }}
"""


def test_takeover_with_a_changed_config(sluice, takeover):
    d = serving(sluice(CHANGED_OLD))
    assert remaining(d) == 999
    assert requests.get(d.url("check", "/"), timeout=T).status_code == 200
    d.write_config(CHANGED_NEW)
    new = takeover(d)
    assert d.proc.wait(20) == 0, d.log() + new.log()
    assert wait_port(d.ports["upstream"], timeout=5)
    # kept listener: same socket, counters carried (3 workers on 2 sockets)
    assert remaining(d) == 997
    # new listener: bound fresh
    r = requests.get("http://127.0.0.1:%d/" % d.ports["upstream"], timeout=T)
    assert r.status_code == 200 and r.headers["X-RateLimit-Remaining"] == "996"
    # removed listener: closed
    with pytest.raises(requests.ConnectionError):
        requests.get(d.url("check", "/"), timeout=T)


FEWER = """
server: {{ workers: {workers} }}
listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: static }}
store: {{ type: memory }}
limits:
  - {{ name: daily, key: ip, quota: 1000/day }}
"""


def test_takeover_by_fewer_workers_serves_every_inherited_socket(sluice, takeover):
    """3 workers' SO_REUSEPORT sockets, 1 new worker: the kernel keeps
    spreading connections over all 3 accept queues, so all 3 are served."""
    d = serving(sluice(FEWER.replace("{workers}", "3")))
    assert remaining(d) == 999
    d.write_config(FEWER.replace("{workers}", "1"))
    new = takeover(d)
    assert d.proc.wait(20) == 0, d.log() + new.log()
    for i in range(30):  # fresh connections: each may land on any queue
        assert remaining(d) == 998 - i, new.log()


def test_takeover_without_a_running_sluice_fails_clearly(sluice, takeover):
    d = serving(sluice(STATIC.replace("{snapshot}", "")))
    d.stop()
    new = takeover(d)
    assert new.wait(10) == 1
    assert "cannot reach a running sluice on" in new.log()
    assert "start it without --takeover" in new.log()
    # a stale socket file of a process killed with -9
    d2 = serving(sluice(STATIC.replace("{snapshot}", "")))
    d2.proc.kill()
    d2.proc.wait(5)
    ctl = d2.config_path + ".ctl"
    assert os.path.exists(ctl)
    new = takeover(d2)
    assert new.wait(10) == 1
    assert "Connection refused" in new.log()


def test_takeover_from_a_hung_sluice_times_out_and_it_serves_on(sluice, takeover):
    d = serving(sluice(STATIC.replace("{snapshot}", "")))
    assert remaining(d) == 999
    d.signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        new = takeover(d)
        assert new.wait(15) == 1
        assert time.monotonic() - t0 < 12
        assert "no answer from the running sluice" in new.log()
    finally:
        d.signal(signal.SIGCONT)
    assert remaining(d) == 998
    assert wait_log(d.log, "abandoned")


def test_control_socket_is_private_and_refuses_garbage(sluice):
    d = serving(sluice(STATIC.replace("{snapshot}", "")))
    ctl = d.config_path + ".ctl"
    st = os.stat(ctl)
    assert st.st_mode & 0o777 == 0o600
    if os.geteuid() == 0:
        # another user cannot connect (mode 0600)
        os.chmod(d.tmpdir, 0o755)
        code = ("import socket\n"
                "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
                "try:\n"
                "    s.connect(%r)\n"
                "    print('connected')\n"
                "except PermissionError:\n"
                "    print('refused')\n" % ctl)
        out = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, timeout=T,
                             user=65534, group=65534)
        assert out.stdout.decode().strip() == "refused", out
        # and with the file opened up, the daemon itself refuses that uid
        os.chmod(ctl, 0o666)
        code = code.replace("print('connected')",
                            "print('connected'); s.settimeout(5); print(s.recv(100))")
        out = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, timeout=T,
                             user=65534, group=65534)
        assert out.stdout.decode().split() == ["connected", "b''"], out
        assert wait_log(d.log, "refused a connection from uid 65534")
        os.chmod(ctl, 0o600)
    # garbage from our own uid: refused, and the daemon serves on
    for junk in (b"GET / HTTP/1.0\r\n\r\n",
                 b"SLTK\x01\x01\x00\x00\xff\xff\x00\x00",     # a length that lies
                 b"SLTK\x01\x04\x00\x00\x00\x00\x00\x00"):    # READY before HELLO
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.settimeout(T)
        s.connect(ctl)
        assert s.recv(65536) == WELCOME  # the host speaks first
        s.send(junk)
        ans = s.recv(65536)
        assert ans == b"" or ans[:6] == b"SLTK\x01\x0a", ans  # closed, or ABORT
        s.close()
    # a sluice of another protocol version is told so
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(T)
    s.connect(ctl)
    assert s.recv(65536) == WELCOME
    s.send(b"SLTK\x02\x01\x00\x00\x04\x00\x00\x00\x01\x00\x00\x00")
    assert b"protocol version 2" in s.recv(65536)
    s.close()
    assert remaining(d) == 999
    assert "malformed message" in d.log() or "unexpected message" in d.log()
    assert "it speaks takeover protocol version 2, this sluice version 1" in d.log()
    # a stream socket is not even accepted by a SEQPACKET listener
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with pytest.raises(OSError):
        s.connect(ctl)
    s.close()


@pytest.mark.parametrize("stall", ["ready", "saved"])
def test_kill9_of_the_new_one_mid_handover_leaves_the_old_serving(sluice, takeover, stall):
    d = serving(sluice(STATIC.replace("{snapshot}", ", snapshot: state.snap")))
    for _ in range(3):
        remaining(d)
    new = takeover(d, env={"SLUICE_TAKEOVER_TEST_STALL": stall})
    assert wait_log(d.log, "asks to take over")
    time.sleep(0.5)  # "saved": the old one is paused and waits in the backlog
    results = []
    t = threading.Thread(target=lambda: results.append(remaining(d)))
    t.start()
    new.kill()
    new.wait(5)
    t.join(T + 1)
    assert wait_log(d.log, "abandoned"), d.log()
    assert results == [1000 - 4], d.log()
    assert remaining(d) == 1000 - 5
    assert d.proc.poll() is None
    # it can still be taken over after that
    again = takeover(d)
    assert d.proc.wait(20) == 0, d.log() + again.log()
    assert remaining(d) == 1000 - 6, again.log()


def gone(pid, timeout=15.0):
    """pid exited (it is not our child: reaped by whoever adopted it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_sigusr2_starts_the_takeover_and_tells_systemd(sluice, monkeypatch, tmp_path):
    """nginx's binary upgrade: SIGUSR2 makes the running sluice start
    `serve -c FILE --takeover` from its binary's path as its own child (so
    under systemd it is in the service's cgroup); once it serves, the new
    one sends MAINPID=<its pid> to $NOTIFY_SOCKET (NotifyAccess=all)."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(15)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    d = serving(sluice(STATIC.replace("{snapshot}", ", snapshot: state.snap")))
    for _ in range(3):
        remaining(d)
    d.signal(signal.SIGUSR2)
    assert d.proc.wait(20) == 0, d.log()
    pid = int(re.search(r"SIGUSR2: started pid (\d+)", d.log()).group(1))
    try:
        assert notify.recv(256) == b"MAINPID=%d\n" % pid
        assert "taken over from pid %d" % d.pid in d.log()
        assert remaining(d) == 1000 - 4
    finally:
        os.kill(pid, signal.SIGTERM)
        assert gone(pid)
        notify.close()


def read_response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        b = s.recv(65536)
        if not b:
            raise ConnectionError("closed before a response: %r" % data)
        data += b
    head, _, body = data.partition(b"\r\n\r\n")
    n = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
    while len(body) < n:
        body += s.recv(65536)
    return head.decode(), body[n:]


def test_idle_connections_move_whole_even_mid_head(sluice, takeover):
    """150 keep-alive connections idle at the handover (more than one
    message of descriptors), one with half a head sent, one with a
    pipelined second request not yet read: every one is answered by the
    new process, on the same connection."""
    d = serving(sluice(STATIC.replace("{snapshot}", "")))
    port = d.ports["gateway"]
    conns = []
    for _ in range(150):
        s = socket.create_connection(("127.0.0.1", port), timeout=T)
        s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        head, rest = read_response(s)
        assert head.startswith("HTTP/1.1 200") and rest == b""
        conns.append(s)
    half = conns[0]
    half.sendall(b"GET /half HTTP/1.1\r\nHo")
    time.sleep(0.2)  # read by the old one, not complete
    new = takeover(d)
    assert d.proc.wait(20) == 0, d.log() + new.log()
    half.sendall(b"st: x\r\n\r\n")
    head, _ = read_response(half)
    assert head.startswith("HTTP/1.1 200"), head
    pipe = conns[1]
    pipe.sendall(b"GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\n")
    h1, rest = read_response(pipe)
    assert h1.startswith("HTTP/1.1 200")
    for s in conns[2:]:
        s.sendall(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _ = read_response(s)
        assert head.startswith("HTTP/1.1 200"), head
        assert "Connection: close" not in head
        s.close()
    assert wait_log(new.log, "finished (150 connections"), new.log()
    # 150 + 1 + 2 + 148 requests, every one counted once
    assert remaining(d) == 1000 - 150 - 1 - 2 - 148 - 1
    half.close()
    pipe.close()


def test_admin_decide_mid_body_is_decided_before_the_save(sluice, takeover):
    """POST /v1/decide decides at the end of its body: one whose head came
    before the pause holds the handover until its body is in, and is
    counted in the snapshot the new process loads."""
    d = serving(sluice(STATIC.replace("{snapshot}", "")))
    body = b'{"ip":"127.0.0.1"}'
    s = socket.create_connection(("127.0.0.1", d.ports["admin"]), timeout=T)
    s.sendall(b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body[:5])
    time.sleep(1.0)  # the worker has read the head (nothing shows it: a generous wait)
    new = takeover(d)
    assert wait_log(d.log, "asks to take over")
    time.sleep(0.5)
    assert d.proc.poll() is None and "handed over" not in d.log()
    s.sendall(body[5:])
    head, rest = read_response(s)
    assert head.startswith("HTTP/1.1 200"), head
    assert d.proc.wait(20) == 0, d.log() + new.log()
    assert remaining(d) == 1000 - 2, new.log()
    s.close()


def test_a_hung_new_one_is_given_up_and_the_old_serves_on(sluice, takeover):
    """The new process stops answering once the old one saved (it sleeps
    30 s there): after 10 s the old one gives up, accepts and decides
    again, and the new one, waking, finds it gone and exits 1."""
    d = serving(sluice(STATIC.replace("{snapshot}", ", snapshot: state.snap")))
    assert remaining(d) == 999
    new = takeover(d, env={"SLUICE_TAKEOVER_TEST_STALL": "saved"})
    assert wait_log(d.log, "asks to take over")
    t0 = time.monotonic()
    results = []
    t = threading.Thread(target=lambda: results.append(remaining(d, timeout=20)))
    t.start()  # waits in the backlog while the old one is paused
    assert wait_log(d.log, "did not answer in time", timeout=15), d.log()
    assert 9 < time.monotonic() - t0 < 14
    t.join(5)
    assert results == [998]
    assert remaining(d) == 997
    new.kill()
    new.wait(5)
    assert d.proc.poll() is None


def test_the_shipped_unit_lets_the_new_process_become_main():
    with open(os.path.join(ROOT, "dist", "sluice.service.in")) as f:
        unit = f.read()
    assert re.search(r"^NotifyAccess=all$", unit, re.M)
    assert "systemctl kill --kill-whom=main --signal=SIGUSR2 sluice" in unit


REDIS = """
server: {{ workers: 2 }}
listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: static }}
admin: {{ listen: "127.0.0.1:{admin}" }}
store: {{ type: redis, url: "redis://127.0.0.1:REDISPORT", timeout: 2s }}  # a loaded test machine
limits:
  - {{ name: daily, key: ip, quota: 1000/day }}
"""


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_takeover_on_the_redis_store_needs_no_snapshot(sluice, takeover, redis_servers):
    """Both processes decide on Redis: nothing is saved or loaded, the
    counter goes on, and the old one's Redis connections close cleanly.
    (timeout 2s: at the default 50 ms a first connection on a machine
    loaded by parallel builds can time out, and a request decided on
    on_error: allow carries no rate-limit headers.)"""
    r = redis_servers()
    d = serving(sluice(REDIS.replace("REDISPORT", str(r.port))))
    for _ in range(3):
        remaining(d)
    new = takeover(d)
    assert d.proc.wait(20) == 0, d.log() + new.log()
    assert remaining(d) == 1000 - 4, new.log()
    assert "counters loaded" not in new.log() and "not carried" not in new.log()
    assert not [f for f in os.listdir(d.tmpdir) if f.endswith(".snap")]


class VerySlow(SlowHandler):
    arrived = threading.Event()  # set when a request reached the upstream

    def do_GET(self):
        VerySlow.arrived.set()
        time.sleep(2)
        SlowHandler.do_GET(self)


def test_a_draining_sluice_refuses_a_takeover(sluice, takeover):
    up = Upstream(free_port(), VerySlow)
    try:
        d = serving(sluice(CONFIG, ports={"upstream": up.srv.server_address[1]}))
        VerySlow.arrived.clear()
        t = threading.Thread(target=lambda: requests.get(d.url("gateway", "/slow"), timeout=10))
        t.start()
        assert VerySlow.arrived.wait(5)  # in flight
        d.signal(signal.SIGTERM)
        assert wait_log(d.log, "draining")
        new = takeover(d)
        assert new.wait(10) == 1
        assert "the running sluice refused: it is shutting down" in new.log()
        t.join(10)
        assert d.proc.wait(10) == 0
    finally:
        up.close()


def test_a_new_config_that_cannot_start_leaves_the_old_serving(sluice, takeover):
    """The new config's extra listener is on a port another process holds:
    the new one says why and exits 1, the old one never paused."""
    d = serving(sluice(CHANGED_OLD))
    assert remaining(d) == 999
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    d.write_config(CHANGED_NEW.replace("{upstream}", str(busy.getsockname()[1])))
    new = takeover(d)
    assert new.wait(15) == 1, new.log()
    assert "already in use by another process" in new.log()
    assert wait_log(d.log, "abandoned")
    assert remaining(d) == 998
    assert requests.get(d.url("check", "/"), timeout=T).status_code == 200
    busy.close()


def test_releases_during_an_abandoned_takeover_come_back_to_the_old_one(sluice, takeover):
    """Slots of requests that end while the old one is paused are given to
    the takeover, not to the old store; when the takeover is abandoned
    (kill -9 of the new one), the old one applies them itself."""
    up = Upstream(free_port(), VerySlow)
    try:
        d = serving(sluice(CONFIG, ports={"upstream": up.srv.server_address[1]}))
        codes = []
        ts = [threading.Thread(target=lambda: codes.append(
            requests.get(d.url("gateway", "/slow"), timeout=20).status_code)) for _ in range(3)]
        for t in ts:
            t.start()
        time.sleep(0.5)  # 3 slots held
        new = takeover(d, env={"SLUICE_TAKEOVER_TEST_STALL": "saved"})
        assert wait_log(d.log, "asks to take over")
        for t in ts:
            t.join(10)  # they end while the old one is paused
        assert codes == [200, 200, 200]
        new.kill()
        new.wait(5)
        assert wait_log(d.log, "abandoned")
        r = requests.post(d.url("admin", "/v1/decide"), json={"ip": "127.0.0.1"}, timeout=T)
        lim = {x["name"]: x for x in r.json()["limits"]}
        assert lim["inflight"]["remaining"] == 49, r.json()
    finally:
        up.close()


def test_a_connection_held_by_a_long_pause_is_not_timed_out(sluice, takeover):
    """A connection accepted just before the pause, whose bytes the paused
    old one does not read, outlives header_timeout while the pause lasts
    (here a new one that hangs and is killed): it is answered after."""
    d = serving(sluice(STATIC.replace("{snapshot}", "").replace(
        "server: {{ workers: 2 }}", "server: {{ workers: 2, header_timeout: 1s }}")))
    s = socket.create_connection(("127.0.0.1", d.ports["gateway"]), timeout=T)
    time.sleep(0.2)  # accepted by the old one
    new = takeover(d, env={"SLUICE_TAKEOVER_TEST_STALL": "saved"})
    assert wait_log(d.log, "paused for pid %d" % new.pid), d.log()
    time.sleep(1.5)  # past header_timeout
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    new.kill()
    new.wait(5)
    head, _ = read_response(s)
    assert head.startswith("HTTP/1.1 200"), head
    s.close()


def test_tls_listener_across_takeover(sluice, takeover, tmp_path):
    """A TLS session cannot move to another process: an idle TLS keep-alive
    connection is closed cleanly (close_notify) at the handover, new TLS
    connections reach the new process on the same socket, and the counter
    carries over."""
    from test_tls import PKI, tls_sock

    pki = PKI(str(tmp_path))
    pki.ca = pki.make_ca("ca", "sluice test CA")
    pki.cert, pki.key = pki.make_cert("server", 1)
    cfg = ("""
server: {{ workers: 2 }}
listeners:
  - name: gateway
    listen: "127.0.0.1:{gateway}"
    mode: proxy
    upstream: static
    tls: { cert: %s, key: %s }
admin: {{ listen: "127.0.0.1:{admin}" }}
store: {{ type: memory, snapshot: state.snap }}
limits:
  - {{ name: daily, key: ip, quota: 1000/day }}
""" % (pki.cert, pki.key)).replace("{ cert:", "{{ cert:").replace(" }\nadmin", " }}\nadmin")
    d = serving(sluice(cfg))
    s = tls_sock(pki, d.ports["gateway"])
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    first = s.recv(65536)
    assert b" 200 " in first and b"X-RateLimit-Remaining: 999" in first
    new = takeover(d)
    assert d.proc.wait(20) == 0, d.log() + new.log()
    # the idle TLS connection was closed by the old process, cleanly
    s.settimeout(T)
    assert s.recv(65536) == b""
    s.close()
    s2 = tls_sock(pki, d.ports["gateway"])
    s2.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        b = s2.recv(65536)
        if not b:
            break
        data += b
    s2.close()
    assert b" 200 " in data and b"X-RateLimit-Remaining: 998" in data, data
    assert new.poll() is None
