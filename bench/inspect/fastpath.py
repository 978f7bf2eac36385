#!/usr/bin/python3
"""Measures the inspection fast path (docs/inspection.md "Fast path").

Benign data: the share of units that the fast path marks safe (not sent to
the model), per data set. Attack data: every payload line, inspected as the
value of a query argument, must give at least one unit that is NOT safe; the
script prints the count of payloads that would be skipped and lists them.

Usage: bench/inspect/fastpath.py [--wafer build/wafer] [--data ../shared/datasets]
       [--list N]   (print up to N skipped attack payloads per source; default 50)

The data sets are read in place (xz files through the lzma module); nothing
is copied. Prints Markdown tables (pasted into docs/benchmarks.md).
"""
import argparse
import collections
import csv
import glob
import io
import lzma
import os
import subprocess
import sys
import urllib.parse

csv.field_size_limit(1 << 30)


def read_bytes(path):
    opener = lzma.open if path.endswith(".xz") else open
    with opener(path, "rb") as f:
        return f.read()


def extract(wafer, fmt, data, extra=()):
    """Runs wafer extract --all; returns a list of (index, kind, name, flags, text) and the stats line."""
    p = subprocess.run([wafer, "extract", "--all", "--stats", "--format", fmt, *extra, "-"],
                       input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True)
    rows = []
    for line in p.stdout.decode("utf-8").split("\n"):
        if not line:
            continue
        f = line.split("\t", 4)
        rows.append((int(f[0]), f[1], f[2], f[3], f[4]))
    return rows, p.stderr.decode().strip()


def benign(args):
    d = args.data
    sets = [
        ("CSIC 2010 normal (training)", "raw", [f"{d}/csic2010/normalTrafficTraining.txt.xz"]),
        ("CSIC 2010 normal (test)", "raw", [f"{d}/csic2010/normalTrafficTest.txt.xz"]),
        ("browser_har fixtures", "jsonl", [f"{d}/browser_har/fixture_requests.jsonl.xz"]),
        ("browser_har CrUX AR", "jsonl", [f"{d}/browser_har/crux_ar_requests.jsonl.xz"]),
        ("api_cassettes", "jsonl", [f"{d}/api_cassettes/requests.jsonl.xz"]),
    ]
    print("| benign data | requests | units | safe (skipped) | skipped share | units to the model per request |")
    print("|---|---|---|---|---|---|")
    per_kind = collections.defaultdict(lambda: [0, 0])
    normal_units = set()
    for name, fmt, files in sets:
        data = b"".join(read_bytes(f) for f in files)
        rows, _ = extract(args.wafer, fmt, data)
        reqs = len({r[0] for r in rows})
        units = [r for r in rows if r[1] not in ("invalid", "request")]
        safe = sum(1 for r in units if "safe" in r[3].split(","))
        for r in units:
            per_kind[r[1]][0] += 1
            per_kind[r[1]][1] += "safe" in r[3].split(",")
            if name.startswith("CSIC"):
                normal_units.add((r[1], r[2], r[4]))
        print(f"| {name} | {reqs} | {len(units)} | {safe} | {100.0 * safe / max(1, len(units)):.1f}% "
              f"| {(len(units) - safe) / max(1, reqs):.2f} |")
    print()
    print("| unit kind (all benign sets) | units | skipped share |")
    print("|---|---|---|")
    for k, (n, s) in sorted(per_kind.items(), key=lambda kv: -kv[1][0]):
        print(f"| {k} | {n} | {100.0 * s / max(1, n):.1f}% |")
    print()
    return normal_units


