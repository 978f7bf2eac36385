"""Request and response bodies: chunked both ways, large bodies streamed with
bounded memory, 100-continue."""

import hashlib
import json
import socket
import subprocess
import threading
import time
import uuid

import pytest

from harness import HTTP, build_request, chunked
from upstreams import pattern_blocks, pattern_bytes, pattern_sha256

MiB = 1 << 20
RSS_LIMIT_KIB = 64 * 1024


def test_chunked_request_body_reaches_upstream_intact(wafer_py):
    data = pattern_bytes(300000)
    with wafer_py.connect() as c:
        c.send(build_request("POST", "/chunked-in", [("Transfer-Encoding", "chunked")]) + chunked(data, 7777))
        r = c.read_response()
        assert r.status == 200
        got = r.json()
        assert got["body_len"] == len(data)
        assert got["body_sha256"] == hashlib.sha256(data).hexdigest()
        # framing toward the upstream is either chunked or a Content-Length, never both
        names = [k.lower() for k, _ in got["headers"]]
        assert not ("content-length" in names and "transfer-encoding" in names)
        assert got["chunked"] or "content-length" in names
        # and the connection is still in sync afterwards
        assert c.request("GET", "/after-chunked").json()["target"] == "/after-chunked"


def test_chunked_request_with_extensions_and_trailers(wafer_py):
    data = b"hello, chunked world" * 50
    with wafer_py.connect() as c:
        c.send(build_request("PUT", "/chunk-ext", [("Transfer-Encoding", "chunked")])
               + chunked(data, 64, ext='name=value;flag;q="quoted \\" string"', trailers=[("X-Checksum", "abc")]))
        r = c.read_response()
        assert r.status == 200
        got = r.json()
        assert got["body_len"] == len(data)
        assert got["body_sha256"] == hashlib.sha256(data).hexdigest()


def test_chunked_request_sent_slowly_in_pieces(wafer_py):
    data = pattern_bytes(50000)
    wire = build_request("POST", "/chunk-slow", [("Transfer-Encoding", "chunked")]) + chunked(data, 1000)
    with wafer_py.connect() as c:
        # split at awkward places: inside the size line, inside CRLFs
        for i in range(0, len(wire), 3001):
            c.send(wire[i:i + 3001])
            time.sleep(0.005)
        r = c.read_response()
        assert r.json()["body_sha256"] == hashlib.sha256(data).hexdigest()


