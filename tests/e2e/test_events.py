"""Security events: the sinks against real receivers, failures, the spool.

Events are emitted by build/tests/secops_drive, which runs the same hub that
`wafer run` starts (src/secops), with the `events:` section of a generated
configuration; see sinks.py for the receivers.
"""

import json
import os
import signal
import subprocess
import time

import pytest

from harness import to_yaml, wafer_bin
from sinks import ForwardReceiver, Rsyslog, drive, drive_bin, have, make_certs

UNIT_TEXT = "1' or \"1\"=\"1\" \\ \t\x01 caf\u00e9 \u2713 ]"


@pytest.fixture(scope="module", autouse=True)
def _drive_built():
    if not os.access(drive_bin(), os.X_OK):
        pytest.fail("secops_drive not found at %s (build the tests)" % drive_bin())


def write_conf(tmp_path, sinks, queue=4096, name="w.yaml"):
    p = tmp_path / name
    p.write_text(to_yaml({"events": {"queue": queue, "stop_timeout": "2s", "sinks": sinks}}) + "\n")
    return str(p)


def check_event(rec, prefix, i):
    """The event as secops_drive made it, field for field."""
    assert rec["http"]["request"]["id"] == "%s-%06d" % (prefix, i)
    assert rec["event"]["kind"] == "alert" and rec["event"]["category"] == ["web"]
    assert rec["event"]["action"] == ("monitor" if i % 3 == 2 else "block")
    assert rec["source"] == {"ip": "192.0.2.%d" % (i % 250), "port": 40000 + i % 20000}
    assert rec["url"] == {"domain": "shop.example", "path": "/search", "query": "q=1%27%20or%201=1"}
    u = rec["wafer"]["units"][0]
    assert u["text"] == UNIT_TEXT and u["kind"] == "query" and u["name"] == "q"
    assert abs(u["score"] - 0.97) < 1e-6 and rec["wafer"]["model"] == "wafer-test@1"


# ---- syslog into a real rsyslog ----------------------------------------------

@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(str(tmp_path_factory.mktemp("certs")))


@pytest.fixture
def rsyslog(tmp_path, certs):
    if not have("rsyslogd"):
        pytest.fail("rsyslogd is not installed (scripts/install-deps installs rsyslog)")
    r = Rsyslog(str(tmp_path / "rsyslog"), certs).start()
    yield r
    r.stop()


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_syslog_event_arrives_whole(tmp_path, rsyslog, certs, transport):
    sink = {"type": "syslog", "transport": transport, "facility": "local3", "hostname": "waf-1",
            "address": "127.0.0.1:%d" % (rsyslog.tls_port if transport == "tls" else rsyslog.port)}
    if transport == "tls":
        sink["ca"] = certs["ca"]
        sink["server_name"] = "localhost"
    n = 25
    stats, err = drive(write_conf(tmp_path, [sink]), n=n, prefix=transport)
    assert stats["sinks"][0]["delivered"] == n, err
    assert rsyslog.wait_lines(rsyslog.parts, n), rsyslog.lines(rsyslog.parts)
    raw = rsyslog.lines(rsyslog.raw)
    parts = rsyslog.lines(rsyslog.parts)
    assert len(parts) == n
    for i, (line, rawline) in enumerate(zip(parts, raw)):
        pri, ts, host, app, procid, msgid, sd, msg = line.split("\t")
        action = "monitor" if i % 3 == 2 else "block"
        assert int(pri) == 19 * 8 + (5 if action == "monitor" else 4)  # local3; notice / warning
        assert host == "waf-1" and app == "wafer" and procid.isdigit() and msgid == action
        assert sd.startswith('[wafer@32473 action="%s" reason="model"' % action)
        assert 'request_id="%s-%06d"' % (transport, i) in sd
        rec = json.loads(json.loads('"%s"' % msg))  # msg is JSON-escaped by the template
        check_event(rec, transport, i)
        # the raw message is exactly what RFC 5424 prescribes, and the JSON is its MSG
        assert rawline.startswith("<%s>1 " % pri)
        assert rawline.endswith(json.dumps(rec, ensure_ascii=False, separators=(",", ":"))[-40:])


