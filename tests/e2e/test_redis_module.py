"""End to end: sluice daemons on a redis-server that loads sluice's module
(build dir's sluice_redis.so, next to SLUICE_BIN; src/redismod), whose
SLUICE.CALL runs exact mode's decisions in C:

- three nodes admit exactly the limit, each X-RateLimit-Remaining once,
  and the decisions went to SLUICE.CALL (INFO commandstats);
- `store.module: false` keeps the Lua library on the same server;
- the module's writes reach a replica (one without the module) and the
  AOF as plain SETs: the replica's values are the master's, and a master
  killed with -9 and restarted from its AOF (appendfsync always) goes on
  counting from there, exactly;
- MODULE UNLOAD in the middle of traffic: the nodes go back to the Lua
  library on the next call, no request fails, the count stays exact.

Every redis-server is started here and stopped by PID (test_redis.py's
helpers)."""
import os

import pytest
import requests

from conftest import SLUICE
from test_redis import (HTTP_TIMEOUT, REDIS_SERVER, hammer, key_entries, metric,
                        redis_keys_ending, redis_servers, store_yaml, wait_until, SHARED)

MODULE = os.path.join(os.path.dirname(os.path.abspath(SLUICE)), "sluice_redis.so")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None or not os.path.exists(MODULE),
                                reason="redis-server or the module not built")
LOAD = ("--loadmodule", MODULE)

__all__ = ["redis_servers"]  # the fixture, imported for pytest


def calls(r, cmd):
    """Calls of `cmd` so far on server r (INFO commandstats)."""
    stats = r.client().info("commandstats")
    return stats.get("cmdstat_" + cmd, {}).get("calls", 0)


def config(url, module=None):
    store = store_yaml(url)
    if module is not None:
        store = store.rstrip("} ") + ", module: %s }}" % ("true" if module else "false")
    return SHARED % store


def test_module_nodes_admit_exactly_the_limit(sluice, redis_servers):
    r = redis_servers(extra=LOAD)
    nodes = [sluice(config("redis://127.0.0.1:%d" % r.port)) for _ in range(3)]
    urls = [n.url("gateway", "/api") for n in nodes]

    t = hammer(urls, {"X-Client": "tenant-m"}, total=260, threads=8)
    assert t.count(200) == 200 and t.count(429) == 60, t.statuses()
    assert sorted(int(x) for x in t.remaining_of(200)) == list(range(200))
    t = hammer(urls, {"X-Rate-Client": "tenant-m"}, total=140, threads=8)
    assert t.count(200) == 100 and t.count(429) == 40, t.statuses()
    assert sorted(int(x) for x in t.remaining_of(200)) == list(range(100))
    # the module decided (a call built before a connection's probe
    # answered may have gone to the library)
    assert calls(r, "sluice.call") >= 300, r.client().info("commandstats")
    assert calls(r, "fcall") < 20, r.client().info("commandstats")
    assert metric(nodes[0], "sluice_store_errors_total") == 0
    # two values (one per header), of the library's layout: the quota's
    # holds 200 used
    ents = [e for k in redis_keys_ending(r.client(), "tenant-m")
            for e in key_entries(r.client(), k).values()]
    assert len(ents) == 2 and 200 in [e[1] for e in ents], ents


def test_module_false_keeps_the_library(sluice, redis_servers):
    r = redis_servers(extra=LOAD)
    node = sluice(config("redis://127.0.0.1:%d" % r.port, module=False))
    t = hammer([node.url("gateway", "/api")], {"X-Client": "lib"}, total=30, threads=4)
    assert t.count(200) == 30
    assert calls(r, "sluice.call") == 0
    assert calls(r, "fcall") >= 1


def test_module_writes_reach_the_replica_and_the_aof(sluice, redis_servers):
    master = redis_servers(extra=LOAD + ("--appendonly", "yes", "--appendfsync", "always"))
    replica = redis_servers(extra=("--replicaof", "127.0.0.1", str(master.port)))
    assert wait_until(lambda: replica.client().info("replication").get(
        "master_link_status") == "up", 10)
    url = "redis://127.0.0.1:%d" % master.port
    node = sluice(config(url))
    gw = node.url("gateway", "/api")

    t = hammer([gw], {"X-Client": "repl"}, total=120, threads=4)
    assert t.count(200) == 120
    assert calls(master, "sluice.call") >= 1
    assert master.client().execute_command("WAIT", 1, 5000) == 1
    keys = master.client().keys("sl2:*")
    assert keys
    for k in keys:
        assert replica.client().get(k) == master.client().get(k), k
        # the same deadline: replicated with an absolute one (PXAT)
        m, s = master.client().pttl(k), replica.client().pttl(k)
        assert m > 0 and abs(m - s) < 1000, (k, m, s)

    # kill -9 the master; its AOF has every acknowledged write
    before = {k: master.client().get(k) for k in keys}
    master.kill()
    master.start()
    for k in keys:
        assert master.client().get(k) == before[k], k
    # and the count goes on from there: 200 in all
    assert wait_until(lambda: requests.get(gw, headers={"X-Client": "repl"},
                                           timeout=HTTP_TIMEOUT).status_code == 200, 10)
    t = hammer([gw], {"X-Client": "repl"}, total=100, threads=4)
    assert t.count(200) == 79 and t.count(429) == 21, t.statuses()


