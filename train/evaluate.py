#!/usr/bin/env python3
"""Calibrate and evaluate a model directory with wafer itself (runs here, on the CPU).

  evaluate.py --wafer ./build/wafer --model DIR --units UNITS_DIR [--calibrate] [--out DIR]

UNITS_DIR is build_units.py's output. Every distinct unit text of the
validation and test splits goes through `wafer classify --json` (so the numbers
are wafer's, not PyTorch's). With --calibrate, the per-class thresholds in
DIR/wafer.json are set on the validation split: for each attack class, the
smallest threshold (at least 0.5) at which at most budget/5 of the distinct
benign validation units reach that class, starting at --unit-budget (0.1% of
benign units over all classes) and tightened by 20% steps until at most
--request-fpr (0.1%) of the benign validation requests are flagged.

Verdict of a request: attack if any of its units reaches its class threshold;
its class is the one of the highest such probability. A request with no unit
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
    best, bs = "benign", -1.0
    for c in CLASSES[1:]:
        p = probs[c]
        if p >= th[c] and p > bs:
            best, bs = c, p
    return best, bs


def requests_eval(units, reqs, probs, th):
    best = {}
    for u in units:
        c, s = unit_class(probs[u["text"]], th)
        if c != "benign" and (u["req"] not in best or s > best[u["req"]][1]):
            best[u["req"]] = (c, s)
    rows = []
    for r in reqs:
        c, s = best.get(r["id"], ("benign", 0.0))
        rows.append({"id": r["id"], "label": r["label"], "source": r["source"],
                     "verdict": "attack" if c != "benign" else "pass", "class": c, "score": round(s, 6)})
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
    ap.add_argument("--request-fpr", type=float, default=0.001)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    out = a.out or a.model
    os.makedirs(out, exist_ok=True)
    va = [u for u in read_xz(os.path.join(a.units, "valid.units.jsonl.xz")) if u["label"] != "ignore"]
    te = read_xz(os.path.join(a.units, "test.units.jsonl.xz"))
    va_req = read_xz(os.path.join(a.units, "valid.requests.jsonl.xz"))
    te_req = read_xz(os.path.join(a.units, "test.requests.jsonl.xz"))
    probs = classify(a.wafer, a.model, {u["text"] for u in va} | {u["text"] for u in te}, a.threads)
    meta_path = os.path.join(a.model, "wafer.json")
    with open(meta_path) as f:
        meta = json.load(f)
    th = meta["thresholds"]
    if isinstance(th, list):
        th = dict(zip(meta["labels"], th))
    cal = None
    if a.calibrate:
        budget = a.unit_budget
        for _ in range(20):
            th = calibrate(va, probs, budget)
            vm = request_metrics(requests_eval(va, va_req, probs, th))
            if vm["fpr"] <= a.request_fpr:
                break
            budget *= 0.8
        cal = {"unit_budget": budget, "valid_request_fpr": vm["fpr"], "valid_tpr": vm["tpr"]}
        meta["thresholds"] = th
        with open(meta_path, "w") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
    vrows = requests_eval(va, va_req, probs, th)
    trows = requests_eval(te, te_req, probs, th)
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
