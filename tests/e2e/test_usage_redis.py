"""The usage history in the store's Redis (usage.store: redis), DESIGN.md
section 7: two daemons sharing one real redis-server each count their own
decisions, and either answers the history and the top accounts for both
(the fleet); a third daemon started later answers the same; a Redis that
goes away makes the history endpoints 503 while the gateway keeps
deciding, and answer again once it is back. Every redis-server is started here and killed by PID."""
import time

import requests

from test_redis import REDIS_SERVER, redis_servers  # noqa: F401 (fixture)
from test_usage_history import totals

assert REDIS_SERVER, "redis-server is installed by scripts/install-deps.sh"

T = 5

CONFIG = """
server:
  workers: 2
listeners:
  - name: gateway
    listen: "127.0.0.1:{gateway}"
    mode: proxy
    upstream: static
admin:
  listen: "127.0.0.1:{admin}"
store:
  type: redis
  url: "redis://127.0.0.1:%d"
identify:
  key:
    from: ["header:X-Api-Key"]
  accounts:
    - account: acme
      plan: pro
      keys: ["sk_acme"]
    - account: bolt
      plan: pro
      keys: ["sk_bolt"]
plans:
  pro:
    title: Pro
limits:
  - name: hourly
    key: account
    rate: 10/hour
usage:
  store: redis
  flush_interval: 1s
"""


def send(d, key, n):
    with requests.Session() as s:
        return [s.get(d.url("gateway", "/x"), headers={"X-Api-Key": key}, timeout=T).status_code
                for _ in range(n)]


def store_errors(d):
    text = requests.get(d.url("admin", "/metrics"), timeout=T).text
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
               if l.startswith("sluice_store_errors_total"))


def store_back(d):
    """Decisions reach a restarted Redis again, on whichever worker: four
    requests in a row, each on a new connection, add no store error (a
    worker may still be in its reconnect back-off for a few ms)."""
    deadline, ok = time.monotonic() + 10, 0
    while ok < 4 and time.monotonic() < deadline:
        before = store_errors(d)
        send(d, "sk_bolt", 1)
        ok = ok + 1 if store_errors(d) == before else 0
    assert ok >= 4, "the store did not come back"


def hist(d, account, bucket):
    r = requests.get(d.url("admin", "/v1/accounts/%s/usage/history" % account),
                     params={"bucket": bucket}, timeout=T)
    assert r.status_code == 200, r.text
    return totals(r.json())


def test_any_node_answers_for_the_fleet(sluice, redis_servers):  # noqa: F811
    r = redis_servers()
    a = sluice(CONFIG % r.port)
    b = sluice(CONFIG % r.port)
    codes = send(a, "sk_acme", 6) + send(b, "sk_acme", 7)  # one shared 10/hour
    assert codes.count(200) == 10 and codes.count(429) == 3
    send(b, "sk_bolt", 2)
    # b's counts reach Redis by its flusher (1 s), a's by a's query
    time.sleep(2.5)
    for d in (a, b):
        for bucket in ("minute", "hour", "day"):
            s = hist(d, "acme", bucket)
            assert (s["allowed"], s["rejected"], s["by"]) == (10, 3, {"hourly": 3}), (bucket, s)
        top = requests.get(d.url("admin", "/v1/usage/top"), timeout=T).json()
        assert [x["account"] for x in top["accounts"]] == ["acme", "bolt"]
        assert top["accounts"][0]["rejected_by"] == {"hourly": 3}
        assert top["rejected_by"] == {"hourly": 3}
    assert a.stop() == 0 and b.stop() == 0
    c = sluice(CONFIG % r.port)
    assert hist(c, "acme", "day")["allowed"] == 10
    # the history lives in Redis, not beside the config
    assert r.client().exists("sluice:usage:d:%d:acme" % (int(time.time()) // 86400 * 86400))


def test_redis_gone_makes_history_503_not_the_gateway(sluice, redis_servers):  # noqa: F811
    r = redis_servers()
    d = sluice((CONFIG % r.port).replace("  type: redis\n", "  type: redis\n  on_error: allow\n"))
    assert send(d, "sk_acme", 2) == [200, 200]
    assert hist(d, "acme", "minute")["allowed"] == 2
    r.kill()
    assert send(d, "sk_acme", 1) == [200]  # store.on_error: allow
    resp = requests.get(d.url("admin", "/v1/accounts/acme/usage/history"), timeout=T)
    assert resp.status_code == 503 and resp.json()["error"] == "usage_error"
    # the same server back (empty: --save ''): the next query reconnects
    r.start()
    store_back(d)
    assert send(d, "sk_acme", 1) == [200]
    assert hist(d, "acme", "minute")["allowed"] == 1
