"""Keep-alive and pipelining on the client side; connection reuse on the
upstream side."""

import hashlib
import uuid

from harness import build_request


def test_many_requests_on_one_client_connection(wafer_py):
    tag = uuid.uuid4().hex
    with wafer_py.connect() as c:
        for i in range(20):
            r = c.request("GET", "/ka/%s/%d" % (tag, i))
            assert r.status == 200
            assert r.json()["target"] == "/ka/%s/%d" % (tag, i)
            assert r.header("connection", "").lower() != "close"


def test_upstream_connection_is_reused(wafer_py, pyup):
    tag = uuid.uuid4().hex
    with wafer_py.connect() as c:
        for i in range(10):
            assert c.request("GET", "/reuse/%s/%d" % (tag, i)).status == 200
    # and across client connections, one after another
    for i in range(5):
        with wafer_py.connect() as c:
            assert c.request("GET", "/reuse/%s/n%d" % (tag, i)).status == 200
    seen = pyup.seen_path(tag)
    assert len(seen) == 15
    conns = {r["conn_id"] for r in seen}
    # sequential requests with keepalive on need one upstream connection; allow a little slack
    assert len(conns) <= 2, "upstream connections used for 15 sequential requests: %d" % len(conns)
    assert max(r["conn_request"] for r in seen) >= 9


def test_pipelined_requests_answered_in_order(wafer_py):
    tag = uuid.uuid4().hex
    reqs = b"".join(build_request("GET", "/pipe/%s/%d" % (tag, i)) for i in range(10))
    with wafer_py.connect() as c:
        c.send(reqs)
        for i in range(10):
            r = c.read_response()
            assert r.status == 200
            assert r.json()["target"] == "/pipe/%s/%d" % (tag, i)


def test_pipelined_mixed_methods_with_bodies(wafer_py):
    tag = uuid.uuid4().hex
    bodies = [b"", b"x" * 10, b"y" * 100000, b"", b"z" * 3]
    methods = ["GET", "POST", "PUT", "HEAD", "DELETE"]
    data = b""
    for i, (m, b) in enumerate(zip(methods, bodies)):
        data += build_request(m, "/pm/%s/%d" % (tag, i), body=b if m in ("POST", "PUT", "DELETE") else None)
    with wafer_py.connect() as c:
        c.send(data)
        for i, (m, b) in enumerate(zip(methods, bodies)):
            r = c.read_response(m)
            assert r.status == 200
            if m == "HEAD":
                assert r.body == b""
                continue
            got = r.json()
            assert got["method"] == m and got["target"] == "/pm/%s/%d" % (tag, i)
            assert got["body_sha256"] == hashlib.sha256(b).hexdigest()


def test_pipelined_large_responses_stay_in_order(wafer_nginx, nginx):
    sizes = [(1 << 20) + 7, 1, 65537, 5 * (1 << 20) + 3, 0]
    data = b"".join(build_request("GET", nginx.files[s][0]) for s in sizes)
    with wafer_nginx.connect(timeout=10) as c:
        c.send(data)
        for s in sizes:
            r = c.read_response()
            assert r.status == 200
            assert hashlib.sha256(r.body).hexdigest() == nginx.files[s][1]


def test_connection_close_from_client(wafer_py):
    with wafer_py.connect() as c:
        r = c.request("GET", "/close", headers=[("Connection", "close")])
        assert r.status == 200
        assert c.wait_closed(3)


def test_http10_closes_by_default_and_keeps_alive_on_request(wafer_py):
    with wafer_py.connect() as c:
        c.send(b"GET /h10 HTTP/1.0\r\nHost: t\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert c.wait_closed(3)
    with wafer_py.connect() as c:
        c.send(b"GET /h10ka HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        # the response must be delimited for an HTTP/1.0 keep-alive client
        if r.header("connection", "").lower() == "keep-alive":
            assert r.header("content-length") is not None
            c.send(b"GET /h10ka2 HTTP/1.0\r\nHost: t\r\n\r\n")
            assert c.read_response().status == 200


def test_upstream_connection_close_is_honoured(wafer_py, pyup):
    # the upstream answers with Connection: close: wafer must not reuse that
    # upstream connection, and the client connection stays open
    tag = uuid.uuid4().hex
    with wafer_py.connect() as c:
        for i in range(4):
            r = c.request("GET", "/upclose/%s/%d?up_close=1" % (tag, i))
            assert r.status == 200
            assert r.header("connection", "").lower() != "close"
        assert c.request("GET", "/upclose/%s/after" % tag).status == 200
    seen = pyup.seen_path("/upclose/" + tag)
    assert len(seen) == 5
    assert len({r["conn_id"] for r in seen}) == 5


def test_http10_requests_go_upstream_as_http11_with_a_host(wafer_py):
    with wafer_py.connect() as c:
        c.send(b"GET /v10 HTTP/1.0\r\n\r\n")
        got = c.read_response().json()
    assert got["version"] == "HTTP/1.1"
    hosts = [v for k, v in got["headers"] if k.lower() == "host"]
    assert len(hosts) == 1 and hosts[0]
