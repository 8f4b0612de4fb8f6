"""End to end: accounts and API keys as live data (DESIGN.md section 6) on
the real daemon with `accounts: {store: sqlite}`: keys issued through the
admin API work on the next request, rotation keeps the old key for its
grace, revocation and deletion are in force on the next request (also on
an open keep-alive connection), plan changes and overrides keep usage,
suspension answers 403, static accounts refuse changes, every bad input is
a 400 naming its field, and the sqlite file keeps every acknowledged write
across a restart and kill -9."""
import datetime
import http.client
import json
import os
import re
import signal
import stat
import time

import pytest
import requests

from test_redis import REDIS_SERVER, redis_servers  # noqa: F401 (a fixture)

CONFIG = """
listeners:
  - name: api
    listen: 127.0.0.1:{gateway}
    mode: proxy
    upstream: static
admin:
  listen: 127.0.0.1:{admin}
plans:
  basic: {{title: Basic}}
  pro: {{title: Pro}}
accounts:
  store: sqlite
  key_prefix: "sk_test_"
identify:
  accounts:
    - account: staticco
      plan: basic
      keys: ["static-key-1", "sha256:ba5d0b3fdc6fbb6bd85b8c1bc4d84f7b3b3c7cf7d8e88ee1b5e2c3f1b0c2a4d6"]
limits:
  - name: hourly
    key: account
    quota: {{basic: 30/hour, pro: 100/hour}}
  - name: tier
    key: account
    rate: {{basic: 10/min, pro: 600/min}}
  - name: slots
    key: account
    concurrency: 20
responses:
  suspended:
    body: '{{"error":"account_suspended","account":"{{account}}"}}'
"""


def admin(d, method, path, body=None, **kw):
    return requests.request(method, d.url("admin", path),
                            data=None if body is None else (
                                body if isinstance(body, str) else json.dumps(body)),
                            timeout=5, **kw)


def create(d, name, plan="basic", **fields):
    body = {"account": name, "plan": plan}
    body.update(fields)
    r = admin(d, "POST", "/v1/accounts", body)
    assert r.status_code == 201, r.text
    return r.json()


def issue(d, account, **fields):
    r = admin(d, "POST", "/v1/accounts/%s/keys" % account, fields)
    assert r.status_code == 201, r.text
    return r.json()


def get(d, key, path="/x"):
    return requests.get(d.url("gateway", path), headers={"X-Api-Key": key}, timeout=5)


def decide(d, key):
    r = admin(d, "POST", "/v1/decide", {"key": key, "path": "/x"})
    assert r.status_code == 200, r.text
    return r.json()


def limit_of(decision, name):
    for l in decision["limits"]:
        if l["name"] == name:
            return l
    raise AssertionError("no limit %s in %r" % (name, decision))


@pytest.fixture
def d(sluice):
    return sluice(CONFIG)


def test_issued_key_works_on_the_next_request(d):
    acc = create(d, "acme", title="Acme Ltd", metadata={"crm": "123"})
    assert acc["status"] == "active" and acc["keys"] == [] and acc["title"] == "Acme Ltd"
    k = issue(d, "acme", label="ci")
    assert k["key"].startswith("sk_test_") and len(k["key"]) == len("sk_test_") + 32
    assert k["prefix"] == k["key"][:12] and k["id"].startswith("key_")
    assert k["label"] == "ci" and k["expires"] is None and k["revoked"] is False
    r = get(d, k["key"])
    assert r.status_code == 200, r.text
    assert r.headers["X-RateLimit-Limit"] == "10"
    # the key is shown once: GET lists it without the key text
    acc = admin(d, "GET", "/v1/accounts/acme").json()
    assert [x["id"] for x in acc["keys"]] == [k["id"]]
    assert "key" not in acc["keys"][0] and acc["metadata"] == {"crm": "123"}
    assert k["key"] not in open(os.path.join(d.tmpdir, "accounts.db"), "rb").read().decode(
        errors="replace")
    # an unknown key of the same shape is 401
    assert get(d, "sk_test_" + "x" * 32).status_code == 401


