#!/usr/bin/env python3
"""Draw the CI detection sample from the TEST split with its expected verdicts.

  make_sample.py --split test.jsonl --pred test_pred.jsonl --out tests/fixtures/detection/sample.jsonl

test_pred.jsonl is evaluate.py's per-request output for the shipped model
(wafer's own probabilities and thresholds). Each sample line is the request
(`raw`) with `id`, `label`, `source` and the expected `verdict` (attack or
benign, as wafer scan says) and `class`. Per label: every benign request the
model flags and every attack it misses (so both error kinds are covered), then
a fixed-seed draw up to the quota; requests over 3,000 bytes are left out.
"""
import argparse
import collections
import json
import random

QUOTA = {"benign": 90, "sqli": 40, "xss": 35, "cmdi": 30, "traversal": 35, "other_injection": 25,
         "attack_unlabelled": 45}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", required=True)
    ap.add_argument("--pred", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=2026)
    a = ap.parse_args()
    pred = {}
    for l in open(a.pred, encoding="utf-8"):
        d = json.loads(l)
        pred[d["id"]] = d
    by = collections.defaultdict(list)
    for l in open(a.split, encoding="utf-8"):
        d = json.loads(l)
        if len(d["raw"].encode()) > 3000:
            continue
        by[d["label"]].append(d)
    rng = random.Random(a.seed)
    out = []
    for lab, q in QUOTA.items():
        rows = by[lab]
        wrong = [r for r in rows if (pred[r["id"]]["verdict"] == "attack") == (lab == "benign")]
        wrong_ids = {r["id"] for r in wrong}
        right = [r for r in rows if r["id"] not in wrong_ids]
        take = wrong[:q // 3] if lab != "benign" else wrong[:20]
        take += rng.sample(right, min(len(right), q - len(take)))
        for r in take:
            p = pred[r["id"]]
            out.append({"raw": r["raw"], "id": r["id"], "label": lab, "source": r["source"],
                        "expected_verdict": "attack" if p["verdict"] == "attack" else "benign",
                        "expected_class": p["class"]})
    out.sort(key=lambda r: r["id"])
    with open(a.out, "w", encoding="utf-8") as f:
        for r in out:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    c = collections.Counter((r["label"], r["expected_verdict"]) for r in out)
    print(len(out), dict(sorted(c.items())))


if __name__ == "__main__":
    main()
