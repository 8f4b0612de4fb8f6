"""Counter identity (DESIGN.md section 8): a counter belongs to (limit name,
descriptor values). A plan change, an edit of a limit's numbers (through
SIGHUP) or a restart from the snapshot keeps what was used; a new algorithm
or new key descriptors start the limit fresh.

The account moves between plans by editing its static entry and reloading,
the way an operator does it today; the account store reaches the same code
(the plan is looked up per request)."""
import re
import signal
import time

import requests

from test_redis import redis_servers  # noqa: F401 (fixture)

T = 5

CONFIG = """
listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: static }}
admin: {{ listen: "127.0.0.1:{admin}" }}
store: %(store)s
identify:
  key: {{ from: ["header:X-Api-Key"], required: true }}
  accounts:
    - {{ account: acme, plan: %(plan)s, keys: ["k-acme"] }}
plans:
  basic: {{ title: Basic }}
  vip: {{ title: VIP }}
limits:
  - name: tier
    key: account
    rate: {{ basic: %(tier_basic)s, vip: 100/hour }}
  - {{ name: daily, key: %(daily_key)s, %(daily_algo)s: %(daily)s }}
"""


def config(**kw):
    v = {"store": "{{ type: memory, snapshot: counters.snap, snapshot_interval: 0 }}",
         "plan": "basic", "tier_basic": "30/hour", "daily_key": "account",
         "daily_algo": "quota", "daily": "1000/day"}
    v.update(kw)
    return CONFIG % v


def remaining(d, n=1):
    """Send n requests as acme; the last one's remaining per limit name."""
    out = None
    for _ in range(n):
        r = requests.get(d.url("gateway", "/x"), headers={"X-Api-Key": "k-acme"}, timeout=T)
        assert r.status_code == 200, r.text
        body = requests.post(d.url("admin", "/v1/decide"),
                             json={"account": "acme", "cost": 1}, timeout=T).json()
        out = {lim["name"]: lim["remaining"] for lim in body["limits"]}
    return out


def reload(d, text):
    before = len(re.findall(r"reloaded", d.log()))
    d.write_config(text)
    d.signal(signal.SIGHUP)
    deadline = time.monotonic() + T
    while time.monotonic() < deadline:
        if len(re.findall(r"reloaded", d.log())) > before:
            return
        time.sleep(0.05)
    raise AssertionError("no reload:\n" + d.log())


def test_plan_change_and_edits_keep_usage_memory_and_snapshot(sluice):
    d = sluice(config())
    # 3 gateway requests + 3 decides = 6 units of each limit
    assert remaining(d, 3) == {"tier": 24, "daily": 994}
    # basic -> vip: 7 used of 100 (not a fresh 99, not the raw backlog's 20)
    reload(d, config(plan="vip"))
    assert remaining(d) == {"tier": 92, "daily": 992}
    # back to basic and its rate raised 30 -> 40/hour: 10 used of 40
    reload(d, config(tier_basic="40/hour"))
    assert remaining(d) == {"tier": 30, "daily": 990}
    # the quota's number edited: 12 used of 5000
    reload(d, config(tier_basic="40/hour", daily="5000/day"))
    assert remaining(d) == {"tier": 28, "daily": 4988}
    # a restart from the snapshot keeps both, read under the numbers it
    # finds (the snapshot is written on drain)
    assert d.stop() == 0
    d2 = sluice(config(tier_basic="40/hour", daily="5000/day"),
                ports={k: d.ports[k] for k in ("gateway", "admin")})
    assert remaining(d2) == {"tier": 26, "daily": 4986}
    # a new algorithm starts fresh: sliding 5000/day, 2 used
    reload(d2, config(tier_basic="40/hour", daily="5000/day", daily_algo="sliding"))
    assert remaining(d2) == {"tier": 24, "daily": 4998}
    # so do new key descriptors (the gateway's GET and the decide without a
    # method are two counters now: 1 each)
    reload(d2, config(tier_basic="40/hour", daily="5000/day", daily_key="[account, method]"))
    assert remaining(d2) == {"tier": 22, "daily": 4999}


def test_plan_change_keeps_quota_usage_on_redis(sluice, redis_servers):  # noqa: F811
    r = redis_servers()
    store = "{{ type: redis, url: \"redis://127.0.0.1:%d\" }}" % r.port
    d = sluice(config(store=store, tier_basic="100/hour"))
    assert remaining(d, 3) == {"tier": 94, "daily": 994}
    reload(d, config(store=store, plan="vip", daily="5000/day"))
    assert remaining(d) == {"tier": 92, "daily": 4992}
