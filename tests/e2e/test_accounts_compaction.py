"""accounts.store: redis compacts its journal: once it holds compact_after
entries, a node that is level with it writes a snapshot of its copy and
keeps only the last tenth, and never an entry younger than a minute. A node
that starts loads the snapshot and replays the rest; a running node goes
on from what is kept; one that was away while the journal was compacted
past it takes the snapshot and goes on from there. The entries' times are aged here by rewriting them in Redis
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


def test_a_node_left_behind_by_a_compaction_takes_the_snapshot(sluice, redis_servers):
    r = redis_servers()
    rc = r.client()
    cfg = CONFIG % r.port
    a, b = sluice(cfg), sluice(cfg)
    create(a, "old")
    k_old = issue(a, "old")["key"]
    create(a, "gone")
    k_gone = issue(a, "gone")["key"]
    assert until(lambda: get(b, k_gone).status_code == 200, 1.0) is not None
    b.signal(signal.SIGSTOP)  # b is away while the journal grows and is compacted
    try:
        for i in range(20):
            create(a, "new%d" % i)
        k_new = issue(a, "new7")["key"]
        assert admin(a, "DELETE", "/v1/accounts/gone").status_code == 204
        assert admin(a, "PATCH", "/v1/accounts/old", {"status": "suspended"}).status_code == 200
        age(rc)
        assert until(lambda: base(rc) > 4, 3.0) is not None, a.log()
    finally:
        b.signal(signal.SIGCONT)
    assert until(lambda: "it took the snapshot" in b.log(), 3.0) is not None, b.log()
    # b now has what the snapshot holds: the new account and key, the
    # deletion and the suspension it missed, and takes changes again
    assert get(b, k_new).status_code == 200
    assert get(b, k_gone).status_code == 401
    assert get(b, k_old).status_code == 403
    assert admin(b, "GET", "/v1/accounts/new19").status_code == 200
    assert admin(b, "POST", "/v1/accounts", {"account": "later", "plan": "basic"}).status_code == 201
    assert until(lambda: admin(a, "GET", "/v1/accounts/later").status_code == 200, 1.0)
    assert b.log().count("it took the snapshot") == 1


def test_keys_stay_valid_on_a_node_while_it_takes_the_snapshot(sluice, redis_servers):
    """A key both the node's copy and the snapshot hold is never missing
    from its index: requests with it during the resync all pass."""
    import threading
    r = redis_servers()
    rc = r.client()
    cfg = CONFIG % r.port
    a, b = sluice(cfg), sluice(cfg)
    create(a, "steady", plan="pro")
    k = issue(a, "steady")["key"]
    assert until(lambda: get(b, k).status_code == 200, 1.0) is not None
    codes, stop = [], threading.Event()

    def hammer():  # from before b resumes until after it took the snapshot
        while not stop.is_set():
            codes.append(get(b, k).status_code)
    b.signal(signal.SIGSTOP)
    try:
        for i in range(400):  # a snapshot big enough that taking it takes a while
            create(a, "bulk%d" % i)
        age(rc)
        assert until(lambda: base(rc) > 0, 5.0) is not None, a.log()
        t = threading.Thread(target=hammer)
        t.start()
    finally:
        b.signal(signal.SIGCONT)
    try:
        assert until(lambda: "it took the snapshot" in b.log(), 5.0) is not None, b.log()
        n = len(codes)
        assert until(lambda: len(codes) > n + 20, 5.0) is not None
    finally:
        stop.set()
        t.join(10)
    # never a 401 (the key missing); 429 once its 100/hour are used
    assert codes.count(200) >= 20 and set(codes) <= {200, 429}, sorted(set(codes))
    assert admin(b, "GET", "/v1/accounts/bulk399").status_code == 200


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
    # a version no sluice wrote (0, or past 2^62) is refused before the database
    for v in (0, 2**63):
        rc.set(SNAP, b"SLACCSN1" + v.to_bytes(8, "little") + b"SQLite format 3\0" + b"\0" * 40)
        with pytest.raises(RuntimeError) as e:
            sluice(CONFIG % r.port)
        assert "holds version %d: not a snapshot" % v in str(e.value)


def test_compaction_off_keeps_the_whole_journal(sluice, redis_servers):
    r = redis_servers()
    rc = r.client()
    a = sluice((CONFIG % r.port).replace("compact_after: 20", "compact_after: 0"))
    for i in range(12):
        create(a, "acct%d" % i)
    age(rc)
    time.sleep(0.4)
    assert rc.llen(LOG) == 12 and base(rc) == 0 and not rc.exists(SNAP)


def test_a_redis_that_lost_the_journal_gets_it_back_from_the_nodes(sluice, redis_servers):
    """Redis restarted empty (no persistence): the journal is gone, but the
    nodes' copies are not. The first node to notice makes its copy the
    snapshot; the other, level with it, goes on; changes work again on
    both; a node started afterwards loads every account; and a node that
    had more than the one that won takes the journal's state."""
    r = redis_servers()
    cfg = CONFIG % r.port
    a, b = sluice(cfg), sluice(cfg)
    keys = {}
    for i in range(5):
        create(a, "kept%d" % i)
        keys[i] = issue(a, "kept%d" % i)["key"]
    assert until(lambda: get(b, keys[4]).status_code == 200, 1.0) is not None
    r.kill()
    r.start()  # empty: --save '' and no AOF
    rc = r.client()
    assert until(lambda: rc.exists(SNAP) == 1, 3.0) is not None, a.log() + b.log()
    assert "journal was gone from Redis" in a.log() + b.log()
    assert int(rc.get(VER)) == 10 and base(rc) == 10
    # changes are taken again, on either node, and reach the other
    create(b, "after")
    k_after = issue(b, "after")["key"]
    assert until(lambda: get(a, k_after).status_code == 200, 2.0) is not None
    for d in (a, b):
        assert all(get(d, k).status_code == 200 for k in keys.values())
    # a node started now has every account from the restored journal
    c = sluice(cfg)
    assert all(get(c, k).status_code == 200 for k in list(keys.values()) + [k_after])
    assert admin(c, "GET", "/v1/accounts/kept3").status_code == 200