def test_curl_chunked_upload(wafer_py, tmp_path):
    data = pattern_bytes(2 * MiB + 5)
    f = tmp_path / "up.bin"
    f.write_bytes(data)
    p = subprocess.run(["curl", "-sS", "--max-time", "20", "-H", "Transfer-Encoding: chunked",
                        "--data-binary", "@%s" % f, wafer_py.url("/curl-chunked")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert got["body_len"] == len(data)
    assert got["body_sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("chunks,size", [(1, 10), (100, 1), (50, 100000)])
def test_chunked_response_from_upstream(wafer_py, chunks, size):
    with wafer_py.connect() as c:
        r = c.request("GET", "/cr?up_chunks=%d&up_chunk_size=%d" % (chunks, size))
        assert r.status == 200
        assert r.body == pattern_bytes(chunks * size)
        # the client sees a body that is delimited (chunked or Content-Length)
        assert r.header("transfer-encoding") or r.header("content-length")
        assert c.request("GET", "/after-cr").status == 200


def test_chunked_response_through_curl(wafer_py):
    p = subprocess.run(["curl", "-sS", "--max-time", "10", wafer_py.url("/crc?up_chunks=300&up_chunk_size=333")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    assert p.returncode == 0, p.stderr
    assert p.stdout == pattern_bytes(300 * 333)


def _stream_upload(wafer, total, path, chunked_body=False, block=MiB):
    """Sends `total` bytes of the test pattern as a request body from a
    thread while sampling wafer's RSS; returns (response, peak VmHWM KiB)."""
    c = HTTP(wafer.port, timeout=60)
    hdrs = [("Transfer-Encoding", "chunked")] if chunked_body else [("Content-Length", str(total))]
    c.send(build_request("POST", path, hdrs))
    err = []

    def sender():
        try:
            for b in pattern_blocks(total, block):
                if chunked_body:
                    c.sock.sendall(b"%x\r\n" % len(b) + b + b"\r\n")
                else:
                    c.sock.sendall(b)
            if chunked_body:
                c.sock.sendall(b"0\r\n\r\n")
        except OSError as e:
            err.append(e)
    t = threading.Thread(target=sender, daemon=True)
    t.start()
    try:
        r = c.read_response()
    finally:
        t.join(60)
        c.close()
    assert not err, err
    return r, wafer.vm_hwm_kib()


def test_large_upload_256mib_streams_with_bounded_memory(wafer_py):
    total = 256 * MiB
    r, hwm = _stream_upload(wafer_py, total, "/big-up/" + uuid.uuid4().hex)
    assert r.status == 200
    got = r.json()
    assert got["body_len"] == total
    assert got["body_sha256"] == pattern_sha256(total)
    assert hwm < RSS_LIMIT_KIB, "wafer peak RSS %d KiB after a %d MiB upload" % (hwm, total // MiB)


def test_large_chunked_upload_64mib(wafer_py):
    total = 64 * MiB
    r, hwm = _stream_upload(wafer_py, total, "/big-chunked-up", chunked_body=True, block=256 * 1024)
    assert r.status == 200
    got = r.json()
    assert got["body_len"] == total
    assert got["body_sha256"] == pattern_sha256(total)
    assert hwm < RSS_LIMIT_KIB


@pytest.mark.slow
def test_upload_1gib(wafer_py):
    total = 1024 * MiB
    r, hwm = _stream_upload(wafer_py, total, "/gib-up")
    assert r.status == 200
    assert r.json()["body_sha256"] == pattern_sha256(total)
    assert hwm < RSS_LIMIT_KIB


def test_large_download_to_a_slow_reader_is_flow_controlled(wafer_py):
    """A 128 MiB response read slowly: wafer must not buffer it all."""
    total = 128 * MiB
    with wafer_py.connect(timeout=30) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.send(build_request("GET", "/big-down?up_size=%d" % total))
        h = hashlib.sha256()
        n = [0]

        def sink(b):
            h.update(b)
            n[0] += len(b)
            if n[0] < 16 * MiB:
                time.sleep(0.01)  # a slow start: the upstream is much faster than us
        r = c.read_response(sink=sink)
        assert r.status == 200
        assert n[0] == total
        assert h.hexdigest() == pattern_sha256(total)
    assert wafer_py.vm_hwm_kib() < RSS_LIMIT_KIB


def test_expect_100_continue(wafer_py):
    body = b"q" * 5000
    with wafer_py.connect() as c:
        c.send(build_request("POST", "/expect", [("Expect", "100-continue"), ("Content-Length", str(len(body)))]))
        # nothing of the body is sent until the interim response arrives
        c.sock.settimeout(3)
        head = b""
        while b"\r\n\r\n" not in head:
            d = c.sock.recv(4096)
            assert d, "connection closed while waiting for 100 Continue"
            head += d
        assert head.startswith(b"HTTP/1.1 100"), head
        c.buf = head.split(b"\r\n\r\n", 1)[1]
        c.send(body)
        r = c.read_response()
        assert r.status == 200
        got = r.json()
        assert got["body_len"] == len(body)
        assert got["body_sha256"] == hashlib.sha256(body).hexdigest()


def test_expect_100_continue_with_curl(wafer_py, tmp_path):
    data = pattern_bytes(3 * MiB)
    f = tmp_path / "e.bin"
    f.write_bytes(data)
    p = subprocess.run(["curl", "-sS", "-v", "--max-time", "20", "--expect100-timeout", "10", "-H", "Expect: 100-continue",
                        "--data-binary", "@%s" % f, wafer_py.url("/expect-curl")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert p.returncode == 0, p.stderr
    assert b"HTTP/1.1 100" in p.stderr
    assert json.loads(p.stdout)["body_sha256"] == hashlib.sha256(data).hexdigest()


def test_unknown_expectation_is_417(wafer_py, pyup):
    tag = uuid.uuid4().hex
    with wafer_py.connect() as c:
        c.send(build_request("POST", "/expect417/" + tag, [("Expect", "something-else"), ("Content-Length", "3")]) + b"abc")
        r = c.read_response()
        assert r.status == 417
    assert pyup.seen_path(tag) == []
