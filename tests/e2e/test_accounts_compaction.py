"""accounts.store: redis compacts its journal: once it holds compact_after
entries, a node that is level with it writes a snapshot of its copy and
keeps only the last tenth, and never an entry younger than a minute. A node
that starts loads the snapshot and replays the rest; a running node goes
on from what is kept; one that was away while the journal was compacted
past it says so, keeps serving what it has and refuses changes until it
is restarted. The entries' times are aged here by rewriting them in Redis
(the test cannot wait a minute), which is the only thing faked."""
import json
import signal
import time

import pytest

from test_accounts import REDIS_CONFIG, admin, create, get, issue, until
from test_redis import REDIS_SERVER, redis_servers  # noqa: F401 (a fixture)

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server not installed")

CONFIG = REDIS_CONFIG.replace("  store: redis\n", "  store: redis\n  compact_after: 20\n")
LOG, VER, BASE, SNAP = ("sluice:accounts:" + k for k in ("log", "ver", "base", "snap"))


def age(rc, minutes=2):
    """Make every entry of the journal look `minutes` old."""
    old = str(time.time_ns() - minutes * 60 * 10**9)
    for i, rec in enumerate(rc.lrange(LOG, 0, -1)):
        o = json.loads(rec)
        o["now"] = old
        rc.lset(LOG, i, json.dumps(o))


def base(rc):
    return int(rc.get(BASE) or 0)


def test_a_long_journal_is_compacted_and_every_node_keeps_every_account(sluice, redis_servers):
    r = redis_servers()
    rc = r.client()
    cfg = CONFIG % r.port
    a, b = sluice(cfg), sluice(cfg)
    keys = {}
    for i in range(12):
        create(a, "acct%d" % i)
        keys[i] = issue(a, "acct%d" % i)["key"]
    assert admin(a, "PATCH", "/v1/accounts/acct3",
                 {"plan": "pro", "overrides": {"hourly": "7/hour"}}).status_code == 200
    assert int(rc.get(VER)) == 25
    # young entries are never compacted, however many
    time.sleep(0.4)
    assert rc.llen(LOG) == 25 and base(rc) == 0 and not rc.exists(SNAP)

    age(rc)
    assert until(lambda: base(rc) == 23, 3.0) is not None, a.log() + b.log()
    assert rc.llen(LOG) == 2 and rc.exists(SNAP)
    assert "journal compacted at 25 entries" in a.log() + b.log()
    # both running nodes go on, and see a change made after the compaction
    create(b, "after")
    k_after = issue(b, "after")["key"]
    for d in (a, b):
        assert until(lambda: get(d, k_after).status_code == 200, 1.0) is not None
        assert all(get(d, k).status_code == 200 for k in keys.values())

    # a node that starts now loads the snapshot and replays the rest
    c = sluice(cfg)
    assert "from the journal's snapshot" in c.log(), c.log()
    assert "27 journal entries" in c.log(), c.log()
    for k in list(keys.values()) + [k_after]:
        assert get(c, k).status_code == 200
    assert admin(c, "GET", "/v1/accounts/acct3").json()["overrides"] == {"hourly": "7/hour"}
    assert get(c, "sk_live_nosuchkey").status_code == 401
    # and takes part: its change reaches the others
    assert admin(c, "DELETE", "/v1/accounts/acct5").status_code == 204
    for d in (a, b, c):
        assert until(lambda: get(d, keys[5]).status_code == 401, 1.0) is not None
    assert admin(a, "GET", "/v1/accounts/acct5").status_code == 404


def test_a_node_left_behind_by_a_compaction_says_so_and_refuses_changes(sluice, redis_servers):
    r = redis_servers()
    rc = r.client()
    cfg = CONFIG % r.port
    a, b = sluice(cfg), sluice(cfg)
    create(a, "old")
    k_old = issue(a, "old")["key"]
    assert until(lambda: get(b, k_old).status_code == 200, 1.0) is not None
    b.signal(signal.SIGSTOP)  # b is away while the journal grows and is compacted
    try:
        for i in range(20):
            create(a, "new%d" % i)
        age(rc)
        assert until(lambda: base(rc) == 20, 3.0) is not None, a.log()
    finally:
        b.signal(signal.SIGCONT)
    assert until(lambda: "compacted past this node" in b.log(), 2.0) is not None, b.log()
    # what it had it still serves; a change is refused, not lost or misapplied
    assert get(b, k_old).status_code == 200
    resp = admin(b, "POST", "/v1/accounts", {"account": "lost", "plan": "basic"})
    assert resp.status_code == 503, resp.text
    assert admin(a, "GET", "/v1/accounts/lost").status_code == 404
    assert b.log().count("compacted past this node") == 1  # once a minute at most
    # restarted, it loads the snapshot and has everything
    assert b.stop() == 0
    b2 = sluice(cfg)
    assert admin(b2, "GET", "/v1/accounts/new19").status_code == 200
    assert get(b2, k_old).status_code == 200
    assert admin(b2, "POST", "/v1/accounts", {"account": "lost", "plan": "basic"}).status_code == 201


def test_a_snapshot_that_is_not_one_stops_the_start_with_its_name(sluice, redis_servers):
    r = redis_servers()
    rc = r.client()
    rc.set(SNAP, b"not a snapshot")
    with pytest.raises(RuntimeError) as e:
        sluice(CONFIG % r.port)
    assert "sluice:accounts:snap" in str(e.value) and "is not a snapshot" in str(e.value)
    # a truncated database behind a good header is refused too
    rc.set(SNAP, b"SLACCSN1" + (5).to_bytes(8, "little") + b"SQLite format 3\0" + b"\0" * 40)
    with pytest.raises(RuntimeError) as e:
        sluice(CONFIG % r.port)
    assert "sluice:accounts:snap" in str(e.value)


def test_compaction_off_keeps_the_whole_journal(sluice, redis_servers):
    r = redis_servers()
    rc = r.client()
    a = sluice((CONFIG % r.port).replace("compact_after: 20", "compact_after: 0"))
    for i in range(12):
        create(a, "acct%d" % i)
    age(rc)
    time.sleep(0.4)
    assert rc.llen(LOG) == 12 and base(rc) == 0 and not rc.exists(SNAP)