def payload_sources(d):
    """(source name, list of payload byte strings)."""
    out = []
    for root in ("payloadsallthethings", "fuzzdb"):
        lines = []
        for p in sorted(glob.glob(f"{d}/{root}/**/*", recursive=True)):
            if os.path.isdir(p) or os.path.basename(p) in ("LICENSE", "_copyright.txt"):
                continue
            for l in read_bytes(p).split(b"\n"):
                l = l.rstrip(b"\r")
                if l:
                    lines.append(l)
        out.append((root, lines))

    def csv_rows(path, col, label_col, attack):
        text = read_bytes(path).decode("utf-8", "replace")
        r = csv.DictReader(io.StringIO(text, newline=""))
        return [row[col].encode() for row in r if row.get(label_col) == attack and row.get(col)]

    hp = []
    for f in ("payload_train.csv.xz", "payload_test.csv", "payload_test_lexical.csv"):
        hp += csv_rows(f"{d}/httpparams/{f}", "payload", "label", "anom")
    out.append(("httpparams (anom)", hp))
    out.append(("xss_kaggle (Label 1)", csv_rows(f"{d}/xss_kaggle/XSS_dataset.csv.xz", "Sentence", "Label", "1")))
    out.append(("sqli_kaggle (Label 1)",
                csv_rows(f"{d}/sqli_kaggle_sajid576/Modified_SQL_Dataset.csv.xz", "Query", "Label", "1")))
    fw = [l.rstrip(b"\r") for l in read_bytes(f"{d}/fwaf/badqueries.txt.xz").split(b"\n") if l.rstrip(b"\r")]
    out.append(("fwaf badqueries", fw))
    return out


def attacks(args, normal_units):
    print("| attack data (as a query value) | payloads | skipped as sent | skipped as literal text |")
    print("|---|---|---|---|")
    skipped_all = []
    total = [0, 0, 0]
    for name, payloads in payload_sources(args.data):
        res = []
        for mode in ("sent", "literal"):
            if mode == "sent":
                # the line is the raw query value; CR/LF cannot be in a line
                lines = [p.replace(b"\r", b"%0D").replace(b"\n", b"%0A") for p in payloads]
            else:
                lines = [urllib.parse.quote_from_bytes(p, safe="").encode() for p in payloads]
            rows, _ = extract(args.wafer, "lines", b"\n".join(lines) + b"\n")
            inspected = {r[0] for r in rows if r[1] not in ("invalid", "request") and "safe" not in r[3].split(",")}
            skipped = [i for i in range(len(lines)) if i not in inspected]
            res.append(len(skipped))
            skipped_all += [(name, mode, payloads[i]) for i in skipped]
        total[0] += len(payloads)
        total[1] += res[0]
        total[2] += res[1]
        print(f"| {name} | {len(payloads)} | {res[0]} | {res[1]} |")
    print(f"| **all** | {total[0]} | {total[1]} | {total[2]} |")
    print()

    # CSIC anomalous requests: units that are skipped and never occur in normal traffic
    rows, _ = extract(args.wafer, "raw", read_bytes(f"{args.data}/csic2010/anomalousTrafficTest.txt.xz"))
    units = [r for r in rows if r[1] not in ("invalid", "request")]
    invalid = sum(1 for r in rows if r[1] == "invalid")
    reqs = collections.defaultdict(list)
    for r in units:
        reqs[r[0]].append(r)
    # headers are the same in normal and anomalous CSIC traffic: judge a request by its other units
    all_safe = [i for i, us in reqs.items()
                if all("safe" in r[3].split(",") for r in us if r[1] != "header")]
    print("| CSIC 2010 anomalous (raw requests) | count |")
    print("|---|---|")
    print(f"| requests read / refused by the parser (reported as invalid) | {len(reqs)} / {invalid} |")
    print(f"| units / skipped by the fast path | {len(units)} / "
          f"{sum(1 for r in units if 'safe' in r[3].split(','))} |")
    print(f"| requests whose every non-header unit is skipped | {len(all_safe)} |")
    print()
    if all_safe:
        shapes = collections.Counter()
        examples = {}
        for i in all_safe:
            key = " ".join(r[4] for r in reqs[i] if r[1] != "header" and r[1] != "cookie")
            shapes[key] += 1
            examples.setdefault(key, i)
        print("Those requests, by their units other than headers and the session cookie (count; first 30):")
        print()
        for k, c in shapes.most_common(30):
            print(f"- {c}: `{k}`")
        print()
    uniq = sorted({(p, m) for _, m, p in skipped_all})
    print(f"Skipped attack payloads: {len(uniq)} distinct (payload, mode); up to {args.list} listed:")
    print()
    for p, m in uniq[: args.list]:
        print(f"- `{p.decode('utf-8', 'replace')}` ({m})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wafer", default="build/wafer")
    ap.add_argument("--data", default="../shared/datasets")
    ap.add_argument("--list", type=int, default=50)
    args = ap.parse_args()
    normal = benign(args)
    attacks(args, normal)


if __name__ == "__main__":
    sys.exit(main())
