"""`wafer classify` end to end: its probabilities equal the softmax of Hugging Face's logits.

The parity fixtures (tests/fixtures/parity/*, made by train/tools/gen_parity_fixtures.py on the GPU machine)
hold texts and transformers' logits; classify must print the same distribution, read from stdin or from
its arguments, in both output formats.
"""
import glob
import json
import math
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WAFER = os.environ.get("WAFER_BIN", os.path.join(ROOT, "build", "wafer"))
MODELS = sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "parity", "*", "expected.jsonl")))


def softmax(x):
    m = max(x)
    e = [math.exp(v - m) for v in x]
    return [v / sum(e) for v in e]


def expected(path):
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    # one text per stdin line: leave out texts a line cannot carry
    return [r for r in rows if not any(c in r["text"] for c in "\n\r\0")]


def run(args, stdin=None):
    return subprocess.run([WAFER, "classify"] + args, input=stdin, capture_output=True, timeout=120)


def test_fixtures_present():
    assert MODELS, "no parity fixtures under tests/fixtures/parity"


@pytest.mark.parametrize("exp", MODELS, ids=lambda p: os.path.basename(os.path.dirname(p)))
def test_stdin_json_matches_transformers(exp):
    model = os.path.dirname(exp)
    with open(os.path.join(model, "wafer.json")) as f:
        labels = json.load(f)["labels"]
    rows = expected(exp)
    stdin = "".join(r["text"] + "\n" for r in rows).encode()
    p = run(["-m", model, "--json", "--threads", "2"], stdin)
    assert p.returncode == 0, p.stderr.decode()
    out = [json.loads(line) for line in p.stdout.decode().splitlines()]
    assert len(out) == len(rows)
    for r, o in zip(rows, out):
        want = softmax(r["logits"])
        got = [o["probs"][l] for l in labels]
        assert o["class"] == labels[max(range(len(want)), key=want.__getitem__)] or \
            abs(sorted(want)[-1] - sorted(want)[-2]) < 1e-4
        assert all(abs(a - b) < 1e-4 for a, b in zip(got, want)), (r["text"], got, want)
        if all(ord(c) >= 0x20 and ord(c) != 0x7f for c in r["text"]):
            assert o["text"] == r["text"]


def test_arguments_table():
    model = os.path.dirname(MODELS[0])
    rows = expected(MODELS[0])[:3]
    p = run(["-m", model, "--"] + [r["text"] for r in rows])
    assert p.returncode == 0, p.stderr.decode()
    lines = p.stdout.decode().splitlines()
    assert len(lines) == 1 + len(rows)
    assert lines[0].split()[-3:] == ["class", "verdict", "text"]
    for r, line in zip(rows, lines[1:]):
        probs = [float(x) for x in line.split()[:len(r["logits"])]]
        assert all(abs(a - b) < 1e-5 for a, b in zip(probs, softmax(r["logits"])))


@pytest.mark.parametrize("args,needle", [
    ([], "-m MODEL_DIR is required"),
    (["-m", "/nonexistent", "x"], "/nonexistent/config.json"),
    (["-m", ".", "--threads", "zero", "x"], "--threads"),
    (["-m", ".", "--bogus"], "unknown option"),
    (["-m"], "needs a value"),
])
def test_errors_exit_2(args, needle):
    p = run(args)
    assert p.returncode == 2
    assert needle in p.stderr.decode()
    assert p.stdout == b""
