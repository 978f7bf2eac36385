#!/usr/bin/env python3
"""Parity of wafer's CPU engine with transformers at full MobileBERT size.

Builds MobileBertForSequenceClassification with google/mobilebert-uncased's
config (24 layers, hidden 512, embedding 128, intra bottleneck 128, 4 heads,
4 FFNs, intermediate 512, NoNorm, vocab 30522; 2 labels) and random weights
(norm weights/biases and biases moved away from 1/0), saves it as a wafer
model directory, runs our `bench_infer ids` on a set of sequences of mixed
lengths (2..512 tokens, one packed batch) and compares its logits with
transformers' in float64 (the reference) and float32. Prints a JSON summary.

    python3 train/tools/check_mobilebert_full.py BENCH_INFER_BINARY [THREADS]
"""
import json
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import save_file
from transformers import MobileBertConfig, MobileBertForSequenceClassification


def main():
    binary = sys.argv[1]
    threads = sys.argv[2] if len(sys.argv) > 2 else "4"
    torch.manual_seed(0)
    cfg = MobileBertConfig(num_labels=2, id2label={0: "benign", 1: "sqli"}, label2id={"benign": 0, "sqli": 1})
    model = MobileBertForSequenceClassification(cfg).eval()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.05 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
    d = tempfile.mkdtemp(prefix="mobilebert-full-")
    model.config.to_json_file(os.path.join(d, "config.json"), use_diff=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if v.is_floating_point()},
              os.path.join(d, "model.safetensors"))
    with open(os.path.join(d, "vocab.txt"), "w") as f:
        f.write("[PAD]\n" + "".join("[unused%d]\n" % i for i in range(1, 100)) + "[UNK]\n[CLS]\n[SEP]\n[MASK]\n")
        f.write("".join("w%d\n" % i for i in range(104, cfg.vocab_size)))
    with open(os.path.join(d, "wafer.json"), "w") as f:
        json.dump({"name": "mobilebert-full-random", "labels": ["benign", "sqli"], "thresholds": [0.5, 0.5],
                   "max_len": 512, "tokenizer": {"kind": "wordpiece", "lowercase": True}, "units": [],
                   "text_format": "wafer-unit-v1"}, f)

    lens = [2, 3, 8, 16, 31, 64, 100, 128, 200, 255, 256, 384, 512]
    seqs = []
    for L in lens:
        body = torch.randint(999, cfg.vocab_size, (L,), generator=g).tolist()
        body[0], body[-1] = 101, 102
        seqs.append(body)
    ids_path = os.path.join(d, "ids.txt")
    with open(ids_path, "w") as f:
        f.write("".join(" ".join(map(str, s)) + "\n" for s in seqs))

    out = subprocess.run([binary, "ids", d, ids_path, "-t", threads], capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stderr)
        sys.exit(1)
    ours = [json.loads(line) for line in out.stdout.splitlines()]

    ref64 = MobileBertForSequenceClassification(cfg).eval()
    ref64.load_state_dict(model.state_dict())
    ref64 = ref64.double()
    rows = []
    with torch.no_grad():
        for s, o in zip(seqs, ours):
            x = torch.tensor([s])
            want = ref64(input_ids=x).logits[0].tolist()
            f32 = model(input_ids=x).logits[0].tolist()
            scale = max(abs(v) for v in want)
            rows.append({"len": len(s), "want": want, "ours": o, "torch_f32": f32,
                         "rel_err_ours": max(abs(a - b) for a, b in zip(o, want)) / scale,
                         "rel_err_torch_f32": max(abs(a - b) for a, b in zip(f32, want)) / scale})
    summary = {"model": "MobileBERT google/mobilebert-uncased config, random weights", "threads": threads,
               "sequences": len(rows), "tokens": sum(lens), "engine_stderr": out.stderr.strip(),
               "max_rel_err_ours_vs_f64": max(r["rel_err_ours"] for r in rows),
               "max_rel_err_torch_f32_vs_f64": max(r["rel_err_torch_f32"] for r in rows), "rows": rows}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
