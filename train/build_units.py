#!/usr/bin/env python3
"""Turn the request splits of data.py into labelled inspection units, only
through `wafer extract` (so the model text is exactly what wafer serves).

  build_units.py --wafer ./build/wafer --splits DIR --out DIR

For each split, runs `wafer extract --format jsonl --json SPLIT.jsonl` (the
`raw` field is the request; extract copies no other field, so units are
matched to requests by `index` = line number) and writes SPLIT.units.jsonl.xz:

  {"text": "...", "label": "...", "req": ID}

Labels: every unit of a benign request is benign. For an attack request, the
unit at the place the payload was embedded (`loc`: kind and name; for a path,
the `path` unit and the segments that hold a piece of the payload with a
character other than letters, digits, `_`, `-`, `.`) gets the request's class,
and the other units benign; a segment holding only a plain word of the
payload is left out (label `ignore`). CSIC 2010 anomalous requests
(`attack_unlabelled`) keep that label on every unit (evaluation only).
Only the units the fast path does not skip are written: those are what the
model sees. Standard library only.
"""
import argparse
import collections
import json
import lzma
import os
import re
import subprocess
import sys
import urllib.parse

_plain = re.compile(r"^[A-Za-z0-9_.\-]*$")


def unit_label(req, u):
    lab = req["label"]
    if lab in ("benign", "attack_unlabelled"):
        return lab
    loc = req.get("loc") or {}
    kind, name = u["kind"], u["name"]
    if loc.get("kind") == "path":
        if kind == "path":
            return lab
        if kind == "segment":
            seg = u["text"].split(": ", 1)[1] if ": " in u["text"] else ""
            pl = req.get("payload", "")
            dec = urllib.parse.unquote(pl).lower()
            if seg and (seg.lower() in dec or seg.lower() in pl.lower()):
                return "ignore" if _plain.match(seg) else lab
        return "benign"
    if kind == loc.get("kind") and name == loc.get("name"):
        return lab
    return "benign"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wafer", default="./build/wafer")
    ap.add_argument("--splits", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    report = {}
    for split in ["train", "valid", "test"]:
        path = os.path.join(args.splits, split + ".jsonl")
        reqs = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                reqs.append({"id": d["id"], "label": d["label"], "loc": d.get("loc"), "payload": d.get("payload", ""),
                             "source": d["source"]})
        p = subprocess.run([args.wafer, "extract", "--format", "jsonl", "--json", path], stdout=subprocess.PIPE,
                           check=True)
        counts = collections.Counter()
        invalid = 0
        hit = set()
        out_path = os.path.join(args.out, split + ".units.jsonl.xz")
        with lzma.open(out_path, "wt", encoding="utf-8", preset=6) as out:
            for line in p.stdout.decode("utf-8").splitlines():
                u = json.loads(line)
                if "invalid" in u:
                    invalid += 1
                    continue
                if "kind" not in u or u["kind"] == "request":
                    continue
                req = reqs[u["index"]]
                lab = unit_label(req, u)
                if lab not in ("benign", "ignore", "attack_unlabelled"):
                    hit.add(u["index"])
                counts[lab] += 1
                out.write(json.dumps({"text": u["text"], "label": lab, "req": req["id"]}, ensure_ascii=False) + "\n")
        missed = collections.Counter(r["label"] for i, r in enumerate(reqs)
                                     if r["label"] not in ("benign", "attack_unlabelled") and i not in hit)
        # requests (with their labels) so evaluation can count requests without units
        with lzma.open(os.path.join(args.out, split + ".requests.jsonl.xz"), "wt", encoding="utf-8") as out:
            for r in reqs:
                out.write(json.dumps({"id": r["id"], "label": r["label"], "source": r["source"]}) + "\n")
        report[split] = {"units": dict(sorted(counts.items())), "invalid_requests": invalid,
                         "attack_requests_without_attack_unit": dict(sorted(missed.items()))}
        print(split, json.dumps(report[split]), file=sys.stderr)
    with open(os.path.join(args.out, "units_report.json"), "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