def test_syslog_udp_cut_to_max_datagram(tmp_path, rsyslog):
    sink = {"type": "syslog", "transport": "udp", "address": "127.0.0.1:%d" % rsyslog.port, "max_datagram": 600}
    stats, err = drive(write_conf(tmp_path, [sink]), n=3, prefix="cut")
    assert stats["sinks"][0]["delivered"] == 3
    assert rsyslog.wait_lines(rsyslog.raw, 3)
    for line in rsyslog.lines(rsyslog.raw):
        assert 500 < len(line.encode("utf-8", "surrogateescape")) <= 600


def test_syslog_tls_refuses_unverified_server(tmp_path, rsyslog, certs):
    # a CA that did not sign the server's certificate; then a name the certificate does not carry
    for extra in ({"ca": certs["other_ca"]}, {"ca": certs["ca"], "server_name": "waf.example"}):
        sink = dict({"type": "syslog", "transport": "tls", "address": "127.0.0.1:%d" % rsyslog.tls_port,
                     "retry": {"initial": "50ms", "max": "100ms"}}, **extra)
        stats, err = drive(write_conf(tmp_path, [sink]), n=2, prefix="bad", wait=1)
        s = stats["sinks"][0]
        assert s["delivered"] == 0 and s["retried"] >= 2 and not s["up"], stats
        assert "certificate" in err, err
    time.sleep(0.3)
    assert rsyslog.lines(rsyslog.parts) == []


def test_syslog_tls_checks_the_address_by_default(tmp_path, rsyslog, certs):
    """Without server_name the certificate must carry the address's host: here the IP 127.0.0.1."""
    sink = {"type": "syslog", "transport": "tls", "address": "127.0.0.1:%d" % rsyslog.tls_port, "ca": certs["ca"]}
    stats, err = drive(write_conf(tmp_path, [sink]), n=3, prefix="ip")
    assert stats["sinks"][0]["delivered"] == 3, err
    assert rsyslog.wait_lines(rsyslog.parts, 3)


def test_syslog_tls_client_certificate(tmp_path, rsyslog, certs):
    """A server that demands a client certificate: refused without one, accepted with it."""
    base = {"type": "syslog", "transport": "tls", "address": "127.0.0.1:%d" % rsyslog.mtls_port,
            "ca": certs["ca"], "retry": {"initial": "50ms", "max": "100ms"}}
    stats, err = drive(write_conf(tmp_path, [base]), n=2, prefix="nocert", wait=1)
    s = stats["sinks"][0]
    assert s["delivered"] == 0 and s["retried"] >= 2 and not s["up"], (stats, err)
    assert "refused the connection after the handshake" in err, err
    sink = dict(base, cert=certs["client_cert"], key=certs["client_key"])
    stats, err = drive(write_conf(tmp_path, [sink], name="w2.yaml"), n=5, prefix="cert")
    assert stats["sinks"][0]["delivered"] == 5, err
    assert rsyslog.wait_lines(rsyslog.parts, 5)
    got = [l for l in rsyslog.lines(rsyslog.parts) if 'request_id="cert-' in l]
    assert len(got) == 5
    assert not [l for l in rsyslog.lines(rsyslog.parts) if 'request_id="nocert-' in l]


