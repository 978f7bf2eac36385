"""The TheHive sink against a local server that plays TheHive 5: every
request is checked against the alert API (POST /api/v1/alert, Bearer API
key, the documented alert and observable fields), alerts are unique on
(type, source, sourceRef) as in TheHive, and recorded error answers are
served on demand: 401, 500, a timeout (the alert is created after the client
gave up, as a slow TheHive does), a permanent 400.

The sink runs behind the security-event hub in tests/tools/thehive_feed
(built with the tests), which emits events read as JSON lines, as the data
plane does, and stops the hub once the sink is idle."""

import json
import os
import re
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness import free_port, wafer_bin

API_KEY = "hive-api-k3y/with+chars=="
DATA_TYPES = {"ip", "url", "user-agent", "hostname", "domain", "fqdn", "mail", "hash", "filename", "other",
              "uri_path", "autonomous-system", "regexp", "registry", "mail-subject", "file"}
ALERT_FIELDS = {"type": str, "source": str, "sourceRef": str, "title": str, "description": str, "date": int,
                "externalLink": str, "severity": int, "tags": list, "flag": bool, "tlp": int, "pap": int,
                "customFields": list, "summary": str, "status": str, "assignee": str, "caseTemplate": str,
                "observables": list, "procedures": list}
OBS_FIELDS = {"dataType": str, "data": str, "message": str, "startDate": int, "tlp": int, "pap": int,
              "tags": list, "ioc": bool, "sighted": bool, "sightedAt": int, "ignoreSimilarity": bool}


def feed_bin():
    return os.path.join(os.path.dirname(wafer_bin()), "tests", "thehive_feed")


class FakeHive:
    """plays[i] says how to answer the i-th request: "ok", "401", "500",
    "timeout" (create the alert, answer only after the client's timeout),
    "bad" (a permanent 400). Past the list: "ok"."""

    def __init__(self, plays=(), port=0, org=None):
        self.plays = list(plays)
        self.org = org
        self.requests = []     # (sourceRef, what was answered)
        self.alerts = {}       # (type, source, sourceRef) -> alert
        self.errors = []       # schema violations
        self.lock = threading.Lock()
        hive = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _answer(self, status, doc):
                body = json.dumps(doc).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            def do_GET(self):
                hive.errors.append("GET %s" % self.path)
                self._answer(405, {"type": "MethodNotAllowed"})

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                with hive.lock:
                    play = hive.plays.pop(0) if hive.plays else "ok"
                errs = hive.check(self, raw)
                ref = None
                try:
                    alert = json.loads(raw)
                    ref = alert.get("sourceRef")
                except ValueError:
                    alert = None
                with hive.lock:
                    hive.requests.append((ref, play))
                    hive.errors.extend(errs)
                if play == "401":
                    return self._answer(401, {"type": "AuthenticationError", "message": "Authentication failure"})
                if play == "500":
                    return self._answer(500, {"type": "InternalError", "message": "database unavailable"})
                if play == "bad":
                    return self._answer(400, {"type": "BadRequest", "message": "Invalid value for field severity"})
                if errs or alert is None:
                    return self._answer(400, {"type": "BadRequest", "message": "; ".join(errs)})
                key = (alert["type"], alert["source"], alert["sourceRef"])
                with hive.lock:
                    dup = key in hive.alerts
                    if not dup:
                        hive.alerts[key] = alert
                if dup:
                    return self._answer(400, {"type": "CreateError",
                                              "message": "Alert %s/%s/%s already exists" % key})
                if play == "timeout":
                    time.sleep(1.5)  # created, but the client stopped waiting
                out = dict(alert, _id="~%d" % (len(hive.alerts) * 4096), _type="Alert", _createdBy="wafer@thehive.local",
                           _createdAt=int(time.time() * 1000), status="New", stage="New")
                return self._answer(201, out)

        self.srv = ThreadingHTTPServer(("127.0.0.1", port), H)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()

    def check(self, h, raw):
        e = []
        if h.path != "/api/v1/alert":
            e.append("path %s" % h.path)
        if h.headers.get("Authorization") != "Bearer " + API_KEY:
            e.append("Authorization %r" % h.headers.get("Authorization"))
        if (h.headers.get("Content-Type") or "").split(";")[0] != "application/json":
            e.append("Content-Type %r" % h.headers.get("Content-Type"))
        if self.org and h.headers.get("X-Organisation") != self.org:
            e.append("X-Organisation %r" % h.headers.get("X-Organisation"))
        try:
            a = json.loads(raw)
        except ValueError as x:
            return e + ["body is not JSON: %s" % x]
        if not isinstance(a, dict):
            return e + ["body is not an object"]
        for k in ("type", "source", "sourceRef", "title", "description"):
            if not isinstance(a.get(k), str) or not a[k]:
                e.append("required field %s missing or empty" % k)
        for k, v in a.items():
            if k not in ALERT_FIELDS:
                e.append("unknown alert field %s" % k)
            elif not isinstance(v, ALERT_FIELDS[k]) or (ALERT_FIELDS[k] is int and isinstance(v, bool)):
                e.append("field %s has type %s" % (k, type(v).__name__))
        if not 1 <= a.get("severity", 2) <= 4:
            e.append("severity %r" % a.get("severity"))
        if not 0 <= a.get("tlp", 2) <= 4 or not 0 <= a.get("pap", 2) <= 3:
            e.append("tlp/pap %r/%r" % (a.get("tlp"), a.get("pap")))
        if "date" in a and abs(a["date"] - time.time() * 1000) > 3600 * 1000:
            e.append("date %r is not milliseconds of now" % a["date"])
        if not all(isinstance(t, str) and t for t in a.get("tags", [])):
            e.append("tags %r" % a.get("tags"))
        seen = set()
        for o in a.get("observables", []):
            if not isinstance(o, dict):
                e.append("observable %r" % o)
                continue
            for k, v in o.items():
                if k not in OBS_FIELDS or not isinstance(v, OBS_FIELDS[k]):
                    e.append("observable field %s=%r" % (k, v))
            if o.get("dataType") not in DATA_TYPES or not o.get("data"):
                e.append("observable %r" % o)
            key = (o.get("dataType"), o.get("data"))
            if key in seen:
                e.append("observable twice: %r" % (key,))
            seen.add(key)
        return e


