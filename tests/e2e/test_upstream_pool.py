"""Several upstream servers (round robin, failover), reuse of pooled
connections that the upstream closed, and upstream response limits."""

import time
import uuid

from harness import closed_port


def test_round_robin_over_two_servers(start_wafer, pyup, pyup_b):
    w = start_wafer(pyup.address, upstream={"servers": [{"address": pyup.address}, {"address": pyup_b.address}]})
    seen = []
    for i in range(8):
        with w.connect() as c:
            seen.append(c.request("GET", "/rr/%d" % i).header("x-upstream"))
    assert seen.count("A") >= 2 and seen.count("B") >= 2, seen


def test_failover_to_the_next_server_when_connect_fails(start_wafer, pyup):
    down = "127.0.0.1:%d" % closed_port()
    w = start_wafer(pyup.address, upstream={"servers": [{"address": down}, {"address": pyup.address}]})
    for i in range(6):
        with w.connect() as c:
            r = c.request("GET", "/fo/%d" % i)
            assert r.status == 200 and r.header("x-upstream") == "A"


def test_all_servers_down_is_502(start_wafer):
    w = start_wafer("127.0.0.1:1", upstream={"servers": [{"address": "127.0.0.1:%d" % closed_port()},
                                                         {"address": "127.0.0.1:%d" % closed_port()}]})
    with w.connect() as c:
        assert c.request("GET", "/alldown").status == 502


def test_pooled_connection_closed_by_upstream_is_not_a_client_error(wafer_py, pyup):
    """The upstream closes its side right after a keep-alive response (as an
    upstream keep-alive timeout does): the next request must not fail."""
    tag = uuid.uuid4().hex
    with wafer_py.connect() as c:
        for i in range(6):
            mode = "?up_mode=close_after" if i % 2 == 0 else ""
            r = c.request("GET", "/ca/%s/%d%s" % (tag, i, mode))
            assert r.status == 200, (i, r)
            assert r.json()["target"].startswith("/ca/%s/%d" % (tag, i))


def test_upstream_response_header_over_limit_is_502(start_wafer, pyup):
    w = start_wafer(pyup.address, limits={"max_header_bytes": "4k"})
    with w.connect() as c:
        r = c.request("GET", "/bighdr?up_big_header=8000")
        assert r.status == 502
        assert r.header("x-big") is None
    with w.connect() as c:
        r = c.request("GET", "/okhdr?up_big_header=1000")
        assert r.status == 200 and len(r.header("x-big")) == 1000


def test_keepalive_zero_uses_a_new_upstream_connection_per_request(start_wafer, pyup):
    w = start_wafer(pyup.address, upstream={"keepalive": 0})
    tag = uuid.uuid4().hex
    with w.connect() as c:
        for i in range(4):
            assert c.request("GET", "/ka0/%s/%d" % (tag, i)).status == 200
    assert len({r["conn_id"] for r in pyup.seen_path(tag)}) == 4


def test_idle_pooled_connections_are_closed_after_idle_timeout(start_wafer, pyup):
    w = start_wafer(pyup.address, upstream={"idle_timeout": "300ms"})
    tag = uuid.uuid4().hex
    with w.connect() as c:
        c.request("GET", "/it/%s/1" % tag)
        first = pyup.seen_path(tag)[0]["conn_id"]
        time.sleep(1.0)
        with pyup.lock:
            still_open = first in pyup.conns
        assert not still_open, "the idle upstream connection was not closed after idle_timeout"
        c.request("GET", "/it/%s/2" % tag)
    conns = [r["conn_id"] for r in pyup.seen_path(tag)]
    assert conns[0] != conns[1]


def test_requests_with_a_body_are_never_resent(wafer_py, pyup):
    """A POST whose upstream connection dies before any response byte must
    not be sent twice (it may not be idempotent); a GET is resent at most once."""
    tag = uuid.uuid4().hex
    with wafer_py.connect() as c:
        assert c.request("GET", "/warm/" + tag).status == 200  # a pooled connection exists now
        r = c.request("POST", "/once/%s?up_mode=close" % tag, body=b"pay")
        assert r.status == 502
    assert len(pyup.seen_path("/once/" + tag)) == 1
    with wafer_py.connect() as c:
        assert c.request("GET", "/warm2/" + tag).status == 200
        r = c.request("GET", "/twice/%s?up_mode=close" % tag)
        assert r.status == 502
    assert 1 <= len(pyup.seen_path("/twice/" + tag)) <= 2
