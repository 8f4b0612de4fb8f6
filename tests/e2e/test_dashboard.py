"""The dashboard (GET /dashboard on the admin listener) in a real headless
Chromium driven by Selenium: the page asks for the admin token (the
listener has one) and keeps it in sessionStorage, loads with no console
errors, shows live decisions, rejections by limit, the top accounts, and
for the account typed in, its limits (the peek endpoint) and a history
chart with non-zero bars after traffic. The test saves a screenshot
beside the binary (build-asan/dashboard.png), and with
SLUICE_UPDATE_DOCS=1 copies it to docs/dashboard.png.

The hour before the test's own traffic is seeded: rows written into the
usage database before the daemon starts (labelled as such below), so the
chart shows an hour of history; the assertions on the live part use only
the traffic the test sends."""
import os
import re
import shutil
import sqlite3
import threading
import time

import pytest
import requests

from conftest import SLUICE

from selenium import webdriver  # python3-selenium (scripts/install-deps.sh)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

T = 5
TOKEN = "dash-s3cret"

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
  token: "%s"
identify:
  key:
    from: ["header:X-Api-Key"]
  accounts:
    - account: acme
      plan: pro
      keys: ["sk_acme"]
    - account: globex
      plan: free
      keys: ["sk_globex"]
    - account: initech
      plan: free
      keys: ["sk_initech"]
plans:
  free:
    title: Free
  pro:
    title: Pro
limits:
  - name: per-minute
    key: account
    rate: {{free: 20/min, pro: 60/min}}
  - name: daily
    key: account
    quota: {{free: 500/day, pro: 5000/day}}
usage:
  flush_interval: 1s
  path: "%s"
