"""The admin listener of a running wafer: health, readiness (also during a
graceful shutdown), version and its configuration generation across a
reload, routing errors, the token, hostile requests, and that none of it
touches the data plane."""

import json
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

from harness import HTTP, free_port, run_check, wafer_bin, wafer_config, to_yaml


def admin(w, timeout=5.0):
    return HTTP(w.admin_port, timeout)


def get(w, path, headers=None):
    with admin(w) as c:
        return c.request("GET", path, headers=list((headers or {}).items()), host="admin")


def wait_ready(w, timeout=5.0):
    """The data port accepts (the kernel queues connections) a moment before
    the workers run and /ready turns 200."""
    deadline = time.monotonic() + timeout
    while True:
        r = get(w, "/ready")
        if r.status == 200 or time.monotonic() > deadline:
            return r
        time.sleep(0.02)


def test_health_ready_version_and_routing(start_wafer, pyup):
    w = start_wafer(pyup.address)
    r = get(w, "/health")
    assert r.status == 200 and r.json() == {"status": "ok"}
    assert r.header("content-type") == "application/json"
    r = wait_ready(w)
    assert r.status == 200 and r.json()["status"] == "ready"

    v = get(w, "/version").json()
    assert v["version"] == subprocess.run([wafer_bin(), "--version"], stdout=subprocess.PIPE,
                                          timeout=10).stdout.decode().split()[1]
    assert v["config"]["generation"] == "1"
    assert v["config"]["file"] == w.conf_path
    assert v["config"]["loaded"].endswith("Z")

    r = get(w, "/no/such/thing")
    assert r.status == 404 and "error" in r.json()
    with admin(w) as c:
        r = c.request("POST", "/health", body=b"{}", host="admin")
        assert r.status == 405 and r.header("allow") == "GET"
        # keep-alive: the same connection goes on serving
        assert c.request("GET", "/health", host="admin").status == 200

    m = get(w, "/metrics")
    assert m.status == 200
    assert m.header("content-type") == "text/plain; version=0.0.4; charset=utf-8"
    assert b"# TYPE wafer_admin_requests_total counter" in m.body

    # a reload shows the new generation
    gen = w.config
    gen["timeouts"]["idle"] = "3s"
    w.write_config(gen)
    w.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while get(w, "/version").json()["config"]["generation"] != "2":
        assert time.monotonic() < deadline, "reload not seen on /version"
        time.sleep(0.05)


def test_token(start_wafer, pyup):
    w = start_wafer(pyup.address, admin={"token": "s3cr3t-t0ken"})
    r = get(w, "/health")
    assert r.status == 401 and r.header("www-authenticate", "").startswith("Bearer")
    assert get(w, "/health", {"Authorization": "Bearer wrong"}).status == 401
    assert get(w, "/health", {"Authorization": "Bearer s3cr3t-t0ke"}).status == 401
    assert get(w, "/metrics", {"Authorization": "Basic s3cr3t-t0ken"}).status == 401
    assert get(w, "/health", {"Authorization": "Bearer s3cr3t-t0ken"}).status == 200
    # the data plane does not know the token and does not need it
    with w.connect() as c:
        assert c.request("GET", "/plain").status == 200

    # the token changes on reload, at once
    cfg = w.config
    cfg["admin"]["token"] = "other"
    w.write_config(cfg)
    w.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while get(w, "/health", {"Authorization": "Bearer other"}).status != 200:
        assert time.monotonic() < deadline, "token not changed by reload"
        time.sleep(0.05)
    assert get(w, "/health", {"Authorization": "Bearer s3cr3t-t0ken"}).status == 401


BAD = [
    b"GET /health HTTP/1.1\r\n\r\n",                                            # no Host
    b"GET /health HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: a\r\nX\x00: y\r\n\r\n",
    b"GET /health HTTP/1.1\nHost: a\n\n",                                       # bare LF
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,              # a TLS hello
    b"GET /health HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
    b"GET /he alth HTTP/1.1\r\nHost: a\r\n\r\n",
]


