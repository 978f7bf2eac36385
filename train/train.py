#!/usr/bin/env python3
"""Train wafer's default detection model (GPU machine: torch, transformers, tokenizers).

  train.py --units DIR --out DIR [--configs a,b,c] [--seed 2026]

DIR holds {train,valid,test}.units.jsonl.xz and {train,valid,test}.requests.jsonl.xz
from build_units.py. For each configuration of the sweep it trains a vocabulary
(WordPiece with the `tokenizers` library on the training units, or the byte
tokenizer) and a BertForSequenceClassification from scratch, calibrates
per-class thresholds on the validation split, evaluates on the test split per
unit and per request, and exports a wafer model directory (the layout of
train/tools/convert_hf.py) to OUT/models/<config>/. The configuration with the
best validation request recall (the smallest one within --pick-margin of it)
is written as OUT/models/default. Also written: OUT/sweep.json,
OUT/report.json (the chosen model's test metrics), OUT/test_pred.jsonl (verdict
per test request), OUT/parity.jsonl (PyTorch probabilities of test units, for
the check against wafer).
"""
import argparse
import collections
import json
import lzma
import math
import os
import random
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch

CLASSES = ["benign", "sqli", "xss", "cmdi", "traversal", "other_injection"]
CI = {c: i for i, c in enumerate(CLASSES)}
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

CONFIGS = {
    # name: tokenizer, vocab, layers, hidden, heads, intermediate, max_len
    "wp-l2-h128": dict(tok="wordpiece", vocab=8192, layers=2, hidden=128, heads=2, inter=512, max_len=64),
    "wp-l2-h256": dict(tok="wordpiece", vocab=8192, layers=2, hidden=256, heads=4, inter=1024, max_len=96),
    "wp-l4-h256": dict(tok="wordpiece", vocab=8192, layers=4, hidden=256, heads=4, inter=1024, max_len=128),
    "bytes-l2-h256": dict(tok="bytes", vocab=261, layers=2, hidden=256, heads=4, inter=1024, max_len=192),
    # second round: the small ones, trained longer (the loss was still falling at 6 epochs)
    "wp-l2-h128-e12": dict(tok="wordpiece", vocab=8192, layers=2, hidden=128, heads=2, inter=512, max_len=64,
                           epochs=12),
    "wp-l4-h128-e12": dict(tok="wordpiece", vocab=8192, layers=4, hidden=128, heads=2, inter=512, max_len=64,
                           epochs=12),
    # third round (header attacks, joint thresholds): the small model with a longer input (only long units pay:
    # the mean unit is ~25 tokens), a larger vocabulary (fewer tokens a unit, same compute a token), label smoothing
    "wp-l2-h128-ml128-e8": dict(tok="wordpiece", vocab=8192, layers=2, hidden=128, heads=2, inter=512, max_len=128,
                                epochs=8),
    "wp16k-l2-h128-ml128-e8": dict(tok="wordpiece", vocab=16384, layers=2, hidden=128, heads=2, inter=512,
                                   max_len=128, epochs=8),
    "wp-l2-h128-ml128-e8-ls": dict(tok="wordpiece", vocab=8192, layers=2, hidden=128, heads=2, inter=512,
                                   max_len=128, epochs=8, smoothing=0.05),
}


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def read_xz(path):
    with lzma.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(l) for l in f]


class ByteTok:
    def __call__(self, texts, max_len):
        out = []
        for t in texts:
            b = t.encode("utf-8")[: max_len - 2]
            out.append([2] + [x + 5 for x in b] + [3])
        return out


def fix_vocab(path):
    """The trainer keeps whole long words (base64, hashes) as tokens; a word of
    more than max_input_chars_per_word (100) characters is [UNK] before any
    lookup, so such tokens can never be produced. They are replaced, keeping
    every id, by [unusedN] (wafer refuses tokens over 512 bytes)."""
    with open(path, encoding="utf-8") as f:
        toks = f.read().split("\n")
    if toks and toks[-1] == "":
        toks.pop()
    n = 0
    for i, t in enumerate(toks):
        core = t[2:] if t.startswith("##") else t
        if len(core) > 100 or t != t.strip() or "\r" in t:
            toks[i] = "[unused%d]" % n
            n += 1
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(toks) + "\n")
    return n


