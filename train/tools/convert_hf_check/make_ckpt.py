#!/usr/bin/env python3
"""Tiny random BERT / MobileBERT sequence-classification checkpoints in the Hub layout (pytorch_model.bin)."""
import json, os, sys
import torch
from transformers import (BertConfig, BertForSequenceClassification, MobileBertConfig,
                          MobileBertForSequenceClassification, AutoTokenizer)

root = sys.argv[1]
vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefghijklmnopqrstuvwxyz0123456789") + \
    list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["select", "union", "from", "script", "alert", "or", "and",
    "hello", "world", "etc", "passwd", "users", "where"] + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
texts = ["hello world", "1' OR '1'='1' --", "<script>alert(1)</script>", "../../etc/passwd",
         "SELECT * FROM users WHERE a=1 UNION SELECT passwd", "Ünïcödé façade", ""]
lab = {"id2label": {"0": "benign", "1": "sqli", "2": "xss"}, "label2id": {"benign": 0, "sqli": 1, "xss": 2}}
specs = {
    "bert": (BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=128, **lab), BertForSequenceClassification),
    "mobilebert": (MobileBertConfig(vocab_size=len(vocab), hidden_size=64, embedding_size=32, intra_bottleneck_size=32,
                                    num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
                                    max_position_embeddings=128, **lab), MobileBertForSequenceClassification),
}
for name, (cfg, cls) in specs.items():
    torch.manual_seed(1)
    m = cls(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.2)
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    cfg.save_pretrained(d)
    sd = m.state_dict()
    torch.save({k: v.clone() for k, v in sd.items()}, os.path.join(d, "pytorch_model.bin"))
    if name == "bert":  # old TF-style names and an integer buffer, as convert_hf must undo
        dl = d + "_legacy"
        os.makedirs(dl, exist_ok=True)
        cfg.save_pretrained(dl)
        old = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v.clone()
               for k, v in sd.items()}
        old["bert.embeddings.position_ids"] = torch.arange(128).unsqueeze(0)
        torch.save(old, os.path.join(dl, "pytorch_model.bin"))
    with open(os.path.join(d, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True, "model_max_length": 64, "tokenizer_class": "BertTokenizer"}, f)
    tok = AutoTokenizer.from_pretrained(d)
    with open(os.path.join(d, "expected.jsonl"), "w") as f:
        for t in texts:
            enc = tok([t], truncation=True, max_length=64, return_tensors="pt")
            with torch.no_grad():
                logits = m(**enc).logits[0].tolist()
            f.write(json.dumps({"text": t, "ids": enc["input_ids"][0].tolist(), "logits": logits}) + "\n")
    if name == "bert":
        import shutil
        for f in ("vocab.txt", "tokenizer_config.json", "expected.jsonl"):
            shutil.copy(os.path.join(d, f), os.path.join(d + "_legacy", f))
    print(name, "checkpoint:", sorted(os.listdir(d)))
