#!/usr/bin/env python3
"""Check an exported model in wafer: probabilities against PyTorch's, and CPU cost.

  check_wafer.py --wafer ./build/wafer --model DIR --parity parity.jsonl [--speed units.txt] [--threads 1]

parity.jsonl (from train.py) holds test unit texts with PyTorch's float32
probabilities; this runs `wafer classify --json` on the same texts and prints
the largest absolute difference. --speed times `wafer classify` over a file of
unit texts (one a line) and subtracts the time of a one-text run (model load).
Standard library only.
"""
import argparse
import json
import subprocess
import sys
import time


def classify(wafer, model, texts, threads):
    out = []
    plain = [t for t in texts if "\n" not in t and "\r" not in t and not t.startswith("-")]
    p = subprocess.run([wafer, "classify", "-m", model, "--threads", str(threads), "--json"],
                       input="\n".join(plain).encode() + b"\n", stdout=subprocess.PIPE, check=True)
    res = {}
    for line in p.stdout.decode().splitlines():
        d = json.loads(line)
        res[d["text"]] = d
    for t in texts:
        if t not in res:
            p = subprocess.run([wafer, "classify", "-m", model, "--json", "--", t], stdout=subprocess.PIPE, check=True)
            res[t] = json.loads(p.stdout.decode().splitlines()[0])
        out.append(res[t])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wafer", default="./build/wafer")
    ap.add_argument("--model", required=True)
    ap.add_argument("--parity")
    ap.add_argument("--speed")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    labels = json.load(open(a.model + "/wafer.json"))["labels"]
    rep = {"model": a.model}
    if a.parity:
        rows = [json.loads(l) for l in open(a.parity, encoding="utf-8")]
        got = classify(a.wafer, a.model, [r["text"] for r in rows], a.threads)
        md = 0.0
        for r, g in zip(rows, got):
            for i, l in enumerate(labels):
                md = max(md, abs(r["probs"][i] - g["probs"][l]))
        rep["parity_texts"] = len(rows)
        rep["parity_max_abs_diff"] = md
    if a.speed:
        with open(a.speed, encoding="utf-8") as f:
            texts = [l.rstrip("\n") for l in f if l.strip()]
        cmd = [a.wafer, "classify", "-m", a.model, "--threads", str(a.threads)]
        t0 = time.perf_counter()
        subprocess.run(cmd, input=(texts[0] + "\n").encode(), stdout=subprocess.DEVNULL, check=True)
        t1 = time.perf_counter()
        subprocess.run(cmd, input=("\n".join(texts) + "\n").encode(), stdout=subprocess.DEVNULL, check=True)
        t2 = time.perf_counter()
        run = (t2 - t1) - (t1 - t0)
        rep["speed_units"] = len(texts)
        rep["units_per_s"] = round(len(texts) / run, 1)
        rep["us_per_unit"] = round(run / len(texts) * 1e6, 1)
    print(json.dumps(rep))


if __name__ == "__main__":
    sys.exit(main())