def make_wordpiece(texts, vocab_size, lowercase, outdir):
    """Train a WordPiece vocabulary and return an encoder. Encoding goes through
    the tokenizers library's BERT pipeline over that vocab.txt, which is what
    BertTokenizerFast runs and what wafer's tokenizer reproduces."""
    from tokenizers import BertWordPieceTokenizer
    tk = BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase)
    tk.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=3, special_tokens=SPECIALS,
                           limit_alphabet=500, wordpieces_prefix="##", show_progress=False)
    os.makedirs(outdir, exist_ok=True)
    tk.save_model(outdir)
    fix_vocab(os.path.join(outdir, "vocab.txt"))
    enc_tk = BertWordPieceTokenizer(os.path.join(outdir, "vocab.txt"), lowercase=lowercase)

    def enc(batch, max_len):
        enc_tk.enable_truncation(max_length=max_len)
        return [e.ids for e in enc_tk.encode_batch(list(batch))]
    return enc, enc_tk


def to_tensor(ids_list, max_len):
    n = len(ids_list)
    arr = np.zeros((n, max_len), dtype=np.int64)
    lens = np.zeros(n, dtype=np.int64)
    for i, ids in enumerate(ids_list):
        arr[i, : len(ids)] = ids
        lens[i] = len(ids)
    return torch.from_numpy(arr), torch.from_numpy(lens)


@torch.no_grad()
def predict(model, ids, lens, dev, bs=2048):
    model.eval()
    out = []
    order = torch.argsort(lens)
    for s in range(0, len(order), bs):
        idx = order[s: s + bs]
        L = int(lens[idx].max())
        x = ids[idx, :L].to(dev)
        m = (torch.arange(L, device=dev)[None, :] < lens[idx].to(dev)[:, None]).long()
        logits = model(input_ids=x, attention_mask=m).logits  # float32, as wafer runs it
        out.append((idx, torch.softmax(logits.float(), -1).cpu()))
    probs = torch.zeros(len(lens), len(CLASSES))
    for idx, p in out:
        probs[idx] = p
    return probs.numpy()


def calibrate_joint(probs, units, reqs, fpr):
    """calib.greedy over the validation units (train/calib.py)."""
    import calib
    lab = {r["id"]: r["label"] for r in reqs}
    nb = sum(1 for r in reqs if r["label"] == "benign")
    pl = [[float(x) for x in row] for row in probs]
    return calib.greedy(CLASSES, [(u["req"], pl[i]) for i, u in enumerate(units)], lab, int(fpr * nb))


def calibrate(probs, labels, budget):
    """Per attack class, the smallest threshold (>= 0.5) at which at most
    budget/(classes-1) of the benign units reach that class."""
    ben = probs[labels == 0]
    th = {"benign": 0.5}
    k = len(CLASSES) - 1
    for c in CLASSES[1:]:
        p = np.sort(ben[:, CI[c]])[::-1]
        allowed = int(math.floor(budget / k * len(p)))
        t = p[allowed] + 1e-6 if allowed < len(p) else 0.0
        th[c] = float(min(max(t, 0.5), 0.999999))
    return th


def unit_decisions(probs, th):
    """Per unit: predicted attack class index (0 = none) and its score."""
    tv = np.array([2.0] + [th[c] for c in CLASSES[1:]])
    over = probs >= tv[None, :]
    score = np.where(over, probs, -1.0)
    best = score.argmax(1)
    hit = over.any(1)
    return np.where(hit, best, 0), score.max(1)


def request_eval(units, requests, probs, th):
    """Per request: attack if any unit crosses its class threshold; the class
    is that of the highest crossing probability."""
    pred_u, sc = unit_decisions(probs, th)
    best = {}
    for i, u in enumerate(units):
        if pred_u[i]:
            r = u["req"]
            if r not in best or sc[i] > best[r][1]:
                best[r] = (int(pred_u[i]), float(sc[i]))
    rows = []
    for r in requests:
        c, s = best.get(r["id"], (0, 0.0))
        rows.append({"id": r["id"], "label": r["label"], "source": r["source"], "verdict": "attack" if c else "pass",
                     "class": CLASSES[c], "score": round(s, 6)})
    return rows


