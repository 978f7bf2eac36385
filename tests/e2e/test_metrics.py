"""Prometheus metrics on the admin listener: the exposition counts what the
data plane did and passes `promtool check metrics`, and a real Prometheus
server (Debian's package) scrapes it and answers queries about it."""

import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from harness import HTTP, free_port, reap, spawn, wafer_bin, wait_accepting

NO_PROM = "Debian package prometheus is not installed (scripts/install-deps installs it): %s not found"


def scrape(w, token=None):
    with HTTP(w.admin_port) as c:
        hdrs = [("Authorization", "Bearer " + token)] if token else None
        r = c.request("GET", "/metrics", headers=hdrs, host="admin")
    assert r.status == 200, r
    return r.body.decode()


def sample(text, series):
    m = re.search(r"^%s (\S+)$" % re.escape(series), text, re.M)
    return float(m.group(1)) if m else None


def test_exposition_counts_and_passes_promtool(start_wafer, pyup, tmp_path):
    w = start_wafer(pyup.address)
    before = scrape(w)
    with w.connect() as c:
        for i in range(5):
            assert c.request("GET", "/m/%d" % i).status == 200
        assert c.request("GET", "/m?up_status=503").status == 503
    with w.connect() as c:
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert c.read_response().status == 400
    # a response is counted once it is logged, which may come just after the client has read it
    deadline = time.monotonic() + 5
    while True:
        after = scrape(w)
        done = (sample(after, "wafer_request_duration_seconds_count") or 0) - \
            (sample(before, "wafer_request_duration_seconds_count") or 0)
        if done >= 7 or time.monotonic() > deadline:
            break
        time.sleep(0.05)

    def delta(series):
        return sample(after, series) - (sample(before, series) or 0)
    assert delta("wafer_http_requests_total") == 6
    assert delta('wafer_responses_total{code="2xx"}') == 5
    assert delta('wafer_responses_total{code="5xx"}') == 1
    assert delta('wafer_http_rejects_total{reason="cl_and_te"}') == 1
    # (the harness's start-up probe may be accepted after the first scrape)
    assert delta("wafer_connections_accepted_total") in (2, 3)
    # every response, the refused one too, is in the latency histogram
    assert delta("wafer_request_duration_seconds_count") == 7
    assert sample(after, 'wafer_request_duration_seconds_bucket{le="+Inf"}') == \
        sample(after, "wafer_request_duration_seconds_count")
    assert sample(after, "wafer_request_duration_seconds_sum") > 0
    version = subprocess.run([wafer_bin(), "--version"], stdout=subprocess.PIPE, timeout=10).stdout.split()[1]
    assert re.search(r'^wafer_build_info\{version="%s",cuda="(true|false)"\} 1$' % re.escape(version.decode()),
                     after, re.M)
    assert sample(after, "wafer_ready") == 1
    assert sample(after, "process_resident_memory_bytes") > 1e6
    assert sample(after, "process_open_fds") > 3
    assert abs(sample(after, "process_start_time_seconds") - time.time()) < 120

    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip(NO_PROM % "promtool")
    p = subprocess.run([promtool, "check", "metrics"], input=after.encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    assert p.returncode == 0 and not p.stdout.strip(), p.stdout.decode()


def _prom_query(port, q):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (port, urllib.parse.urlencode({"query": q}))
    with urllib.request.urlopen(url, timeout=5) as r:
        doc = json.loads(r.read())
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


def test_prometheus_server_scrapes_wafer(start_wafer, pyup, tmp_path):
    prom = shutil.which("prometheus")
    if not prom:
        pytest.skip(NO_PROM % "prometheus")
    token = "prom-scrape-t0ken"
    w = start_wafer(pyup.address, admin={"token": token})
    with w.connect() as c:
        for i in range(3):
            assert c.request("GET", "/before-scrape/%d" % i).status == 200

    # its own configuration, storage and port; Debian's service (if any) is left alone
    port = free_port()
    (tmp_path / "data").mkdir()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n"
        "  - job_name: wafer\n"
        "    authorization: {type: Bearer, credentials: %s}\n"
        "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % (token, w.admin_port))
    log = open(tmp_path / "prometheus.log", "wb")
    p = spawn([prom, "--config.file=%s" % (tmp_path / "prometheus.yml"),
               "--storage.tsdb.path=%s" % (tmp_path / "data"),
               "--web.listen-address=127.0.0.1:%d" % port, "--log.level=warn"],
              log, subprocess.STDOUT, cwd=str(tmp_path))
    try:
        assert wait_accepting(port, 30, p), (tmp_path / "prometheus.log").read_text()[-3000:]
        deadline = time.monotonic() + 40
        got = None
        while time.monotonic() < deadline:
            try:
                res = _prom_query(port, 'wafer_http_requests_total{job="wafer"}')
                up = _prom_query(port, 'up{job="wafer"}')
            except OSError:
                res, up = [], []
            if res and up and up[0]["value"][1] == "1" and float(res[0]["value"][1]) >= 3:
                got = res
                break
            time.sleep(0.5)
        assert got, "no wafer sample in Prometheus; its log:\n" + (tmp_path / "prometheus.log").read_text()[-3000:]
        assert got[0]["metric"]["instance"] == "127.0.0.1:%d" % w.admin_port
        # a histogram arrived whole: its buckets can be queried as such
        q = _prom_query(port, 'wafer_request_duration_seconds_count{job="wafer"}')
        assert q and float(q[0]["value"][1]) >= 3
        # the scrape target reports healthy (no parse errors on Prometheus' side)
        with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/targets" % port, timeout=5) as r:
            targets = json.loads(r.read())["data"]["activeTargets"]
        assert targets and targets[0]["health"] == "up" and not targets[0]["lastError"], targets
    finally:
        reap(p)
        log.close()
