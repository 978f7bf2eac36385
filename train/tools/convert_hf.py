#!/usr/bin/env python3
"""Convert a Hugging Face BERT/MobileBERT sequence-classification checkpoint into a wafer model directory.

    python3 train/tools/convert_hf.py SRC_DIR OUT_DIR [--dtype f32|bf16|f16] [--name NAME]
                                      [--labels benign,sqli,...] [--max-len N] [--check]

SRC_DIR is a checkpoint directory as `save_pretrained` / the Hub writes it: config.json, pytorch_model.bin or
model.safetensors, vocab.txt, and optionally tokenizer_config.json. OUT_DIR receives the layout
docs/model-format.md describes:

    config.json        the checkpoint's, unchanged (unless --labels renames the classes)
    model.safetensors  every floating-point tensor under the name transformers uses, as float32 (or bf16/f16)
    vocab.txt          copied
    wafer.json         generated: labels from id2label, thresholds 0.5, max_len and WordPiece options from
                       tokenizer_config.json

Needs torch and safetensors (and transformers for --check). It never downloads anything: fetch the checkpoint
where you have network access (e.g. `huggingface-cli download cssupport/mobilebert-sql-injection-detect
--local-dir SRC_DIR`) and run this on the files.
"""
import argparse
import json
import os
import re
import shutil
import sys

DTYPES = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}


def die(msg):
    print("convert_hf: " + msg, file=sys.stderr)
    sys.exit(2)


def load_state_dict(src):
    import torch

    st_path = os.path.join(src, "model.safetensors")
    bin_path = os.path.join(src, "pytorch_model.bin")
    if os.path.exists(st_path):
        from safetensors.torch import load_file

        return load_file(st_path, device="cpu"), st_path
    if os.path.exists(bin_path):
        sd = torch.load(bin_path, map_location="cpu", weights_only=True)
        if not isinstance(sd, dict):
            die("%s: not a state dict" % bin_path)
        return sd, bin_path
    if any(f.endswith(".index.json") for f in os.listdir(src)):
        die("%s: sharded checkpoints are not supported; load and re-save it unsharded" % src)
    die("%s: neither model.safetensors nor pytorch_model.bin" % src)


def rename(name):
    """Old TF-converted checkpoints use LayerNorm.gamma/beta; transformers renames them on load."""
    name = re.sub(r"\.gamma$", ".weight", name)
    name = re.sub(r"\.beta$", ".bias", name)
    return name


def labels_of(cfg):
    id2label = cfg.get("id2label")
    if id2label:
        ids = sorted(int(k) for k in id2label)
        if ids != list(range(len(ids))):
            die("config.json: id2label keys are not 0..n-1")
        return [id2label[str(i)] for i in ids]
    n = int(cfg.get("num_labels", 2))
    return ["LABEL_%d" % i for i in range(n)]