def test_syslog_tcp_outage_spools_and_delivers_once(tmp_path, rsyslog):
    """rsyslog down: events spool; up again: each delivered once, in order."""
    port = rsyslog.port
    rsyslog.stop()
    sink = {"type": "syslog", "transport": "tcp", "address": "127.0.0.1:%d" % port,
            "spool": {"dir": str(tmp_path / "spool")}, "retry": {"initial": "50ms", "max": "200ms"}}
    conf = write_conf(tmp_path, [sink])
    stats, _ = drive(conf, n=40, prefix="out", wait=0.5)
    s = stats["sinks"][0]
    assert s["delivered"] == 0 and s["spooled"] == 40 and s["dropped"] == 0, stats
    # a new run (wafer restarted) with rsyslog back: the spool is replayed
    rsyslog.start()
    stats, _ = drive(conf, n=10, prefix="after", wait=10, delivered=50)
    assert stats["sinks"][0]["delivered"] == 50, stats
    assert rsyslog.wait_lines(rsyslog.parts, 50)
    ids = [l.split("\t")[6].split('request_id="')[1].split('"')[0] for l in rsyslog.lines(rsyslog.parts)]
    assert ids == ["out-%06d" % i for i in range(40)] + ["after-%06d" % i for i in range(10)]
    assert os.listdir(str(tmp_path / "spool")) == []


# ---- Fluentd forward -----------------------------------------------------------

@pytest.fixture
def receiver():
    r = ForwardReceiver()
    yield r
    r.stop()


@pytest.mark.parametrize("mode", ["forward", "packed"])
@pytest.mark.parametrize("ack", [True, False])
def test_forward_modes(tmp_path, receiver, mode, ack):
    receiver.expect_ack = ack
    receiver.start()
    sink = {"type": "forward", "address": "127.0.0.1:%d" % receiver.port, "mode": mode, "ack": ack, "batch": 16}
    n = 100
    stats, err = drive(write_conf(tmp_path, [sink]), n=n, prefix=mode)
    assert stats["sinks"][0]["delivered"] == n, err
    assert receiver.wait_for(n)
    assert receiver.errors == []
    assert receiver.modes == {mode}
    ids = receiver.request_ids()
    assert ids == ["%s-%06d" % (mode, i) for i in range(n)]  # once each, in order
    for i, (chunk, rec) in enumerate(receiver.records):
        check_event(rec, mode, i)
    kinds = {k for k, _ in receiver.chunks}
    assert kinds == ({"acked"} if ack else {"plain"})
    if ack:  # batches of at most 16, each with its own chunk id
        per_chunk = {}
        for chunk, _ in receiver.records:
            per_chunk[chunk] = per_chunk.get(chunk, 0) + 1
        assert len(per_chunk) == len(receiver.chunks) >= n // 16 + 1
        assert max(per_chunk.values()) <= 16


def test_forward_shared_key_handshake(tmp_path):
    r = ForwardReceiver(shared_key="s3cr3t").start()
    try:
        sink = {"type": "forward", "address": "127.0.0.1:%d" % r.port, "shared_key": "s3cr3t",
                "self_hostname": "waf-1"}
        stats, err = drive(write_conf(tmp_path, [sink]), n=20, prefix="hs")
        assert stats["sinks"][0]["delivered"] == 20, err
        assert r.handshakes >= 1 and r.errors == []
        assert r.request_ids() == ["hs-%06d" % i for i in range(20)]
        # the wrong key: refused by the server, nothing delivered, retried
        sink.update(shared_key="wrong", retry={"initial": "50ms", "max": "100ms"})
        stats, err = drive(write_conf(tmp_path, [sink], name="w2.yaml"), n=5, prefix="bad", wait=1)
        s = stats["sinks"][0]
        assert s["delivered"] == 0 and s["retried"] >= 2, stats
        assert "handshake" in err
        assert "PING digest mismatch" in r.errors
        assert [i for i in r.request_ids() if i.startswith("bad")] == []
    finally:
        r.stop()


def test_forward_server_digest_checked(tmp_path):
    """A server that cannot prove it knows the key (a wrong PONG digest) gets nothing."""
    r = ForwardReceiver(shared_key="k3y").start()
    r.spoil_pong = True
    try:
        sink = {"type": "forward", "address": "127.0.0.1:%d" % r.port, "shared_key": "k3y",
                "retry": {"initial": "50ms", "max": "100ms"}}
        stats, err = drive(write_conf(tmp_path, [sink]), n=3, prefix="dg", wait=1)
        assert stats["sinks"][0]["delivered"] == 0, stats
        assert "digest does not match" in err, err
        assert r.records == [] and r.handshakes >= 1
    finally:
        r.stop()