def test_rotate_keeps_the_old_key_for_its_grace_then_401(d):
    create(d, "rot")
    old = issue(d, "rot", label="prod")
    r = admin(d, "POST", "/v1/keys/%s/rotate" % old["id"], {"grace": "2s"})
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["key"] != old["key"] and new["label"] == "prod" and new["account"] == "rot"
    assert get(d, new["key"]).status_code == 200
    assert get(d, old["key"]).status_code == 200  # within the grace
    time.sleep(2.3)
    assert get(d, old["key"]).status_code == 401
    assert get(d, new["key"]).status_code == 200
    # rotating a revoked key is refused; grace 0 is at once
    assert admin(d, "POST", "/v1/keys/%s/rotate" % old["id"], {}).status_code == 409
    r = admin(d, "POST", "/v1/keys/%s/rotate" % new["id"], {"grace": "0"})
    assert r.status_code == 201
    assert get(d, new["key"]).status_code == 401
    assert get(d, r.json()["key"]).status_code == 200


def test_revoke_is_401_on_the_next_request_on_an_open_keepalive_connection(d):
    create(d, "ka")
    k = issue(d, "ka")
    conn = http.client.HTTPConnection("127.0.0.1", d.ports["gateway"], timeout=5)
    conn.request("GET", "/x", headers={"X-Api-Key": k["key"]})
    r = conn.getresponse()
    r.read()
    assert r.status == 200 and r.getheader("Connection", "").lower() != "close"
    sock = conn.sock
    assert admin(d, "DELETE", "/v1/keys/%s" % k["id"]).status_code == 204
    conn.request("GET", "/x", headers={"X-Api-Key": k["key"]})
    r = conn.getresponse()
    body = r.read()
    assert conn.sock is sock, "the request did not reuse the connection"
    assert r.status == 401, body
    conn.close()
    key = admin(d, "GET", "/v1/keys/%s" % k["id"]).json()
    assert key["revoked"] is True and key["active"] is False
    assert admin(d, "DELETE", "/v1/keys/key_nope").status_code == 404


def test_pipelined_requests_around_a_revoke(d):
    create(d, "pipe")
    k = issue(d, "pipe")
    conn = http.client.HTTPConnection("127.0.0.1", d.ports["gateway"], timeout=5)
    conn.connect()
    req = ("GET /x HTTP/1.1\r\nHost: a\r\nX-Api-Key: %s\r\n\r\n" % k["key"]).encode()
    conn.sock.sendall(req * 2)
    data = b""
    while data.count(b"HTTP/1.1 ") < 2:
        chunk = conn.sock.recv(65536)
        assert chunk
        data += chunk
    assert data.count(b"HTTP/1.1 200") == 2
    assert admin(d, "DELETE", "/v1/keys/%s" % k["id"]).status_code == 204
    conn.sock.sendall(req * 2)
    data = b""
    while data.count(b"HTTP/1.1 ") < 2:
        chunk = conn.sock.recv(65536)
        assert chunk
        data += chunk
    assert data.count(b"HTTP/1.1 401") == 2
    conn.close()


def test_http10_and_connection_close_see_the_live_key(d):
    create(d, "old")
    k = issue(d, "old")
    conn = http.client.HTTPConnection("127.0.0.1", d.ports["gateway"], timeout=5)
    conn._http_vsn, conn._http_vsn_str = 10, "HTTP/1.0"
    conn.request("GET", "/x", headers={"X-Api-Key": k["key"]})
    assert conn.getresponse().status == 200
    conn.close()
    r = requests.get(d.url("gateway", "/x"), timeout=5,
                     headers={"X-Api-Key": k["key"], "Connection": "close"})
    assert r.status_code == 200


def test_plan_change_keeps_quota_usage(d):
    create(d, "mover")
    k = issue(d, "mover")
    for i in range(6):
        assert get(d, k["key"]).status_code == 200
    before = limit_of(decide(d, k["key"]), "hourly")
    assert (before["limit"], before["remaining"]) == (30, 23)
    r = admin(d, "PATCH", "/v1/accounts/mover", {"plan": "pro"})
    assert r.status_code == 200 and r.json()["plan"] == "pro"
    after = limit_of(decide(d, k["key"]), "hourly")
    # 8 used of 100: the move kept the 7 counted on basic
    assert (after["limit"], after["remaining"]) == (100, 92)


def test_plan_change_keeps_gcra_usage(d):
    create(d, "gcra")
    k = issue(d, "gcra")
    for i in range(6):
        assert get(d, k["key"]).status_code == 200
    r = admin(d, "PATCH", "/v1/accounts/gcra", {"plan": "pro"})
    assert r.status_code == 200
    tier = limit_of(decide(d, k["key"]), "tier")
    # 7 units of 600 used (a fresh counter would show 599); a unit of
    # basic's regains every 6 s, so at most one came back meanwhile
    assert tier["limit"] == 600
    assert 592 <= tier["remaining"] <= 594, tier


