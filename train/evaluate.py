#!/usr/bin/env python3
"""Calibrate and evaluate a model directory with wafer itself (runs here, on the CPU).

  evaluate.py --wafer ./build/wafer --model DIR --units UNITS_DIR [--calibrate] [--out DIR]

UNITS_DIR is build_units.py's output. Every distinct unit text of the
validation and test splits goes through `wafer classify --json` (so the numbers
are wafer's, not PyTorch's). With --calibrate, the per-class thresholds in
DIR/wafer.json are set on the validation split, jointly (train/calib.py): every
attack class's threshold sits just above one of the benign validation scores of
that class, chosen so that the validation attack requests detected are the
most for at most --request-fpr (0.05%) of the benign validation requests
flagged. --equal-share keeps the earlier rule (per class, at most budget/5 of
the distinct benign units, thresholds at least 0.5).

Verdict of a request: attack if any of its units reaches its class threshold;
its class is that of the unit with the largest margin over its class
threshold (wafer scan's rule; docs/scan.md "The verdict"). A request with no unit
(everything skipped by the fast path) passes.

Writes OUT/report.json (per request and per unit: per-class precision and
recall, confusion matrix, FPR, the CSIC 2010 anomalous detection rate) and
OUT/test_pred.jsonl (verdict per test request). Standard library only.
"""
import argparse
import collections
import json
import lzma
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import calib  # noqa: E402

CLASSES = ["benign", "sqli", "xss", "cmdi", "traversal", "other_injection"]


def read_xz(path):
    with lzma.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(l) for l in f]


def classify(wafer, model, texts, threads=1):
    res = {}
    plain = sorted(t for t in texts if "\n" not in t and "\r" not in t)
    if plain:
        p = subprocess.run([wafer, "classify", "-m", model, "--threads", str(threads), "--json"],
                           input="\n".join(plain).encode() + b"\n", stdout=subprocess.PIPE, check=True)
        lines = p.stdout.decode().splitlines()
        if len(lines) != len(plain):
            raise SystemExit("wafer classify: %d results for %d texts" % (len(lines), len(plain)))
        for t, line in zip(plain, lines):
            res[t] = json.loads(line)["probs"]
    for t in sorted(set(texts) - set(plain)):
        p = subprocess.run([wafer, "classify", "-m", model, "--json", "--", t], stdout=subprocess.PIPE, check=True)
        res[t] = json.loads(p.stdout.decode().splitlines()[0])["probs"]
    return res


def unit_class(probs, th):
    """As wafer's policy (src/policy/verdict.c): a unit crosses when p[c] >=
    thresholds[c] for an attack class; its class is the crossing class with the
    largest margin p[c] - thresholds[c]. Returns (class, margin, probability)."""
    best, bm, bp = "benign", None, 0.0
    for c in CLASSES[1:]:
        p = probs[c]
        if p >= th[c] and (bm is None or p - th[c] > bm):
            best, bm, bp = c, p - th[c], p
    return best, bm, bp


def requests_eval(units, reqs, probs, th):
    best = {}
    for u in units:  # in request order: the first unit wins a tie, as in wafer scan
        c, m, p = unit_class(probs[u["text"]], th)
        if c != "benign" and (u["req"] not in best or m > best[u["req"]][1]):
            best[u["req"]] = (c, m, p)
    rows = []
    for r in reqs:
        c, _, s = best.get(r["id"], ("benign", 0.0, 0.0))
        rows.append({"id": r["id"], "label": r["label"], "source": r["source"],
                     "verdict": "attack" if c != "benign" else "pass", "class": c, "score": round(s, 6)})
    return rows


