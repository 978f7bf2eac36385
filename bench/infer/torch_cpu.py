#!/usr/bin/env python3
"""PyTorch-on-CPU twin of `bench_infer bench`: the same two randomly initialised
models (google/mobilebert-uncased's MobileBERT config; a small BERT: 4 layers,
hidden 256, 4 heads, intermediate 1024), the same sequence lengths and batch
sizes, the same timing rule (one warm-up run, then runs until SECONDS have
passed and at least two ran), and the same table.

    python3 bench/infer/torch_cpu.py -t THREADS [-b BATCH] [-l 32,64,128,256] [-m mobilebert,bert] [-s SECONDS]
"""
import argparse
import time

import torch


def make(kind):
    from transformers import BertConfig, BertForSequenceClassification, MobileBertConfig, \
        MobileBertForSequenceClassification
    torch.manual_seed(0)
    if kind == "mobilebert":
        cfg = MobileBertConfig(num_labels=2)  # the defaults are google/mobilebert-uncased's config
        return MobileBertForSequenceClassification(cfg).eval()
    cfg = BertConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
                     hidden_act="gelu", num_labels=2)
    return BertForSequenceClassification(cfg).eval()


def time_runs(model, ids, secs):
    with torch.inference_mode():
        model(input_ids=ids)
        reps, t0 = 0, time.perf_counter()
        while True:
            model(input_ids=ids)
            reps += 1
            t = time.perf_counter() - t0
            if t >= secs and reps >= 2:
                return t / reps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-t", type=int, default=1)
    ap.add_argument("-b", type=int, default=256)
    ap.add_argument("-l", default="32,64,128,256")
    ap.add_argument("-m", default="mobilebert,bert")
    ap.add_argument("-s", type=float, default=1.0)
    a = ap.parse_args()
    torch.set_num_threads(a.t)
    lens = [int(x) for x in a.l.split(",")]
    print("| engine | model | threads | seq len | batch 1 latency ms | batch 1 seq/s | batch %d latency ms | "
          "batch %d seq/s |\n|---|---|---|---|---|---|---|---|" % (a.b, a.b), flush=True)
    g = torch.Generator().manual_seed(1)
    for kind in a.m.split(","):
        model = make(kind)
        for L in lens:
            ids = torch.randint(5, 30005, (a.b, L), generator=g)
            t1 = time_runs(model, ids[:1], a.s)
            tb = time_runs(model, ids, a.s)
            print("| pytorch %s | %s | %d | %d | %.2f | %.1f | %.1f | %.1f |"
                  % (torch.__version__, kind, a.t, L, t1 * 1e3, 1 / t1, tb * 1e3, a.b / tb), flush=True)


if __name__ == "__main__":
    main()
