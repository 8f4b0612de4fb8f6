#!/usr/bin/python3
"""Start time of a node of accounts.store: redis, on a journal of N accounts
with a key each (2N entries, an hour old), three ways in one run:

  replay    compact_after: 0, the whole journal replayed (what every start
            did before compaction)
  snapshot  the default compact_after: the first start compacts the journal,
            the next ones load the snapshot and replay the tenth kept
  sqlite    the peer: accounts.store: sqlite on a file holding the same
            accounts (the snapshot is an sqlite database: written out as is)

Time = from exec to the log line "serving" (every listener bound, the
accounts loaded). Prints one line per start and the medians.
Usage: bench/accounts_journal.py [SLUICE_BIN] [N=50000] [ROUNDS=3]"""
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "sluice")
N = int(sys.argv[2]) if len(sys.argv) > 2 else 50000
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 3

CONFIG = """
listeners:
  - {{ name: api, listen: "127.0.0.1:{gw}", mode: proxy, upstream: static }}
admin: {{ listen: "127.0.0.1:{admin}" }}
store: {store}
plans: {{ basic: {{}}, pro: {{}} }}
accounts: {accounts}
limits:
  - {{ name: hourly, key: account, quota: {{ basic: 30/hour, pro: 100/hour }} }}
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start(dirname, store, accounts):
    """Seconds from exec to "serving", and the log."""
    path = os.path.join(dirname, "sluice.yaml")
    with open(path, "w") as f:
        f.write(CONFIG.format(gw=free_port(), admin=free_port(), store=store, accounts=accounts))
    log = os.path.join(dirname, "log")
    t0 = time.monotonic()
    with open(log, "w") as err:
        p = subprocess.Popen([BIN, "serve", "-c", path], stdout=subprocess.DEVNULL, stderr=err)
    try:
        while "sluice: serving" not in open(log).read():
            if p.poll() is not None or time.monotonic() - t0 > 300:
                raise RuntimeError(open(log).read())
            time.sleep(0.005)
        t = time.monotonic() - t0
    finally:
        p.terminate()
        p.wait(30)
    return t, open(log).read()


def main():
    tmp = tempfile.mkdtemp(prefix="sluice-bench-journal-")
    port = free_port()
    rs = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
                           "--dir", tmp], stdout=subprocess.DEVNULL)
    try:
        rc = redis.Redis(port=port)
        for _ in range(100):
            try:
                rc.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        old = str(time.time_ns() - 3600 * 10**9)
        pipe = rc.pipeline(transaction=False)
        for i in range(N):
            name = "acct%d" % i
            pipe.rpush("sluice:accounts:log", json.dumps(
                {"op": 1, "account": name, "id": "", "now": old,
                 "body": {"account": name, "plan": "pro"}}))
            pipe.rpush("sluice:accounts:log", json.dumps(
                {"op": 6, "account": name, "id": "", "now": old, "body": {},
                 "sha256": hashlib.sha256(b"sk_live_bench%d" % i).hexdigest(),
                 "key_id": "key_bench%d" % i, "prefix": "sk_live_benc"}))
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()
        rc.set("sluice:accounts:ver", 2 * N)
        store = '{ type: redis, url: "redis://127.0.0.1:%d" }' % port
        res = {"replay": [], "snapshot": [], "sqlite": []}
        for r in range(ROUNDS):
            t, log = start(tmp, store, "{ store: redis, compact_after: 0 }")
            assert "%d accounts" % N in log, log
            res["replay"].append(t)
            print("replay   %d entries: %.3f s" % (2 * N, t))
        t, log = start(tmp, store, "{ store: redis }")  # compacts
        assert "journal compacted" in log, log
        print("first start with compaction: %.3f s" % t)
        for r in range(ROUNDS):
            t, log = start(tmp, store, "{ store: redis }")
            assert "from the journal's snapshot" in log and "%d accounts" % N in log, log
            res["snapshot"].append(t)
            print("snapshot %d entries: %.3f s" % (2 * N, t))
        blob = rc.get("sluice:accounts:snap")
        with open(os.path.join(tmp, "accounts.db"), "wb") as f:
            f.write(blob[16:])
        for r in range(ROUNDS):
            t, log = start(tmp, "{ type: memory }", "{ store: sqlite, path: accounts.db }")
            assert "loaded %d accounts" % N in log, log
            res["sqlite"].append(t)
            print("sqlite   %d accounts: %.3f s" % (N, t))
        m = {k: statistics.median(v) for k, v in res.items()}
        print("snapshot_bytes %d" % len(blob))
        for k in ("replay", "snapshot", "sqlite"):
            print("accounts_start_%s_seconds %.3f" % (k, m[k]))
        print("replay_over_snapshot %.1f" % (m["replay"] / m["snapshot"]))
        print("snapshot_over_sqlite %.2f" % (m["snapshot"] / m["sqlite"]))
    finally:
        rs.terminate()
        rs.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
