"""Host names in `listen` (docs/config.md, listeners): `localhost:PORT`
binds and serves, an admin listener on localhost needs no token (it is
loopback), and a name that does not resolve is refused by `validate` and by
`serve` as file:line:col, before anything is bound."""
import os
import re
import subprocess
import time

import requests

from conftest import SLUICE

NAMED = """
listeners:
  - {{ name: gateway, listen: "localhost:{gateway}", mode: proxy, upstream: static }}
admin: {{ listen: "localhost:{admin}" }}
limits:
  - {{ name: per-ip, key: ip, rate: 5/min }}
"""

UNRESOLVABLE = """listeners:
  - { name: gateway, listen: "no-such-host.invalid:8080", mode: proxy, upstream: static }
"""


def test_localhost_listen_serves(sluice):
    d = sluice(NAMED, wait=False)
    # the name's first address may be ::1 or 127.0.0.1: a client that
    # resolves the name (as requests does) finds it either way
    r = None
    deadline = time.monotonic() + 15
    while r is None and time.monotonic() < deadline and d.proc.poll() is None:
        try:
            r = requests.get("http://localhost:%d/x" % d.ports["gateway"], timeout=2)
        except requests.ConnectionError:
            time.sleep(0.05)
    assert r is not None, d.log()
    assert r.status_code == 200 and r.headers["X-RateLimit-Limit"] == "5"
    h = requests.get("http://localhost:%d/healthz" % d.ports["admin"], timeout=2)
    assert h.status_code == 200 and h.json() == {"status": "ok"}


def test_unresolvable_name_is_a_positioned_error(tmp_path):
    cfg = tmp_path / "sluice.yaml"
    cfg.write_text(UNRESOLVABLE)
    for cmd in ("validate", "serve"):
        r = subprocess.run([SLUICE, cmd, "-c", str(cfg)], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 1, (cmd, r.stderr)
        col = UNRESOLVABLE.splitlines()[1].index('"no-such') + 1
        assert re.search(r"sluice\.yaml:2:%d: listen address 'no-such-host\.invalid:8080': "
                         r"host 'no-such-host\.invalid' does not resolve" % col,
                         r.stderr), r.stderr
