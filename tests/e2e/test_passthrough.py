"""Requests and responses pass through wafer unchanged: methods, bodies
byte for byte, status codes, targets."""

import hashlib
import json
import subprocess

import pytest

from harness import STATIC_SIZES, RETURN_CODES, curl, hdr


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_method_and_body_reach_upstream(wafer_py, method):
    body = ("payload for %s \x00\xff" % method).encode("latin-1") if method not in ("GET", "DELETE", "OPTIONS") else None
    args = ["-X", method, wafer_py.url("/m/%s?x=1&y=%%41" % method)]
    if body is not None:
        args[0:0] = ["--data-binary", "@-"]
    argv = ["curl", "-sS", "--max-time", "10", "-i"] + args
    p = subprocess.run(argv, input=body or b"", stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    assert p.returncode == 0, p.stderr
    head, _, payload = p.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    got = json.loads(payload)
    assert got["method"] == method
    assert got["target"] == "/m/%s?x=1&y=%%41" % method
    if body is not None:
        assert got["body_len"] == len(body)
        assert got["body_sha256"] == hashlib.sha256(body).hexdigest()
    else:
        assert got["body_len"] == 0


def test_head_has_headers_but_no_body(wafer_nginx, nginx):
    path, _ = nginx.files[65537]
    with wafer_nginx.connect() as c:
        r = c.request("HEAD", path)
        assert r.status == 200
        assert r.header("content-length") == "65537"
        assert r.body == b""
        # the connection is still in sync: a GET right after works
        r2 = c.request("GET", path)
        assert r2.status == 200 and len(r2.body) == 65537


@pytest.mark.parametrize("size", STATIC_SIZES)
def test_static_file_byte_for_byte_curl(wafer_nginx, nginx, size):
    path, sha = nginx.files[size]
    status, headers, body = curl([wafer_nginx.url(path)])
    assert status == 200
    assert len(body) == size
    assert hashlib.sha256(body).hexdigest() == sha


def test_static_files_on_one_connection(wafer_nginx, nginx):
    with wafer_nginx.connect() as c:
        for size in STATIC_SIZES:
            path, sha = nginx.files[size]
            r = c.request("GET", path)
            assert r.status == 200
            assert hashlib.sha256(r.body).hexdigest() == sha, size


@pytest.mark.parametrize("code", RETURN_CODES)
def test_status_codes_pass_through(wafer_nginx, code):
    with wafer_nginx.connect() as c:
        r = c.request("GET", "/status/%d" % code)
        assert r.status == code
        if code in (301, 302):
            assert r.header("location")
        # and the connection stays usable
        assert c.request("GET", "/").status == 200


def test_upstream_status_and_headers_from_python_upstream(wafer_py):
    with wafer_py.connect() as c:
        r = c.request("GET", "/x?up_status=201")
        assert r.status == 201
        assert r.header("x-upstream") == "A"
        r = c.request("GET", "/x?up_status=204")
        assert r.status == 204 and r.body == b""
        r = c.request("GET", "/x?up_status=404")
        assert r.status == 404


def test_target_bytes_are_not_rewritten(wafer_py):
    # percent-encodings, dot segments and odd-but-valid characters arrive as sent
    target = "/a/../b/%2e%2E/%2F/c;p=1?q=%00&r=a+b&s=~!$'()*,;=:@/?#"[:-1]
    with wafer_py.connect() as c:
        r = c.request("GET", target)
        assert r.status == 200
        assert r.json()["target"] == target


def test_host_header_is_passed_to_upstream(wafer_py):
    with wafer_py.connect() as c:
        r = c.request("GET", "/host", host="app.example:8443")
        got = r.json()
        assert [v for k, v in got["headers"] if k.lower() == "host"] == ["app.example:8443"]


def test_end_to_end_headers_pass_in_order(wafer_py):
    hs = [("X-One", "1"), ("Cookie", "a=b; c=d"), ("X-One", "2"), ("User-Agent", "e2e/1.0"), ("Accept", "*/*")]
    with wafer_py.connect() as c:
        r = c.request("GET", "/order", headers=hs)
        got = [(k.lower(), v) for k, v in r.json()["headers"]]
        mine = [(k.lower(), v) for k, v in hs]
        seen = [h for h in got if h in mine]
        assert seen == mine


def test_curl_through_nginx_echo(wafer_nginx):
    status, headers, body = curl([wafer_nginx.url("/echo?a=1")])
    assert status == 200
    assert body.startswith(b"method=GET uri=/echo?a=1 ")
    # what nginx, the upstream, received from wafer
    assert b" xff=127.0.0.1 " in body, body
    assert b" via=1.1 " in body, body
    assert b" host=127.0.0.1:%d " % wafer_nginx.port in body, body
    assert b" rid= " not in body, body
    assert hdr(headers, "content-length") == str(len(body))
