"""The docs quote files exactly (issue 12, "Docs true"). In README.md and
docs/*.md a fenced block right after a marker line

    <!-- file: examples/NAME (anything after the path is a note) -->

must equal that file byte for byte, and a ```yaml block whose paragraph
names an `examples/*.yaml` file must carry such a marker: a config shown
next to a file's name is that file, never a retyped variant. Pure Python,
no daemon."""
import glob
import os
import re

import yaml

from conftest import ROOT

DOCS = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
MARKER = re.compile(r"^<!-- file: (\S+)(?: .*)? -->$")
FENCE = re.compile(r"^(```+|~~~+)(\S*)\s*$")


def blocks(path):
    """(info, text, marker_path or None, paragraph before) for every fenced
    block of path."""
    lines = open(path, encoding="utf-8").read().split("\n")
    out = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group(1), m.group(2)
        j = i + 1
        while j < len(lines) and lines[j] != fence:
            j += 1
        assert j < len(lines), "%s:%d: unclosed fence" % (path, i + 1)
        body = "\n".join(lines[i + 1:j]) + "\n" if j > i + 1 else ""
        marker = None
        k = i - 1
        if k >= 0 and MARKER.match(lines[k]):
            marker = MARKER.match(lines[k]).group(1)
            k -= 1
        para = []
        while k >= 0 and lines[k].strip() == "":
            k -= 1
        while k >= 0 and lines[k].strip() != "" and not FENCE.match(lines[k]):
            para.insert(0, lines[k])
            k -= 1
        out.append((i + 1, info, body, marker, "\n".join(para)))
        i = j + 1
    return out


def test_marked_blocks_equal_their_files():
    checked = 0
    for doc in DOCS:
        for line, _info, body, marker, _para in blocks(doc):
            if marker is None:
                continue
            path = os.path.join(ROOT, marker)
            assert os.path.isfile(path), "%s:%d: names %s, which does not exist" % (
                doc, line, marker)
            want = open(path, encoding="utf-8").read()
            assert body == want, "%s:%d: the block is not %s byte for byte" % (doc, line, marker)
            checked += 1
    assert checked >= 1


def test_readme_walkthrough_is_the_file_it_names():
    readme = os.path.join(ROOT, "README.md")
    text = open(readme, encoding="utf-8").read()
    section = text.split("## A config, walked through", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"`(examples/[^`]+\.yaml)`", section)
    assert named, "the walk-through names no example file"
    marked = [b for b in blocks(readme) if b[3] == named[0]]
    assert marked, "README shows %s without quoting it exactly" % named[0]


def test_yaml_next_to_an_example_name_is_that_example():
    for doc in DOCS:
        for line, info, body, marker, para in blocks(doc):
            if info != "yaml":
                continue
            names = re.findall(r"`(examples/[^`]+\.ya?ml)`", para)
            if names:
                assert marker in names, (
                    "%s:%d: a YAML block next to %s must be that file, marked "
                    "<!-- file: %s -->" % (doc, line, names[0], names[0]))
            # every YAML block of the docs at least parses
            yaml.safe_load(body)


HEALTHZ = """
listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: static }}
admin: {{ listen: "127.0.0.1:{admin}", token: "s3cret" }}
limits:
  - {{ name: per-ip, key: ip, rate: 5/min }}
"""


def test_admin_md_healthz_is_what_it_answers(sluice):
    import requests

    text = open(os.path.join(ROOT, "docs", "admin.md"), encoding="utf-8").read()
    section = text.split("## `GET /healthz`", 1)[1].split("\n## ", 1)[0]
    body = re.search(r"the body `([^`]+)`", section).group(1)
    ctype = re.search(r"`Content-Type: ([^`]+)`", section).group(1)
    d = sluice(HEALTHZ)
    r = requests.get(d.url("admin", "/healthz"), timeout=5)  # no token
    assert r.status_code == 200
    assert r.text == body
    assert r.headers["Content-Type"] == ctype
    r = requests.post(d.url("admin", "/healthz"), timeout=5)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
    assert "`Allow: GET, HEAD`" in section


CONC = """
listeners:
  - {{ name: gateway, listen: "127.0.0.1:{gateway}", mode: proxy, upstream: static }}
admin: {{ listen: "127.0.0.1:{admin}" }}
limits:
  - {{ name: rate, key: "header:X-Team", rate: 100/min }}   # skipped without the header
  - {{ name: inflight, key: ip, concurrency: 2 }}
"""


def test_policy_md_concurrency_exception(sluice):
    """docs/policy.md, Most restrictive: a concurrency limit speaks for the
    request only when no windowed limit applies."""
    import requests

    text = open(os.path.join(ROOT, "docs", "policy.md"), encoding="utf-8").read()
    assert "the exception, concurrency limits" in text
    d = sluice(CONC)

    def decide(**kw):
        r = requests.post(d.url("admin", "/v1/decide"), json=dict(ip="192.0.2.1", **kw),
                          timeout=5)
        assert r.status_code == 200
        return r.json()

    team = {"headers": {"X-Team": "blue"}}
    decide(**team)           # holds one of the 2 slots (its lease is not released)
    j = decide(**team)       # slots: 0 left; rate: 98 left
    assert j["allowed"]
    by_name = {x["name"]: x for x in j["limits"]}
    assert by_name["inflight"]["remaining"] == 0 and by_name["rate"]["remaining"] == 98
    assert j["headers"]["X-RateLimit-Limit"] == "100"
    assert j["headers"]["X-RateLimit-Remaining"] == "98"
    # no windowed limit applies (no X-Team): the concurrency limit speaks
    requests.post(d.url("admin", "/v1/release"), json={"lease": j["lease"]}, timeout=5)
    j = decide()
    assert [x["name"] for x in j["limits"]] == ["inflight"]
    assert j["headers"]["X-RateLimit-Limit"] == "2"
    assert j["headers"]["X-RateLimit-Remaining"] == "0"
