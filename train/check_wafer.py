#!/usr/bin/env python3
"""Check an exported model in wafer: probabilities against PyTorch's, and CPU cost.

  check_wafer.py --wafer ./build/wafer --model DIR --parity parity.jsonl [--speed units.txt] [--threads 1]

parity.jsonl (from train.py) holds test unit texts with PyTorch's float32
probabilities; this runs `wafer classify --json` on the same texts and prints
the largest absolute difference. --speed times `wafer classify` over a file of
unit texts (one a line) and subtracts the time of a one-text run (model load):
CPU time (user + system) of the process, the best of --rounds, and wall time.
Standard library only.
"""
import argparse
import json
import resource
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
    ap.add_argument("--rounds", type=int, default=3, help="--speed: rounds, the one with the least CPU time counts")
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

        def timed(inp):
            """wall seconds and CPU seconds (user + system) of one run"""
            r0, w0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
            subprocess.run(cmd, input=inp.encode(), stdout=subprocess.DEVNULL, check=True)
            r1, w1 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
            return w1 - w0, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        best = None
        for _ in range(a.rounds):  # the machine is shared: the least disturbed round
            w_one, c_one = timed(texts[0] + "\n")
            w_all, c_all = timed("\n".join(texts) + "\n")
            cpu, wall = c_all - c_one, w_all - w_one
            if best is None or cpu < best[0]:
                best = (cpu, wall)
        cpu, wall = best
        rep["speed_units"] = len(texts)
        rep["cpu_us_per_unit"] = round(cpu / len(texts) * 1e6, 1)
        rep["units_per_cpu_s"] = round(len(texts) / cpu, 1)
        rep["wall_us_per_unit"] = round(wall / len(texts) * 1e6, 1)
    print(json.dumps(rep))


if __name__ == "__main__":
    sys.exit(main())
