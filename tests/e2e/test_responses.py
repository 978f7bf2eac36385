"""How wafer frames what the upstream sends: close-delimited bodies, 1xx,
304, and hostile or broken responses (502, never a desync)."""

import hashlib
import socket
import time
import uuid

from harness import build_request
from upstreams import pattern_bytes


def test_close_delimited_response_is_delivered_whole(wafer_py):
    with wafer_py.connect(timeout=10) as c:
        c.send(build_request("GET", "/eof?up_mode=eof_body&up_size=300000"))
        r = c.read_response()
        assert r.status == 200
        assert hashlib.sha256(r.body).hexdigest() == hashlib.sha256(pattern_bytes(300000)).hexdigest()
        # if wafer kept the client connection, the body had to be delimited for it
        if r.header("content-length") is None and "chunked" not in r.header("transfer-encoding", ""):
            assert c.eof, "a close-delimited body must end with the connection"
        elif not c.eof:
            assert c.request("GET", "/after-eof").status == 200


def test_304_and_204_have_no_body_and_keep_the_connection(wafer_py):
    with wafer_py.connect() as c:
        for code in (304, 204, 304):
            r = c.request("GET", "/nb?up_status=%d" % code)
            assert r.status == code and r.body == b""
        assert c.request("GET", "/after-nb").status == 200


def test_interim_103_then_final_response(wafer_py):
    with wafer_py.connect() as c:
        r = c.request("GET", "/interim?up_mode=interim")
        assert r.status == 200
        assert r.json()["target"] == "/interim?up_mode=interim"
        assert all(s == 103 for s, _ in r.interim)
        assert c.request("GET", "/after-interim").status == 200


def test_upstream_response_with_cl_and_te_is_502(wafer_py):
    tag = uuid.uuid4().hex
    with wafer_py.connect() as c:
        r = c.request("GET", "/clte/%s?up_mode=cl_te" % tag)
        assert r.status == 502
        assert b"hello" not in r.body


def test_upstream_response_with_bad_content_length_is_502(wafer_py):
    with wafer_py.connect() as c:
        r = c.request("GET", "/badcl?up_mode=bad_cl")
        assert r.status == 502


def test_stray_bytes_after_upstream_response_never_reach_a_client(wafer_py, pyup):
    """The upstream sends more than its Content-Length: the extra bytes must
    not become the response to someone's next request on a reused upstream
    connection."""
    with wafer_py.connect() as c:
        r = c.request("GET", "/overflow?up_mode=cl_overflow")
        assert r.status == 200 and r.body == b"hello"
        for i in range(3):
            r = c.request("GET", "/after-overflow/%d" % i)
            assert r.header("x-smuggled") is None, "stray upstream bytes were served as a response"
            assert r.status == 200 and r.json()["target"] == "/after-overflow/%d" % i
    with wafer_py.connect() as c2:
        r = c2.request("GET", "/after-overflow/other")
        assert r.header("x-smuggled") is None
        assert r.json()["target"] == "/after-overflow/other"


def test_client_abort_while_upstream_is_slow(wafer_py):
    for i in range(3):
        s = socket.create_connection(("127.0.0.1", wafer_py.port), timeout=2)
        s.sendall(build_request("GET", "/abort/%d?up_delay_headers=300" % i))
        s.close()
    time.sleep(0.5)
    with wafer_py.connect() as c:
        for i in range(3):
            assert c.request("GET", "/after-abort/%d" % i).json()["target"] == "/after-abort/%d" % i
    assert wafer_py.proc.poll() is None


def test_client_abort_mid_upload(wafer_py, pyup):
    tag = uuid.uuid4().hex
    s = socket.create_connection(("127.0.0.1", wafer_py.port), timeout=2)
    s.sendall(build_request("POST", "/abort-up/" + tag, [("Content-Length", str(10 << 20))]))
    s.sendall(b"a" * (1 << 20))
    s.close()
    time.sleep(0.3)
    # the half-sent request must not complete at the upstream with other bytes
    assert [r for r in pyup.seen_path(tag) if r["body_len"] == 10 << 20] == []
    with wafer_py.connect() as c:
        for i in range(3):
            r = c.request("POST", "/after-abort-up/%d" % i, body=b"xyz")
            assert r.json()["body"] == "xyz"


def test_client_half_close_after_request_still_gets_response(wafer_py):
    """A client may shut down its sending side once the request is out and
    still read the response."""
    with wafer_py.connect() as c:
        c.send(build_request("GET", "/half-close?up_delay_headers=200", [("Connection", "close")]))
        c.sock.shutdown(socket.SHUT_WR)
        r = c.read_response()
        assert r.status == 200
        assert r.json()["target"] == "/half-close?up_delay_headers=200"


def test_endless_interim_responses_are_cut_off(wafer_py):
    """An upstream that keeps sending 1xx responses cannot hold the exchange
    forever (wafer refuses more than 16: 502)."""
    with wafer_py.connect() as c:
        r = c.request("GET", "/many-interim?up_mode=interim&up_interim=40")
        assert r.status == 502
        assert len(r.interim) <= 16
    with wafer_py.connect() as c:
        r = c.request("GET", "/some-interim?up_mode=interim&up_interim=3")
        assert r.status == 200
