"""Two workers share one store: a burst split across them admits exactly the
burst. A worker used to read the clock once per loop pass. A decision late
in a long pass then carried a time older than the state another worker had
committed meanwhile, saw that much more backlog, and the last unit of the
burst was refused (19 of 20: a seed 4 test failed so in CI). Decisions now
read the clock when they are made."""
import re
import socket
import time

CONFIG = """
server: {{ workers: 2 }}
listeners:
  - {{ name: auth, listen: "127.0.0.1:{check}", mode: check }}
admin: {{ listen: "127.0.0.1:{admin}" }}
limits:
  - {{ name: burst, key: "header:X-K", rate: 1/min, burst: 20 }}
"""

FILLER = 80  # requests of another key that make the first connection's pass long
PER_CONN = 15
TRIALS = 60


def get(key, last=False):
    return ("GET / HTTP/1.1\r\nHost: x\r\nX-K: %s\r\n%s\r\n"
            % (key, "Connection: close\r\n" if last else "")).encode()


def read_all(s):
    data = b""
    while True:  # the last request asks for the close
        chunk = s.recv(65536)
        if not chunk:
            return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]
        data += chunk


def test_a_burst_split_across_workers_admits_exactly_the_burst(sluice):
    d = sluice(CONFIG)
    port = d.ports["check"]
    short = []
    for t in range(TRIALS):
        k = "k%d" % t
        # the long pass: filler first, then the key; the second connection
        # (on the other worker, half the time) reaches the key first, later
        long_ = get("f%d" % t) * FILLER + get(k) * (PER_CONN - 1) + get(k, True)
        quick = get(k) * (PER_CONN - 1) + get(k, True)
        a = socket.create_connection(("127.0.0.1", port), timeout=10)
        b = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            a.sendall(long_)
            time.sleep(0.0003)
            b.sendall(quick)
            ra, rb = read_all(a), read_all(b)
        finally:
            a.close()
            b.close()
        assert len(ra) == FILLER + PER_CONN and len(rb) == PER_CONN, (len(ra), len(rb))
        ok = ra[FILLER:].count(200) + rb.count(200)
        assert ok <= 20, (t, ok)  # never more than the burst
        if ok != 20:
            short.append((t, ok))
    assert not short, "trials that admitted less than the burst of 20: %r" % short
