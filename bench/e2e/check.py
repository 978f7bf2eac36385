#!/usr/bin/env python3
"""Correctness pass of bench/e2e: send every distinct request of a mix (bench/e2e/mix.py's OUT.jsonl) once to a
server, one at a time over a keep-alive connection (a new one whenever the server closes it), and count how the
attacks and the benign requests were answered. Prints one JSON object:
  {"attack": N, "attack_403": N, "benign": N, "benign_403": N, "other": {"STATUS": N}, "errors": N,
   "attack_by_label": {"sqli": [N, N_403], ...}}

  python3 bench/e2e/check.py MIX.jsonl HOST PORT
"""
import collections
import json
import socket
import sys


def read_response(sock, buf):
    """(status, keep_alive, rest of buf); raises ConnectionError when the server closed too early."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response head")
        buf += chunk
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    fields = {}
    for line in lines[1:]:
        n, _, v = line.partition(b":")
        fields[n.strip().lower()] = v.strip().lower()
    keep = fields.get(b"connection") != b"close"
    if b"chunked" in fields.get(b"transfer-encoding", b""):
        while True:
            while b"\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed in a chunked body")
                buf += chunk
            size_line, _, buf = buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(buf) < size + 2:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed in a chunk")
                buf += chunk
            buf = buf[size + 2:]
            if size == 0:
                break
    elif b"content-length" in fields:
        size = int(fields[b"content-length"])
        while len(buf) < size:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed in a body")
            buf += chunk
        buf = buf[size:]
    else:
        keep = False  # body ends at close: read it all
        while sock.recv(65536):
            pass
        buf = b""
    return status, keep, buf


def main():
    path, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    seen = set()
    reqs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["raw"] not in seen:
                seen.add(r["raw"])
                reqs.append(r)
    res = {"attack": 0, "attack_403": 0, "benign": 0, "benign_403": 0, "other": collections.Counter(), "errors": 0}
    by_label = collections.defaultdict(lambda: [0, 0])
    sock, buf = None, b""
    for r in reqs:
        raw = r["raw"].encode("utf-8", "surrogateescape")
        status = None
        for _attempt in range(2):
            try:
                if sock is None:
                    sock = socket.create_connection((host, port), timeout=30)
                    buf = b""
                sock.sendall(raw)
                status, keep, buf = read_response(sock, buf)
                if not keep:
                    sock.close()
                    sock = None
                break
            except (OSError, ConnectionError, ValueError, IndexError):
                if sock is not None:
                    sock.close()
                sock = None
        kind = "attack" if r["attack"] else "benign"
        if status is None:
            res["errors"] += 1
            continue
        res[kind] += 1
        if r["attack"]:
            by_label[r["label"]][0] += 1
        if status == 403:
            res[kind + "_403"] += 1
            if r["attack"]:
                by_label[r["label"]][1] += 1
        elif not 200 <= status < 300:
            res["other"][str(status)] += 1
    if sock is not None:
        sock.close()
    res["attack_by_label"] = dict(sorted(by_label.items()))
    json.dump(res, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
