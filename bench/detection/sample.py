#!/usr/bin/env python3
"""Draw the fixed, stratified sample of a test split that every engine of bench/detection runs on.

For each label, the requests are ordered by the SHA-256 of their raw text and the first ones are kept: up to
--per-class for each attack class, --benign for "benign" and --unlabelled for "attack_unlabelled" (CSIC 2010's
anomalous requests). The order depends only on the requests themselves, so the same split always gives the same
sample, whatever its ids or line order. Counts go to stderr as JSON.

  python3 bench/detection/sample.py --test SPLIT/test.jsonl --out SAMPLE.jsonl [--per-class 1000] [--benign 10000]
"""
import argparse
import collections
import hashlib
import json
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--test", required=True, help="the split's test.jsonl")
    ap.add_argument("--out", required=True)
    ap.add_argument("--per-class", type=int, default=1000, help="at most this many requests per attack class")
    ap.add_argument("--benign", type=int, default=10000, help="at most this many benign requests")
    ap.add_argument("--unlabelled", type=int, default=2000,
                    help="at most this many attack_unlabelled requests (CSIC 2010 anomalous)")
    args = ap.parse_args()

    by_label = collections.defaultdict(list)
    with open(args.test, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            key = hashlib.sha256(row["raw"].encode("utf-8", "surrogatepass")).hexdigest()
            by_label[row["label"]].append((key, line if line.endswith("\n") else line + "\n"))

    picked = []
    counts = {}
    for label, rows in sorted(by_label.items()):
        cap = args.benign if label == "benign" else args.unlabelled if label == "attack_unlabelled" else args.per_class
        rows.sort()
        keep = rows[:cap]
        counts[label] = {"test": len(rows), "sample": len(keep)}
        picked.extend(keep)
    picked.sort()
    with open(args.out, "w", encoding="utf-8") as f:
        for _, line in picked:
            f.write(line)
    json.dump({"per_class": args.per_class, "benign": args.benign, "unlabelled": args.unlabelled,
               "labels": counts}, sys.stderr, indent=1)
    sys.stderr.write("\n")


if __name__ == "__main__":
    main()