def scan_eval(wafer, model, split_path, reqs):
    """Per-request verdicts from `wafer scan` itself (exact float comparisons,
    where classify --json prints 6 significant digits)."""
    p = subprocess.run([wafer, "scan", "-m", model, "--format", "jsonl", "--output", "jsonl", split_path],
                       stdout=subprocess.PIPE)
    if p.returncode not in (0, 1):
        raise SystemExit("wafer scan failed (%d)" % p.returncode)
    by_id = {r["id"]: r for r in reqs}
    rows = []
    for line in p.stdout.decode().splitlines():
        d = json.loads(line)
        r = by_id[d["id"]]
        att = d["verdict"] == "attack"
        rows.append({"id": r["id"], "label": r["label"], "source": r["source"],
                     "verdict": "attack" if att else "pass", "class": d["class"] if att else "benign",
                     "score": d.get("score", 0.0)})
    if len(rows) != len(reqs):
        raise SystemExit("wafer scan: %d verdicts for %d requests" % (len(rows), len(reqs)))
    return rows


def calibrate(units, probs, budget):
    ben = sorted({u["text"] for u in units if u["label"] == "benign"})
    th = {"benign": 0.5}
    for c in CLASSES[1:]:
        p = sorted((probs[t][c] for t in ben), reverse=True)
        allowed = int(budget / (len(CLASSES) - 1) * len(p))
        t = p[allowed] + 1e-6 if allowed < len(p) else 0.0
        th[c] = round(min(max(t, 0.5), 0.999999), 6)
    return th


def prf(conf, labels_true, classes):
    per = {}
    for c in classes:
        n = sum(conf[c].values())
        tp = conf[c][c]
        fp = sum(conf[o][c] for o in labels_true if o != c)
        per[c] = {"n": n, "tp": tp, "fp": fp, "precision": round(tp / (tp + fp), 4) if tp + fp else None,
                  "recall": round(tp / n, 4) if n else None}
    return per


def request_metrics(rows):
    conf = collections.defaultdict(collections.Counter)
    for r in rows:
        conf[r["label"]][r["class"]] += 1
    labelled = [c for c in CLASSES if conf[c]]
    m = {"confusion": {k: dict(conf[k]) for k in CLASSES + ["attack_unlabelled"] if conf[k]},
         "per_class": prf(conf, labelled, CLASSES)}
    for c in CLASSES[1:]:
        n = sum(conf[c].values())
        m["per_class"][c]["detected"] = round((n - conf[c]["benign"]) / n, 4) if n else None
    nb = sum(conf["benign"].values())
    m["benign_requests"] = nb
    m["benign_flagged"] = nb - conf["benign"]["benign"]
    m["fpr"] = round(m["benign_flagged"] / nb, 6) if nb else None
    na = sum(sum(conf[c].values()) for c in CLASSES[1:])
    m["attack_requests"] = na
    m["attack_detected"] = na - sum(conf[c]["benign"] for c in CLASSES[1:])
    m["tpr"] = round(m["attack_detected"] / na, 4) if na else None
    nu = sum(conf["attack_unlabelled"].values())
    if nu:
        m["csic_anomalous"] = {"n": nu, "detected": nu - conf["attack_unlabelled"]["benign"],
                               "rate": round((nu - conf["attack_unlabelled"]["benign"]) / nu, 4)}
    src = collections.defaultdict(lambda: [0, 0])
    for r in rows:
        if r["label"] == "benign":
            src[r["source"]][0] += 1
            src[r["source"]][1] += r["verdict"] == "attack"
    m["benign_by_source"] = {k: {"n": v[0], "flagged": v[1]} for k, v in sorted(src.items())}
    return m