def test_override_beats_the_plan_and_keeps_usage(d):
    create(d, "ent", overrides={"hourly": "1000/hour"})
    k = issue(d, "ent")
    for i in range(3):
        assert get(d, k["key"]).status_code == 200
    h = limit_of(decide(d, k["key"]), "hourly")
    assert (h["limit"], h["remaining"]) == (1000, 996)
    # every value form; null removes one (back to the plan, usage kept)
    r = admin(d, "PATCH", "/v1/accounts/ent", {"overrides": {
        "tier": {"rate": "900/min", "burst": 15, "queue": 5}, "slots": 50}})
    assert r.status_code == 200, r.text
    assert r.json()["overrides"] == {"hourly": "1000/hour",
                                     "tier": {"rate": "900/min", "burst": 15, "queue": 5},
                                     "slots": 50}
    dec = decide(d, k["key"])
    # 900/min with a burst of 15: the burst, not the plan's 10, bounds it
    assert limit_of(dec, "tier")["limit"] == 900
    assert 10 <= limit_of(dec, "tier")["remaining"] < 15
    assert limit_of(dec, "slots")["limit"] == 50
    r = admin(d, "PATCH", "/v1/accounts/ent", {"overrides": {"hourly": None}})
    assert r.status_code == 200 and "hourly" not in r.json()["overrides"]
    h = limit_of(decide(d, k["key"]), "hourly")
    assert (h["limit"], h["remaining"]) == (30, 24)
    r = admin(d, "PATCH", "/v1/accounts/ent", {"overrides": {"tier": "unlimited"}})
    assert r.status_code == 200
    for i in range(15):
        assert get(d, k["key"]).status_code == 200


def test_suspend_and_resume(d):
    create(d, "sus")
    k = issue(d, "sus")
    assert get(d, k["key"]).status_code == 200
    r = admin(d, "PATCH", "/v1/accounts/sus", {"status": "suspended"})
    assert r.status_code == 200 and r.json()["status"] == "suspended"
    r = get(d, k["key"])
    assert r.status_code == 403
    assert r.json() == {"error": "account_suspended", "account": "sus"}
    dec = decide(d, k["key"])
    assert dec["status"] == 403 and dec["allowed"] is False
    # keys can still be issued to a suspended account; they are 403 too
    k2 = issue(d, "sus")
    assert get(d, k2["key"]).status_code == 403
    assert admin(d, "PATCH", "/v1/accounts/sus", {"status": "active"}).status_code == 200
    assert get(d, k["key"]).status_code == 200
    assert get(d, k2["key"]).status_code == 200


def test_suspended_default_body(sluice):
    d = sluice(CONFIG.replace("""responses:
  suspended:
    body: '{{"error":"account_suspended","account":"{{account}}"}}'
""", ""))
    create(d, "s2", status="suspended")
    k = issue(d, "s2")
    r = get(d, k["key"])
    assert r.status_code == 403 and r.json() == {"error": "account_suspended"}


def test_suspended_body_written_as_the_template_itself(sluice):
    """DESIGN 6 writes responses.suspended as a template; {body: ...} works
    too (test_suspend_and_resume). The scalar form used to be refused."""
    d = sluice(CONFIG.replace("""  suspended:
    body: '{{"error":"account_suspended","account":"{{account}}"}}'
""", """  suspended: '{{"error":"suspended","who":"{{account}}"}}'
  unauthorized: '{{"error":"who_are_you"}}'
"""))
    create(d, "s3", status="suspended")
    k = issue(d, "s3")
    r = get(d, k["key"])
    assert r.status_code == 403 and r.json() == {"error": "suspended", "who": "s3"}
    r = get(d, "sk_test_nosuchkey")
    assert r.status_code == 401 and r.json() == {"error": "who_are_you"}


def test_delete_account(d):
    create(d, "gone")
    k1, k2 = issue(d, "gone"), issue(d, "gone")
    assert get(d, k1["key"]).status_code == 200
    assert admin(d, "DELETE", "/v1/accounts/gone").status_code == 204
    assert get(d, k1["key"]).status_code == 401
    assert get(d, k2["key"]).status_code == 401
    assert admin(d, "GET", "/v1/accounts/gone").status_code == 404
    assert admin(d, "DELETE", "/v1/accounts/gone").status_code == 404
    assert admin(d, "GET", "/v1/keys/%s" % k1["id"]).status_code == 404
    # the name is free again, and old keys do not come back with it
    create(d, "gone")
    assert get(d, k1["key"]).status_code == 401


