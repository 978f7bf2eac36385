"""Header handling: hop-by-hop removal both ways, X-Forwarded-For, Via,
Forwarded and the request id."""

import json
import re
import socket
import subprocess
import uuid

import pytest

from harness import build_request
from upstreams import pattern_bytes


def _hdrs(got, name):
    return [v for k, v in got["headers"] if k.lower() == name.lower()]


def test_hop_by_hop_request_headers_are_removed(wafer_py):
    hs = [("Connection", "keep-alive, X-Private, Upgrade"), ("X-Private", "secret"), ("Keep-Alive", "timeout=5"),
          ("TE", "trailers"), ("Upgrade", "websocket"), ("Proxy-Connection", "keep-alive"), ("X-End2end", "kept")]
    with wafer_py.connect() as c:
        got = c.request("GET", "/hop", headers=hs).json()
    names = {k.lower() for k, _ in got["headers"]}
    for gone in ("x-private", "keep-alive", "te", "upgrade", "proxy-connection"):
        assert gone not in names, gone
    # a Connection header toward the upstream may exist, but names only wafer's own choice
    for v in _hdrs(got, "connection"):
        assert "x-private" not in v.lower()
    assert _hdrs(got, "x-end2end") == ["kept"]


def test_hop_by_hop_response_headers_are_removed(wafer_py):
    with wafer_py.connect() as c:
        r = c.request("GET", "/hop-resp?up_hop=1")
        assert r.status == 200
        assert r.header("x-up-hop") is None
        assert r.header("keep-alive") is None
        assert r.header("x-up-end2end") == "kept"
        for v in r.all("connection"):
            assert "x-up-hop" not in v.lower()


def test_x_forwarded_for_is_added(wafer_py):
    with wafer_py.connect() as c:
        got = c.request("GET", "/xff").json()
        assert _hdrs(got, "x-forwarded-for") == ["127.0.0.1"]
        got = c.request("GET", "/xff2", headers=[("X-Forwarded-For", "203.0.113.7")]).json()
        xff = ", ".join(_hdrs(got, "x-forwarded-for"))
        assert re.fullmatch(r"203\.0\.113\.7,\s*127\.0\.0\.1", xff), xff


def test_via_is_added(wafer_py):
    with wafer_py.connect() as c:
        got = c.request("GET", "/via", headers=[("Via", "1.0 earlier")]).json()
    via = ", ".join(_hdrs(got, "via"))
    assert re.fullmatch(r"1\.0 earlier,\s*1\.1 \S+.*", via), via


def test_forwarded_is_off_by_default(wafer_py):
    with wafer_py.connect() as c:
        got = c.request("GET", "/fwd-off").json()
    assert _hdrs(got, "forwarded") == []


def test_forwarded_when_enabled(start_wafer, pyup):
    w = start_wafer(pyup.address, proxy={"forwarded": True, "x_forwarded_for": False, "via": False})
    with w.connect() as c:
        got = c.request("GET", "/fwd-on", host="site.example").json()
    fwd = ", ".join(_hdrs(got, "forwarded")).lower()
    assert re.search(r'for="?127\.0\.0\.1"?', fwd), fwd
    assert _hdrs(got, "x-forwarded-for") == []
    assert _hdrs(got, "via") == []


def test_request_id_is_added_and_unique(wafer_py):
    with wafer_py.connect() as c:
        ids = [_hdrs(c.request("GET", "/rid/%d" % i).json(), "x-request-id") for i in range(5)]
    assert all(len(i) == 1 and len(i[0]) >= 8 for i in ids), ids
    assert len({i[0] for i in ids}) == 5


def test_client_request_id_is_replaced_when_not_trusted(wafer_py):
    with wafer_py.connect() as c:
        got = c.request("GET", "/rid-untrusted", headers=[("X-Request-Id", "client-chosen")]).json()
    assert _hdrs(got, "x-request-id") != ["client-chosen"]
    assert len(_hdrs(got, "x-request-id")) == 1


