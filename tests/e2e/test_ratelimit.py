"""Rate limits: 429 with Retry-After from token buckets (per client address,
per route), connection limits per client address, and a flood of requests
from a second process kept to the configured rate."""

import json
import subprocess
import sys
import time
import uuid

from counters import counters
from harness import read_events


def get(w, path):
    with w.connect() as c:
        return c.request("GET", path)


def test_client_rate_429_with_retry_after(start_wafer, pyup, tmp_path):
    events = str(tmp_path / "events.jsonl")
    w = start_wafer(pyup.address, rate_limits={"client": {"rate": "2/s", "burst": 3}},
                    events={"sinks": [{"type": "file", "path": events}]})
    tag = uuid.uuid4().hex
    statuses = [get(w, "/rl/%s/%d" % (tag, i)) for i in range(5)]
    assert [r.status for r in statuses[:3]] == [200, 200, 200]
    r = statuses[3]
    assert r.status == 429, r
    assert r.header("retry-after") == "1"  # 2/s: a token within half a second, rounded up to 1s
    assert r.header("connection") == "close"
    assert "429" in r.body.decode() and "request id" in r.body.decode()
    assert len(pyup.seen_path(tag)) == 3  # refused requests never reach the upstream
    time.sleep(0.6)
    assert get(w, "/rl/%s/after" % tag).status == 200
    assert "client rate limit reached: 429" in w.stderr()
    assert counters(w).get("rate_limited", 0) >= 2
    evs = read_events(events, 2)
    assert len(evs) >= 2, evs
    ev = evs[0]
    assert ev["event"]["action"] == "limit" and ev["event"]["reason"] == "rate", ev
    assert ev["http"]["response"]["status_code"] == 429
    assert ev["http"]["request"]["id"] == statuses[3].body.decode().split("request id: ")[1].strip()
    assert ev["source"]["ip"] == "127.0.0.1"
    assert tag in ev["url"]["path"]


def test_retry_after_counts_the_seconds_until_a_token(start_wafer, pyup):
    w = start_wafer(pyup.address, rate_limits={"client": {"rate": "6/m", "burst": 1}})
    assert get(w, "/ra/1").status == 200
    r = get(w, "/ra/2")
    assert r.status == 429 and r.header("retry-after") == "10"


def test_route_rate_is_shared_by_every_client(start_wafer, pyup):
    w = start_wafer(pyup.address, workers=2, rate_limits={"route": {"rate": "1/m", "burst": 4}})
    got = []
    for i in range(8):  # new connections: both workers take some, one bucket for all
        got.append(get(w, "/rr/%d" % i).status)
    assert got.count(200) == 4 and got.count(429) == 4, got


def test_connections_per_client(start_wafer, pyup, tmp_path):
    events = str(tmp_path / "events.jsonl")
    w = start_wafer(pyup.address, rate_limits={"connections_per_client": 2},
                    events={"sinks": [{"type": "file", "path": events}]})
    time.sleep(0.3)  # the start-up probe's connection is released at its close
    c1, c2 = w.connect(), w.connect()
    try:
        assert c1.request("GET", "/cl/1").status == 200
        assert c2.request("GET", "/cl/2").status == 200
        with w.connect() as c3:
            r = c3.request("GET", "/cl/3")
            assert r.status == 429 and r.header("retry-after") == "1"
            assert c3.wait_closed(2)
        assert c1.request("GET", "/cl/1b").status == 200  # the held ones are unaffected
    finally:
        c1.close()
    time.sleep(0.2)  # c1's close is counted
    with w.connect() as c4:
        assert c4.request("GET", "/cl/4").status == 200
    c2.close()
    n = counters(w)
    assert n.get("conn_limited") == 1, n
    evs = read_events(events, 1)
    assert evs, "no security event"
    ev = evs[0]
    assert ev["event"]["action"] == "limit" and ev["event"]["reason"] == "connlimit", ev


FLOOD = r"""
import socket, sys, time, json
port, secs = int(sys.argv[1]), float(sys.argv[2])
ok = limited = other = 0
end = time.monotonic() + secs
while time.monotonic() < end:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET /flood HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    code = data[9:12]
    if code == b"200": ok += 1
    elif code == b"429": limited += 1
    else: other += 1
print(json.dumps({"ok": ok, "limited": limited, "other": other}))
"""


def test_request_flood_from_another_process_is_held_to_the_rate(start_wafer, pyup):
    w = start_wafer(pyup.address, workers=2, rate_limits={"client": {"rate": "20/s", "burst": 10}})
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-c", FLOOD, str(w.port), "2.0"], capture_output=True, timeout=30,
                         check=True)
    secs = time.monotonic() - t0
    res = json.loads(out.stdout)
    assert res["other"] == 0, res
    assert res["limited"] > 0, res
    assert 10 <= res["ok"] <= 10 + 20 * secs + 2, (res, secs)
    # meanwhile, after the flood, the bucket refills
    time.sleep(0.2)
    assert get(w, "/after-flood").status == 200


def test_route_rate_limit_overrides_the_default_for_its_route(start_wafer, pyup):
    w = start_wafer(pyup.address, rate_limits={"route": {"rate": "1/m", "burst": 100}},
                    policy={"routes": [{"name": "login", "path": "/login", "rate_limit": {"rate": "1/m", "burst": 2}}]})
    got = [get(w, "/login/%d" % i).status for i in range(4)]
    assert got == [200, 200, 429, 429], got
    assert all(get(w, "/else/%d" % i).status == 200 for i in range(5))  # the other routes' bucket holds 100


from test_tls import https, p, pki, tls_listen  # noqa: E402,F401  (the PKI fixture and TLS helpers)


def test_identity_rate_per_verified_client_certificate(start_wafer, pyup, pki):  # noqa: F811
    from harness import free_port, read_events
    port = free_port()
    w = start_wafer(pyup.address, listen=tls_listen(port, pki, client_ca=p(pki, "ca.pem"), client_verify="optional"),
                    rate_limits={"identity": {"rate": "1/m", "burst": 2}})

    def status(cert=None):
        args = ["--cert", p(pki, cert + ".pem"), "--key", p(pki, cert + ".key")] if cert else []
        return https(w, pki=pki, path="/id", args=args)[0]
    assert [status("spiffe") for _ in range(3)] == [200, 200, 429]
    assert [status("ops") for _ in range(2)] == [200, 200]  # another identity, another bucket
    assert [status() for _ in range(4)] == [200] * 4  # no certificate: no identity bucket
    assert counters(w).get("rate_limited") == 1
