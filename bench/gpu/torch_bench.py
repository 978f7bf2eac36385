#!/usr/bin/env python3
"""PyTorch eager and PyTorch with CUDA Graphs on the same weights as bench_gpu (the seed article's method).

    torch_bench.py --model DIR --name NAME --len L[,L2,...] [--batches 1,2,...] [--secs S] [--peak] [--max-tokens N]

DIR is a model directory written by `bench_gpu -k` (transformers' names and layout). Sequences are all L tokens
(no padding), bf16 weights and activations. One latency sample is one forward from host input to probabilities
on the host (`.cpu()`), as bench_gpu's is. --peak measures the bf16 matrix-product peak (8192^3, random data).
"""
import argparse
import json
import time

import torch
from transformers import AutoModelForSequenceClassification


def seq_flops(cfg, L):
    mb = cfg.get("model_type") == "mobilebert"
    H = cfg["hidden_size"]
    F = cfg["intermediate_size"]
    nl = cfg["num_hidden_layers"]
    if mb:
        I = cfg.get("intra_bottleneck_size", 128)
        lin = 2 * H * I + 2 * I * I + H * I + I * I + (cfg.get("num_feedforward_networks", 4) - 1) * 2 * I * F
        lin += 2 * I * F + I * H
        emb = 2.0 * 3 * cfg.get("embedding_size", 128) * H * L
    else:
        I = H
        lin = 3 * H * H + H * H + 2 * H * F
        emb = 0
    return nl * (2.0 * lin * L + 4.0 * L * L * I) + emb + 2 * H * H + 2 * H * 2


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * q))]


def timeit(fn, secs):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    lat = []
    t0 = time.perf_counter()
    while True:
        a = time.perf_counter()
        fn()
        b = time.perf_counter()
        lat.append(b - a)
        if (b - t0 >= secs and len(lat) >= 10) or len(lat) >= 100000:
            break
    return lat, b - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--name", default="model")
    ap.add_argument("--len", default="128", help="one length or several, comma-separated")
    ap.add_argument("--max-tokens", type=int, default=1 << 30, help="skip batches of more tokens")
    ap.add_argument("--batches", default="1,2,4,8,16,32,64,128,256,512,1024,2048,4096")
    ap.add_argument("--secs", type=float, default=0.3)
    ap.add_argument("--peak", action="store_true")
    a = ap.parse_args()
    torch.manual_seed(0)
    if a.peak:
        x = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        y = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
        for _ in range(3):
            x @ y
        torch.cuda.synchronize()
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        ts = []
        for _ in range(10):
            e0.record()
            x @ y
            e1.record()
            torch.cuda.synchronize()
            ts.append(e0.elapsed_time(e1) / 1e3)
        ts.sort()
        print(f"bf16 peak (8192^3 matmul, median of 10): {2 * 8192**3 / ts[5] / 1e12:.0f} TFLOP/s on "
              f"{torch.cuda.get_device_name()}")
        if not a.model:
            return
    cfg = json.load(open(f"{a.model}/config.json"))
    model, info = AutoModelForSequenceClassification.from_pretrained(a.model, dtype=torch.bfloat16,
                                                                     output_loading_info=True)
    missing = [k for k in info.get("missing_keys", []) if "position_ids" not in k]
    if missing:
        raise SystemExit(f"weights not loaded (would be random, not ours): {missing[:5]}")
    model = model.cuda().eval()
    for L, B in [(int(l), int(b)) for l in a.len.split(",") for b in a.batches.split(",")]:
        if B * L > a.max_tokens:
            continue
        fl = seq_flops(cfg, L)
        ids = torch.randint(5, cfg["vocab_size"], (B, L), device="cuda")
        host_ids = ids.cpu().pin_memory()
        with torch.inference_mode():
            def eager():
                x = host_ids.to("cuda", non_blocking=True)
                return model(input_ids=x).logits.float().softmax(-1).cpu()
            lat, tot = timeit(eager, a.secs)
            n = len(lat)
            print(f"| torch eager | {a.name} | {L} | {B} | {pct(lat, .5)*1e3:.3f} | {pct(lat, .99)*1e3:.3f} | "
                  f"{B*n/tot:.0f} | {fl*B*n/tot/1e12:.1f} |", flush=True)
            static = ids.clone()
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    model(input_ids=static)
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                out = model(input_ids=static).logits.float().softmax(-1)

            def graphed():
                static.copy_(host_ids, non_blocking=True)
                g.replay()
                return out.cpu()
            lat, tot = timeit(graphed, a.secs)
            n = len(lat)
            print(f"| torch cuda graph | {a.name} | {L} | {B} | {pct(lat, .5)*1e3:.3f} | {pct(lat, .99)*1e3:.3f} | "
                  f"{B*n/tot:.0f} | {fl*B*n/tot/1e12:.1f} |", flush=True)
            del g, out, static
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