def test_forward_receiver_down_then_up_exactly_once(tmp_path, receiver):
    """The receiver is down at first, comes up, goes down mid-stream, comes back:
    every event is delivered exactly once, in order."""
    sink = {"type": "forward", "address": "127.0.0.1:%d" % receiver.port, "batch": 20, "ack_timeout": "500ms",
            "spool": {"dir": str(tmp_path / "spool"), "max_bytes": "4m"},
            "retry": {"initial": "50ms", "max": "200ms"}}
    conf = write_conf(tmp_path, [sink])
    n = 600
    p = subprocess.Popen([drive_bin(), "-c", conf, "-n", str(n), "-r", "1000", "-p", "dn", "-w", "20"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.15)
        receiver.start()          # up after ~150 events were spooled
        time.sleep(0.15)
        receiver.stop()           # down again mid-stream
        time.sleep(0.15)
        receiver.withhold_acks = 2  # and when it is back, two chunks go unacknowledged once
        receiver.start()
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    stats = json.loads(out.decode().strip().splitlines()[-1])
    s = stats["sinks"][0]
    assert s["delivered"] == n and s["dropped"] == 0, (stats, err.decode()[-2000:])
    assert s["spooled"] > 0 and s["retried"] > 0
    assert receiver.wait_for(n)
    ids = receiver.request_ids()
    assert ids == ["dn-%06d" % i for i in range(n)], "lost, doubled or reordered"
    assert receiver.errors == []
    withheld = [c for k, c in receiver.chunks if k == "withheld"]
    acked = [c for k, c in receiver.chunks if k == "acked"]
    assert len(withheld) == 2 and all(c in acked for c in withheld)  # resent with the same chunk id


def test_forward_without_spool_waits_in_memory(tmp_path, receiver):
    """No spool: a failed batch is retried from memory, later events wait in the
    sink's queue; nothing is lost while the queue has room."""
    sink = {"type": "forward", "address": "127.0.0.1:%d" % receiver.port, "queue": 1000,
            "retry": {"initial": "50ms", "max": "100ms"}}
    conf = write_conf(tmp_path, [sink])
    p = subprocess.Popen([drive_bin(), "-c", conf, "-n", "300", "-r", "1000", "-p", "mem", "-w", "10"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)  # all 300 emitted while the receiver is down
        receiver.start()
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    s = json.loads(out.decode().strip().splitlines()[-1])["sinks"][0]
    assert s["delivered"] == 300 and s["dropped"] == 0 and s["spooled"] == 0 and s["retried"] > 0, s
    assert receiver.request_ids() == ["mem-%06d" % i for i in range(300)]


def test_forward_spool_survives_restart(tmp_path, receiver):
    sink = {"type": "forward", "address": "127.0.0.1:%d" % receiver.port,
            "spool": {"dir": str(tmp_path / "spool")}, "retry": {"initial": "50ms", "max": "100ms"}}
    conf = write_conf(tmp_path, [sink])
    stats, _ = drive(conf, n=200, prefix="r1", wait=0.3)
    assert stats["sinks"][0]["spooled"] == 200 and stats["sinks"][0]["spool_bytes"] > 0
    assert [f for f in os.listdir(str(tmp_path / "spool")) if f.endswith(".seg")]
    receiver.start()
    stats, _ = drive(conf, n=0, wait=10, delivered=200)
    assert stats["sinks"][0]["delivered"] == 200
    assert receiver.request_ids() == ["r1-%06d" % i for i in range(200)]
    assert os.listdir(str(tmp_path / "spool")) == []


def test_forward_spool_limit_counts_drops(tmp_path, receiver):
    sink = {"type": "forward", "address": "127.0.0.1:%d" % receiver.port,
            "spool": {"dir": str(tmp_path / "spool"), "max_bytes": "64k", "segment_bytes": "64k"},
            "retry": {"initial": "50ms", "max": "100ms"}}
    conf = write_conf(tmp_path, [sink])
    stats, _ = drive(conf, n=1000, prefix="lim", wait=0.3)
    s = stats["sinks"][0]
    assert s["dropped"] > 0 and s["spooled"] + s["dropped"] == 1000, stats
    assert s["spool_bytes"] <= 64 * 1024
    kept = s["spooled"]
    receiver.start()
    stats, _ = drive(conf, n=0, wait=10, delivered=kept)
    assert stats["sinks"][0]["delivered"] == kept
    # what was kept is the oldest events, whole and in order
    assert receiver.request_ids() == ["lim-%06d" % i for i in range(kept)]


def test_one_slow_sink_does_not_hold_up_another(tmp_path, receiver):
    """A forward sink whose receiver never acknowledges, next to a file sink."""
    receiver.withhold_acks = 10 ** 9
    receiver.start()
    path = tmp_path / "events.jsonl"
    sinks = [{"type": "forward", "address": "127.0.0.1:%d" % receiver.port, "ack_timeout": "2s"},
             {"type": "file", "path": str(path)}]
    t0 = time.monotonic()
    stats, _ = drive(write_conf(tmp_path, sinks), n=300, prefix="two", wait=1.5, delivered=300)
    fwd, fil = stats["sinks"]
    assert fil["delivered"] == 300 and fwd["delivered"] == 0
    lines = path.read_text().splitlines()
    assert [json.loads(l)["http"]["request"]["id"] for l in lines] == ["two-%06d" % i for i in range(300)]
    assert time.monotonic() - t0 < 10


# ---- configuration through wafer ------------------------------------------------

def test_wafer_rejects_bad_events_section(tmp_path):
    conf = tmp_path / "wafer.yaml"
    conf.write_text("listen:\n  - address: 127.0.0.1:0\nupstream:\n  servers:\n    - address: 127.0.0.1:9\n"
                    "events:\n  sinks:\n    - type: forward\n      address: 127.0.0.1:24224\n      acks: true\n")
    p = subprocess.run([wafer_bin(), "-t", "-c", str(conf)], capture_output=True, timeout=30)
    assert p.returncode == 1
    err = p.stderr.decode()
    assert "wafer.yaml:10:7: events.sinks[0].acks: unknown key" in err, err


def test_wafer_runs_the_hub(start_wafer, pyup, tmp_path, receiver):
    """wafer run with an events section: the sinks start with the server, their
    counters are on /metrics (and pass promtool), SIGUSR1 reopens a file sink,
    SIGTERM stops the hub after the workers."""
    import shutil
    from harness import HTTP
    path = tmp_path / "events.jsonl"
    w = start_wafer(pyup.address, events={"sinks": [
        {"type": "file", "name": "local", "path": str(path)},
        {"type": "forward", "name": "fluentd", "address": "127.0.0.1:%d" % receiver.port,
         "spool": {"dir": str(tmp_path / "spool")}}]})
    with w.connect() as c:
        assert c.request("GET", "/x").status == 200
    with HTTP(w.admin_port) as c:
        r = c.request("GET", "/metrics", host="admin")
    assert r.status == 200
    text = r.body.decode()
    for series in ('wafer_sink_delivered_total{sink="local",type="file"} 0',
                   'wafer_sink_dropped_total{sink="fluentd",type="forward"} 0',
                   'wafer_sink_spool_bytes{sink="fluentd",type="forward"} 0',
                   'wafer_sink_up{sink="local",type="file"} 1', "wafer_events_dropped_total 0"):
        assert series in text, text
    promtool = shutil.which("promtool")
    if promtool:
        p = subprocess.run([promtool, "check", "metrics"], input=r.body, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        assert p.returncode == 0 and not p.stdout.strip(), p.stdout.decode()  # no lint remark either
    assert path.exists()
    os.rename(str(path), str(path) + ".1")
    w.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.exists(), "SIGUSR1 did not reopen the file sink"


def test_wafer_stops_when_a_sink_cannot_open(tmp_path):
    conf = tmp_path / "wafer.yaml"
    conf.write_text("listen:\n  - address: 127.0.0.1:0\nupstream:\n  servers:\n    - address: 127.0.0.1:9\n"
                    "admin:\n  enabled: false\n"
                    "events:\n  sinks:\n    - {type: file, name: audit, path: %s/no/such/dir/ev.jsonl}\n" % tmp_path)
    p = subprocess.run([wafer_bin(), "run", "-c", str(conf)], capture_output=True, timeout=30)
    assert p.returncode == 1
    assert "events: sink audit: %s/no/such/dir/ev.jsonl: No such file or directory" % tmp_path in p.stderr.decode()


def test_wafer_blocked_request_event_in_file(start_wafer, pyup, tmp_path):
    """A request blocked by the model: its event, as wafer writes it, names the request, the client, the unit
    that decided and the model."""
    from harness import ROOT
    path = tmp_path / "events.jsonl"
    w = start_wafer(pyup.address,
                    detection={"model": os.path.join(ROOT, "models", "default"), "backend": "cpu", "threads": 1,
                               "timeout": "3s"},
                    policy={"mode": "block", "ban": {"detections": 0}},
                    proxy={"trust_request_id": True, "request_id_header": "X-Request-Id",
                           "x_forwarded_for": True, "forwarded": False, "via": True},
                    events={"sinks": [{"type": "file", "path": str(path), "fsync": "batch"}]})
    with w.connect() as c:
        r = c.request("GET", "/search?q=1%20UNION%20SELECT%20username,password%20FROM%20users--",
                      headers=[("X-Request-Id", "evt-file-1"), ("User-Agent", "evil/1.0 \u00e9")])
        assert r.status == 403
        assert c.request("GET", "/search?q=best+pizza", headers=[("X-Request-Id", "evt-file-2")]).status == 200
    deadline = time.monotonic() + 5
    lines = []
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if lines:
            break
        time.sleep(0.02)
    assert len(lines) == 1, lines
    ev = json.loads(lines[0])
    assert ev["event"]["action"] == "block" and ev["event"]["reason"] == "model"
    assert ev["http"]["request"] == {"id": "evt-file-1", "method": "GET"}
    assert ev["http"]["response"]["status_code"] == 403
    assert ev["source"]["ip"] == "127.0.0.1" and ev["source"]["port"] > 0
    assert ev["url"]["path"] == "/search" and "UNION" in ev["url"]["query"]
    assert ev["user_agent"]["original"] == "evil/1.0 \u00e9"  # sent as one byte 0xe9 or as UTF-8: either reads so
    assert ev["wafer"]["class"] != "benign" and 0.5 < ev["wafer"]["score"] <= 1
    u = ev["wafer"]["units"][0]
    assert u["kind"] == "query" and u["name"] == "q" and "UNION SELECT" in u["text"]
    assert ev["wafer"]["model"]


def test_reload_keeps_the_hub_and_says_so(start_wafer, pyup, tmp_path):
    path = tmp_path / "events.jsonl"
    w = start_wafer(pyup.address, events={"sinks": [{"type": "file", "path": str(path)}]})

    def reload_and_wait(cfg):
        n = w.stderr().count("reload")
        w.write_config(cfg)
        w.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and w.stderr().count("reload") == n:
            time.sleep(0.02)
        time.sleep(0.2)
    reload_and_wait(w.config)  # the same section: nothing to say
    assert "events changes" not in w.stderr()
    changed = dict(w.config, events={"sinks": [{"type": "file", "path": str(tmp_path / "other.jsonl")}]})
    reload_and_wait(changed)
    assert "reload: events changes take effect at the next start" in w.stderr()
    with w.connect() as c:
        assert c.request("GET", "/after-reload").status == 200
