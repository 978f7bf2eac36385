"""Upstream pools across several real upstreams: distribution per algorithm,
failover when a member is killed and recovery when it returns, no idempotent
request lost on a member's death, 503 when no member is up."""

import signal
import socket
import struct
import threading
import time
import uuid

import pytest

from counters import counters
from harness import closed_port
from upstreams import PyUpstream


@pytest.fixture
def ups():
    """Three fresh upstreams (A, B, C) that tests may kill and restart."""
    made = [PyUpstream(n) for n in "ABC"]
    yield made
    for u in made:
        u.stop()


def servers(*us, **extra):
    return [dict({"address": u.address}, **extra) for u in us]


def hits(w, n, path="/b", headers=None):
    out = []
    with w.connect() as c:
        for i in range(n):
            r = c.request("GET", "%s/%d" % (path, i), headers=headers)
            assert r.status == 200, r
            out.append(r.header("x-upstream"))
    return out


def test_weighted_round_robin_follows_the_weights(start_wafer, ups):
    a, b, c = ups
    w = start_wafer(a.address, upstream={"servers": [{"address": a.address, "weight": 3},
                                                     {"address": b.address, "weight": 1},
                                                     {"address": c.address, "weight": 2}]})
    seen = hits(w, 60)
    assert (seen.count("A"), seen.count("B"), seen.count("C")) == (30, 10, 20), seen
    # smooth: the heavy member's turns are spread, never three in a row twice over
    assert "AAAA" not in "".join(seen)


def test_round_robin_shared_by_two_workers(start_wafer, ups):
    a, b, _ = ups
    w = start_wafer(a.address, workers=2, upstream={"servers": servers(a, b)})
    seen = []
    for i in range(20):  # a new connection each time: either worker may take it
        with w.connect() as c:
            seen.append(c.request("GET", "/w2/%d" % i).header("x-upstream"))
    assert abs(seen.count("A") - seen.count("B")) <= 2, seen


def test_least_conn_avoids_the_busy_member(start_wafer, ups):
    a, b, _ = ups
    w = start_wafer(a.address, upstream={"servers": servers(a, b), "balance": "least_conn", "timeout": "10s"})
    slow = w.connect()
    slow.send(b"GET /lc/slow?up_delay_headers=2500 HTTP/1.1\r\nHost: t\r\n\r\n")
    time.sleep(0.3)
    busy = (a.seen_path("/lc/slow") and "A") or (b.seen_path("/lc/slow") and "B")
    assert busy, "the slow request did not reach an upstream"
    seen = hits(w, 8, "/lc/quick")
    assert busy not in seen, (busy, seen)
    assert slow.read_response().status == 200
    slow.close()


def test_consistent_hash_on_a_header_keeps_users_on_members(start_wafer, ups):
    a, b, c = ups
    w = start_wafer(a.address, upstream={"servers": servers(a, b, c), "balance": "hash", "hash_key": "header:X-User",
                                         "passive": {"max_fails": 0}, "timeout": "3s"})
    users = ["user-%d" % i for i in range(30)]
    where = {}
    with w.connect() as conn:
        for u in users:
            got = {conn.request("GET", "/h/%s/%d" % (u, k), headers=[("X-User", u)]).header("x-upstream")
                   for k in range(3)}
            assert len(got) == 1, (u, got)
            where[u] = got.pop()
    assert len(set(where.values())) == 3, where  # 30 users over 3 members: each gets some
    # B dies: its users move, nobody else's does
    b.stop()
    with w.connect() as conn:
        for u in users:
            r = conn.request("GET", "/h2/%s" % u, headers=[("X-User", u)])
            assert r.status == 200
            if where[u] != "B":
                assert r.header("x-upstream") == where[u], (u, where[u], r.header("x-upstream"))
            else:
                assert r.header("x-upstream") in ("A", "C")


