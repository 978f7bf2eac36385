"""The shipped model (models/default) through `wafer scan` on the CI sample of the test split.

tests/fixtures/detection/sample.jsonl holds a few hundred requests drawn from the held-out TEST split
(train/make_sample.py) with the verdict and class that the model card's evaluation gave each one. This test
runs the shipped model on them through `wafer scan` and checks every verdict and class, and that the counts
per label equal the "CI sample" table of models/default/MODEL_CARD.md.
"""
import collections
import json
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WAFER = os.environ.get("WAFER_BIN", os.path.join(ROOT, "build", "wafer"))
MODEL = os.path.join(ROOT, "models", "default")
SAMPLE = os.path.join(ROOT, "tests", "fixtures", "detection", "sample.jsonl")
CARD = os.path.join(MODEL, "MODEL_CARD.md")


def card_table():
    """label -> (requests, flagged, right class) from the card's "CI sample" table."""
    with open(CARD, encoding="utf-8") as f:
        text = f.read()
    sec = text.split("## CI sample", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for m in re.finditer(r"^\|\s*`?([a-z_]+)`?\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+|-)\s*\|\s*$", sec, re.M):
        rows[m.group(1)] = (int(m.group(2)), int(m.group(3)), None if m.group(4) == "-" else int(m.group(4)))
    return rows


@pytest.fixture(scope="module")
def scanned():
    if not os.path.exists(WAFER):
        pytest.fail("wafer binary not built: " + WAFER)
    p = subprocess.run([WAFER, "scan", "-m", MODEL, "--format", "jsonl", "--output", "jsonl", SAMPLE],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    with open(SAMPLE, encoding="utf-8") as f:
        want = [json.loads(l) for l in f]
    got = [json.loads(l) for l in p.stdout.decode().splitlines()]
    return p.returncode, want, got


def test_every_verdict_and_class(scanned):
    rc, want, got = scanned
    assert rc == 1, "scan exits 1 when it finds an attack"
    assert len(got) == len(want) >= 200
    bad = []
    for w, g in zip(want, got):
        assert g["id"] == w["id"] and g["label"] == w["label"]  # jsonl fields are copied in order
        cls = g["class"] if g["verdict"] == "attack" else "benign"
        if (g["verdict"], cls) != (w["expected_verdict"], w["expected_class"]):
            bad.append((w["id"], w["expected_verdict"], w["expected_class"], g["verdict"], cls, g.get("score")))
    assert not bad, bad[:10]


def test_counts_match_model_card(scanned):
    _, _, got = scanned
    table = card_table()
    assert set(table) >= {"benign", "sqli", "xss", "cmdi", "traversal", "other_injection", "attack_unlabelled"}
    n = collections.Counter(g["label"] for g in got)
    flagged = collections.Counter(g["label"] for g in got if g["verdict"] == "attack")
    right = collections.Counter(g["label"] for g in got if g["verdict"] == "attack" and g["class"] == g["label"])
    for label, (req, fl, rc) in table.items():
        assert n[label] == req, label
        assert flagged[label] == fl, label
        if rc is not None:
            assert right[label] == rc, label
