"""`sluice accounts ...` and `sluice keys ...` (DESIGN.md section 6) against
a real daemon with an sqlite account store: the commands an API provider
runs in its first week, each checked on the gateway it changes (a key
issued by the CLI is usable on the next request, a suspended account gets
403, a revoked key 401), plus bad usage (exit 2), API refusals (exit 1 with
the API's error), an unreachable daemon, the admin token, and --all
following cursor pages."""
import json
import os
import re
import subprocess

import requests

from conftest import SLUICE

T = 5

CONFIG = """
listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: static }}
admin: {{ listen: "127.0.0.1:{admin}" %(token)s}}
store: {{ type: memory }}
accounts: {{ store: sqlite, path: accounts.db }}
identify:
  key: {{ from: ["header:X-Api-Key"], required: true }}
plans:
  free: {{ title: Free }}
  pro: {{ title: Pro }}
limits:
  - name: tier
    key: account
    rate: {{ free: 10/min, pro: 1000/min }}
"""


def cfg(token=None):
    return CONFIG % {"token": (", token: %s " % token) if token else ""}


def cli(d, *args, env=None, config=True):
    e = dict(os.environ)
    e.pop("SLUICE_ADMIN_TOKEN", None)
    e.update(env or {})
    argv = [SLUICE, *args] + (["-c", d.config_path] if config else [])
    p = subprocess.run(argv, capture_output=True, text=True, timeout=T * 2, env=e)
    return p.returncode, p.stdout, p.stderr


def gw(d, key):
    return requests.get(d.url("gateway", "/x"), headers={"X-Api-Key": key}, timeout=T)


def test_onboard_use_suspend_rotate_revoke_delete(sluice):
    d = sluice(cfg())
    rc, out, err = cli(d, "accounts", "add", "acme", "--plan", "pro", "--title", "Acme Ltd",
                       "--override", "tier=20000/min", "--meta", "crm=42")
    assert rc == 0, err
    assert re.search(r"^account\s+acme$", out, re.M) and re.search(r"^plan\s+pro$", out, re.M)
    assert "override   tier = 20000/min" in out and "metadata   crm = 42" in out
    # the same account again: the API's 409, exit 1
    rc, out, err = cli(d, "accounts", "add", "acme", "--plan", "pro")
    assert rc == 1 and "409" in err

    rc, out, err = cli(d, "keys", "issue", "acme", "--label", "ci")
    assert rc == 0, err
    key = out.strip()
    assert re.fullmatch(r"sk_live_[0-9A-Za-z]{32}", key), out
    assert "shown this once" in err
    r = gw(d, key)  # usable on the very next request
    assert r.status_code == 200, r.text

    rc, out, err = cli(d, "keys", "list", "acme")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["ID", "PREFIX", "LABEL"]
    key_id = lines[1].split()[0]
    assert key_id.startswith("key_") and " ci " in lines[1] and key[:12] in lines[1]
    assert key not in out  # the secret is never shown again

    rc, out, _ = cli(d, "accounts", "list", "--json")
    assert rc == 0
    assert [a["account"] for a in json.loads(out)["accounts"]] == ["acme"]

    assert cli(d, "accounts", "suspend", "acme")[0] == 0
    assert gw(d, key).status_code == 403
    assert cli(d, "accounts", "resume", "acme")[0] == 0
    assert gw(d, key).status_code == 200

    rc, out, err = cli(d, "accounts", "set", "acme", "--plan", "free", "--override", "tier=")
    assert rc == 0, err
    assert re.search(r"^plan\s+free$", out, re.M) and "override" not in out

    rc, out, err = cli(d, "keys", "rotate", key_id, "--grace", "0")
    assert rc == 0, err
    new = out.strip()
    assert new != key and new.startswith("sk_live_")
    assert gw(d, key).status_code == 401
    assert gw(d, new).status_code == 200

    rc, out, err = cli(d, "keys", "list", "acme", "--json")
    new_id = [k["id"] for k in json.loads(out)["keys"] if k["id"] != key_id][0]
    assert cli(d, "keys", "revoke", new_id)[0] == 0
    assert gw(d, new).status_code == 401

    rc, out, _ = cli(d, "accounts", "delete", "acme")
    assert rc == 0 and "deleted acme" in out
    rc, _, err = cli(d, "accounts", "show", "acme")
    assert rc == 1 and "404" in err