def metrics(rows):
    """Per-class precision/recall, confusion, benign FPR, unlabelled-attack detection."""
    conf = collections.defaultdict(collections.Counter)
    for r in rows:
        conf[r["label"]][r["class"]] += 1
    res = {"confusion": {k: dict(v) for k, v in sorted(conf.items())}}
    per = {}
    for c in CLASSES[1:]:
        tp = conf[c][c]
        fp = sum(conf[o][c] for o in conf if o != c)
        det = sum(v for k, v in conf[c].items() if k != "benign")
        n = sum(conf[c].values())
        per[c] = {"n": n, "precision": tp / (tp + fp) if tp + fp else None, "recall": tp / n if n else None,
                  "detected_any_class": det / n if n else None}
    res["per_class"] = per
    nb = sum(conf["benign"].values())
    fpb = nb - conf["benign"]["benign"]
    res["benign_requests"] = nb
    res["benign_fp"] = fpb
    res["fpr"] = fpb / nb if nb else None
    att = [c for c in CLASSES[1:]]
    na = sum(sum(conf[c].values()) for c in att)
    da = sum(sum(v for k, v in conf[c].items() if k != "benign") for c in att)
    res["attack_requests"] = na
    res["tpr_labelled"] = da / na if na else None
    nu = sum(conf["attack_unlabelled"].values())
    if nu:
        res["csic_anomalous_requests"] = nu
        res["csic_anomalous_detected"] = (nu - conf["attack_unlabelled"]["benign"]) / nu
    src = collections.defaultdict(lambda: [0, 0])
    for r in rows:
        if r["label"] == "benign":
            src[r["source"]][0] += 1
            src[r["source"]][1] += r["verdict"] == "attack"
    res["fpr_by_source"] = {k: {"n": v[0], "fp": v[1]} for k, v in sorted(src.items())}
    return res


def unit_metrics(labels, pred):
    conf = np.zeros((len(CLASSES), len(CLASSES)), dtype=np.int64)
    for a, b in zip(labels, pred):
        conf[a, b] += 1
    per = {}
    for i, c in enumerate(CLASSES):
        tp = conf[i, i]
        per[c] = {"n": int(conf[i].sum()), "precision": float(tp / conf[:, i].sum()) if conf[:, i].sum() else None,
                  "recall": float(tp / conf[i].sum()) if conf[i].sum() else None}
    nb = conf[0].sum()
    return {"confusion": conf.tolist(), "per_class": per, "benign_units": int(nb),
            "fpr_units": float((nb - conf[0, 0]) / nb) if nb else None}


