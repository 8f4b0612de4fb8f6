"""Seed 5 (hourly and daily quotas per user account, shared by the API and
the Telegram bot; API access only on VIP and above; stricter per-IP limits
on the auth endpoints) against examples/hourly-daily-per-account.yaml over
real HTTP: the five X-RateLimit-*-Hour/-Day headers, the bot (POST
/v1/decide on the admin listener) and the API (the gateway) drawing on one
account's hourly limit, the documented 429 body, the 403 entitlement, the
unlimited Elite plan, and the auth endpoint limits."""
import time

import requests

T = 5


def api(s, d, key, path="/v1/images/generate", method="POST"):
    return s.request(method, d.url("gateway", path), headers={"X-Api-Key": key}, timeout=T)


def bot(d, account, **extra):
    r = requests.post(d.url("admin", "/v1/decide"), json=dict(account=account, **extra),
                      timeout=T)
    assert r.status_code == 200
    return r.json()


def limit(j, name):
    return {x["name"]: x for x in j["limits"]}[name]


def test_headers_show_hour_and_day(sluice, example):
    d = sluice(example("hourly-daily-per-account.yaml"))
    s = requests.Session()
    r = api(s, d, "gen_vip_1001")
    assert r.status_code == 200
    assert r.headers["X-RateLimit-Limit-Hour"] == "100"
    assert r.headers["X-RateLimit-Remaining-Hour"] == "99"
    assert r.headers["X-RateLimit-Limit-Day"] == "1000"
    assert r.headers["X-RateLimit-Remaining-Day"] == "999"
    reset = int(r.headers["X-RateLimit-Reset-Hour"])
    assert reset % 3600 == 0 and 0 < reset - time.time() <= 3600


def test_bot_and_api_share_the_account_hourly_limit(sluice, example):
    d = sluice(example("hourly-daily-per-account.yaml"))
    s = requests.Session()
    # 50 through the API, 50 through the bot: together the VIP hour.
    for i in range(50):
        assert api(s, d, "gen_vip_1001").status_code == 200
        j = bot(d, "user-1001")
        assert j["allowed"] is True, j
    assert limit(j, "hourly")["remaining"] == 0
    assert limit(j, "daily")["remaining"] == 900
    assert j["headers"]["X-RateLimit-Remaining-Hour"] == "0"
    # The API's 101st call of the hour is refused with the documented body.
    r = api(s, d, "gen_vip_1001")
    assert r.status_code == 429
    ra = int(r.headers["Retry-After"])
    left = 3600 - time.time() % 3600
    assert abs(ra - left) <= 2  # seconds until the hour's end
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.text == ('{"error":"rate_limit_exceeded","message":"Hourly limit reached: 100 '
                      'requests/hour on VIP plan","retry_after":%d,"plan":"vip",'
                      '"limit_hour":100,"limit_day":1000}' % ra)
    # And so is the bot's.
    j = bot(d, "user-1001")
    assert j["allowed"] is False and j["status"] == 429
    assert j["denied_by"] == "hourly"
    assert abs(j["retry_after"] - ra) <= 1
    assert j["body"] == r.text.replace(str(ra), str(j["retry_after"]))
    assert j["headers"]["Retry-After"] == str(j["retry_after"])


def test_entitlement_403_for_plans_without_api_access(sluice, example):
    d = sluice(example("hourly-daily-per-account.yaml"))
    s = requests.Session()
    r = api(s, d, "gen_basic_1002")
    assert r.status_code == 403
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["message"] == "API access requires the VIP plan"
    assert body["plan"] == "basic"
    # A refused call consumes nothing; the bot still has the basic hour.
    j = bot(d, "user-1002")
    assert j["allowed"] is True
    assert limit(j, "hourly")["limit"] == 30
    assert limit(j, "hourly")["remaining"] == 29
    # The bot's decide for an API path is refused the same way.
    j = bot(d, "user-1002", path="/v1/images/generate", method="POST")
    assert j["allowed"] is False and j["status"] == 403 and j["denied_by"] == "api-access"


def test_basic_plan_hourly_limit_through_the_bot(sluice, example):
    d = sluice(example("hourly-daily-per-account.yaml"))
    for i in range(30):
        assert bot(d, "user-1002")["allowed"] is True
    j = bot(d, "user-1002")
    assert j["allowed"] is False and j["denied_by"] == "hourly"
    assert '"message":"Hourly limit reached: 30 requests/hour on Basic plan"' in j["body"]


def test_elite_is_unlimited(sluice, example):
    d = sluice(example("hourly-daily-per-account.yaml"))
    s = requests.Session()
    codes = [api(s, d, "gen_elite_1003").status_code for _ in range(150)]
    assert codes == [200] * 150  # more than VIP's hour
    j = bot(d, "user-1003")
    assert j["allowed"] is True
    h = limit(j, "hourly")
    assert h.get("unlimited") is True and h["limit"] is None


def test_auth_endpoints_are_limited_per_ip(sluice, example):
    d = sluice(example("hourly-daily-per-account.yaml"))
    s = requests.Session()
    t0 = time.monotonic()
    codes = [s.post(d.url("gateway", "/auth/login"), timeout=T).status_code for _ in range(11)]
    if time.monotonic() - t0 < 6.0:  # 10/min regains one per 6 s
        assert codes == [200] * 10 + [429]
    codes = [s.post(d.url("gateway", "/auth/forgot-password"), timeout=T).status_code
             for _ in range(4)]
    assert codes == [200] * 3 + [429]
    r = s.post(d.url("gateway", "/auth/forgot-password"), timeout=T)
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) > 60  # 3/hour: about 20 minutes
    # Registration has its own counter.
    assert s.post(d.url("gateway", "/auth/register"), timeout=T).status_code == 200