def test_bad_requests_get_400_and_admin_survives(start_wafer, pyup):
    w = start_wafer(pyup.address)
    for raw in BAD:
        with admin(w) as c:
            c.send(raw)
            r = c.read_response()
            assert r.status == 400, (raw, r)
            assert r.header("connection") == "close"
            assert c.wait_closed(3)
    # too big: 431 / 413, and a chunked body is refused
    with admin(w) as c:
        c.send(b"GET /health HTTP/1.1\r\nHost: a\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
        assert c.read_response().status == 431
    with admin(w) as c:
        c.send(b"POST /health HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 100000)
        assert c.read_response().status == 413
    with admin(w) as c:
        c.send(b"POST /health HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        assert c.read_response().status == 411
    # connections that say nothing are closed at the timeout, not kept forever
    s = socket.create_connection(("127.0.0.1", w.admin_port))
    assert get(w, "/health").status == 200
    assert w.proc.poll() is None
    s.close()
    # and the data plane never noticed
    with w.connect() as c:
        r = c.request("GET", "/after-bad-admin")
        assert r.status == 200 and r.json()["target"] == "/after-bad-admin"


def test_data_plane_unaffected_by_admin_load(start_wafer, pyup):
    w = start_wafer(pyup.address, admin={"max_connections": 4})
    stop = threading.Event()
    errors = []

    def hammer():
        while not stop.is_set():
            try:
                with admin(w, 2) as c:
                    c.send(b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n")
                    c.read_response()
            except Exception as e:  # refused or closed at the limit is fine
                errors.append(e)
    threads = [threading.Thread(target=hammer) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        with w.connect() as c:
            for i in range(50):
                r = c.request("GET", "/dp/%d" % i)
                assert r.status == 200 and r.json()["target"] == "/dp/%d" % i
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    # beyond max_connections the admin answers 503, and recovers once the
    # hammering connections are closed (the server sees their ends a moment later)
    deadline = time.monotonic() + 3
    while get(w, "/health").status != 200:
        assert time.monotonic() < deadline, "admin listener did not recover"
        time.sleep(0.02)


def test_not_ready_during_graceful_shutdown(start_wafer, pyup):
    w = start_wafer(pyup.address, shutdown_timeout="5s")
    w.expect_exit = True
    assert wait_ready(w).status == 200
    done = {}

    def slow():
        with w.connect(timeout=10) as c:
            done["r"] = c.request("GET", "/slow?up_delay_headers=1500")
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    w.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # still draining: alive, but not ready
    r = get(w, "/ready")
    assert r.status == 503 and r.json()["status"] == "not ready"
    assert get(w, "/health").status == 200
    t.join(10)
    assert done["r"].status == 200
    assert w.proc.wait(5) == 0


def test_disabled_and_address_in_use(start_wafer, pyup, tmp_path):
    port = free_port()
    w = start_wafer(pyup.address, admin={"enabled": False, "address": "127.0.0.1:%d" % port})
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with w.connect() as c:
        assert c.request("GET", "/x").status == 200

    # an admin address another socket holds is a start-up error, not a shared port
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        cfg = wafer_config(free_port(), pyup.address, str(tmp_path),
                           admin={"address": "127.0.0.1:%d" % holder.getsockname()[1]})
        p = tmp_path / "busy.yaml"
        p.write_text(to_yaml(cfg) + "\n")
        r = subprocess.run([wafer_bin(), "run", "-c", str(p)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=10)
        assert r.returncode != 0
        assert b"admin.address" in r.stderr and b"in use" in r.stderr.lower(), r.stderr
    finally:
        holder.close()


def test_admin_configuration_errors(tmp_path):
    cases = [({"adress": "127.0.0.1:1"}, "adress"), ({"address": "nowhere"}, "expected host:port"),
             ({"token": "has space"}, "a token is"), ({"max_connections": 0}, "max_connections"),
             ({"timeout": "soon"}, "timeout")]
    for adm, what in cases:
        cfg = wafer_config(free_port(), "127.0.0.1:9", str(tmp_path), admin=adm)
        p = tmp_path / "w.yaml"
        p.write_text(to_yaml(cfg) + "\n")
        rc, out = run_check(str(p))
        assert rc == 1 and what in out and re.search(r"w\.yaml:\d+:\d+: admin\.", out), (adm, out)
