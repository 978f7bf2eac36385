"""Sink outage during load: wafer proxies and blocks requests (each block is a
security event sent to a Fluentd forward receiver with acks and a spool);
while the load runs, the receiver first stops acknowledging (a hung sink: each
batch waits ack_timeout), then stops altogether (connections refused), then
comes back (the spool is replayed under load).

Checked: no request waits on the sink (the slowest request of every phase is
far below ack_timeout, which a request held up by the sink would take), the
median and the 90th percentile of each phase are those of the phase with the
sink up, within noise; every event arrives at the receiver exactly once
(matched by request id).

Events come from the inspection path (the `detection` section, models/default)."""

import http.client
import json
import os
import statistics
import subprocess
import threading
import time
import uuid

import pytest

from harness import ROOT, Wafer, finish_wafer, wafer_bin
from sinks import ForwardReceiverProcess

MODEL = os.path.join(ROOT, "models", "default")
ATTACK_Q = "1%20UNION%20SELECT%20username,password%20FROM%20users--"
PHASE_S = 3.0
RATE = 100  # requests per second per client thread
ACK_TIMEOUT_MS = 3000
THREADS = 2


def inspection_available(tmp_path):
    conf = tmp_path / "probe.yaml"
    conf.write_text("listen:\n  - address: 127.0.0.1:0\nupstream:\n  servers:\n    - address: 127.0.0.1:9\n"
                    "detection:\n  model: %s\n  backend: cpu\npolicy:\n  mode: block\n" % MODEL)
    p = subprocess.run([wafer_bin(), "-t", "-c", str(conf)], capture_output=True, timeout=60)
    return p.returncode == 0, p.stderr.decode()


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def test_sink_outage_during_load(tmp_path, pyup):
    ok, why = inspection_available(tmp_path)
    assert ok, "inspection (the detection section) does not load: %s" % why.strip()[-300:]
    recv = ForwardReceiverProcess(str(tmp_path)).start()
    spool = tmp_path / "spool"
    (tmp_path / "w").mkdir()
    w = Wafer(pyup.address, str(tmp_path / "w"), workers=1,
              log={"level": "info", "error_log": "stderr", "access_log": "off"},
              detection={"model": MODEL, "backend": "cpu", "threads": 1, "timeout": "3s"},
              policy={"mode": "block", "ban": {"detections": 0}},
              proxy={"trust_request_id": True, "request_id_header": "X-Request-Id",
                     "x_forwarded_for": True, "forwarded": False, "via": True},
              events={"sinks": [{"type": "forward", "address": "127.0.0.1:%d" % recv.port, "batch": 64,
                                 "ack_timeout": "%dms" % ACK_TIMEOUT_MS, "spool": {"dir": str(spool), "max_bytes": "64m"},
                                 "retry": {"initial": "100ms", "max": "500ms"}}]})
    w.start()
    results = []  # (t_start, latency_s, status, request_id)
    lock = threading.Lock()
    stop = threading.Event()
    t0 = time.monotonic()

    def client(k):
        conn = http.client.HTTPConnection(w.host, w.port, timeout=10)
        i = 0
        while not stop.is_set():
            due = t0 + i / RATE
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            rid = "load-%d-%06d-%s" % (k, i, uuid.uuid4().hex[:6])
            start = time.monotonic()
            try:
                conn.request("GET", "/search?q=%s" % ATTACK_Q, headers={"X-Request-Id": rid,
                                                                         "Accept": "application/json"})
                r = conn.getresponse()
                r.read()
                status = r.status
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection(w.host, w.port, timeout=10)
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection(w.host, w.port, timeout=10)
            with lock:
                results.append((start - t0, time.monotonic() - start, status, rid))
            i += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(THREADS)]
    try:
        for t in threads:
            t.start()
        time.sleep(PHASE_S)
        recv.hang()                      # the sink hangs: batches wait for acks that never come
        t_hung = time.monotonic() - t0
        time.sleep(PHASE_S)
        recv.stop()                      # the sink goes down: connections refused
        t_down = time.monotonic() - t0
        time.sleep(PHASE_S)
        recv.start()                     # and comes back: the spool is replayed under load
        t_up = time.monotonic() - t0
        time.sleep(PHASE_S)
        stop.set()
        for t in threads:
            t.join(15)
        blocked = [rid for _, _, st, rid in results if st == 403]
        assert recv.wait_for(len(blocked), timeout=30), (len(set(recv.request_ids())), len(blocked))
    finally:
        stop.set()
        finish_wafer(w)
        recv.stop()

    statuses = {}
    for _, _, st, _ in results:
        statuses[st] = statuses.get(st, 0) + 1
    assert set(statuses) == {403}, statuses  # every request was an attack, blocked
    ids = recv.request_ids()
    assert sorted(ids) == sorted(blocked), "events lost or doubled"
    assert len(ids) == len(set(ids))
    assert recv.errors() == []

    # latency per phase (the first half second of the run is warm-up)
    up = [lat for t, lat, _, _ in results if 0.5 <= t < t_hung]
    hung = [lat for t, lat, _, _ in results if t_hung <= t < t_down]
    down = [lat for t, lat, _, _ in results if t_down <= t < t_up]
    back = [lat for t, lat, _, _ in results if t >= t_up]
    summary = {name: {"n": len(xs), "p50_ms": round(1000 * statistics.median(xs), 2),
                      "p90_ms": round(1000 * pct(xs, 0.90), 2), "p99_ms": round(1000 * pct(xs, 0.99), 2),
                      "max_ms": round(1000 * max(xs), 2)}
               for name, xs in (("sink_up", up), ("sink_hung", hung), ("sink_down", down), ("sink_back", back))}
    with open(os.path.join(str(tmp_path), "latency.json"), "w") as f:
        json.dump(summary, f)
    print("\nlatency by phase:", json.dumps(summary), "requests blocked:", len(blocked), "events received:",
          len(ids), "distinct:", len(set(ids)))
    base50, base90 = summary["sink_up"]["p50_ms"], summary["sink_up"]["p90_ms"]
    for phase in ("sink_up", "sink_hung", "sink_down", "sink_back"):
        s = summary[phase]
        # a request held up by the sink would take ack_timeout (3 s); this shared
        # 2-core machine (other test suites running) alone makes tails of
        # hundreds of milliseconds at times
        assert s["max_ms"] < ACK_TIMEOUT_MS / 2, summary
        assert s["p50_ms"] <= 1.5 * base50 + 1, summary
        assert s["p90_ms"] <= 3 * base90 + 10, summary
    st = w.stderr()
    assert "delivery failed" in st and "delivering again" in st