def model_name(out, given):
    name = given or os.path.basename(os.path.normpath(out))
    name = re.sub(r"[^\x21-\x7e]", "-", name)[:63]
    return name or "model"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src", help="Hugging Face checkpoint directory")
    ap.add_argument("out", help="wafer model directory to write")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f32", help="weight dtype (default f32)")
    ap.add_argument("--name", help="model name for wafer.json (default: OUT's base name)")
    ap.add_argument("--labels", help="comma-separated class names replacing id2label (labels[0] is benign)")
    ap.add_argument("--max-len", type=int, help="max sequence length (default: tokenizer's, capped by the model)")
    ap.add_argument("--text-format", default="wafer-unit-v1", help="wafer.json text_format")
    ap.add_argument("--check", action="store_true",
                    help="load both directories with transformers and compare logits on a few texts")
    args = ap.parse_args()

    import torch
    from safetensors.torch import save_file

    src, out = args.src, args.out
    cfg_path = os.path.join(src, "config.json")
    try:
        with open(cfg_path) as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        die("%s: %s" % (cfg_path, e))
    if cfg.get("model_type") not in ("bert", "mobilebert"):
        die("%s: model_type %r is not supported (bert, mobilebert)" % (cfg_path, cfg.get("model_type")))
    vocab = os.path.join(src, "vocab.txt")
    if not os.path.exists(vocab):
        die("%s: missing (wafer's WordPiece tokenizer reads vocab.txt)" % vocab)
    tok_cfg = {}
    tok_path = os.path.join(src, "tokenizer_config.json")
    if os.path.exists(tok_path):
        with open(tok_path) as f:
            tok_cfg = json.load(f)

    labels = labels_of(cfg)
    if args.labels:
        new = [x.strip() for x in args.labels.split(",")]
        if len(new) != len(labels) or len(set(new)) != len(new) or not all(new):
            die("--labels: need %d distinct names, got %r" % (len(labels), new))
        labels = new
        cfg["id2label"] = {str(i): l for i, l in enumerate(labels)}
        cfg["label2id"] = {l: i for i, l in enumerate(labels)}
    if len(labels) < 2:
        die("wafer needs at least two classes (labels[0] benign)")
    for l in labels:
        if not 0 < len(l.encode()) <= 31:
            die("label %r: must be 1 to 31 bytes" % l)

    sd, weights_path = load_state_dict(src)
    dtype = getattr(torch, DTYPES[args.dtype])
    tensors, dropped = {}, []
    for name, t in sd.items():
        if not isinstance(t, torch.Tensor):
            continue
        if not t.is_floating_point():
            dropped.append(name)  # position_ids / token_type_ids buffers: not weights
            continue
        new = rename(name)
        if new in tensors:
            die("%s: two tensors map to %s" % (weights_path, new))
        # a copy of its own: tied weights would share storage, which safetensors refuses
        tensors[new] = t.detach().to(dtype).contiguous().clone()
    if not any(k.startswith("classifier.") for k in tensors):
        die("%s: no classifier.* tensors; is this a ...ForSequenceClassification checkpoint?" % weights_path)
    head = tensors.get("classifier.weight")
    if head is not None and head.shape[0] != len(labels):
        die("classifier.weight has %d rows but there are %d labels" % (head.shape[0], len(labels)))

    max_pos = int(cfg.get("max_position_embeddings", 512))
    max_len = args.max_len or tok_cfg.get("model_max_length") or max_pos
    if not isinstance(max_len, int) or max_len > max_pos:  # tokenizers often say 1e30 for "no limit"
        max_len = max_pos
    if max_len < 2:
        die("--max-len must be at least 2")
    lower = bool(tok_cfg.get("do_lower_case", True))
    meta = {
        "format": 1,
        "name": model_name(out, args.name),
        "labels": labels,
        "thresholds": [0.5] * len(labels),
        "max_len": max_len,
        "tokenizer": {
            "kind": "wordpiece",
            "lowercase": lower,
            "strip_accents": tok_cfg.get("strip_accents"),
            "tokenize_chinese_chars": bool(tok_cfg.get("tokenize_chinese_chars", True)),
        },
        "units": [],
        "text_format": args.text_format,
    }

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    shutil.copyfile(vocab, os.path.join(out, "vocab.txt"))
    with open(os.path.join(out, "wafer.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    nparams = sum(t.numel() for t in tensors.values())
    print("%s: %d tensors, %d parameters, %s; labels %s; max_len %d; lowercase %s%s" % (
        out, len(tensors), nparams, args.dtype, ",".join(labels), max_len, lower,
        "; dropped " + ",".join(dropped) if dropped else ""))

    if args.check:
        check(src, out, args.dtype)


def check(src, out, dtype):
    """Logits of the original and the converted checkpoint, both through transformers."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    texts = ["hello world", "1' OR '1'='1' --", "<script>alert(1)</script>", "../../etc/passwd"]
    tok = AutoTokenizer.from_pretrained(src)
    enc = tok(texts, padding=True, truncation=True, return_tensors="pt")
    a = AutoModelForSequenceClassification.from_pretrained(src).float().eval()
    b, info = AutoModelForSequenceClassification.from_pretrained(out, output_loading_info=True)
    b = b.float().eval()
    if info.get("missing_keys") or info.get("unexpected_keys"):
        die("check: transformers reports missing %s, unexpected %s" % (info.get("missing_keys"),
                                                                       info.get("unexpected_keys")))
    with torch.no_grad():
        la, lb = a(**enc).logits, b(**enc).logits
    err = ((la - lb).abs().max() / la.abs().max().clamp_min(1e-6)).item()
    tol = 1e-6 if dtype == "f32" else 5e-2
    print("check: max relative logit difference %.3g (tolerance %g)" % (err, tol))
    if not err <= tol:
        die("check failed")


if __name__ == "__main__":
    main()
