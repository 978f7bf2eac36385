#!/usr/bin/env python3
"""Scores the engines of bench/detection on one labelled sample and prints one Markdown table.

  python3 bench/detection/report.py --sample SAMPLE.jsonl --engines ENGINES.json [--json OUT.json]

ENGINES.json: a list of {"name", "kind": "wafer"|"modsec", "results": path, "rps": requests/s per core (best
round over the timed part) or null, "rps_pass": requests/s of the single pass over the whole sample, optional}. Each results file has one JSON line per sample line, in the same order (wafer scan
--output jsonl, or modsec_eval's output).

What is counted, per engine:
- TPR: detected attack requests / attack requests, over the labelled attack classes (not "benign", not
  "attack_unlabelled"); per class the same. ModSecurity "detects" when it blocks (an intervention); wafer when its
  verdict is not benign (an "invalid" request, one wafer's parser refuses, counts as detected: a proxy refuses it
  too; the report counts them per label). For ModSecurity the class-consistent rate (in brackets) also needs a rule of the class's CRS
  range to have matched (sqli 942, xss 941, cmdi 932, traversal 930/931); wafer's needs its class to be the label.
  other_injection (LDAP, NoSQL, XXE, SSTI, open redirect, ...) maps to no one CRS range: no class-consistent rate.
- CSIC: TPR on CSIC 2010's anomalous requests (label attack_unlabelled), a binary label.
- FPR: benign requests detected / benign requests, with a 95% Wilson interval.
Rates are printed as percentages.
"""
import argparse
import collections
import json
import math
import sys

CRS_RANGES = {"sqli": ("942",), "xss": ("941",), "cmdi": ("932",), "traversal": ("930", "931")}
BENIGN_VERDICTS = {"benign", "pass", "allow", "allowed", "clean", "ok", "none", "normal"}
CLASS_ORDER = ["sqli", "xss", "cmdi", "traversal", "other_injection"]


def wilson(k, n, z=1.959964):
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def wafer_verdict(r):
    """(detected, class) from one line of wafer scan's jsonl output."""
    v = r.get("verdict")
    if isinstance(v, bool):
        det = v
    elif isinstance(v, str):
        det = v.lower() not in BENIGN_VERDICTS
    elif "attack" in r:
        det = bool(r["attack"])
    elif "blocked" in r:
        det = bool(r["blocked"])
    else:
        raise ValueError("no verdict in wafer output line: %s" % json.dumps(r)[:200])
    cls = r.get("class")
    if isinstance(cls, list):
        cls = cls[0] if cls else None
    return det, cls


def modsec_verdict(r):
    rules = [str(x) for x in r.get("rules", [])]
    return bool(r.get("blocked")), rules


def pct(k, n):
    return "—" if n == 0 else "%.1f" % (100.0 * k / n)


def score(sample, results, kind):
    s = {"n": collections.Counter(), "det": collections.Counter(), "cc": collections.Counter(),
         "benign_src_n": collections.Counter(), "benign_src_fp": collections.Counter(), "errors": 0}
    s["invalid"] = collections.Counter()
    for i, (row, r) in enumerate(zip(sample, results)):
        if r.get("index", r.get("i", i)) != i:
            sys.exit("report.py: result line %d says index %s: not in input order" % (i, r.get("index", r.get("i"))))
        label = row["label"]
        if kind == "modsec":
            det, rules = modsec_verdict(r)
            rng = CRS_RANGES.get(label)
            cc = det and rng is not None and any(x.startswith(rng) for x in rules)
        else:
            det, cls = wafer_verdict(r)
            cc = det and cls == label
        if "error" in r or r.get("verdict") == "invalid":
            s["errors"] += 1
            s["invalid"][label] += 1
        s["n"][label] += 1
        s["det"][label] += det
        s["cc"][label] += cc
        if label == "benign":
            src = row.get("source", "?")
            s["benign_src_n"][src] += 1
            s["benign_src_fp"][src] += det
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", required=True)
    ap.add_argument("--engines", required=True)
    ap.add_argument("--json", help="write the counts here too")
    args = ap.parse_args()

    with open(args.sample, encoding="utf-8") as f:
        sample = [json.loads(l) for l in f if l.strip()]
    with open(args.engines) as f:
        engines = json.load(f)
    labels = collections.Counter(r["label"] for r in sample)
    classes = [c for c in CLASS_ORDER if c in labels] + sorted(
        c for c in labels if c not in CLASS_ORDER and c not in ("benign", "attack_unlabelled"))

    out = []
    head = ["engine", "TPR (attacks)"] + ["%s (n=%d)" % (c, labels[c]) for c in classes]
    if labels["attack_unlabelled"]:
        head.append("CSIC anomalous (n=%d)" % labels["attack_unlabelled"])
    head += ["FPR (benign n=%d)" % labels["benign"], "FPR 95% interval", "requests/s per core (best round; one pass)"]
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in engines:
        with open(e["results"], encoding="utf-8") as f:
            results = [json.loads(l) for l in f if l.strip()]
        if len(results) != len(sample):
            sys.exit("report.py: %s: %d result lines for %d sample lines" % (e["results"], len(results), len(sample)))
        s = score(sample, results, e["kind"])
        na = sum(s["n"][c] for c in classes)
        da = sum(s["det"][c] for c in classes)
        ca = sum(s["cc"][c] for c in classes)
        cells = [e["name"], "%s (%s)" % (pct(da, na), pct(ca, na))]
        for c in classes:
            if e["kind"] == "modsec" and c not in CRS_RANGES:
                cells.append(pct(s["det"][c], s["n"][c]))
            else:
                cells.append("%s (%s)" % (pct(s["det"][c], s["n"][c]), pct(s["cc"][c], s["n"][c])))
        if labels["attack_unlabelled"]:
            cells.append(pct(s["det"]["attack_unlabelled"], s["n"]["attack_unlabelled"]))
        nb, fb = s["n"]["benign"], s["det"]["benign"]
        lo, hi = wilson(fb, nb)
        cells.append("%d/%d = %.2f%%" % (fb, nb, 100.0 * fb / nb) if nb else "—")
        cells.append("%.2f-%.2f%%" % (100 * lo, 100 * hi) if nb else "—")
        cells.append(("%.0f" % e["rps"] if e.get("rps") else "—") +
                     ("; %.0f" % e["rps_pass"] if e.get("rps_pass") else ""))
        table.append("| " + " | ".join(cells) + " |")
        out.append({"name": e["name"], "kind": e["kind"], "rps": e.get("rps"), "rps_pass": e.get("rps_pass"),
                    "n": dict(s["n"]), "detected": dict(s["det"]), "class_consistent": dict(s["cc"]),
                    "tpr": da / na if na else None, "fpr": fb / nb if nb else None, "fpr_ci95": [lo, hi],
                    "benign_by_source": {k: [s["benign_src_fp"][k], v] for k, v in sorted(s["benign_src_n"].items())},
                    "invalid": dict(s["invalid"])})
    print("\n".join(table))
    print()
    print("Cells: detected % (class-consistent %). False positives by benign source (detected/requests):")
    for o in out:
        print("- %s: %s" % (o["name"], ", ".join("%s %d/%d" % (k, v[0], v[1]) for k, v in o["benign_by_source"].items())))
    for o in out:
        if o["invalid"]:
            print("- %s: requests it could not read (counted as detected), by label: %s" % (
                o["name"], ", ".join("%s %d" % kv for kv in sorted(o["invalid"].items()))))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
