"""`make demo` promises (scripts/demo.sh, README): run the same sequence of
curl commands against examples/quickstart.yaml and check what they show."""
import json
import os
import re
import subprocess

from conftest import ROOT


def quickstart_config():
    with open(os.path.join(ROOT, "examples", "quickstart.yaml")) as f:
        text = f.read()
    text = text.replace("{", "{{").replace("}", "}}")
    text = text.replace("127.0.0.1:8080", "127.0.0.1:{gateway}")
    text = text.replace("127.0.0.1:8081", "127.0.0.1:{check}")
    text = text.replace("127.0.0.1:9901", "127.0.0.1:{admin}")
    return text


def curl(*args):
    r = subprocess.run(["curl", "-s", "-i", "--max-time", "5", *args],
                       capture_output=True, timeout=10)
    head, _, body = r.stdout.decode().partition("\r\n\r\n")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def test_demo_sequence_shows_200_401_and_429(sluice):
    d = sluice(quickstart_config())
    url = d.url("gateway", "/hello")

    status, h, body = curl(url)
    assert status == 200
    assert json.loads(body) == {"ok": True}
    assert h["x-ratelimit-limit"] == "5"
    assert h["x-ratelimit-remaining"] == "4"
    assert re.fullmatch(r"\d{10}", h["x-ratelimit-reset"])

    status, h, _ = curl("-H", "X-Api-Key: demo-key-123", url)
    assert status == 200
    assert h["x-ratelimit-remaining"] == "3"

    status, h, body = curl("-H", "X-Api-Key: nope", url)
    assert status == 401
    assert "error" in json.loads(body)

    codes = [curl(url)[0] for _ in range(3)]
    assert codes == [200, 200, 429]

    status, h, body = curl(url)
    assert status == 429
    assert int(h["retry-after"]) >= 1
    doc = json.loads(body)
    assert doc["denied_by"] == "per-ip"

    status, h, _ = curl(d.url("check", "/hello"))
    assert status == 429

    r = subprocess.run(["curl", "-s", "--max-time", "5", "-X", "POST", d.url("admin", "/v1/decide"),
                        "-d", '{"ip":"203.0.113.9"}'], capture_output=True, text=True, timeout=10)
    dec = json.loads(r.stdout)
    assert dec["allowed"] is True and dec["status"] == 200
    assert dec["limits"][0]["name"] == "per-ip" and dec["limits"][0]["remaining"] == 4

    r = subprocess.run(["curl", "-s", "--max-time", "5", d.url("admin", "/metrics")],
                       capture_output=True, text=True, timeout=10)
    assert 'sluice_decisions_total{listener="gateway",limit="per-ip",outcome="rejected"}' in r.stdout