def test_hash_on_the_client_address(start_wafer, ups):
    a, b, c = ups
    w = start_wafer(a.address, upstream={"servers": servers(a, b, c), "balance": "hash", "hash_key": "client_ip"})
    assert len(set(hits(w, 12, "/hip"))) == 1  # every request comes from 127.0.0.1


def test_backup_only_when_primaries_are_down(start_wafer, ups):
    a, b, _ = ups
    w = start_wafer(a.address, upstream={"servers": [{"address": a.address}, {"address": b.address, "backup": True}]})
    assert set(hits(w, 6, "/bk")) == {"A"}
    a.stop()
    assert set(hits(w, 6, "/bk2")) == {"B"}


def test_health_checks_take_a_dead_member_out_and_bring_it_back(start_wafer, ups):
    a, b, _ = ups
    port_b = b.port
    w = start_wafer(a.address, upstream={"servers": servers(a, b), "passive": {"max_fails": 0},
                                         "health_check": {"path": "/health", "interval": "100ms", "timeout": "200ms",
                                                          "rise": 2, "fall": 1}})
    time.sleep(0.3)
    assert set(hits(w, 6, "/hc1")) == {"A", "B"}
    assert b.seen_path("/health"), "no health check reached B"
    b.stop()
    time.sleep(0.5)
    t0 = time.monotonic()
    assert set(hits(w, 8, "/hc2")) == {"A"}
    # B comes back on its port: two passing checks later it gets requests again
    b2 = PyUpstream("B", port=port_b)
    ups.append(b2)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if "B" in hits(w, 4, "/hc3"):
            break
        time.sleep(0.1)
    else:
        pytest.fail("B did not get requests again after it came back")
    assert time.monotonic() - t0 < 5
    assert "down" in w.stderr() and "up" in w.stderr()


def test_passive_ejection_then_recovery(start_wafer, ups):
    a, b, _ = ups
    port_b = b.port
    w = start_wafer(a.address, upstream={"servers": servers(a, b), "passive": {"max_fails": 1,
                                                                               "fail_timeout": "700ms"}})
    b.stop()
    seen = hits(w, 10, "/pe1")  # the first request to B fails over to A; B is then ejected
    assert set(seen) == {"A"}
    assert "ejected" in w.stderr()
    b2 = PyUpstream("B", port=port_b)
    ups.append(b2)
    time.sleep(0.9)
    assert "B" in hits(w, 6, "/pe2")


class BlackHole:
    """An upstream that takes requests and never answers, until it dies:
    then every connection is reset (no response byte was ever sent) and the
    port refuses new ones."""

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(256)
        self.address = "127.0.0.1:%d" % self.lsock.getsockname()[1]
        self.conns, self.got = [], 0
        self.lock = threading.Lock()
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._read, args=(c,), daemon=True).start()

    def _read(self, c):
        try:
            while c.recv(65536):
                with self.lock:
                    self.got += 1
        except OSError:
            pass

    def kill(self):
        self.stopping = True
        self.lsock.close()
        with self.lock:
            for c in self.conns:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                try:
                    c.shutdown(socket.SHUT_RDWR)  # wakes the reading thread; close alone would not
                except OSError:
                    pass
                c.close()


def test_no_idempotent_request_lost_when_a_member_dies(start_wafer, ups):
    a, _, c = ups
    hole = BlackHole()
    w = start_wafer(a.address, workers=2, upstream={"servers": [{"address": a.address}, {"address": hole.address},
                                                                {"address": c.address}], "timeout": "10s"})
    tag = uuid.uuid4().hex
    results = []
    lock = threading.Lock()

    def client(k):
        for i in range(25):
            method = ("GET", "PUT", "DELETE", "HEAD", "OPTIONS")[i % 5]
            try:
                with w.connect(timeout=15) as conn:
                    r = conn.request(method, "/die/%s/%d/%d" % (tag, k, i),
                                     body=b"x" * 100 if method == "PUT" else None)
                    st = r.status
            except Exception as e:  # a lost request shows here
                st = repr(e)
            with lock:
                results.append((method, st))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while hole.got < 6 and time.monotonic() < deadline:  # every client waits on the hole by now
        time.sleep(0.02)
    assert hole.got >= 6
    hole.kill()  # requests in flight there die before any response byte; new connects are refused
    for t in threads:
        t.join(60)
    assert len(results) == 150
    bad = [r for r in results if r[1] != 200]
    assert not bad, bad[:10]
    n = counters(w)
    assert n.get("upstream_member_retries", 0) >= 6, n  # the requests cut on the hole went elsewhere
    assert n.get("upstream_connect_failed", 0) + n.get("upstream_member_retries", 0) >= 6


