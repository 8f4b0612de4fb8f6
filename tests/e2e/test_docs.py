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
