"""A flood of new keys must not turn a limit off (issue 10, item 4). The
real daemon with `store.memory: 1MB` (the loader's minimum: 24,576 states
at the load bound) gets a flood of distinct client IPs (X-Forwarded-For
from a trusted 127.0.0.0/8 proxy), several keep-alive connections sending
pipelined batches, alternating between a route limited by `quota: 10/day`
and one limited by `rate: 10/hour`, so the table overflows several times
over with states of both kinds. One abuser IP hits both routes at 20
requests a second the whole time: it must be admitted at most its limit
+ 1% on each, and /metrics and stderr must show that states were evicted."""
import re
import socket
import threading
import time

import requests

T = 5
FLOOD_S = 8.0  # s: the flood lasts this long (each test ends within ~10 s)
MIN_IPS = 4 * 24576  # distinct IPs it must reach: 4x the table's states
THREADS = 4
BATCH = 100  # pipelined requests per round trip
ABUSER = "203.0.113.66"
ABUSER_RPS = 20

CONFIG = """
server: {{ workers: 2 }}
listeners:
  - {{ name: auth, listen: "127.0.0.1:{check}", mode: check }}
admin: {{ listen: "127.0.0.1:{admin}" }}
store: {{ type: memory, memory: 1MB{on_full} }}
identify:
  ip: {{ trusted_proxies: ["127.0.0.0/8"] }}
routes:
  - name: q
    match: {{ path: /q }}
    limits: [ {{ name: daily, key: ip, quota: 10/day }} ]
  - name: r
    match: {{ path: /r }}
    limits: [ {{ name: hourly, key: ip, rate: 10/hour }} ]
"""


def req(path, ip):
    return ("GET %s HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: %s\r\n\r\n" % (path, ip)).encode()


class Conn:
    """One keep-alive connection that sends pipelined requests and reads
    back one status per request."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=T)
        self.buf = b""

    def statuses(self, reqs):
        self.s.sendall(b"".join(reqs))
        out = []
        while len(out) < len(reqs):
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                chunk = self.s.recv(65536)
                assert chunk, "connection closed after %d of %d responses" % (len(out), len(reqs))
                self.buf += chunk
                continue
            head = self.buf[:end].decode("latin-1")
            m = re.search(r"(?im)^content-length:\s*(\d+)", head)
            size = end + 4 + (int(m.group(1)) if m else 0)
            if len(self.buf) < size:
                chunk = self.s.recv(65536)
                assert chunk, "connection closed mid-response"
                self.buf += chunk
                continue
            out.append(int(head.split(" ", 2)[1]))
            self.buf = self.buf[size:]
        return out

    def close(self):
        self.s.close()


def sample(text, name, **labels):
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            got = dict(re.findall(r'([a-zA-Z_]+)="([^"]*)"', line.split(" ")[0]))
            if all(got.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return None


def flood(d):
    """Run the flood and the abuser; returns (flood requests sent, flood
    seconds, {path: abuser admits}, {path: abuser requests})."""
    stop = time.monotonic() + FLOOD_S
    sent = [0] * THREADS
    errors = []

    def flooder(t):
        try:
            c = Conn(d.ports["check"])
            i = t
            while time.monotonic() < stop:
                batch = []
                for _ in range(BATCH):
                    ip = "%d.%d.%d.%d" % (10 + (i >> 24), (i >> 16) & 255, (i >> 8) & 255,
                                          i & 255)
                    batch.append(req("/q" if i & 1 else "/r", ip))
                    i += THREADS
                c.statuses(batch)
                sent[t] += BATCH
            c.close()
        except Exception as e:  # reported by the main thread
            errors.append(e)

    admits = {"/q": 0, "/r": 0}
    tries = {"/q": 0, "/r": 0}
    flooding = [True]

    def abuser():
        c = Conn(d.ports["check"])
        nxt = time.monotonic()
        while flooding[0]:
            for path, st in zip(("/q", "/r"), c.statuses([req("/q", ABUSER), req("/r", ABUSER)])):
                tries[path] += 1
                admits[path] += st == 200
            nxt += 1.0 / ABUSER_RPS
            time.sleep(max(0.0, nxt - time.monotonic()))
        c.close()

    t0 = time.monotonic()
    ab = threading.Thread(target=abuser)
    ab.start()
    ths = [threading.Thread(target=flooder, args=(t,)) for t in range(THREADS)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    secs = time.monotonic() - t0
    flooding[0] = False
    ab.join()
    assert not errors, errors
    return sum(sent), secs, admits, tries


def test_flood_of_new_ips_keeps_quota_and_rate_limits(sluice):
    d = sluice(CONFIG.replace("{on_full}", ""))
    n, secs, admits, tries = flood(d)
    text = requests.get(d.url("admin", "/metrics"), timeout=T).text
    evicted = sample(text, "sluice_store_evicted_total")
    usage = sample(text, "sluice_store_usage_evictions_total")
    daily = sample(text, "sluice_store_evictions_total", limit="daily", kind="usage")
    print("flood: %d requests in %.1f s (%.0f/s); abuser admits %s of %s; evicted %s, "
          "with usage %s (daily %s)" % (n, secs, n / secs, admits, tries, evicted, usage, daily))
    # The flood really overflowed the table (1MB: 24,576 states).
    assert n > MIN_IPS
    assert evicted and evicted > 0
    assert usage and usage > 0
    assert daily and daily > 0
    # The abuser: quota 10/day and rate 10/hour (burst 10, then one per
    # 360 s, so none more within the flood): at most the limit + 1%.
    assert tries["/q"] > 100 and tries["/r"] > 100
    assert 10 <= admits["/q"] <= 10 * 1.01
    assert 10 <= admits["/r"] <= 10 * 1.01
    # One rate-limited line on stderr says so.
    time.sleep(1.2)
    log = d.log()
    lines = [l for l in log.splitlines() if "store full: evicted states with usage" in l]
    assert lines, log
    assert "daily" in lines[0]
    assert len(lines) <= 1 + secs / 10


def test_flood_with_deny_new_rejects_new_ips_not_old_counters(sluice):
    d = sluice(CONFIG.replace("{on_full}", ", on_full: deny_new"))
    n, secs, admits, tries = flood(d)
    text = requests.get(d.url("admin", "/metrics"), timeout=T).text
    denied = sample(text, "sluice_store_unstored_total", limit="daily", action="denied")
    print("deny_new flood: %d requests in %.1f s; abuser admits %s; new IPs denied: daily %s"
          % (n, secs, admits, denied))
    assert n > MIN_IPS
    assert denied and denied > 0
    assert 10 <= admits["/q"] <= 10 * 1.01
    assert 10 <= admits["/r"] <= 10 * 1.01
    # A new IP refused a slot sees the limit's 429 with a Retry-After.
    r = requests.get(d.url("check", "/q"), headers={"X-Forwarded-For": "198.51.100.9"},
                     timeout=T)
    if r.status_code == 429:
        assert int(r.headers["Retry-After"]) >= 1
        assert r.headers["X-RateLimit-Remaining"] == "0"
    else:  # it found a slot (a candidate that did not matter)
        assert r.status_code == 200
