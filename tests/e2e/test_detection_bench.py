"""bench/detection's scripts (docs/benchmarks.md "Detection: wafer vs ModSecurity + CRS").

sample.py must pick the same requests whatever their order and respect the caps; report.py must count detections,
class-consistent detections and false positives exactly as documented, refuse results out of input order, and
give the Wilson interval. modsec_eval (only where it was built: libmodsecurity is optional) must block a plain
SQL injection at paranoia level 1 with a rule from CRS's SQLi range and pass a plain GET.
"""
import json
import os
import random
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "bench", "detection")
MODSEC = os.path.join(ROOT, "build", "bench", "detection", "modsec_eval")
sys.path.insert(0, BENCH)
import report  # noqa: E402


def req(target, body=None):
    raw = "GET %s HTTP/1.1\r\nHost: example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: */*\r\n\r\n"
    return raw % target


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def test_sample_is_order_independent_and_capped(tmp_path):
    rows = [{"raw": req("/b?i=%d" % i), "label": "benign", "id": i} for i in range(50)]
    rows += [{"raw": req("/s?q=%d'or'1" % i), "label": "sqli", "id": 100 + i} for i in range(20)]
    rows += [{"raw": req("/x?q=<b%d>" % i), "label": "xss", "id": 200 + i} for i in range(3)]
    write_jsonl(tmp_path / "a.jsonl", rows)
    random.Random(1).shuffle(rows)
    write_jsonl(tmp_path / "b.jsonl", rows)
    for name in ("a", "b"):
        subprocess.run([sys.executable, os.path.join(BENCH, "sample.py"), "--test", str(tmp_path / (name + ".jsonl")),
                        "--out", str(tmp_path / (name + ".out")), "--per-class", "5", "--benign", "10"],
                       check=True, capture_output=True)
    a = (tmp_path / "a.out").read_text()
    assert a == (tmp_path / "b.out").read_text()
    labels = [json.loads(l)["label"] for l in a.splitlines()]
    assert labels.count("benign") == 10 and labels.count("sqli") == 5 and labels.count("xss") == 3


def test_report_counts(tmp_path):
    sample = [{"raw": "x", "label": l, "source": "s"} for l in
              ["sqli", "sqli", "xss", "traversal", "benign", "benign", "benign", "attack_unlabelled"]]
    modsec = [{"blocked": True, "rules": [942100, 949110]},   # sqli, consistent
              {"blocked": True, "rules": [941100, 949110]},   # sqli, detected by an XSS rule
              {"blocked": False, "rules": [941100]},          # xss, below the threshold: not detected
              {"blocked": True, "rules": [931100]},           # traversal via the RFI range: consistent
              {"blocked": True, "rules": [920450]},           # benign: false positive
              {"blocked": False, "rules": []},
              {"blocked": False, "rules": []},
              {"blocked": True, "rules": [920450]}]
    wafer = [{"index": i, "verdict": v, "class": c} for i, (v, c) in enumerate(
        [("attack", "sqli"), ("attack", "xss"), ("attack", "xss"), ("benign", "benign"),
         ("benign", "benign"), ("invalid", None), ("benign", "benign"), ("benign", "benign")])]
    write_jsonl(tmp_path / "sample.jsonl", sample)
    write_jsonl(tmp_path / "m.jsonl", modsec)
    write_jsonl(tmp_path / "w.jsonl", wafer)
    engines = [{"name": "m", "kind": "modsec", "results": str(tmp_path / "m.jsonl"), "rps": 500},
               {"name": "w", "kind": "wafer", "results": str(tmp_path / "w.jsonl"), "rps": 3000, "rps_pass": 2900}]
    (tmp_path / "e.json").write_text(json.dumps(engines))
    out = subprocess.run([sys.executable, os.path.join(BENCH, "report.py"), "--sample", str(tmp_path / "sample.jsonl"),
                          "--engines", str(tmp_path / "e.json"), "--json", str(tmp_path / "r.json")],
                         check=True, capture_output=True, text=True).stdout
    r = {e["name"]: e for e in json.loads((tmp_path / "r.json").read_text())}
    assert r["m"]["detected"] == {"sqli": 2, "xss": 0, "traversal": 1, "benign": 1, "attack_unlabelled": 1}
    assert r["m"]["class_consistent"]["sqli"] == 1 and r["m"]["class_consistent"]["traversal"] == 1
    assert r["m"]["tpr"] == 3 / 4 and r["m"]["fpr"] == 1 / 3
    assert r["w"]["detected"]["sqli"] == 2 and r["w"]["detected"]["xss"] == 1 and r["w"]["detected"]["benign"] == 1
    assert r["w"]["class_consistent"]["xss"] == 1 and r["w"]["class_consistent"]["sqli"] == 1
    assert r["w"]["invalid"] == {"benign": 1}
    assert "| m | 75.0 (50.0) |" in out and "| w | 75.0 (50.0) |" in out and "3000; 2900" in out

    wafer[1], wafer[2] = wafer[2], wafer[1]
    write_jsonl(tmp_path / "w.jsonl", wafer)
    bad = subprocess.run([sys.executable, os.path.join(BENCH, "report.py"), "--sample", str(tmp_path / "sample.jsonl"),
                          "--engines", str(tmp_path / "e.json")], capture_output=True, text=True)
    assert bad.returncode != 0 and "not in input order" in bad.stderr


def test_wilson():
    lo, hi = report.wilson(0, 10000)
    assert lo == 0 and abs(hi - 3.84 / 10003.84) < 1e-6
    lo, hi = report.wilson(8, 10000)
    assert 0.0004 < lo < 0.0008 < hi < 0.0017


@pytest.mark.skipif(not os.access(MODSEC, os.X_OK), reason="modsec_eval not built (libmodsecurity-dev missing)")
def test_modsec_eval_blocks_sqli_passes_get(tmp_path):
    if not os.path.isdir("/usr/share/modsecurity-crs/rules"):
        pytest.skip("modsecurity-crs not installed")
    write_jsonl(tmp_path / "in.jsonl", [{"raw": req("/index.html?q=hello"), "id": "a"},
                                        {"raw": req("/s?q=1%27%20OR%201%3D1--%20"), "id": "b"},
                                        {"nothing": 1}])
    p = subprocess.run([MODSEC, "-p", "1", str(tmp_path / "in.jsonl")], check=True, capture_output=True, text=True)
    out = [json.loads(l) for l in p.stdout.splitlines()]
    assert [o["i"] for o in out] == [0, 1, 2]
    assert out[0]["id"] == "a" and not out[0]["blocked"]
    assert out[1]["blocked"] and out[1]["status"] == 403 and any(str(x).startswith("942") for x in out[1]["rules"])
    assert 949110 in out[1]["rules"] and out[1]["score"] >= 5
    assert "error" in out[2] and not out[2]["blocked"]
    assert "requests/s" in p.stderr