def test_non_idempotent_request_is_not_resent(start_wafer, ups):
    a, b, _ = ups
    w = start_wafer(a.address, upstream={"servers": servers(a, b), "passive": {"max_fails": 0}})
    tag = uuid.uuid4().hex
    with w.connect() as conn:
        r = conn.request("POST", "/nr/%s?up_mode=reset" % tag, body=b"data")
    assert r.status == 502
    assert len(a.seen_path(tag)) + len(b.seen_path(tag)) == 1
    tag2 = uuid.uuid4().hex
    with w.connect() as conn:
        r = conn.request("GET", "/nr/%s?up_mode=reset" % tag2)
    assert r.status == 502
    assert len(a.seen_path(tag2)) == 1 and len(b.seen_path(tag2)) == 1  # tried once on each


def test_retries_bound_the_members_tried(start_wafer, ups):
    a, b, c = ups
    w = start_wafer(a.address, upstream={"servers": servers(a, b, c), "retries": 1, "passive": {"max_fails": 0}})
    tag = uuid.uuid4().hex
    with w.connect() as conn:
        assert conn.request("GET", "/rb/%s?up_mode=close" % tag).status == 502
    assert sum(len(u.seen_path(tag)) for u in ups) == 2


def test_no_member_up_is_503(start_wafer, ups):
    a, b, _ = ups
    w = start_wafer(a.address, upstream={"servers": servers(a, b),
                                         "health_check": {"path": "/health", "interval": "100ms", "timeout": "200ms",
                                                          "fall": 1}})
    assert hits(w, 2, "/u1")
    a.stop()
    b.stop()
    time.sleep(0.5)
    with w.connect() as conn:
        r = conn.request("GET", "/u2")
    assert r.status == 503
    assert "request id" in r.body.decode()
    assert counters(w).get("upstream_unavailable") == 1


def test_named_pools_are_checked_and_dead_servers_give_503_after_ejection(start_wafer, ups):
    a, _, _ = ups
    d1, d2 = "127.0.0.1:%d" % closed_port(), "127.0.0.1:%d" % closed_port()
    w = start_wafer(a.address, upstream={"servers": [{"address": d1}, {"address": d2}]},
                    upstreams={"app": {"servers": servers(a), "balance": "least_conn"}})
    with w.connect() as conn:
        assert conn.request("GET", "/np1").status == 502  # both tried, both refused
    with w.connect() as conn:
        assert conn.request("GET", "/np2").status == 503  # both ejected now