def test_static_accounts_refuse_changes(d):
    assert get(d, "static-key-1").status_code == 200
    for method, path, body in [
            ("PATCH", "/v1/accounts/staticco", {"plan": "pro"}),
            ("DELETE", "/v1/accounts/staticco", None),
            ("POST", "/v1/accounts/staticco/keys", {}),
            ("POST", "/v1/accounts", {"account": "staticco", "plan": "pro"})]:
        r = admin(d, method, path, body)
        assert r.status_code == 409, (method, path, r.text)
        assert r.json()["error"] == "static_account"
    r = admin(d, "GET", "/v1/accounts/staticco")
    assert r.status_code == 200
    j = r.json()
    # every field an account has (DESIGN 6), its two config keys without id
    # or prefix (the config keeps only their digests)
    assert j["static"] is True and j["plan"] == "basic" and j["status"] == "active"
    assert set(j) >= {"account", "plan", "title", "status", "overrides", "metadata", "keys",
                      "created"}
    assert j["overrides"] == {} and j["metadata"] == {} and j["created"] is None
    assert len(j["keys"]) == 2 and all(k["static"] and k["id"] is None for k in j["keys"])


def test_sha256_keys_in_yaml(sluice):
    import hashlib
    digest = hashlib.sha256(b"hashed-only-key").hexdigest()
    d = sluice(CONFIG.replace("ba5d0b3fdc6fbb6bd85b8c1bc4d84f7b3b3c7cf7d8e88ee1b5e2c3f1b0c2a4d6",
                              digest))
    assert get(d, "hashed-only-key").status_code == 200
    assert get(d, "sha256:" + digest).status_code == 401


def test_create_conflict_and_get_404(d):
    create(d, "dup")
    r = admin(d, "POST", "/v1/accounts", {"account": "dup", "plan": "pro"})
    assert r.status_code == 409 and r.json()["error"] == "exists"
    assert admin(d, "GET", "/v1/accounts/nobody").status_code == 404
    assert admin(d, "PATCH", "/v1/accounts/nobody", {"plan": "pro"}).status_code == 404
    assert admin(d, "POST", "/v1/accounts/nobody/keys", {}).status_code == 404
    assert admin(d, "POST", "/v1/keys/key_nobody/rotate", {}).status_code == 404
    assert admin(d, "PUT", "/v1/accounts/dup").status_code == 405


BAD = [
    ("POST", "/v1/accounts", {"plan": "basic"}, "account"),
    ("POST", "/v1/accounts", {"account": "a b", "plan": "basic"}, "account"),
    ("POST", "/v1/accounts", {"account": "x" * 129, "plan": "basic"}, "account"),
    ("POST", "/v1/accounts", {"account": 5, "plan": "basic"}, "account"),
    ("POST", "/v1/accounts", {"account": "b1"}, "plan"),
    ("POST", "/v1/accounts", {"account": "b1", "plan": "gold"}, "plan"),
    ("POST", "/v1/accounts", {"account": "b1", "plan": "basic", "colour": "red"}, "colour"),
    ("POST", "/v1/accounts", {"account": "b1", "plan": "basic", "overrides": {"nope": "1/s"}},
     "overrides.nope"),
    ("POST", "/v1/accounts", {"account": "b1", "plan": "basic", "overrides": {"tier": "fast"}},
     "overrides.tier"),
    ("POST", "/v1/accounts", {"account": "b1", "plan": "basic", "overrides": {"hourly": "5/min"}},
     "overrides.hourly"),
    ("POST", "/v1/accounts", {"account": "b1", "plan": "basic", "overrides": {"slots": "ten"}},
     "overrides.slots"),
    ("POST", "/v1/accounts", {"account": "b1", "plan": "basic",
                              "overrides": {"tier": {"quota": "5/hour"}}}, "overrides.tier"),
    ("POST", "/v1/accounts", {"account": "b1", "plan": "basic",
                              "overrides": {"tier": {"rate": "5/s", "colour": 1}}},
     "overrides.tier"),
    ("POST", "/v1/accounts", {"account": "b1", "plan": "basic", "overrides": {"tier": [1]}},
     "overrides.tier"),
    ("POST", "/v1/accounts", {"account": "b1", "plan": "basic", "overrides": "fast"}, "overrides"),
    ("POST", "/v1/accounts", {"account": "b1", "plan": "basic", "metadata": [1]}, "metadata"),
    ("POST", "/v1/accounts", {"account": "b1", "plan": "basic", "status": "gone"}, "status"),
    ("PATCH", "/v1/accounts/victim", {"plan": "gold"}, "plan"),
    ("PATCH", "/v1/accounts/victim", {"status": "paused"}, "status"),
    ("PATCH", "/v1/accounts/victim", {"account": "renamed"}, "account"),
    ("PATCH", "/v1/accounts/victim", {"overrides": {"tier": "1/s", "hourly": "x"}},
     "overrides.hourly"),
    ("POST", "/v1/accounts/victim/keys", {"expires": "soon"}, "expires"),
    ("POST", "/v1/accounts/victim/keys", {"expires": "2020-01-01T00:00:00Z"}, "expires"),
    ("POST", "/v1/accounts/victim/keys", {"expires": "2027-02-30T00:00:00Z"}, "expires"),
    ("POST", "/v1/accounts/victim/keys", {"label": 7}, "label"),
    ("POST", "/v1/accounts/victim/keys", {"lable": "x"}, "lable"),
    ("POST", "/v1/keys/{key}/rotate", {"grace": "forever"}, "grace"),
    ("POST", "/v1/keys/{key}/rotate", {"grace": -5}, "grace"),
    ("POST", "/v1/keys/{key}/rotate", {"grace": "24h", "x": 1}, "x"),
    ("GET", "/v1/accounts?limit=1001", None, "limit"),
    ("GET", "/v1/accounts?limit=0", None, "limit"),
    ("GET", "/v1/accounts?limit=abc", None, "limit"),
]


