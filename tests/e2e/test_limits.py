"""Configured limits: header bytes, header count, URI length, body size,
connections. Over a limit: the documented status and a closed connection,
and nothing reaches the upstream."""

import hashlib
import socket
import time
import uuid

import pytest

from harness import Closed, Wafer, build_request, chunked, finish_wafer

KiB = 1024
LIMITS = {"max_header_bytes": "4k", "max_headers": 20, "max_uri": "1k", "max_body": "1m"}


@pytest.fixture(scope="module")
def wafer_lim(wafer_binary, pyup, tmp_path_factory):
    w = Wafer(pyup.address, str(tmp_path_factory.mktemp("wafer")), limits=LIMITS).start()
    yield w
    finish_wafer(w)


def _rejected(w, pyup, wire, status, tag):
    with w.connect() as c:
        c.send(wire)
        r = c.read_response()
        assert r.status == status
        _, closed = c.rest_until_closed(3)
        assert closed
    time.sleep(0.05)
    assert pyup.seen_path(tag) == []


def test_header_block_over_max_header_bytes_is_431(wafer_lim, pyup):
    tag = uuid.uuid4().hex
    _rejected(wafer_lim, pyup, build_request("GET", "/big-h/" + tag, [("X-Big", "a" * 5000)]), 431, tag)


def test_many_mid_size_headers_over_max_header_bytes_is_431(wafer_lim, pyup):
    tag = uuid.uuid4().hex
    hs = [("X-H%d" % i, "b" * 300) for i in range(15)]
    _rejected(wafer_lim, pyup, build_request("GET", "/mid-h/" + tag, hs), 431, tag)


def test_too_many_headers_is_431(wafer_lim, pyup):
    tag = uuid.uuid4().hex
    hs = [("X-N%d" % i, "1") for i in range(30)]
    _rejected(wafer_lim, pyup, build_request("GET", "/many-h/" + tag, hs), 431, tag)


def test_headers_within_limits_pass(wafer_lim):
    hs = [("X-N%d" % i, "c" * 100) for i in range(15)]
    with wafer_lim.connect() as c:
        assert c.request("GET", "/ok-h", hs).status == 200


def test_uri_over_max_uri_is_414(wafer_lim, pyup):
    tag = uuid.uuid4().hex
    _rejected(wafer_lim, pyup, build_request("GET", "/long/%s?%s" % (tag, "u" * 2000)), 414, tag)


def test_uri_just_under_max_uri_passes(wafer_lim):
    target = "/u?" + "v" * 900
    with wafer_lim.connect() as c:
        r = c.request("GET", target)
        assert r.status == 200 and r.json()["target"] == target


def test_content_length_over_max_body_is_413_before_the_body(wafer_lim, pyup):
    tag = uuid.uuid4().hex
    with wafer_lim.connect() as c:
        # only the head is sent: the answer must not wait for 2 MiB of body
        c.send(build_request("POST", "/cl-big/" + tag, [("Content-Length", str(2 << 20))]))
        r = c.read_response()
        assert r.status == 413
        _, closed = c.rest_until_closed(3)
        assert closed
    assert pyup.seen_path(tag) == []


def test_body_of_exactly_max_body_passes(wafer_lim):
    data = b"m" * (1 << 20)
    with wafer_lim.connect() as c:
        r = c.request("POST", "/max-body", body=data)
        assert r.status == 200
        assert r.json()["body_sha256"] == hashlib.sha256(data).hexdigest()


def test_chunked_body_over_max_body_is_stopped(wafer_lim, pyup):
    tag = uuid.uuid4().hex
    data = b"n" * (1536 * KiB)
    with wafer_lim.connect() as c:
        try:
            c.send(build_request("POST", "/ch-big/" + tag, [("Transfer-Encoding", "chunked")]) + chunked(data, 64 * KiB))
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            r = c.read_response()
            assert r.status == 413
        except Closed:
            pass  # headers already forwarded: closing is the only way to stop it
        _, closed = c.rest_until_closed(3)
        assert closed
    time.sleep(0.05)
    # the upstream never receives a complete body over the limit
    assert [r for r in pyup.seen_path(tag) if r["body_len"] > (1 << 20)] == []


def test_max_connections(start_wafer, pyup):
    w = start_wafer(pyup.address, limits={"max_connections": 4})
    held = [w.connect() for _ in range(4)]
    try:
        for i, c in enumerate(held):
            assert c.request("GET", "/mc/%d" % i).status == 200
        extra = socket.create_connection(("127.0.0.1", w.port), timeout=2)
        try:
            extra.sendall(build_request("GET", "/mc/extra"))
            extra.settimeout(1.0)
            try:
                d = extra.recv(4096)
            except (socket.timeout, ConnectionResetError):
                d = b""
            assert not d.startswith(b"HTTP/1.1 200"), "a fifth connection was served with max_connections: 4"
        finally:
            extra.close()
        for c in held:
            assert c.request("GET", "/mc/still").status == 200
    finally:
        for c in held:
            c.close()
    time.sleep(0.2)
    with w.connect() as c:
        assert c.request("GET", "/mc/after").status == 200