def wait_reloaded(w, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if w.stderr().count("configuration reloaded") >= n:
            return
        time.sleep(0.05)
    raise AssertionError("no reload logged")


def test_reload_changes_pools_and_keeps_what_is_known(start_wafer, ups):
    a, b, c = ups
    w = start_wafer(a.address, upstream={"servers": servers(a, b), "passive": {"max_fails": 1, "fail_timeout": "30s"}})
    port_b = b.port
    b.stop()
    assert set(hits(w, 4, "/rl1")) == {"A"}  # B is ejected for 30s
    b2 = PyUpstream("B", port=port_b)
    ups.append(b2)
    w.config["upstream"]["servers"] = [{"address": a.address, "weight": 1}, {"address": b2.address},
                                       {"address": c.address, "weight": 3}]
    w.write_config(w.config)
    w.send_signal(signal.SIGHUP)
    wait_reloaded(w, 1)
    seen = hits(w, 40, "/rl2")
    # B stays ejected across the reload; A and C share by their new weights 1:3
    assert seen.count("B") == 0, seen
    assert (seen.count("A"), seen.count("C")) == (10, 30), seen


def test_a_hanging_member_does_not_slow_the_other_checks(start_wafer, ups):
    a, b, _ = ups
    hang = socket.socket()  # accepts connections (the kernel does) and never answers
    hang.bind(("127.0.0.1", 0))
    hang.listen(64)
    try:
        h = "127.0.0.1:%d" % hang.getsockname()[1]
        w = start_wafer(a.address, upstream={"servers": servers(a, b) + [{"address": h}],
                                             "passive": {"max_fails": 0},
                                             "health_check": {"path": "/health", "interval": "100ms",
                                                              "timeout": "3s", "fall": 1, "rise": 1}})
        time.sleep(0.3)
        b.stop()
        t0 = time.monotonic()
        while "127.0.0.1:%d (pool default): health check failed" % b.port not in w.stderr():
            assert time.monotonic() - t0 < 2.0, "B was not marked down while H's checks hang"
            time.sleep(0.05)
        # H's first check is still waiting for its 3s timeout
        assert "%s (pool default): health check failed" % h not in w.stderr()
    finally:
        hang.close()


def test_routes_choose_their_pool(start_wafer, ups):
    a, b, c = ups
    w = start_wafer(a.address, upstream={"servers": servers(a)},
                    upstreams={"app": {"servers": servers(b, c)}},
                    policy={"routes": [{"name": "app", "path": "/app", "upstream": "app"},
                                       {"name": "admin", "host": "admin.test", "upstream": "default"}]})
    assert set(hits(w, 4, "/other")) == {"A"}
    assert set(hits(w, 6, "/app")) == {"B", "C"}
    # the route matches on the path as the upstream reads it
    with w.connect() as conn:
        assert conn.request("GET", "/x/../app/%61").header("x-upstream") in ("B", "C")
        r = conn.request("GET", "/app/y", host="admin.test")  # the more specific host route wins
        assert r.header("x-upstream") == "A"


def test_a_route_naming_an_unknown_pool_is_a_configuration_error(tmp_path, wafer_binary):
    import subprocess
    conf = tmp_path / "w.yaml"
    conf.write_text("listen: [{address: 127.0.0.1:1}]\nupstream: {servers: [{address: 127.0.0.1:2}]}\n"
                    "policy:\n  routes:\n    - {name: api, path: /api, upstream: nope}\n")
    r = subprocess.run([wafer_binary, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert 'upstream: no pool named "nope"' in r.stderr + r.stdout, r.stderr
    assert "w.yaml:" in r.stderr + r.stdout


from test_tls import nginx_tls, p, pki  # noqa: E402,F401  (a TLS upstream and its PKI)


def test_health_checks_speak_tls_to_tls_upstreams(start_wafer, nginx_tls, pki):  # noqa: F811
    dead = "127.0.0.1:%d" % closed_port()
    w = start_wafer(nginx_tls.tls_address,
                    upstream={"servers": [{"address": nginx_tls.tls_address}, {"address": dead}],
                              "tls": {"ca": p(pki, "ca.pem"), "server_name": "upstream.test"},
                              "passive": {"max_fails": 0},
                              "health_check": {"path": "/", "interval": "100ms", "timeout": "500ms", "fall": 1}})
    deadline = time.monotonic() + 3
    while "%s (pool default): health check failed" % dead not in w.stderr():
        assert time.monotonic() < deadline, "the dead member was not marked down"
        time.sleep(0.05)
    time.sleep(0.5)  # several rounds of checks of the TLS member
    assert "%s (pool default): health check failed" % nginx_tls.tls_address not in w.stderr()
    with w.connect() as c:
        for i in range(4):
            r = c.request("GET", "/t/%d" % i)
            assert r.status == 200 and r.body == b"tls upstream sni=upstream.test\n"