def unit_metrics(units, probs, th):
    conf = collections.defaultdict(collections.Counter)
    for u in units:
        if u["label"] in ("ignore", "attack_unlabelled"):
            continue
        conf[u["label"]][unit_class(probs[u["text"]], th)[0]] += 1
    nb = sum(conf["benign"].values())
    return {"confusion": {k: dict(conf[k]) for k in CLASSES if conf[k]},
            "per_class": prf(conf, [c for c in CLASSES if conf[c]], CLASSES),
            "benign_units": nb, "benign_units_flagged": nb - conf["benign"]["benign"],
            "fpr_units": round((nb - conf["benign"]["benign"]) / nb, 6) if nb else None}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wafer", default="./build/wafer")
    ap.add_argument("--model", required=True)
    ap.add_argument("--units", required=True)
    ap.add_argument("--out", default=None)
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--unit-budget", type=float, default=0.001)
    ap.add_argument("--request-fpr", type=float, default=0.0005,
                    help="target share of benign validation requests flagged (train/calib.py says why below 0.1%%)")
    ap.add_argument("--reuse-probs", action="store_true",
                    help="take the probabilities from OUT/probs.json.xz (written by an earlier run on this model)")
    ap.add_argument("--equal-share", action="store_true",
                    help="the earlier rule: an equal unit budget per class, thresholds at least 0.5")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--splits", help="data.py's output: per-request verdicts of the test split come from wafer scan")
    a = ap.parse_args()
    out = a.out or a.model
    os.makedirs(out, exist_ok=True)
    va = [u for u in read_xz(os.path.join(a.units, "valid.units.jsonl.xz")) if u["label"] != "ignore"]
    te = read_xz(os.path.join(a.units, "test.units.jsonl.xz"))
    va_req = read_xz(os.path.join(a.units, "valid.requests.jsonl.xz"))
    te_req = read_xz(os.path.join(a.units, "test.requests.jsonl.xz"))
    cache = os.path.join(out, "probs.json.xz")
    if a.reuse_probs and os.path.exists(cache):
        with lzma.open(cache, "rt", encoding="utf-8") as f:
            probs = json.load(f)
    else:
        probs = classify(a.wafer, a.model, {u["text"] for u in va} | {u["text"] for u in te}, a.threads)
        with lzma.open(cache, "wt", encoding="utf-8") as f:
            json.dump(probs, f)
    meta_path = os.path.join(a.model, "wafer.json")
    with open(meta_path) as f:
        meta = json.load(f)
    th = meta["thresholds"]
    if isinstance(th, list):
        th = dict(zip(meta["labels"], th))
    cal = None
    if a.calibrate:
        if a.equal_share:
            budget = a.unit_budget
            for _ in range(20):
                th = calibrate(va, probs, budget)
                vm = request_metrics(requests_eval(va, va_req, probs, th))
                if vm["fpr"] <= a.request_fpr:
                    break
                budget *= 0.8
            cal = {"rule": "equal share", "unit_budget": budget}
        else:
            lab = {r["id"]: r["label"] for r in va_req}
            nb = sum(1 for r in va_req if r["label"] == "benign")
            th, info = calib.greedy(CLASSES, [(u["req"], [probs[u["text"]][c] for c in CLASSES]) for u in va], lab,
                                    int(a.request_fpr * nb))
            cal = {"rule": "joint (train/calib.py)", "request_fpr_target": a.request_fpr, **info}
        vm = request_metrics(requests_eval(va, va_req, probs, th))
        cal.update({"valid_request_fpr": vm["fpr"], "valid_tpr": vm["tpr"]})
        meta["thresholds"] = th
        with open(meta_path, "w") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
    vrows = requests_eval(va, va_req, probs, th)
    trows = requests_eval(te, te_req, probs, th)
    if a.splits:
        srows = scan_eval(a.wafer, a.model, os.path.join(a.splits, "test.jsonl"), te_req)
        diff = sum(1 for x, y in zip(sorted(trows, key=lambda r: r["id"]), sorted(srows, key=lambda r: r["id"]))
                   if (x["verdict"], x["class"]) != (y["verdict"], y["class"]))
        print("wafer scan vs 6-digit classify probabilities: %d of %d test requests differ (threshold ties)"
              % (diff, len(trows)))
        trows = srows
    rep = {"model": meta["name"], "thresholds": th, "calibration": cal,
           "valid": request_metrics(vrows), "test": request_metrics(trows),
           "test_units": unit_metrics(te, probs, th), "valid_units": unit_metrics(va, probs, th)}
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(rep, f, indent=1)
    with open(os.path.join(out, "test_pred.jsonl"), "w") as f:
        for r in trows:
            f.write(json.dumps(r) + "\n")
    t = rep["test"]
    print(json.dumps({"thresholds": th, "calibration": cal, "test_tpr": t["tpr"], "test_fpr": t["fpr"],
                      "flagged": t["benign_flagged"], "csic": t.get("csic_anomalous"),
                      "per_class": {c: (v["precision"], v["recall"]) for c, v in t["per_class"].items()}}))


if __name__ == "__main__":
    main()