def test_every_bad_input_is_a_400_naming_the_field_and_changes_nothing(d):
    create(d, "victim", overrides={"tier": "20/min"})
    k = issue(d, "victim")
    before = admin(d, "GET", "/v1/accounts/victim").json()
    for method, path, body, field in BAD:
        r = admin(d, method, path.replace("{key}", k["id"]), body)
        assert r.status_code == 400, (method, path, body, r.text)
        assert r.json()["field"] == field, (body, r.json())
    assert admin(d, "GET", "/v1/accounts/victim").json() == before
    assert admin(d, "GET", "/v1/accounts/b1").status_code == 404
    assert get(d, k["key"]).status_code == 200
    for raw in ["{", "[1,2]", "\"x\"", "null"]:
        r = admin(d, "POST", "/v1/accounts", raw)
        assert r.status_code == 400 and r.json()["error"] == "bad_json", raw


def test_list_pages_with_a_cursor(d):
    for i in range(5):
        create(d, "page%d" % i, plan="pro" if i % 2 else "basic")
    seen, after = [], ""
    while True:
        r = admin(d, "GET", "/v1/accounts?limit=2" + ("&after=" + after if after else ""))
        assert r.status_code == 200
        page = r.json()
        assert len(page["accounts"]) <= 2
        seen += [a["account"] for a in page["accounts"]]
        if page["next"] is None:
            break
        after = page["next"]
    # the config's account is merged in, in name order (DESIGN 6)
    assert seen == ["page%d" % i for i in range(5)] + ["staticco"]
    r = admin(d, "GET", "/v1/accounts?plan=basic")
    assert [x["account"] for x in r.json()["accounts"]] == ["page0", "page2", "page4",
                                                            "staticco"]
    assert [x["account"] for x in admin(d, "GET", "/v1/accounts?plan=pro").json()["accounts"]] \
        == ["page1", "page3"]
    r = admin(d, "GET", "/v1/accounts?after=page4&limit=1").json()
    assert [x["account"] for x in r["accounts"]] == ["staticco"] and r["next"] is None
    pro = admin(d, "GET", "/v1/accounts?plan=pro").json()
    assert [a["account"] for a in pro["accounts"]] == ["page1", "page3"]
    # a cursor with an escaped character, as clients send it
    create(d, "page@x")
    r = admin(d, "GET", "/v1/accounts?limit=1&after=page4")
    assert [a["account"] for a in r.json()["accounts"]] == ["page@x"]
    r = admin(d, "GET", "/v1/accounts?after=page%40x")
    assert [a["account"] for a in r.json()["accounts"]] == ["staticco"]
    assert r.json()["next"] is None
    r = admin(d, "GET", "/v1/accounts?after=page%404")
    assert [a["account"] for a in r.json()["accounts"]] == ["page@x", "staticco"]