def test_module_unloaded_mid_traffic_falls_back_to_the_library(sluice, redis_servers):
    r = redis_servers(extra=LOAD + ("--enable-module-command", "local"))
    url = "redis://127.0.0.1:%d" % r.port
    nodes = [sluice(config(url)) for _ in range(2)]
    urls = [n.url("gateway", "/api") for n in nodes]

    t = hammer(urls, {"X-Client": "unload"}, total=80, threads=4)
    assert t.count(200) == 80
    assert calls(r, "sluice.call") >= 1
    r.client().execute_command("MODULE", "UNLOAD", "sluice")
    t = hammer(urls, {"X-Client": "unload"}, total=180, threads=4)
    assert t.count(200) == 120 and t.count(429) == 60, t.statuses()
    assert calls(r, "fcall") >= 1
    for n in nodes:
        assert metric(n, "sluice_store_errors_total") == 0


def test_reload_keeps_the_running_choice(sluice, redis_servers):
    """store.module is fixed at start: a reload that turns it off says so
    and the running store keeps deciding on the module, exactly."""
    import signal
    import re
    r = redis_servers(extra=LOAD)
    url = "redis://127.0.0.1:%d" % r.port
    node = sluice(config(url))
    gw = node.url("gateway", "/api")
    t = hammer([gw], {"X-Client": "reload"}, total=50, threads=4)
    assert t.count(200) == 50
    node.write_config(config(url, module=False))
    node.signal(signal.SIGHUP)
    assert wait_until(lambda: "reloaded" in node.log(), 10), node.log()
    assert re.search(r"reload: store\.module change takes effect on restart", node.log())
    m0 = calls(r, "sluice.call")
    t = hammer([gw], {"X-Client": "reload"}, total=170, threads=4)
    assert t.count(200) == 150 and t.count(429) == 20, t.statuses()
    assert calls(r, "sluice.call") > m0


def test_acl_without_the_module_command_uses_the_library(sluice, redis_servers):
    """A user the ACL does not grant SLUICE.CALL (NOPERM) is served by the
    Lua library, without a failed request."""
    r = redis_servers(extra=LOAD)
    r.client().execute_command("ACL", "SETUSER", "default", "-sluice.call")
    node = sluice(config("redis://127.0.0.1:%d" % r.port))
    t = hammer([node.url("gateway", "/api")], {"X-Client": "acl"}, total=210, threads=4)
    assert t.count(200) == 200 and t.count(429) == 10, t.statuses()
    assert calls(r, "fcall") >= 1
    assert metric(node, "sluice_store_errors_total") == 0


def test_only_writes_touch_a_watched_key(sluice, redis_servers):
    """A client WATCHing a counter's key sees its transaction aborted by a
    decision that counts, not by a peek (cost 0) or a denial, which write
    nothing."""
    import redis as redis_py
    r = redis_servers(extra=LOAD)
    node = sluice(config("redis://127.0.0.1:%d" % r.port))

    def ask(cost=None, client="watched"):
        body = {"headers": {"X-Client": client}}
        if cost is not None:
            body["cost"] = cost
        resp = requests.post(node.url("admin", "/v1/decide"), json=body, timeout=HTTP_TIMEOUT)
        assert resp.status_code == 200, resp.text
        return resp.json()

    for _ in range(6):  # (every connection of the pool up, the module found)
        assert ask(client="warm-up")["allowed"]
    assert ask()["allowed"]
    (key,) = redis_keys_ending(r.client(), "watched")
    m0 = calls(r, "sluice.call")

    def survives(action):
        pipe = r.client().pipeline()
        pipe.watch(key)
        action()
        pipe.multi()
        pipe.set("sl-test-other", 1)
        try:
            pipe.execute()
            return True
        except redis_py.WatchError:
            return False

    assert survives(lambda: ask(cost=0))           # a peek
    assert not survives(lambda: ask())             # a decision that counts
    assert not ask(cost=1000)["allowed"]           # more than the quota holds
    assert survives(lambda: ask(cost=1000))        # a denial writes nothing
    assert calls(r, "sluice.call") - m0 == 4


def test_writes_notify_like_a_set(sluice, redis_servers):
    """Keyspace notifications see the module's writes as the library's SET
    would show them."""
    r = redis_servers(extra=LOAD + ("--notify-keyspace-events", "K$"))
    node = sluice(config("redis://127.0.0.1:%d" % r.port))
    gw = node.url("gateway", "/api")
    for _ in range(6):  # (every connection of the pool up, the module found)
        assert requests.get(gw, headers={"X-Client": "warm-up"},
                            timeout=HTTP_TIMEOUT).status_code == 200
    ps = r.client(timeout=5).pubsub()
    ps.psubscribe("__keyspace@0__:*")
    assert ps.get_message(timeout=2)["type"] == "psubscribe"
    m0 = calls(r, "sluice.call")
    assert requests.get(gw, headers={"X-Client": "notified"},
                        timeout=HTTP_TIMEOUT).status_code == 200
    msg = ps.get_message(timeout=2)
    assert calls(r, "sluice.call") == m0 + 1
    (key,) = redis_keys_ending(r.client(), "notified")
    assert msg and msg["channel"] == b"__keyspace@0__:" + key and msg["data"] == b"set", msg
    ps.close()