def test_after_a_lost_journal_a_node_with_more_takes_the_restored_one(sluice, redis_servers):
    r = redis_servers()
    rc = r.client()
    cfg = CONFIG % r.port
    a, b = sluice(cfg), sluice(cfg)
    create(a, "both")
    k_both = issue(a, "both")["key"]
    assert until(lambda: get(b, k_both).status_code == 200, 1.0) is not None
    b.signal(signal.SIGSTOP)
    try:
        create(a, "only_a")  # a is one entry ahead of b
        a.signal(signal.SIGSTOP)
        try:
            rc.flushall()  # Redis loses everything
            b.signal(signal.SIGCONT)
            assert until(lambda: rc.exists(SNAP) == 1, 3.0) is not None, b.log()
            assert int(rc.get(VER)) == 2  # b's copy won: "only_a" is not in it
        finally:
            a.signal(signal.SIGCONT)
    finally:
        b.signal(signal.SIGCONT)
    # a had more than the journal now holds: it takes the journal's state,
    # so every node answers alike (what Redis lost is lost)
    assert until(lambda: "it took the snapshot" in a.log(), 3.0) is not None, a.log()
    assert admin(a, "GET", "/v1/accounts/only_a").status_code == 404
    assert get(a, k_both).status_code == 200
    assert admin(a, "POST", "/v1/accounts", {"account": "again", "plan": "basic"}).status_code == 201
    assert until(lambda: admin(b, "GET", "/v1/accounts/again").status_code == 200, 2.0)


def test_an_entry_sluice_did_not_write_is_skipped_and_said(sluice, redis_servers):
    """The journal is in Redis, where any client can write: an entry that
    is not a change sluice wrote (damaged JSON, an unknown op, a digest that
    is not hex, a time past 2116) is skipped and logged; the entries after
    it apply."""
    r = redis_servers()
    rc = r.client()
    cfg = CONFIG % r.port
    a, b = sluice(cfg), sluice(cfg)
    create(a, "first")
    assert until(lambda: admin(b, "GET", "/v1/accounts/first").status_code == 200, 1.0)
    bad = [b"{not json", json.dumps({"op": 99, "account": "x", "id": "", "now": "1"}).encode(),
           json.dumps({"op": 6, "account": "first", "id": "", "now": str(time.time_ns()),
                       "body": {}, "sha256": "zz" * 32, "key_id": "key_x",
                       "prefix": "sk_live_xxxx"}).encode(),
           json.dumps({"op": 1, "account": "late", "id": "", "now": "9" * 30,
                       "body": {"account": "late", "plan": "basic"}}).encode()]
    for e in bad:
        rc.rpush(LOG, e)
    rc.incrby(VER, len(bad))
    create(a, "second")  # after them
    for d in (a, b):
        assert until(lambda: admin(d, "GET", "/v1/accounts/second").status_code == 200, 2.0)
        assert d.log().count("is not a change sluice wrote: skipped") == len(bad), d.log()
        assert admin(d, "GET", "/v1/accounts/late").status_code == 404
