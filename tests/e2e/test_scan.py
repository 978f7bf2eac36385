"""`wafer scan` end to end (docs/scan.md).

The model is a parity fixture (tests/fixtures/parity/bert_tiny: random weights, labels benign, sqli, xss, cmdi,
traversal) copied with thresholds the test chooses, so that which units cross is under the test's control. The
scores scan reports must equal, exactly, what `wafer classify --json` gives for the same unit texts (taken from
`wafer extract --json`), and the verdicts must follow the threshold rule computed here from those numbers.
"""
import json
import os
import shutil
import statistics
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WAFER = os.environ.get("WAFER_BIN", os.path.join(ROOT, "build", "wafer"))
FIXTURE_MODEL = os.path.join(ROOT, "tests", "fixtures", "parity", "bert_tiny")
INPUTS = os.path.join(ROOT, "tests", "fixtures", "extract")
LABELS = ["benign", "sqli", "xss", "cmdi", "traversal"]
FORMATS = {"raw": "requests.raw", "lines": "payloads.lines", "jsonl": "requests.jsonl", "nginx": "access.log"}

JSONLOG = "\n".join(json.dumps(o) for o in [
    {"time": "2026-11-21T06:34:04.781Z", "method": "GET", "path": "/index.php", "status": 200},
    {"request": "GET /item?id=1%27%20or%201%3D1-- HTTP/1.1", "http_user_agent": "sqlmap/1.7", "status": 403},
    {"http": {"request": {"method": "POST", "referrer": "http://x/<script>"}}, "url": {"path": "/api",
     "query": "q=../../etc/passwd"}, "user_agent": {"original": "Mozilla/5.0"}},
    {"request": {"method": "GET", "uri": "/c?cmd=;cat%20/etc/shadow", "headers": {"User-Agent": ["curl/8.1"]}}},
    {"status": 200},
]) + "\n"


def make_model(tmp_path, thresholds, name="m"):
    d = tmp_path / name
    shutil.copytree(FIXTURE_MODEL, d)
    with open(d / "wafer.json") as f:
        meta = json.load(f)
    meta["thresholds"] = thresholds
    meta.pop("units", None)
    with open(d / "wafer.json", "w") as f:
        json.dump(meta, f)
    return str(d)


def scan(args, stdin=None, model=None):
    cmd = [WAFER, "scan"] + (["-m", model] if model else []) + args
    return subprocess.run(cmd, input=stdin, capture_output=True, timeout=300)


def rows(p):
    return [json.loads(line) for line in p.stdout.decode().splitlines()]