"""


def seed_history(path, now):
    """Write the hour before now into a fresh usage database, in the schema
    the daemon creates (rows it will read as its own)."""
    db = sqlite3.connect(path)
    for t in ("usage_minute", "usage_hour", "usage_day"):
        db.execute("CREATE TABLE IF NOT EXISTS %s(account TEXT NOT NULL, lim TEXT NOT NULL,"
                   " start INTEGER NOT NULL, allowed INTEGER NOT NULL, delayed INTEGER NOT NULL,"
                   " rejected INTEGER NOT NULL, cost INTEGER NOT NULL,"
                   " PRIMARY KEY(account, start, lim)) WITHOUT ROWID" % t)
    minute0 = now - now % 60
    for k in range(1, 60):
        start = minute0 - 60 * k
        wave = 30 + int(25 * (1 + __import__("math").sin(k / 6.0)))
        rows = [("acme", "per-minute", start, wave, 0, max(0, wave - 48), wave),
                ("globex", "per-minute", start, 12 + k % 7, 0, (k % 5) * 2, 12 + k % 7)]
        for acc, lim, s, a, d, r, c in rows:
            for t, b in (("usage_minute", 60), ("usage_hour", 3600), ("usage_day", 86400)):
                db.execute("INSERT INTO %s VALUES(?,?,?,?,?,?,?) ON CONFLICT(account, start, lim)"
                           " DO UPDATE SET allowed = allowed + excluded.allowed, rejected ="
                           " rejected + excluded.rejected, cost = cost + excluded.cost" % t,
                           (acc, lim, s - s % b, a, d, r, c))
    db.commit()
    db.close()


def traffic(d):
    codes = {}
    with requests.Session() as s:
        for key, n in (("sk_acme", 70), ("sk_globex", 26), ("sk_initech", 8)):
            for _ in range(n):
                c = s.get(d.url("gateway", "/v1/things"), headers={"X-Api-Key": key}, timeout=T).status_code
                codes.setdefault(key, []).append(c)
    return codes


@pytest.fixture
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1400,1250", "--force-device-scale-factor=1", "--lang=en-GB"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    drv = webdriver.Chrome(options=opts, service=service)
    drv.set_page_load_timeout(20)
    yield drv
    drv.quit()


def console_errors(drv):
    return [e for e in drv.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def test_dashboard_shows_an_account_its_limits_and_history(sluice, browser, tmp_path):
    db = str(tmp_path / "usage.db")
    seed_history(db, int(time.time()))
    daemon = sluice(CONFIG % (TOKEN, db))
    t0 = int(time.time())
    codes = traffic(daemon)
    t_traffic = time.monotonic()
    # GCRA gives back a unit a second: a slow run admits a few more than 60
    acme_ok, acme_429 = codes["sk_acme"].count(200), codes["sk_acme"].count(429)
    assert acme_ok >= 60 and acme_429 >= 1 and acme_ok + acme_429 == 70
    assert codes["sk_globex"].count(429) >= 1

    browser.get(daemon.url("admin", "/dashboard"))
    wait = WebDriverWait(browser, 15)
    # a token is required: the page asks before sending anything
    wait.until(lambda b: b.find_element(By.ID, "token-dialog").get_attribute("open") is not None)
    browser.find_element(By.ID, "token-input").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    assert browser.execute_script("return sessionStorage.getItem('sluice.admin.token')") == TOKEN
    assert TOKEN not in browser.current_url

    # top accounts and rejections by limit fill in
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#top-body tr.pick")) >= 3)
    # the page redraws every 2 s, replacing these rows: read them in one
    # script, never element by element (a redraw in between made a
    # reference stale in CI)
    names = browser.execute_script(
        "return [...document.querySelectorAll('#top-body tr.pick')].map(r => r.querySelector('td').textContent)")
    assert names[0] == "acme"
    assert set(names) >= {"acme", "globex", "initech"}
    wait.until(lambda b: "per-minute" in b.find_element(By.ID, "by-limit").text)

    # type an account in
    box = browser.find_element(By.ID, "account-input")
    box.send_keys("acme")
    browser.find_element(By.CSS_SELECTOR, "#account-form button[type=submit]").click()
    wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#limits .limit")) >= 2)
    assert browser.find_element(By.ID, "account-name").text == "acme"
    assert browser.find_element(By.ID, "account-plan").text == "pro"
    limits = browser.execute_script("""
        const out = {};
        for (const e of document.querySelectorAll('#limits .limit')) out[e.dataset.limit] = e.innerText;
        return out;""")
    assert set(limits) == {"per-minute", "daily"}
    left = re.search(r"(\d+) of 60 left per minute", limits["per-minute"])
    # spent, and regaining 1/s since the traffic (a slow browser start shows more)
    assert left and int(left.group(1)) <= 2 + time.monotonic() - t_traffic, limits
    assert "of 5000 left" in limits["daily"], limits

    # the chart has bars with height, and the live minute holds our traffic
    heights = browser.execute_script(
        "return [...document.querySelectorAll('#history rect')].map(r => Number(r.getAttribute('height')))")
    assert len(heights) > 0
    assert max(heights) > 1
    # the bars from the minute the traffic began on are exactly its counts
    # (the seeded hour ends before it)
    live = browser.execute_script("""
        const out = {allowed: 0, delayed: 0, rejected: 0};
        for (const r of document.querySelectorAll('#history rect'))
            if (Number(r.dataset.start) >= arguments[0]) out[r.dataset.kind] += Number(r.dataset.n);
        return out;""", t0 - t0 % 60)
    assert live == {"allowed": acme_ok, "delayed": 0, "rejected": acme_429}, live
    totals = browser.find_element(By.ID, "account-totals").text
    assert "allowed" in totals

    # live rates: traffic keeps flowing (about 40 requests/s) while the page
    # takes its 2 s samples, so decisions/s shows > 0
    stop = threading.Event()

    def background():
        with requests.Session() as s:
            while not stop.is_set():
                for key in ("sk_globex", "sk_initech", "sk_acme"):
                    s.get(daemon.url("gateway", "/x"), headers={"X-Api-Key": key}, timeout=T)
                time.sleep(0.07)

    th = threading.Thread(target=background)
    th.start()
    try:
        wait.until(lambda b: b.find_element(By.ID, "rate-all").text not in ("–", "0"))
        wait.until(lambda b: b.find_element(By.ID, "rate-rejected").text not in ("–", "0"))
        # the sparkline needs a few rate samples
        WebDriverWait(browser, 20).until(lambda b: b.execute_script(
            "return (document.querySelector('#spark path.line')?.getAttribute('d') || '').split('L').length") >= 4)
        wait.until(lambda b: b.find_element(By.ID, "status").text == "live")
        time.sleep(0.3)  # let the last poll paint
        out = os.path.join(os.path.dirname(os.path.abspath(SLUICE)), "dashboard.png")
        assert browser.save_screenshot(out)
    finally:
        stop.set()
        th.join(T)

    errors = console_errors(browser)
    assert errors == [], errors
    # SLUICE_UPDATE_DOCS=1 refreshes the README's picture from this run
    if os.environ.get("SLUICE_UPDATE_DOCS") == "1":
        shutil.copyfile(out, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "dashboard.png"))
    assert os.path.getsize(out) > 10000