def test_key_expiry(d):
    create(d, "exp")
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
    k = issue(d, "exp", expires=when.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert k["expires"] == when.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert get(d, k["key"]).status_code == 200
    time.sleep(2.2)
    assert get(d, k["key"]).status_code == 401


def loaded(d):
    """(sluice_accounts_loaded, sluice_keys_loaded) from /metrics."""
    text = admin(d, "GET", "/metrics").text
    return tuple(int(float(re.search(r"^%s (\S+)$" % n, text, re.M).group(1)))
                 for n in ("sluice_accounts_loaded", "sluice_keys_loaded"))


def dead_keys_leave_the_index(d):
    """Live accounts and keys count in the gauges as soon as they change;
    an expired key and a rotated one past its grace leave the index (the
    gauge) within a sweep, a second, while their rows stay readable."""
    base_acc, base_keys = loaded(d)
    create(d, "sweep")
    old = issue(d, "sweep")
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
    exp = issue(d, "sweep", expires=when.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert loaded(d) == (base_acc + 1, base_keys + 2)
    r = admin(d, "POST", "/v1/keys/%s/rotate" % old["id"], {"grace": "1s"})
    assert r.status_code == 201
    new = r.json()
    assert loaded(d) == (base_acc + 1, base_keys + 3)
    assert until(lambda: loaded(d) == (base_acc + 1, base_keys + 1), 6.0) is not None, loaded(d)
    assert get(d, old["key"]).status_code == 401 and get(d, exp["key"]).status_code == 401
    assert get(d, new["key"]).status_code == 200
    assert admin(d, "GET", "/v1/keys/%s" % old["id"]).status_code == 200
    assert admin(d, "GET", "/v1/keys/%s" % exp["id"]).status_code == 200
    # a revoke leaves at once, a delete takes the account and its keys
    assert admin(d, "DELETE", "/v1/keys/%s" % new["id"]).status_code == 204
    assert loaded(d) == (base_acc + 1, base_keys)
    assert admin(d, "DELETE", "/v1/accounts/sweep").status_code == 204
    assert loaded(d) == (base_acc, base_keys)


def test_dead_keys_leave_the_index_sqlite(d):
    dead_keys_leave_the_index(d)


def test_restart_keeps_everything(sluice):
    d = sluice(CONFIG)
    create(d, "keep", plan="pro", overrides={"hourly": "500/hour"})
    create(d, "keep2", status="suspended")
    k = issue(d, "keep")
    k2 = issue(d, "keep2")
    revoked = issue(d, "keep")
    assert admin(d, "DELETE", "/v1/keys/%s" % revoked["id"]).status_code == 204
    before = admin(d, "GET", "/v1/accounts/keep").json()
    assert d.stop() == 0
    d2 = sluice(CONFIG, ports=d.ports)
    assert admin(d2, "GET", "/v1/accounts/keep").json() == before
    assert get(d2, k["key"]).status_code == 200
    assert limit_of(decide(d2, k["key"]), "hourly")["limit"] == 500
    assert get(d2, k2["key"]).status_code == 403
    assert get(d2, revoked["key"]).status_code == 401


def test_kill9_keeps_every_acknowledged_write(sluice):
    d = sluice(CONFIG)
    keys = []
    for i in range(20):
        create(d, "k9-%d" % i)
        keys.append(issue(d, "k9-%d" % i)["key"])
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(5)
    d2 = sluice(CONFIG, ports=d.ports)
    for i, key in enumerate(keys):
        assert get(d2, key).status_code == 200, i
    stored = [x for x in admin(d2, "GET", "/v1/accounts?limit=1000").json()["accounts"]
              if not x.get("static")]
    assert len(stored) == 20


def test_unwritable_store_answers_503_and_lookups_keep_serving(d):
    create(d, "ro")
    k = issue(d, "ro")
    db = os.path.join(d.tmpdir, "accounts.db")
    mode = os.stat(db).st_mode
    os.chmod(db, stat.S_IRUSR | stat.S_IRGRP)
    try:
        for method, path, body in [("POST", "/v1/accounts", {"account": "ro2", "plan": "basic"}),
                                   ("PATCH", "/v1/accounts/ro", {"plan": "pro"}),
                                   ("POST", "/v1/accounts/ro/keys", {}),
                                   ("DELETE", "/v1/keys/%s" % k["id"], None),
                                   ("DELETE", "/v1/accounts/ro", None)]:
            r = admin(d, method, path, body)
            assert r.status_code == 503, (method, path, r.text)
            assert r.json()["error"] == "store_unavailable"
        assert get(d, k["key"]).status_code == 200
        assert admin(d, "GET", "/v1/accounts/ro").json()["plan"] == "basic"
    finally:
        os.chmod(db, mode)
    r = admin(d, "POST", "/v1/accounts", {"account": "ro2", "plan": "basic"})
    assert r.status_code == 201


def test_reload_keeps_the_store_and_refuses_to_drop_a_plan_in_use(d):
    create(d, "onpro", plan="pro")
    k = issue(d, "onpro")
    d.write_config(CONFIG.replace("  pro: {{title: Pro}}\n", "").replace(
        "quota: {{basic: 30/hour, pro: 100/hour}}", "quota: {{basic: 30/hour}}").replace(
        "rate: {{basic: 10/min, pro: 600/min}}", "rate: {{basic: 10/min}}"))
    d.signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "refused" not in d.log() and time.time() < deadline:
        time.sleep(0.05)
    assert "plan 'pro' (1 stored accounts)" in d.log()
    assert limit_of(decide(d, k["key"]), "hourly")["limit"] == 100
    # a reload that keeps the plans applies, and the store is kept
    d.write_config(CONFIG.replace("pro: 100/hour", "pro: 200/hour"))
    d.signal(signal.SIGHUP)
    deadline = time.time() + 5
    while "reloaded" not in d.log() and time.time() < deadline:
        time.sleep(0.05)
    assert limit_of(decide(d, k["key"]), "hourly")["limit"] == 200
    assert get(d, k["key"]).status_code == 200


def test_decide_by_account_name_uses_the_live_store(d):
    create(d, "bot", plan="pro")
    r = admin(d, "POST", "/v1/decide", {"account": "bot", "path": "/x"})
    dec = r.json()
    assert dec["status"] == 200 and limit_of(dec, "hourly")["limit"] == 100
    # the usage peek knows live accounts too, with their overrides
    admin(d, "PATCH", "/v1/accounts/bot", {"overrides": {"hourly": "300/hour"}})
    u = admin(d, "GET", "/v1/accounts/bot/usage")
    assert u.status_code == 200, u.text
    assert limit_of(u.json(), "hourly")["limit"] == 300
    assert admin(d, "GET", "/v1/accounts/nobody/usage").status_code == 404
    r = admin(d, "POST", "/v1/decide", {"account": "nobody", "path": "/x"})
    assert r.status_code == 404


def test_example_accounts_yaml_onboarding_as_in_the_readme(sluice, example):
    from conftest import SLUICE
    import subprocess
    d = sluice(example("accounts.yaml"))

    def run(*args):
        p = subprocess.run([SLUICE, *args, "-c", d.config_path], capture_output=True,
                           text=True, timeout=10)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p.stdout

    assert "Acme Ltd" in run("accounts", "add", "acme", "--plan", "free", "--title", "Acme Ltd")
    key = run("keys", "issue", "acme", "--label", "prod").split()[0]
    assert key.startswith("sk_live_")
    r = requests.get(d.url("gateway", "/hello"), headers={"X-Api-Key": key}, timeout=5)
    assert r.status_code == 200 and r.headers["X-RateLimit-Limit"] == "10"
    run("accounts", "set", "acme", "--plan", "pro")
    r = requests.get(d.url("gateway", "/hello"), headers={"X-Api-Key": key}, timeout=5)
    assert r.status_code == 200
    dec = decide(d, key)
    assert limit_of(dec, "burst")["limit"] == 100
    assert limit_of(dec, "hourly")["limit"] == 10000
    assert limit_of(dec, "hourly")["remaining"] == 10000 - 3  # the move kept 2 used
    run("accounts", "suspend", "acme")
    r = requests.get(d.url("gateway", "/hello"), headers={"X-Api-Key": key}, timeout=5)
    assert r.status_code == 403 and r.json() == {"error": "account_suspended", "account": "acme"}
    shown = json.loads(run("keys", "list", "acme", "--json"))
    assert [k["prefix"] for k in shown["keys"]] == [key[:12]]


# ---- accounts.store: redis: two nodes on one redis-server ----

REDIS_CONFIG = """
listeners:
  - name: api
    listen: 127.0.0.1:{gateway}
    mode: proxy
    upstream: static
admin:
  listen: 127.0.0.1:{admin}
store: {{type: redis, url: "redis://127.0.0.1:%d"}}
plans:
  basic: {{title: Basic}}
  pro: {{title: Pro}}
accounts:
  store: redis
limits:
  - name: hourly
    key: account
    quota: {{basic: 30/hour, pro: 100/hour}}
"""


def until(pred, timeout):
    """Seconds until pred() held (polled every 10 ms), or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(0.01)
    return None


@pytest.fixture
def two_nodes(sluice, redis_servers):
    r = redis_servers()
    cfg = REDIS_CONFIG % r.port
    return r, cfg, sluice(cfg), sluice(cfg)


def test_redis_a_key_issued_on_one_node_works_on_the_other_within_1s(two_nodes):
    r, cfg, a, b = two_nodes
    create(a, "shared", plan="pro")
    k = issue(a, "shared")
    assert get(a, k["key"]).status_code == 200
    t = until(lambda: get(b, k["key"]).status_code == 200, 1.0)
    assert t is not None, "node b never accepted the key"
    # both nodes count on the same Redis quota
    assert limit_of(decide(b, k["key"]), "hourly")["remaining"] == 100 - 3
    # a change on b reaches a: suspension, then revocation
    assert admin(b, "PATCH", "/v1/accounts/shared", {"status": "suspended"}).status_code == 200
    assert until(lambda: get(a, k["key"]).status_code == 403, 1.0) is not None
    assert admin(b, "PATCH", "/v1/accounts/shared", {"status": "active"}).status_code == 200
    assert admin(a, "DELETE", "/v1/keys/%s" % k["id"]).status_code == 204
    assert get(a, k["key"]).status_code == 401
    assert until(lambda: get(b, k["key"]).status_code == 401, 1.0) is not None
    # both nodes answer the same account, and a conflicting create loses
    assert admin(b, "GET", "/v1/accounts/shared").json()["keys"][0]["revoked"] is True
    assert admin(b, "POST", "/v1/accounts",
                 {"account": "shared", "plan": "basic"}).status_code == 409


def test_redis_a_restarted_node_replays_every_change(two_nodes, sluice):
    r, cfg, a, b = two_nodes
    create(a, "early")
    k = issue(a, "early")
    admin(a, "PATCH", "/v1/accounts/early", {"plan": "pro", "overrides": {"hourly": "7/hour"}})
    assert b.stop() == 0
    c = sluice(cfg)
    assert get(c, k["key"]).status_code == 200
    assert limit_of(decide(c, k["key"]), "hourly")["limit"] == 7
    assert admin(c, "GET", "/v1/accounts/early").json()["plan"] == "pro"


def test_redis_down_writes_503_lookups_keep_serving(two_nodes):
    r, cfg, a, b = two_nodes
    create(a, "steady")
    k = issue(a, "steady")
    assert until(lambda: get(b, k["key"]).status_code == 200, 1.0) is not None
    r.pause()
    try:
        resp = admin(a, "POST", "/v1/accounts", {"account": "new", "plan": "basic"})
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"] == "store_unavailable"
        # lookups never touch Redis (the counters do: store.on_error allow)
        assert get(a, k["key"]).status_code == 200
        assert admin(a, "GET", "/v1/accounts/new").status_code == 404
    finally:
        r.resume()
    assert until(lambda: admin(a, "POST", "/v1/accounts",
                               {"account": "new", "plan": "basic"}).status_code == 201, 5.0)
    # b's poller may have been inside a 1 s Redis timeout during the pause
    assert until(lambda: admin(b, "GET", "/v1/accounts/new").status_code == 200, 5.0) is not None


def test_dead_keys_leave_the_index_redis(two_nodes):
    r, cfg, a, b = two_nodes
    dead_keys_leave_the_index(a)


def test_redis_accounts_bring_a_fleet_wide_usage_history(two_nodes):
    """accounts.store: redis alone (no usage.store) keeps the usage history
    in the same Redis: either node answers for the decisions of both."""
    r, cfg, a, b = two_nodes
    assert "usage" not in cfg
    create(a, "fleet", plan="pro")
    k = issue(a, "fleet")
    assert until(lambda: get(b, k["key"]).status_code == 200, 5.0) is not None  # 1 decision
    assert [get(a, k["key"]).status_code for _ in range(3)] == [200] * 3
    assert [get(b, k["key"]).status_code for _ in range(1)] == [200]

    def allowed(d):
        h = admin(d, "GET", "/v1/accounts/fleet/usage/history?bucket=day").json()
        return sum(x.get("allowed", 0) for x in h.get("buckets", h.get("series", [])))
    # a query first flushes its own node's counts (the flusher's period is
    # 10 s here): a's query writes a's, b's query writes b's and sees both,
    # and a then sees both too
    assert allowed(a) == 3
    assert allowed(b) == 5
    assert allowed(a) == 5
    # the two test nodes share a directory, so a shared usage.db would also
    # show both: the history must be in Redis and nowhere else
    assert r.client().keys("sluice:usage:*")
    assert not os.path.exists(os.path.join(a.tmpdir, "usage.db"))
