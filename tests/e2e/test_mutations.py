"""Mutated requests over real sockets (a fixed seed, so failures repeat):
wafer answers each with a well-formed response or closes, never crashes,
and never lets the bytes after a rejected request through as a request."""

import random
import socket
import uuid

from harness import Closed

BASES = [
    b"GET /m/{tag}?a=1&b=%20 HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n",
    b"POST /m/{tag} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
    b"PUT /m/{tag} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: v\r\n\r\n",
]
NOISE = [b"\r", b"\n", b"\r\n", b"\x00", b" ", b"\t", b":", b";", b",", b"0", b"f", b"-", b"\x7f", b"\xff",
         b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n", b"\r\n ", b"chunked"]
ALLOWED = {200, 400, 408, 413, 414, 417, 431, 501, 505}


def _mutate(rnd, data):
    data = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.random()
        pos = rnd.randrange(len(data) + 1)
        if op < 0.4:
            data[pos:pos] = rnd.choice(NOISE)
        elif op < 0.7 and len(data) > 1:
            del data[pos:pos + rnd.randint(1, 3)]
        elif len(data) > 0:
            data[min(pos, len(data) - 1)] = rnd.randrange(256)
    return bytes(data)


def test_mutated_requests(wafer_py, pyup):
    rnd = random.Random(20261121)
    run = uuid.uuid4().hex[:12]
    statuses = {}
    rejected = []
    for i in range(1500):
        tag = "%s-%d" % (run, i)
        base = rnd.choice(BASES).replace(b"{tag}", tag.encode())
        wire = _mutate(rnd, base) + b"GET /smuggled-%s HTTP/1.1\r\nHost: x\r\n\r\n" % tag.encode()
        with wafer_py.connect(timeout=5) as c:
            c.send(wire)
            try:
                r = c.read_response()
            except Closed:
                statuses["closed"] = statuses.get("closed", 0) + 1
                continue
            except (TimeoutError, socket.timeout):
                statuses["waiting"] = statuses.get("waiting", 0) + 1  # e.g. a length longer than what was sent
                continue
            assert r.status in ALLOWED, (i, wire, r)
            statuses[r.status] = statuses.get(r.status, 0) + 1
            if r.status == 400:
                rejected.append((tag, wire))
        assert wafer_py.proc.poll() is None, "wafer died on %r" % wire
    assert statuses.get(400, 0) > 200 and statuses.get(200, 0) > 50, statuses
    # a mutation can yield a valid request (whose body may swallow the
    # trailing one), but after a 400 the trailing request must never arrive
    arrived = {r["target"] for r in pyup.seen_path("/smuggled-" + run)}
    for tag, wire in rejected:
        assert "/smuggled-" + tag not in arrived, "a request after a 400 reached the upstream: %r" % wire