def test_list_all_follows_the_cursor(sluice):
    d = sluice(cfg())
    for i in range(5):
        assert cli(d, "accounts", "add", "a%d" % i, "--plan", "free")[0] == 0
    rc, out, err = cli(d, "accounts", "list", "--limit", "2")
    assert rc == 0 and len(out.splitlines()) == 3 and "--after" in err
    rc, out, _ = cli(d, "accounts", "list", "--limit", "2", "--all")
    assert rc == 0
    assert [l.split()[0] for l in out.splitlines()[1:]] == ["a0", "a1", "a2", "a3", "a4"]
    rc, out, _ = cli(d, "accounts", "list", "--limit", "2", "--all", "--json")
    assert len(json.loads(out)["accounts"]) == 5
    rc, out, _ = cli(d, "accounts", "list", "--plan", "pro")
    assert rc == 0 and len(out.splitlines()) == 1  # the header only


def test_bad_usage_is_exit_2_and_refusals_exit_1(sluice):
    d = sluice(cfg())
    for args in (["accounts"], ["accounts", "frob", "x"], ["accounts", "add", "acme"],
                 ["accounts", "add", "acme", "--plan"], ["accounts", "show"],
                 ["accounts", "set", "acme"], ["accounts", "add", "a", "--plan", "p",
                                               "--override", "tier"],
                 ["accounts", "add", "a", "--plan", "p", "--override", "t={rate: 1/s"],
                 ["keys", "issue"], ["keys", "zap", "x"], ["accounts", "list", "--bogus"]):
        rc, _, err = cli(d, *args)
        assert rc == 2, (args, err)
        assert err.startswith("sluice "), err
    # without -c or --admin
    rc, _, err = cli(d, "accounts", "list", config=False)
    assert rc == 2 and "-c FILE" in err
    # help for each
    for args in (["accounts", "--help"], ["keys", "-h"], ["help", "accounts"],
                 ["accounts", "add", "--help"]):
        rc, out, _ = cli(d, *args, config=False)
        assert rc == 0 and out.startswith("usage: sluice"), args
    # the API refuses: an unknown plan is the API's 400 naming the field
    rc, _, err = cli(d, "accounts", "add", "acme", "--plan", "gold")
    assert rc == 1 and "400" in err and "plan" in err
    rc, _, err = cli(d, "keys", "revoke", "key_nosuch")
    assert rc == 1 and "404" in err


def test_unreachable_daemon_and_the_token(sluice):
    d = sluice(cfg(token="s3cret"))
    # the token comes from the config the CLI reads
    assert cli(d, "accounts", "add", "acme", "--plan", "pro")[0] == 0
    # SLUICE_ADMIN_TOKEN wins over it: a wrong one is the API's 401
    rc, _, err = cli(d, "accounts", "list", env={"SLUICE_ADMIN_TOKEN": "nope"})
    assert rc == 1 and "401" in err
    rc, out, _ = cli(d, "accounts", "list", env={"SLUICE_ADMIN_TOKEN": "s3cret"})
    assert rc == 0 and "acme" in out
    # --admin URL instead of a config
    rc, out, _ = cli(d, "accounts", "list", "--admin",
                     "http://127.0.0.1:%d" % d.ports["admin"],
                     env={"SLUICE_ADMIN_TOKEN": "s3cret"}, config=False)
    assert rc == 0 and "acme" in out
    assert d.stop() == 0
    rc, _, err = cli(d, "accounts", "list")
    assert rc == 1 and "cannot reach the admin API" in err


def test_the_cli_reads_only_the_admin_section(sluice, tmp_path):
    """The CLI must not need what only the daemon may read: a config whose
    TLS key the operator cannot read (here: one that does not exist) still
    names the daemon's admin listener."""
    d = sluice(cfg())
    text = open(d.config_path).read().replace(
        "mode: proxy, upstream: static",
        "mode: proxy, upstream: static, tls: { cert: /nonexistent.pem, key: /nonexistent.key }")
    other = tmp_path / "other.yaml"
    other.write_text(text)
    p = subprocess.run([SLUICE, "accounts", "list", "-c", str(other)], capture_output=True,
                       text=True, timeout=T * 2)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("ACCOUNT")
