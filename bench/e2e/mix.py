#!/usr/bin/env python3
"""Build the request mix of bench/e2e from a labelled sample (bench/detection/sample.py's format: one JSON object a
line with "raw" and "label").

Benign requests are the sample's "benign" rows of three shapes: GET with a query string, form POST
(application/x-www-form-urlencoded) and JSON POST (application/json); they are drawn by shape with the weights of
--mix. Attacks are the rows labelled with an attack class (sqli, xss, cmdi, traversal, other_injection; CSIC 2010's
"attack_unlabelled" is left out: it is not known which of them carry an attack), GET or POST of any shape, spread
evenly through the list so that --attack-share of it is attacks. Every pool is shuffled with a fixed seed and taken
in turn, so the same sample and options always give the same list.

Each request is rewritten into the form it takes on the wire: origin-form target, HTTP/1.1, the sample's headers
but Host (replaced by --host), Content-Length (recomputed), and the hop-by-hop and framing headers (Connection,
Keep-Alive, Transfer-Encoding, TE, Upgrade, Expect, Proxy-Connection) dropped; a GET loses any body.

Writes two files:
  OUT.wrk    for bench/e2e/mix.lua: for each request, its length in bytes on one line, then the bytes
  OUT.jsonl  one JSON object a line: {"label", "attack", "shape", "raw"} (bench/e2e/check.py's input)
Counts go to stderr as JSON.

  python3 bench/e2e/mix.py --sample tests/fixtures/detection/sample.jsonl --out /tmp/mix [--count 2000]
         [--attack-share 0.05] [--mix 60:25:15] [--seed 1] [--host localhost]
"""
import argparse
import json
import random
import sys
from urllib.parse import urlsplit

ATTACK_LABELS = {"sqli", "xss", "cmdi", "traversal", "other_injection"}
DROP = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "te", "upgrade", "expect",
        "proxy-connection"}


def parse(raw):
    """(method, origin-form target, [(name, value)], body bytes) or None when the request is not usable."""
    data = raw.encode("utf-8", "surrogateescape")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return None
    method, target = parts[0].decode("latin-1"), parts[1]
    if target.lower().startswith((b"http://", b"https://")):
        u = urlsplit(target.decode("latin-1"))
        target = (u.path or "/").encode("latin-1") + (b"?" + u.query.encode("latin-1") if u.query else b"")
    if not target.startswith(b"/"):
        return None
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            return None
        headers.append((name, value.strip()))
    return method, target, headers, body


def shape(method, target, headers):
    ctype = b""
    for n, v in headers:
        if n.lower() == b"content-type":
            ctype = v.split(b";")[0].strip().lower()
    if method == "GET":
        return "get" if b"?" in target else "get_noquery"
    if method == "POST" and ctype == b"application/x-www-form-urlencoded":
        return "form"
    if method == "POST" and ctype == b"application/json":
        return "json"
    return method.lower() + "_other"


def wire(method, target, headers, body, host):
    if method == "GET":
        body = b""
    out = [method.encode("latin-1") + b" " + target + b" HTTP/1.1", b"Host: " + host.encode("latin-1")]
    out += [n + b": " + v for n, v in headers if n.lower().decode("latin-1") not in DROP]
    if body or method == "POST":
        out.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(out) + b"\r\n\r\n" + body


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", required=True)
    ap.add_argument("--out", required=True, help="output path without extension")
    ap.add_argument("--count", type=int, default=2000, help="requests in the list (wrk cycles through it)")
    ap.add_argument("--attack-share", type=float, default=0.05)
    ap.add_argument("--mix", default="60:25:15", help="weights of benign GET-with-query : form POST : JSON POST")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--host", default="localhost")
    args = ap.parse_args()
    if not 0 <= args.attack_share <= 1 or args.count < 1:
        ap.error("--attack-share must be in [0, 1] and --count at least 1")
    weights = [float(w) for w in args.mix.split(":")]
    if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
        ap.error("--mix takes three non-negative weights GET:FORM:JSON")

    pools = {"get": [], "form": [], "json": [], "attack": []}
    skipped = 0
    with open(args.sample, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            p = parse(row["raw"])
            if p is None:
                skipped += 1
                continue
            method, target, headers, body = p
            s = shape(method, target, headers)
            label = row["label"]
            rec = {"label": label, "shape": s, "raw": wire(method, target, headers, body, args.host)}
            if label in ATTACK_LABELS and method in ("GET", "POST"):
                rec["attack"] = True
                pools["attack"].append(rec)
            elif label == "benign" and s in ("get", "form", "json"):
                rec["attack"] = False
                pools[s].append(rec)
    rng = random.Random(args.seed)
    for p in pools.values():
        rng.shuffle(p)
    shapes = [s for s, w in zip(("get", "form", "json"), weights) if w > 0 and pools[s]]
    if not shapes:
        sys.exit("mix.py: no benign request of the asked shapes in %s" % args.sample)
    if args.attack_share > 0 and not pools["attack"]:
        sys.exit("mix.py: no attack request in %s" % args.sample)
    sw = [weights[("get", "form", "json").index(s)] for s in shapes]

    n_attack = round(args.count * args.attack_share)
    # attack slots spread evenly: slot i is an attack when floor((i+1)*a/n) > floor(i*a/n)
    slots = [(i + 1) * n_attack // args.count > i * n_attack // args.count for i in range(args.count)]
    # benign shapes in proportion to their weights (largest remainder, deterministic), then interleaved
    n_benign = args.count - n_attack
    quota = [w / sum(sw) * n_benign for w in sw]
    counts = [int(q) for q in quota]
    for i in sorted(range(len(sw)), key=lambda i: quota[i] - counts[i], reverse=True)[: n_benign - sum(counts)]:
        counts[i] += 1
    order = [s for s, c in zip(shapes, counts) for _ in range(c)]
    rng.shuffle(order)
    nexti = {k: 0 for k in pools}
    picked = []
    bi = 0
    for is_attack in slots:
        key = "attack" if is_attack else order[bi]
        if not is_attack:
            bi += 1
        pool = pools[key]
        picked.append(pool[nexti[key] % len(pool)])
        nexti[key] += 1

    with open(args.out + ".wrk", "wb") as f:
        for r in picked:
            f.write(b"%d\n" % len(r["raw"]))
            f.write(r["raw"])
    with open(args.out + ".jsonl", "w", encoding="utf-8") as f:
        for r in picked:
            f.write(json.dumps({"label": r["label"], "attack": r["attack"], "shape": r["shape"],
                                "raw": r["raw"].decode("utf-8", "surrogateescape")}, ensure_ascii=True) + "\n")
    distinct = {k: min(len(pools[k]), nexti[k]) for k in pools}
    json.dump({"sample": args.sample, "count": len(picked), "attacks": n_attack, "benign_by_shape":
               dict(zip(shapes, counts)), "pool_sizes": {k: len(v) for k, v in pools.items()},
               "distinct_used": distinct, "unparsable_skipped": skipped,
               "mean_bytes": round(sum(len(r["raw"]) for r in picked) / len(picked))}, sys.stderr)
    sys.stderr.write("\n")


if __name__ == "__main__":
    main()
