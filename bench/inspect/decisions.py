#!/usr/bin/env python3
"""Sends every request of a labelled sample (tests/fixtures/detection/sample.jsonl: {"raw", "id", "label", ...})
once to a server, each on a connection of its own, and prints 'id status label' per request; a request that got no
response prints status 0. bench/inspect/run.sh compares two servers' outputs (CPU and GPU backends).

  python3 bench/inspect/decisions.py SAMPLE.jsonl HOST PORT
"""
import json
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check import read_response  # noqa: E402  (bench/e2e/check.py, or a copy beside this file)


def main():
    path, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            raw = r["raw"].encode("utf-8", "surrogateescape")
            status = 0
            try:
                with socket.create_connection((host, port), timeout=30) as s:
                    s.sendall(raw)
                    status, _, _ = read_response(s, b"")
            except (OSError, ConnectionError, ValueError, IndexError):
                pass
            print(r.get("id"), status, r.get("label"))


if __name__ == "__main__":
    main()