@pytest.fixture
def hive():
    started = []

    def start(*a, **kw):
        h = FakeHive(*a, **kw)
        started.append(h)
        return h
    yield start
    for h in started:
        h.stop()


def write_conf(tmp_path, port, **over):
    conf = {"type": "thehive", "name": "hive", "url": "http://127.0.0.1:%d/" % port, "api_key": API_KEY,
            "window": "1h", "timeout": "700ms", "retry": {"initial": "100ms", "max": "400ms"}, "samples": 2,
            "flush_timeout": "8s"}
    conf.update(over)
    lines = ["events:", "  stop_timeout: 10s", "  sinks:"]
    first = True
    for k, v in conf.items():
        pad = "    - " if first else "      "
        first = False
        if isinstance(v, dict):
            lines.append("%s%s:" % (pad, k))
            lines += ["        %s: %s" % (k2, json.dumps(v2)) for k2, v2 in v.items()]
        else:
            lines.append("%s%s: %s" % (pad, k, json.dumps(v)))
    p = tmp_path / "thehive.yaml"
    p.write_text("\n".join(lines) + "\n")
    return str(p)


def run_feed(conf, events, max_ms=400, background=False):
    b = feed_bin()
    if not os.access(b, os.X_OK):
        pytest.fail("%s not built (cmake --build build --target thehive_feed)" % b)
    data = "".join(json.dumps(e) + "\n" for e in events).encode()
    argv = [b, conf, "--max-ms", str(max_ms)]
    if background:
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdin.write(data)
        p.stdin.close()
        p.stdin = None  # so that communicate() does not flush it
        return p
    p = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout), p.stderr.decode()


def ev(ip, cls, score=0.97, **kw):
    e = {"client_ip": ip, "cls": cls, "score": score, "action": "block", "status": 403, "method": "GET",
         "host": "shop.example:8080", "path": "/search", "query": "q=1", "user_agent": "sqlmap/1.7",
         "request_id": "rid-%s-%s" % (ip, cls)}
    e.update(kw)
    return e