def extract(fmt, path):
    p = subprocess.run([WAFER, "extract", "--json", "--format", fmt, path], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    return [json.loads(line) for line in p.stdout.decode().splitlines()]


def classify(model, texts):
    """Label probabilities of each text, as printed by classify (%.6g)."""
    uniq = sorted(set(texts))
    p = subprocess.run([WAFER, "classify", "-m", model, "--json", "--"] + uniq, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    out = [json.loads(line) for line in p.stdout.decode().splitlines()]
    return {t: o["probs"] for t, o in zip(uniq, out)}


def units_by_request(fmt, path):
    """index -> list of extract's units (kind, name, model text); invalid indexes -> None."""
    by = {}
    for u in extract(fmt, path):
        if "invalid" in u:
            by[u["index"]] = None
        elif "kind" in u:
            by.setdefault(u["index"], []).append(u)
    return by


def write_inputs(tmp_path):
    paths = {f: os.path.join(INPUTS, n) for f, n in FORMATS.items()}
    jl = tmp_path / "access.json"
    jl.write_text(JSONLOG)
    paths["json-log"] = str(jl)
    return paths


@pytest.mark.parametrize("fmt", ["raw", "lines", "jsonl", "nginx", "json-log"])
def test_scores_equal_classify_on_the_same_unit_texts(tmp_path, fmt):
    """Threshold 0 for sqli (others unreachable): every classified unit crosses as sqli and is listed with its
    sqli probability, which must be exactly classify's for the unit's text."""
    model = make_model(tmp_path, [0.5, 0.0, 1.0, 1.0, 1.0])
    path = write_inputs(tmp_path)[fmt]
    by = units_by_request(fmt, path)
    texts = [u["text"] for us in by.values() if us for u in us]
    assert texts, "fixture without units"
    probs = classify(model, texts)
    p = scan(["--format", fmt, "--output", "jsonl", path], model=model)
    assert p.returncode == 1, p.stderr.decode()
    out = rows(p)
    assert [r["index"] for r in out] == list(range(len(out))), "input order"
    assert len(out) >= len(by)
    seen = 0
    for r in out:
        us = by.get(r["index"], [])
        if us is None:
            assert r["verdict"] == "invalid" and r["reason"]
            continue
        if not us:
            assert r["verdict"] == "benign" and r["units"] == [] and r["inspected"] == 0
            continue
        seen += 1
        assert r["verdict"] == "attack" and r["class"] == "sqli"
        assert r["inspected"] == len(us)
        want = sorted(((probs[u["text"]]["sqli"], u["kind"], u["name"]) for u in us), key=lambda t: -t[0])
        got = [(u["score"], u["kind"], u["name"]) for u in r["units"]]
        assert sorted(got) == sorted(want[:16]) or len(us) > 16
        assert all(u["class"] == "sqli" for u in r["units"])
        assert r["score"] == want[0][0]
        assert [g[0] for g in got] == sorted([g[0] for g in got], reverse=True), "deciding unit first"
    assert seen


def test_verdicts_follow_the_thresholds(tmp_path):
    """A threshold between two observed probabilities splits the requests; the verdict of each one, its class
    and its score are what the rule gives on classify's numbers."""
    path = os.path.join(INPUTS, "requests.raw")
    by = units_by_request("raw", path)
    base = make_model(tmp_path, [0.5, 1.0, 1.0, 1.0, 1.0], "base")
    probs = classify(base, [u["text"] for us in by.values() if us for u in us])
    xs = sorted({v["xss"] for v in probs.values()})
    cut = xs[len(xs) // 2]
    thr = (xs[len(xs) // 2 - 1] + cut) / 2
    model = make_model(tmp_path, [0.5, 1.0, thr, 1.0, 1.0])
    p = scan(["--format", "raw", "--output", "jsonl", path], model=model)
    out = rows(p)
    attacks = 0
    for r in out:
        us = by.get(r["index"]) or []
        if by.get(r["index"], []) is None:
            continue
        ps = [probs[u["text"]] for u in us]
        crossing = [q["xss"] for q in ps if q["xss"] >= cut]
        if crossing:
            attacks += 1
            assert r["verdict"] == "attack" and r["class"] == "xss" and r["score"] == max(crossing)
            assert len(r["units"]) == min(16, len(crossing))
        else:
            assert r["verdict"] == "benign" and r["class"] == "benign" and r["units"] == []
            assert r["score"] == (min(q["benign"] for q in ps) if ps else 1)
    assert 0 < attacks < len(out)
    assert p.returncode == 1


def test_benign_exit_zero_and_no_progress_when_not_a_terminal(tmp_path):
    model = make_model(tmp_path, [0.5, 1.0, 1.0, 1.0, 1.0])
    p = scan(["--format", "raw", os.path.join(INPUTS, "requests.raw")], model=model)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stderr == b""
    assert all(r["verdict"] in ("benign", "invalid") for r in rows(p))


def test_jsonl_copies_fields_and_marks_invalid(tmp_path):
    model = make_model(tmp_path, [0.5, 0.0, 1.0, 1.0, 1.0])
    lines = [
        {"id": 1, "raw": "GET /a?x=%27%20or%201=1 HTTP/1.1\r\nHost: h\r\n\r\n", "label": "sqli", "n": 1.50},
        {"id": 2, "raw": "GARBAGE\r\n\r\n", "meta": {"k": [1, 2]}},
        {"url": "http://h/p?q=<script>", "method": "GET", "headers": [["User-Agent", "x"]], "index": 99},
    ]
    text = "\n".join(json.dumps(x, separators=(",", ":")) for x in lines).replace('"n":1.5}', '"n":1.50}')
    text += "\nnot json\n"
    p = scan(["--format", "jsonl", "-"], stdin=text.encode(), model=model)
    out = rows(p)
    assert [r["index"] for r in out] == [0, 1, 2, 3]
    assert out[0]["verdict"] == "attack" and out[0]["id"] == 1 and out[0]["label"] == "sqli"
    assert '"n":1.50' in p.stdout.decode().splitlines()[0], "copied byte for byte"
    assert "raw" not in out[0]
    assert out[1]["verdict"] == "invalid" and out[1]["reason"].startswith("http:") and out[1]["meta"] == {"k": [1, 2]}
    assert out[2]["input_index"] == 99 and "url" not in out[2] and out[2]["verdict"] == "attack"
    assert out[3]["verdict"] == "invalid" and out[3]["reason"].startswith("json:")
    assert p.returncode == 1


def test_order_and_numbering_across_files_and_chunks(tmp_path):
    """More requests than one chunk holds (8192), repeated texts (cache) and skipped units mixed: the output is
    in input order, numbered across files."""
    model = make_model(tmp_path, [0.5, 0.0, 1.0, 1.0, 1.0])
    a = tmp_path / "a.lines"
    payloads = ["123", "' or 1=1--", "<script>alert(%d)</script>", "hello", "../../etc/passwd"]
    a.write_text("".join((payloads[i % 5] % i if "%d" in payloads[i % 5] else payloads[i % 5]) + "\n"
                         for i in range(9000)))
    b = tmp_path / "b.lines"
    b.write_text("x=1 union select\n42\n")
    p = scan(["--format", "lines", "--output", "jsonl", str(a), str(b)], model=model)
    assert p.returncode == 1, p.stderr.decode()
    out = rows(p)
    assert [r["index"] for r in out] == list(range(9002))
    for i, r in enumerate(out[:9000]):
        skipped = i % 5 in (0, 3)  # a number and a plain word take the fast path
        assert r["verdict"] == ("benign" if skipped else "attack"), (i, r)
        assert (r["skipped"], r["inspected"]) == ((1, 0) if skipped else (0, 1))
    assert out[9000]["verdict"] == "attack" and out[9001]["verdict"] == "benign"
    # identical texts get identical scores wherever they fall (cache and chunks)
    assert len({r["score"] for r in out[1:9000:5]}) == 1


def test_summary(tmp_path):
    model = make_model(tmp_path, [0.5, 0.0, 1.0, 1.0, 1.0])
    path = os.path.join(INPUTS, "requests.raw")
    j = rows(scan(["--format", "raw", "--output", "jsonl", path], model=model))
    p = scan(["--format", "raw", "--output", "summary", path], model=model)
    assert p.returncode == 1
    kv = dict(line.split(": ", 1) for line in p.stdout.decode().splitlines())
    assert int(kv["requests"]) == len(j)
    for v in ("benign", "attack", "invalid"):
        assert int(kv[v]) == sum(r["verdict"] == v for r in j)
    assert int(kv["class sqli"]) == int(kv["attack"])
    assert int(kv["units classified"]) == sum(r.get("inspected", 0) for r in j)
    assert int(kv["units"]) == sum(r.get("inspected", 0) + r.get("skipped", 0) for r in j)
    assert int(kv["units run through the model"]) <= int(kv["units classified"])
    assert float(kv["requests/s"]) > 0


@pytest.mark.parametrize("args,needle", [
    (["--format", "xml", "-"], "unknown format"),
    (["--output", "html", "-"], "unknown output"),
    (["--threads", "0", "-"], "--threads"),
    (["--bogus"], "unknown option"),
    (["--format"], "needs a value"),
    (["/nonexistent/file.log"], "/nonexistent/file.log"),
    (["--backend", "tpu", "-"], "unknown backend"),
])
def test_errors_exit_2(tmp_path, args, needle):
    model = make_model(tmp_path, [0.5, 0.5, 0.5, 0.5, 0.5])
    p = scan(args, stdin=b"", model=model)
    assert p.returncode == 2
    assert needle in p.stderr.decode()
    assert p.stdout == b""


def test_bad_model_exit_2(tmp_path):
    p = scan(["-"], stdin=b"", model="/nonexistent-model")
    assert p.returncode == 2 and "/nonexistent-model" in p.stderr.decode()
    model = make_model(tmp_path, [0.5, 0.5, 0.5, 0.5, 0.5])
    with open(os.path.join(model, "wafer.json")) as f:
        meta = json.load(f)
    meta["treshold"] = 1
    with open(os.path.join(model, "wafer.json"), "w") as f:
        json.dump(meta, f)
    p = scan(["-"], stdin=b"", model=model)
    assert p.returncode == 2 and "wafer.json" in p.stderr.decode()


def test_model_units_field_restricts_kinds(tmp_path):
    model = make_model(tmp_path, [0.5, 0.0, 1.0, 1.0, 1.0])
    with open(os.path.join(model, "wafer.json")) as f:
        meta = json.load(f)
    meta["units"] = ["header"]
    with open(os.path.join(model, "wafer.json"), "w") as f:
        json.dump(meta, f)
    req = b"GET /a?id=%27%20or%201=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: sqlmap/1.7 (http://sqlmap.org)\r\n\r\n"
    out = rows(scan(["--output", "jsonl", "-"], stdin=req, model=model))
    assert [u["kind"] for u in out[0]["units"]] == ["header"]
    meta["units"] = ["query_value"]
    with open(os.path.join(model, "wafer.json"), "w") as f:
        json.dump(meta, f)
    p = scan(["--output", "jsonl", "-"], stdin=req, model=model)
    assert p.returncode == 1 and "no unit kind" in p.stderr.decode() and "reading every kind" in p.stderr.decode()
    assert sorted(u["kind"] for u in rows(p)[0]["units"]) == ["header", "query"]


def test_default_model_directory():
    """Without -m, scan uses models/default (source tree or next to the binary), or says where it looked."""
    p = scan(["--output", "summary", "-"], stdin=b"")
    if os.path.exists(os.path.join(ROOT, "models", "default", "wafer.json")):
        assert p.returncode == 0, p.stderr.decode()
    else:
        assert p.returncode == 2 and "models/default" in p.stderr.decode() and "-m MODEL_DIR" in p.stderr.decode()


def run_on_pty(args, which):
    """Runs wafer with `which` ("stdout" or "stderr") on a pseudo-terminal; returns (process, terminal bytes)."""
    import pty
    master, slave = pty.openpty()
    try:
        kw = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, which: slave}
        p = subprocess.run([WAFER] + args, timeout=120, **kw)
        os.close(slave)
        slave = None
        err = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            err += chunk
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    return p, err


def test_progress_line_on_a_terminal(tmp_path):
    """stderr a terminal: a progress line (requests, rate) redrawn there and cleared at the end; stdout a pipe
    still gets JSON lines by default."""
    model = make_model(tmp_path, [0.5, 1.0, 1.0, 1.0, 1.0])
    p, err = run_on_pty(["scan", "-m", model, os.path.join(INPUTS, "requests.raw")], "stderr")
    assert p.returncode == 0
    assert b" requests " in err and b"/s" in err and err.endswith(b"\r\x1b[K")
    assert all(json.loads(line)["index"] >= 0 for line in p.stdout.decode().splitlines())


def test_summary_is_the_default_on_a_terminal(tmp_path):
    model = make_model(tmp_path, [0.5, 1.0, 1.0, 1.0, 1.0])
    p, out = run_on_pty(["scan", "-m", model, os.path.join(INPUTS, "requests.raw")], "stdout")
    assert p.returncode == 0 and p.stderr == b""
    assert b"requests: " in out and b"requests/s: " in out and b'"verdict"' not in out