def test_client_request_id_is_kept_when_trusted(start_wafer, pyup):
    w = start_wafer(pyup.address, proxy={"trust_request_id": True, "request_id_header": "X-Trace"})
    with w.connect() as c:
        got = c.request("GET", "/rid-trusted", headers=[("X-Trace", "abc-123")]).json()
        assert _hdrs(got, "x-trace") == ["abc-123"]
        got = c.request("GET", "/rid-trusted-none").json()
        assert len(_hdrs(got, "x-trace")) == 1 and _hdrs(got, "x-trace")[0]


def test_request_id_matches_access_log(wafer_py):
    tag = uuid.uuid4().hex
    with wafer_py.connect() as c:
        got = c.request("GET", "/rid-log/" + tag).json()
    rid = _hdrs(got, "x-request-id")[0]
    recs = wafer_py.wait_access(lambda r: tag in str(r.get("path")))
    assert len(recs) == 1
    assert recs[0]["request_id"] == rid


def test_content_length_is_not_duplicated_or_lost(wafer_py):
    with wafer_py.connect() as c:
        c.send(build_request("POST", "/cl", body=b"12345"))
        got = c.read_response().json()
    assert _hdrs(got, "content-length") == ["5"]
    assert _hdrs(got, "transfer-encoding") == []


def test_documented_hop_by_hop_list(wafer_py):
    hs = [("Trailer", "X-T"), ("Proxy-Authorization", "Basic eDp5"), ("Connection", "close, X-Gone")]
    with wafer_py.connect() as c:
        c.send(build_request("GET", "/hop2", hs + [("X-Gone", "1")]))
        got = c.read_response().json()
    names = {k.lower() for k, _ in got["headers"]}
    assert not names & {"trailer", "proxy-authorization", "x-gone"}, names


def test_connection_cannot_remove_host_or_framing(wafer_py, pyup):
    """Connection naming Host or Content-Length must not strip them (that
    would turn the body into a second request)."""
    tag = uuid.uuid4().hex
    body = b"GET /smuggled-%s HTTP/1.1\r\nHost: x\r\n\r\n" % tag.encode()
    with wafer_py.connect() as c:
        c.send(build_request("POST", "/conn-cl/" + tag, [("Connection", "Host, Content-Length")], body=body))
        got = c.read_response().json()
    assert _hdrs(got, "host") == ["test.local"]
    assert got["body_len"] == len(body)
    assert pyup.seen_path("/smuggled-" + tag) == []


def test_via_on_responses(wafer_py):
    with wafer_py.connect() as c:
        r = c.request("GET", "/via-resp")
    assert any(re.fullmatch(r"1\.1 \S+.*", v) for v in r.all("via")), r.headers


def test_absolute_form_target_goes_upstream_in_origin_form(wafer_py):
    with wafer_py.connect() as c:
        c.send(b"GET http://app.example:8080/abs/p?q=1 HTTP/1.1\r\nHost: app.example:8080\r\n\r\n")
        got = c.read_response().json()
    assert got["target"] == "/abs/p?q=1"
    assert _hdrs(got, "host") == ["app.example:8080"]


def test_connect_method_is_501(wafer_py, pyup):
    with wafer_py.connect() as c:
        c.send(b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n")
        assert c.read_response().status == 501
    assert pyup.seen(lambda r: r["method"] == "CONNECT") == []


def test_http10_client_gets_a_chunked_upstream_response_decoded(wafer_py):
    with wafer_py.connect() as c:
        c.send(b"GET /h10-chunked?up_chunks=20&up_chunk_size=1000 HTTP/1.0\r\nHost: x\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.header("transfer-encoding") is None
        assert r.body == pattern_bytes(20000)
        assert c.eof or c.wait_closed(3)


def _ipv6_port():
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1 on this machine")
    port = s.getsockname()[1]
    s.close()
    return port


def test_ipv6_listener(start_wafer, pyup):
    port = _ipv6_port()
    w = start_wafer(pyup.address, listen=[{"address": "[::1]:%d" % port}], proxy={"forwarded": True})
    p = subprocess.run(["curl", "-sS", "-g", "--max-time", "5", w.url("/v6")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert _hdrs(got, "x-forwarded-for") == ["::1"]
    assert 'for="[::1]"' in ", ".join(_hdrs(got, "forwarded"))
