"""Request-smuggling and malformed-framing shapes over real sockets.

Every case is followed, in the same write, by a second request for
/smuggled-<tag>. wafer must answer the bad request with an error, close the
connection, and never let the upstream see either request (for header-level
errors) or the trailing one (for errors found in a chunked body, whose
headers may already have been forwarded)."""

import time
import uuid

import pytest

from harness import Closed

CRLF = "\r\n"

# name -> (bytes after "POST /s/<tag> HTTP/1.1\r\nHost: x\r\n" unless `raw`, allowed statuses)
HEADER_CASES = {
    "cl_and_te": ("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
    "te_and_cl": ("Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\n", {400}),
    "cl_twice_differing": ("Content-Length: 6\r\nContent-Length: 5\r\n\r\nabcdef", {400}),
    "cl_list_differing": ("Content-Length: 5, 6\r\n\r\nabcdef", {400}),
    "cl_plus_sign": ("Content-Length: +5\r\n\r\nabcde", {400}),
    "cl_negative": ("Content-Length: -1\r\n\r\n", {400}),
    "cl_hex": ("Content-Length: 0x5\r\n\r\nabcde", {400}),
    "cl_inner_space": ("Content-Length: 5 5\r\n\r\nabcde", {400}),
    "cl_empty": ("Content-Length: \r\n\r\n", {400}),
    "cl_overflow": ("Content-Length: 184467440737095516160\r\n\r\n", {400, 413}),
    "te_identity": ("Transfer-Encoding: identity\r\n\r\n", {400, 501}),
    "te_chunked_then_identity": ("Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", {400, 501}),
    "te_gzip_not_final_chunked": ("Transfer-Encoding: gzip\r\n\r\n", {400, 501}),
    "te_unknown": ("Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", {400, 501}),
    "te_chunked_twice": ("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400, 501}),
    "te_space_before_colon": ("Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", {400}),
    "cl_space_before_colon": ("Content-Length : 5\r\n\r\nabcde", {400}),
    "te_obs_fold": ("Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", {400}),
    "obs_fold": ("X-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n", {400}),
    "obs_fold_tab": ("X-Folded: a\r\n\tb\r\nContent-Length: 0\r\n\r\n", {400}),
    "bare_lf_in_headers": ("X-A: 1\nX-B: 2\r\nContent-Length: 0\r\n\r\n", {400}),
    "bare_cr_in_headers": ("X-A: 1\rX-B: 2\r\nContent-Length: 0\r\n\r\n", {400}),
    "nul_in_value": ("X-A: a\x00b\r\nContent-Length: 0\r\n\r\n", {400}),
    "ctl_in_value": ("X-A: a\x07b\r\nContent-Length: 0\r\n\r\n", {400}),
    "space_in_name": ("X A: 1\r\nContent-Length: 0\r\n\r\n", {400}),
    "empty_name": (": 1\r\nContent-Length: 0\r\n\r\n", {400}),
    "name_without_colon": ("X-A\r\nContent-Length: 0\r\n\r\n", {400}),
    "second_host": ("Host: y\r\nContent-Length: 0\r\n\r\n", {400}),
}

RAW_CASES = {
    "bare_lf_everywhere": ("GET /s/{tag} HTTP/1.1\nHost: x\n\n", {400}),
    "no_host": ("GET /s/{tag} HTTP/1.1\r\n\r\n", {400}),
    "te_in_http10": ("POST /s/{tag} HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {400}),
    "bad_method_char": ("G(T /s/{tag} HTTP/1.1\r\nHost: x\r\n\r\n", {400, 501}),
    "double_space_request_line": ("GET  /s/{tag} HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    "lowercase_version": ("GET /s/{tag} http/1.1\r\nHost: x\r\n\r\n", {400}),
    "space_in_target": ("GET /s/{tag} x HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    "ctl_in_target": ("GET /s/{tag}\x01 HTTP/1.1\r\nHost: x\r\n\r\n", {400}),
    "whitespace_before_first_header": ("GET /s/{tag} HTTP/1.1\r\n Host: x\r\n\r\n", {400}),
    "bare_cr_line_end": ("GET /s/{tag} HTTP/1.1\rHost: x\r\n\r\n", {400}),
}

CHUNK_HEAD = "POST /s/{tag} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
BODY_CASES = {
    "chunk_size_not_hex": CHUNK_HEAD + "zz\r\nabc\r\n0\r\n\r\n",
    "chunk_size_overflow": CHUNK_HEAD + "1000000000000000000000003\r\nabc\r\n0\r\n\r\n",
    "chunk_size_negative": CHUNK_HEAD + "-3\r\nabc\r\n0\r\n\r\n",
    "chunk_size_leading_space": CHUNK_HEAD + " 3\r\nabc\r\n0\r\n\r\n",
    "chunk_data_too_long": CHUNK_HEAD + "3\r\nabcX\r\n0\r\n\r\n",
    "chunk_bare_lf": CHUNK_HEAD + "3\nabc\n0\n\n",
    "chunk_ext_bare_lf": CHUNK_HEAD + "3;x\ny\r\nabc\r\n0\r\n\r\n",
    "chunk_trailer_obs_fold": CHUNK_HEAD + "3\r\nabc\r\n0\r\nX-T: a\r\n b\r\n\r\n",
}


def _smuggled(tag):
    return "GET /smuggled-%s HTTP/1.1\r\nHost: x\r\n\r\n" % tag


def _check(wafer, pyup, wire, tag, allowed, header_level):
    with wafer.connect(timeout=5) as c:
        c.send(wire.encode("latin-1"))
        try:
            r = c.read_response()
        except Closed:
            r = None
        if header_level or r is not None:
            assert r is not None, "connection closed without an error response"
            assert r.status in allowed, "got %d, want one of %s" % (r.status, sorted(allowed))
            assert r.header("connection", "").lower() == "close"
        rest, closed = c.rest_until_closed(3)
        assert closed, "connection left open after a rejected request"
        assert b"HTTP/1." not in rest, "a second response followed the error: %r" % rest[:200]
    time.sleep(0.05)
    assert pyup.seen_path("/smuggled-" + tag) == [], "the trailing request reached the upstream"
    if header_level:
        assert pyup.seen_path("/s/" + tag) == [], "the rejected request reached the upstream"
    assert wafer.proc.poll() is None, "wafer died"


@pytest.mark.parametrize("name", sorted(HEADER_CASES))
def test_rejected_header_shapes(wafer_py, pyup, name):
    tag = uuid.uuid4().hex
    extra, allowed = HEADER_CASES[name]
    wire = "POST /s/%s HTTP/1.1\r\nHost: x\r\n" % tag + extra + _smuggled(tag)
    _check(wafer_py, pyup, wire, tag, allowed, True)


@pytest.mark.parametrize("name", sorted(RAW_CASES))
def test_rejected_request_lines(wafer_py, pyup, name):
    tag = uuid.uuid4().hex
    raw, allowed = RAW_CASES[name]
    _check(wafer_py, pyup, raw.replace("{tag}", tag) + _smuggled(tag), tag, allowed, True)


@pytest.mark.parametrize("name", sorted(BODY_CASES))
def test_rejected_chunked_bodies(wafer_py, pyup, name):
    tag = uuid.uuid4().hex
    _check(wafer_py, pyup, BODY_CASES[name].replace("{tag}", tag) + _smuggled(tag), tag, {400}, False)


def test_valid_shapes_are_accepted(wafer_py, pyup):
    """The strictness above must not reject what is valid."""
    tag = uuid.uuid4().hex
    good = [
        "GET /ok/%s/1 HTTP/1.1\r\nHost: x\r\nX-Empty:\r\nX-Tab:\tv\t\r\n\r\n" % tag,
        "POST /ok/%s/2 HTTP/1.1\r\nHost: x\r\nContent-Length: 005\r\n\r\nabcde" % tag,
        "POST /ok/%s/3 HTTP/1.1\r\nHost: x\r\ntransfer-encoding: CHUNKED\r\n\r\n3\r\nabc\r\n0\r\n\r\n" % tag,
        "GET http://x/ok/%s/4 HTTP/1.1\r\nHost: x\r\n\r\n" % tag,
        "OPTIONS * HTTP/1.1\r\nHost: x\r\nX-Tag: %s\r\n\r\n" % tag,
    ]
    with wafer_py.connect() as c:
        for i, g in enumerate(good):
            c.send(g.encode())
            r = c.read_response("GET")
            assert r.status == 200, (i, g, r)
    assert len(pyup.seen_path("/ok/" + tag)) == 4


def test_error_for_one_connection_does_not_affect_others(wafer_py):
    with wafer_py.connect() as good:
        assert good.request("GET", "/before").status == 200
        with wafer_py.connect() as bad:
            bad.send(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
            assert bad.read_response().status == 400
        assert good.request("GET", "/after").status == 200


def test_bad_request_after_good_ones_in_a_pipeline(wafer_py, pyup):
    tag = uuid.uuid4().hex
    wire = ("GET /pl/%s/1 HTTP/1.1\r\nHost: x\r\n\r\n"
            "POST /pl/%s/2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            "POST /pl/%s/3 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            % (tag, tag, tag)) + _smuggled(tag)
    with wafer_py.connect() as c:
        c.send(wire.encode())
        assert c.read_response().json()["target"] == "/pl/%s/1" % tag
        assert c.read_response().json()["body"] == "abc"
        assert c.read_response().status == 400
        _, closed = c.rest_until_closed(3)
        assert closed
    assert pyup.seen_path("/pl/%s/3" % tag) == []
    assert pyup.seen_path("/smuggled-" + tag) == []