def test_alerts_aggregated_per_client_and_class(hive, tmp_path):
    h = hive()
    hostile = "q=`` ![x](http://evil.example/p.png) <img src=x> ```` end"
    events = [ev("192.0.2.7", "sqli", 0.91 + i / 100, request_id="r%d" % i) for i in range(5)]
    events += [ev("192.0.2.7", "xss", 0.75, query=hostile, action="monitor", status=0,
                  units=[{"kind": "query", "name": "q", "text": "<script>alert(1)</script>", "cls": "xss",
                          "score": 0.75}])]
    events += [ev("198.51.100.9", "sqli", 0.99, action="block", misp_events=["1234", "5c0e7b1a-0000-4000-8000-000000000001"],
                  misp_tags="tlp:green,apt-x", reason="indicator")]
    events += [ev("198.51.100.9", "", 0, action="ban", reason="banned", status=403)]
    events += [ev("203.0.113.5", "sqli", action="pass"), ev("203.0.113.5", "sqli", action="limit", status=429)]
    stats, err = run_feed(write_conf(tmp_path, h.port, organisation="soc-team", tlp=3, pap=1), events)
    assert not h.errors, h.errors
    assert stats["events"] == 8 and stats["created"] == 4, (stats, err)
    assert stats["failed"] == stats["dropped"] == stats["duplicate"] == 0
    alerts = {(a["title"].split(" from ")[0], a["observables"][0]["data"]): a for a in h.alerts.values()}
    assert set(alerts) == {("wafer: sqli", "192.0.2.7"), ("wafer: xss", "192.0.2.7"), ("wafer: sqli", "198.51.100.9"),
                           ("wafer: banned", "198.51.100.9")}

    a = alerts[("wafer: sqli", "192.0.2.7")]
    assert a["type"] == "wafer" and a["source"] == "wafer" and re.fullmatch(r"wafer-[0-9a-f]{32}", a["sourceRef"])
    assert "(5 requests)" in a["title"] and "**5 requests**" in a["description"]
    assert a["severity"] == 3  # highest score 0.95
    assert a["tlp"] == 3 and a["pap"] == 1
    assert "class:sqli" in a["tags"] and "action:block" in a["tags"]
    obs = {(o["dataType"], o["data"]) for o in a["observables"]}
    assert ("ip", "192.0.2.7") in obs and ("url", "http://shop.example:8080/search?q=1") in obs
    assert ("hostname", "shop.example") in obs and ("user-agent", "sqlmap/1.7") in obs
    assert a["description"].count("Request-Id: r") == 2  # samples: 2 of 5

    x = alerts[("wafer: xss", "192.0.2.7")]
    assert x["severity"] == 2 and "action:monitor" in x["tags"]
    # client-chosen text sits inside a fence longer than any backtick run in it
    d = x["description"]
    i = d.index(hostile)
    fence = re.findall(r"^(`{3,})$", d[:i], re.M)[-1]
    assert len(fence) > 4 and d[i:].count("\n" + fence + "\n") >= 1
    assert "<script>alert(1)</script>" in d

    m = alerts[("wafer: sqli", "198.51.100.9")]
    assert m["severity"] == 4
    assert {"misp:event=1234", "misp:event=5c0e7b1a-0000-4000-8000-000000000001", "tlp:green", "apt-x"} <= set(m["tags"])
    b = alerts[("wafer: banned", "198.51.100.9")]
    assert b["severity"] == 2 and "action:ban" in b["tags"]
    assert len({a["sourceRef"] for a in h.alerts.values()}) == 4


def test_window_closes_without_stop(hive, tmp_path):
    """A group is sent when its window ends, not only at exit."""
    h = hive()
    conf = write_conf(tmp_path, h.port, window="1s", flush_timeout="0s")
    t0 = time.monotonic()
    stats, _ = run_feed(conf, [ev("192.0.2.1", "cmdi"), ev("192.0.2.1", "cmdi")], max_ms=10000)
    assert stats["created"] == 1 and stats["dropped"] == 0
    assert time.monotonic() - t0 < 5
    assert not h.errors, h.errors


def test_errors_retried_without_duplicates(hive, tmp_path):
    # first 500, then 401, then one that times out after creating the alert
    h = hive(plays=["500", "401", "timeout"])
    events = [ev("192.0.2.%d" % i, "sqli") for i in range(1, 4)]
    stats, err = run_feed(write_conf(tmp_path, h.port), events)
    assert not h.errors, h.errors
    assert len(h.alerts) == 3
    assert stats["created"] + stats["duplicate"] == 3, (stats, err)
    assert stats["duplicate"] == 1  # the retry of the timed-out request found it there
    assert stats["retries"] == 3 and stats["failed"] == stats["dropped"] == 0
    # one alert was sent four times (500, 401, timeout, then "already exists"); the others once
    refs = [r for r, _ in h.requests]
    timed_out = [r for r, play in h.requests if play == "timeout"][0]
    assert refs.count(timed_out) == 4 and len(refs) == 6
    assert "answered 500" in err and "answered 401" in err


def test_permanent_refusal_is_not_retried(hive, tmp_path):
    h = hive(plays=["bad"])
    stats, err = run_feed(write_conf(tmp_path, h.port), [ev("192.0.2.1", "xss")])
    assert stats["failed"] == 1 and stats["created"] == 0 and stats["retries"] == 0
    assert len(h.requests) == 1 and "Invalid value" in err


def test_delivery_after_outage(hive, tmp_path):
    port = free_port()  # nothing listens there yet
    conf = write_conf(tmp_path, port, window="1s", flush_timeout="0s")
    p = run_feed(conf, [ev("192.0.2.%d" % i, "sqli") for i in range(1, 6)], max_ms=15000, background=True)
    try:
        time.sleep(2.5)  # the window has ended; deliveries fail (connection refused) and back off
        assert p.poll() is None
        h = hive(port=port)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
    stats = json.loads(out)
    assert stats["created"] == 5 and stats["dropped"] == 0, (stats, err)
    assert stats["retries"] >= 2
    assert len(h.requests) == 5 and len(h.alerts) == 5 and not h.errors


