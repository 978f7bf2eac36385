#!/usr/bin/env python3
"""wafer classify --json on a converted directory against transformers' softmax(logits)."""
import json, math, subprocess, sys
src, out, wafer, tol = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
rows = [json.loads(l) for l in open(src + "/expected.jsonl")]
labels = json.load(open(out + "/wafer.json"))["labels"]
p = subprocess.run([wafer, "classify", "-m", out, "--json"], input="".join(r["text"] + "\n" for r in rows).encode(),
                   capture_output=True)
assert p.returncode == 0, p.stderr.decode()
worst = 0.0
for r, line in zip(rows, p.stdout.decode().splitlines()):
    m = max(r["logits"]); e = [math.exp(x - m) for x in r["logits"]]; want = [x / sum(e) for x in e]
    got = json.loads(line)["probs"]
    worst = max(worst, max(abs(got[l] - w) for l, w in zip(labels, want)))
print("%s: wafer classify vs transformers, %d texts, max |dprob| %.3g (tolerance %g) %s" % (
    out, len(rows), worst, tol, "OK" if worst <= tol else "FAIL"))
sys.exit(0 if worst <= tol else 1)