def export(model, cfg, name, vocab_src, th, outdir):
    from safetensors.torch import save_file
    os.makedirs(outdir, exist_ok=True)
    c = model.config.to_dict()
    keep = {k: c[k] for k in ["architectures", "attention_probs_dropout_prob", "hidden_act", "hidden_dropout_prob",
                              "hidden_size", "initializer_range", "intermediate_size", "layer_norm_eps",
                              "max_position_embeddings", "model_type", "num_attention_heads", "num_hidden_layers",
                              "pad_token_id", "position_embedding_type", "type_vocab_size", "vocab_size",
                              "id2label", "label2id"] if k in c}
    keep["architectures"] = ["BertForSequenceClassification"]
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(keep, f, indent=2, sort_keys=True)
        f.write("\n")
    tensors = {k: v.detach().to(torch.bfloat16).cpu().contiguous().clone() for k, v in model.state_dict().items()
               if v.is_floating_point()}
    save_file(tensors, os.path.join(outdir, "model.safetensors"), metadata={"format": "pt"})
    if cfg["tok"] == "wordpiece":
        shutil.copyfile(vocab_src, os.path.join(outdir, "vocab.txt"))
        tok = {"kind": "wordpiece", "lowercase": cfg.get("lowercase", True), "strip_accents": None,
               "tokenize_chinese_chars": True, "max_input_chars_per_word": 100}
    else:
        tok = {"kind": "bytes"}
    meta = {"format": 1, "name": name, "labels": CLASSES, "thresholds": th, "max_len": cfg["max_len"],
            "tokenizer": tok, "units": [], "text_format": "wafer-unit-v1"}
    with open(os.path.join(outdir, "wafer.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")


def run_config(args, cname, dev, tr_texts, tr_y, va, va_y, va_req, te, te_req, cw, sweep):
    from transformers import BertConfig, BertForSequenceClassification
    cfg = dict(CONFIGS[cname])
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    t0 = time.time()
    mdir = os.path.join(args.out, "models", cname)
    if cfg["tok"] == "wordpiece":
        cfg["lowercase"] = True
        vdir = os.path.join(args.out, "vocab", cname)
        enc, _ = make_wordpiece(tr_texts, cfg["vocab"], True, vdir)
        vocab_path = os.path.join(vdir, "vocab.txt")
        with open(vocab_path, encoding="utf-8") as f:
            vsize = sum(1 for _ in f)
    else:
        bt = ByteTok()
        enc = lambda b, L: bt(b, L)
        vocab_path, vsize = None, 261
    L = cfg["max_len"]
    X, XL = to_tensor(enc(tr_texts, L), L)
    VX, VXL = to_tensor(enc([u["text"] for u in va], L), L)
    TX, TXL = to_tensor(enc([u["text"] for u in te], L), L)
    log(cname, "tokenized", round(time.time() - t0, 1), "s; mean train len", float(XL.float().mean()),
        "truncated", float((XL >= L).float().mean()))
    bc = BertConfig(vocab_size=vsize, hidden_size=cfg["hidden"], num_hidden_layers=cfg["layers"],
                    num_attention_heads=cfg["heads"], intermediate_size=cfg["inter"], max_position_embeddings=L,
                    hidden_act="gelu", type_vocab_size=2, pad_token_id=0,
                    id2label={i: c for i, c in enumerate(CLASSES)}, label2id=CI)
    model = BertForSequenceClassification(bc).to(dev)
    nparams = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    n = len(tr_texts)
    epochs = cfg.get("epochs", args.epochs)
    steps = epochs * ((n + args.batch - 1) // args.batch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / (0.05 * steps)) * max(0.0, (steps - s) / steps))
    Y = torch.from_numpy(tr_y)
    lossf = torch.nn.CrossEntropyLoss(weight=cw, label_smoothing=cfg.get("smoothing", 0.0))
    step = 0
    g = torch.Generator().manual_seed(args.seed)
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        tot = 0.0
        for s in range(0, n, args.batch):
            idx = perm[s: s + args.batch]
            ml = int(XL[idx].max())
            x = X[idx, :ml].to(dev, non_blocking=True)
            m = (torch.arange(ml)[None, :] < XL[idx][:, None]).long().to(dev)
            y = Y[idx].to(dev)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(input_ids=x, attention_mask=m).logits
            loss = lossf(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            tot += float(loss) if s % (args.batch * 50) == 0 else 0.0
        log(cname, "epoch", ep + 1, "loss(sampled)", round(tot, 4))
    train_s = time.time() - t0
    # the model ships in bf16: round the weights now, so that calibration,
    # evaluation and the parity sample see exactly the weights wafer loads
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    vp = predict(model, VX, VXL, dev)
    # calibrate on distinct benign valid texts (a repeated header counts once)
    seen = set()
    keep = []
    for i, u in enumerate(va):
        if u["text"] not in seen:
            seen.add(u["text"])
            keep.append(i)
    keep = np.array(keep)
    th_unit = calibrate(vp[keep], va_y[keep], args.fpr_budget)
    th, cal_info = calibrate_joint(vp, va, va_req, args.request_fpr)
    vrows = request_eval(va, va_req, vp, th)
    vm = metrics(vrows)
    tp = predict(model, TX, TXL, dev)
    trows = request_eval(te, te_req, tp, th)
    tm = metrics(trows)
    lab_idx = [i for i, u in enumerate(te) if u["label"] not in ("ignore", "attack_unlabelled")]
    pu, _ = unit_decisions(tp[lab_idx], th)
    um = unit_metrics([CI[te[i]["label"]] for i in lab_idx], pu)
    name = "wafer-sweep-" + cname
    export(model.cpu(), cfg, name, vocab_path, th, mdir)
    model.to(dev)
    ne = sum(p.numel() for n_, p in model.named_parameters() if "embeddings" not in n_)
    mean_tok = float(VXL.float().mean())
    sweep[cname] = {"config": cfg, "params": nparams, "params_non_embedding": ne, "valid_mean_tokens": mean_tok,
                    "cost_proxy": ne * mean_tok, "train_s": round(train_s, 1), "thresholds": th,
                    "calibration": cal_info, "thresholds_equal_share": th_unit,
                    "valid": {k: vm[k] for k in ["tpr_labelled", "fpr", "benign_fp", "benign_requests", "per_class"]},
                    "test": tm, "test_units": um}
    log(cname, "params", nparams, "train_s", round(train_s, 1), "valid tpr", vm["tpr_labelled"], "fpr", vm["fpr"],
        "test tpr", tm["tpr_labelled"], "fpr", tm["fpr"], "csic", tm.get("csic_anomalous_detected"))
    with open(os.path.join(args.out, "test_pred_%s.jsonl" % cname), "w") as f:
        for r in trows:
            f.write(json.dumps(r) + "\n")
    # PyTorch probabilities of test units, for the wafer parity check (float32, one at a time)
    rs = random.Random(args.seed)
    sample = rs.sample(range(len(te)), 400)
    model.eval()
    with open(os.path.join(args.out, "parity_%s.jsonl" % cname), "w") as f:
        with torch.no_grad():
            for i in sample:
                ids = enc([te[i]["text"]], L)[0]
                lg = model.float()(input_ids=torch.tensor([ids], device=dev)).logits[0]
                f.write(json.dumps({"text": te[i]["text"], "ids": ids,
                                    "probs": torch.softmax(lg.double(), -1).tolist()}) + "\n")
    del model, opt
    torch.cuda.empty_cache()
    with open(os.path.join(args.out, "sweep.json"), "w") as f:
        json.dump(sweep, f, indent=1)



def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--fpr-budget", type=float, default=0.001, help="benign units over threshold, all classes")
    ap.add_argument("--request-fpr", type=float, default=0.0005,
                    help="benign validation requests flagged, for the joint thresholds (train/calib.py)")
    ap.add_argument("--pick-margin", type=float, default=0.005)
    ap.add_argument("--name", default="wafer-default-2026.11-r2")
    ap.add_argument("--time-limit", type=float, default=420, help="seconds; later configs are skipped")
    args = ap.parse_args()
    t_start = time.time()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    os.makedirs(args.out, exist_ok=True)

    tr = read_xz(os.path.join(args.units, "train.units.jsonl.xz"))
    va = read_xz(os.path.join(args.units, "valid.units.jsonl.xz"))
    te = read_xz(os.path.join(args.units, "test.units.jsonl.xz"))
    va_req = read_xz(os.path.join(args.units, "valid.requests.jsonl.xz"))
    te_req = read_xz(os.path.join(args.units, "test.requests.jsonl.xz"))
    # training: one example per distinct text; an attack label wins over benign
    lab = {}
    for u in tr:
        if u["label"] == "ignore":
            continue
        l = CI[u["label"]]
        if u["text"] not in lab or (lab[u["text"]] == 0 and l != 0):
            lab[u["text"]] = l
    tr_texts = sorted(lab)
    tr_y = np.array([lab[t] for t in tr_texts])
    va = [u for u in va if u["label"] != "ignore"]
    va_y = np.array([CI[u["label"]] for u in va])
    log("train distinct units", len(tr_texts), dict(collections.Counter(CLASSES[i] for i in tr_y)),
        "valid", len(va), "test", len(te))
    counts = np.bincount(tr_y, minlength=len(CLASSES)).astype(np.float64)
    cw = torch.tensor(np.minimum((counts.max() / np.maximum(counts, 1)) ** 0.5, 20.0), dtype=torch.float32, device=dev)

    sweep = {}
    for cname in args.configs.split(","):
        if time.time() - t_start > args.time_limit:
            log("time limit: skipping", cname)
            continue
        try:
            run_config(args, cname, dev, tr_texts, tr_y, va, va_y, va_req, te, te_req, cw, sweep)
        except Exception:  # noqa: BLE001 - one failed configuration must not lose the others
            import traceback
            traceback.print_exc()
            log(cname, "FAILED")

    if not sweep:
        sys.exit("no configuration trained")
    best = max(v["valid"]["tpr_labelled"] for v in sweep.values())
    ok = [k for k, v in sweep.items() if v["valid"]["tpr_labelled"] >= best - args.pick_margin]
    chosen = min(ok, key=lambda k: sweep[k]["cost_proxy"])
    log("chosen", chosen, "best valid tpr", best)
    d = os.path.join(args.out, "models", "default")
    shutil.copytree(os.path.join(args.out, "models", chosen), d, dirs_exist_ok=True)
    with open(os.path.join(d, "wafer.json")) as f:
        meta = json.load(f)
    meta["name"] = args.name
    with open(os.path.join(d, "wafer.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "chosen.txt"), "w") as f:
        f.write(chosen + "\n")
    log("done in", round(time.time() - t_start, 1), "s")


if __name__ == "__main__":
    main()