def test_bounded_groups_and_pending(hive, tmp_path):
    h = hive()
    events = [ev("192.0.2.%d" % i, "sqli") for i in range(1, 6)]
    stats, _ = run_feed(write_conf(tmp_path, h.port, max_groups=3), events)
    assert stats["events"] == 3 and stats["events_dropped"] == 2 and stats["created"] == 3

    # a dead TheHive: at most max_pending alerts wait; the oldest go first
    port = free_port()
    stats, err = run_feed(write_conf(tmp_path, port, max_pending=2, window="1s", flush_timeout="0s"), events,
                          max_ms=2500)
    assert stats["created"] == 0 and stats["dropped"] == 5, (stats, err)


def test_bad_configuration_is_reported(tmp_path):
    p = tmp_path / "bad.yaml"
    cases = [
        ("    - {type: thehive, url: ftp://x, api_key: k}\n", b"http://"),
        ("    - {type: thehive, url: http://x}\n", b"api_key"),
        ("    - {type: thehive, url: http://x, api_key: k, tlp: 7}\n", b"tlp"),
        ("    - {type: thehive, url: http://x, api_key: k, severity: 3}\n", b"severity"),
        ("    - {type: thehive, url: http://x, api_key_file: /nonexistent/key}\n", b"/nonexistent/key"),
    ]
    for sink, what in cases:
        p.write_text("events:\n  sinks:\n" + sink)
        r = subprocess.run([feed_bin(), str(p)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=10)
        assert r.returncode == 2 and b"bad.yaml:3:" in r.stderr and what in r.stderr, (sink, r.stderr)
    # the key from a file
    (tmp_path / "key").write_text(API_KEY + "\n")
    p.write_text("events:\n  sinks:\n    - {type: thehive, url: http://x, api_key_file: %s}\n" % (tmp_path / "key"))
    r = subprocess.run([feed_bin(), str(p), "--max-ms", "0"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=20)
    assert r.returncode == 0, r.stderr


def test_blocked_requests_of_a_running_wafer_become_alerts(hive, start_wafer, pyup, tmp_path):
    """The whole way: requests classified by the default model in the proxy,
    security events through the hub, alerts in TheHive at wafer's exit."""
    from harness import ROOT
    h = hive()
    sink = {"type": "thehive", "name": "hive", "url": "http://127.0.0.1:%d" % h.port, "api_key": API_KEY,
            "window": "1h", "timeout": "2s", "flush_timeout": "8s", "samples": 2}
    w = start_wafer(pyup.address,
                    detection={"model": os.path.join(ROOT, "models", "default"), "backend": "cpu", "threads": 1,
                               "timeout": "3s"},
                    policy={"mode": "block", "ban": {"detections": 0}}, events={"sinks": [sink]})
    w.expect_exit = True
    sqli = "1%20UNION%20SELECT%20username,password%20FROM%20users--"
    xss = "%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E"
    with w.connect() as c:
        for i in range(3):
            r = c.request("GET", "/shop/%d?id=%s" % (i, sqli), [("User-Agent", "evil-bot/1.0")])
            assert r.status == 403
        assert c.request("GET", "/search?q=" + xss).status == 403
        assert c.request("GET", "/search?q=best+pizza").status == 200
    # groups are open for the hour: nothing is sent before wafer stops
    time.sleep(0.3)
    assert not h.requests
    assert w.stop() == 0
    assert not h.errors, h.errors
    alerts = {a["title"].split(" from ")[0]: a for a in h.alerts.values()}
    assert set(alerts) == {"wafer: sqli", "wafer: xss"}, list(alerts)
    a = alerts["wafer: sqli"]
    # severity follows the highest score (docs/thehive.md): the model's own sqli probability for the unit
    p = subprocess.run([wafer_bin(), "classify", "-m", os.path.join(ROOT, "models", "default"), "--json", "--",
                        "query id: 1 UNION SELECT username,password FROM users--"], capture_output=True, timeout=60)
    score = json.loads(p.stdout.decode().splitlines()[0])["probs"]["sqli"]
    want = 1 if score < 0.7 else 2 if score < 0.9 else 3 if score < 0.98 else 4
    assert "(3 requests)" in a["title"] and a["severity"] == want, (score, a["severity"])
    assert "class:sqli" in a["tags"] and "action:block" in a["tags"]
    obs = {(o["dataType"], o["data"]) for o in a["observables"]}
    assert ("ip", "127.0.0.1") in obs and ("user-agent", "evil-bot/1.0") in obs
    assert any(t == "url" and "/shop/0?id=1%20UNION" in d for t, d in obs)
    assert "UNION SELECT" in a["description"]
    assert "(1 request)" in alerts["wafer: xss"]["title"]
