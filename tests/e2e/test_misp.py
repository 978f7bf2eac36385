"""MISP import against a local server that plays MISP (`wafer misp`, src/secops/misp.c).

The server checks every request wafer sends: method, path, the headers MISP
requires (Authorization with the API key, Accept and Content-Type
application/json) and the JSON body against the documented parameters of
/attributes/restSearch and /sightings/add. It answers with recorded
responses (tests/fixtures/misp), and on request with an error status or no
answer before wafer's timeout: wafer must then keep the table it has and
log the failure.
"""

import http.server
import json
import os
import re
import subprocess
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIX = os.path.join(ROOT, "tests", "fixtures", "misp")
KEY = "Xq7mY2nP4rT8vW1zA3cE5gJ9kL0bD6fH8sU2wQ4e"

# Filter parameters of /attributes/restSearch as MISP documents them (OpenAPI: RestSearchAttributesRequest).
RESTSEARCH_PARAMS = {
    "page", "limit", "value", "value1", "value2", "type", "category", "org", "tags", "from", "to", "last",
    "eventid", "withAttachments", "uuid", "publish_timestamp", "published", "timestamp", "attribute_timestamp",
    "enforceWarninglist", "to_ids", "deleted", "event_timestamp", "threat_level_id", "eventinfo", "sharinggroup",
    "decayingModel", "score", "first_seen", "last_seen", "includeEventUuid", "includeEventTags",
    "includeProposals", "requested_attributes", "includeContext", "headerless", "includeWarninglistHits",
    "attackGalaxy", "object_relation", "includeSightings", "includeCorrelations", "modelOverrides",
    "includeDecayScore", "includeFullModel", "excludeDecayed", "returnFormat", "quickFilter", "searchall",
}
RETURN_FORMATS = {"json", "csv", "hashes", "openioc", "rpz", "snort", "stix", "stix2", "suricata", "text", "xml",
                  "yara", "cache", "attack", "attack-sightings", "context", "context-markdown"}
MISP_TYPES = {"ip-src", "ip-dst", "ip-src|port", "ip-dst|port", "domain", "hostname", "hostname|port",
              "domain|ip", "url", "uri", "user-agent", "md5", "sha1", "sha256", "email-src"}
SIGHTING_PARAMS = {"values", "value", "id", "uuid", "source", "type", "timestamp", "date", "time", "filters"}


def _flag(v):
    return isinstance(v, bool) or v in (0, 1, "0", "1")


class FakeMisp(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.requests = []      # (method, path, headers, body)
        self.violations = []    # schema problems found in wafer's requests
        self.rounds = []        # what each restSearch round (a request for page 1) answers: ok|error|timeout|forbidden
        self.round = -1
        self.sightings = []     # values reported
        self.sightings_status = 200
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server_address[1]

    def violation(self, msg):
        with self.lock:
            self.violations.append(msg)

    def stop(self):
        self.shutdown()
        self.server_close()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _send(self, status, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _fixture(self, name):
        with open(os.path.join(FIX, name), "rb") as f:
            return f.read()

    def _api_headers(self):
        s = self.server
        if self.headers.get("Authorization") != KEY:
            return False
        if self.headers.get("Accept") != "application/json":
            s.violation("%s: Accept is %r" % (self.path, self.headers.get("Accept")))
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            s.violation("%s: Content-Type is %r" % (self.path, self.headers.get("Content-Type")))
        return True

    def _json_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n)
        try:
            body = json.loads(raw)
        except ValueError:
            self.server.violation("%s: body is not JSON: %r" % (self.path, raw[:200]))
            return None
        if not isinstance(body, dict):
            self.server.violation("%s: body is not an object" % self.path)
            return None
        return body

    def do_GET(self):
        s = self.server
        with s.lock:
            s.requests.append(("GET", self.path, dict(self.headers), None))
        if self.path.startswith("/feeds/misp/"):
            name = self.path[len("/feeds/misp/"):]
            if not re.fullmatch(r"manifest\.json|[0-9a-f-]{36}\.json", name):
                s.violation("GET %s: not a feed file" % self.path)
                return self._send(404, "{}")
            return self._send(200, self._fixture(os.path.join("feed-misp", name)))
        if self.path == "/feeds/ips.csv":
            return self._send(200, self._fixture("feed.csv"), "text/csv")
        if self.path == "/feeds/free.txt":
            return self._send(200, self._fixture("feed.txt"), "text/plain")
        self._send(404, '{"message": "not found"}')

    def do_POST(self):
        s = self.server
        body = self._json_body()
        with s.lock:
            s.requests.append(("POST", self.path, dict(self.headers), body))
        if not self._api_headers():
            return self._send(403, self._fixture("restsearch-forbidden.json"))
        if body is None:
            return self._send(400, '{"message": "bad request"}')
        if self.path == "/attributes/restSearch":
            return self._rest_search(body)
        if self.path == "/sightings/add":
            return self._sightings(body)
        s.violation("POST %s: not an endpoint wafer should call" % self.path)
        self._send(404, '{"message": "not found"}')

    def _rest_search(self, b):
        s = self.server
        for k in b:
            if k not in RESTSEARCH_PARAMS:
                s.violation("restSearch: unknown parameter %r" % k)
        if b.get("returnFormat") != "json":
            s.violation("restSearch: returnFormat %r (wafer reads json)" % b.get("returnFormat"))
        if b.get("returnFormat") not in RETURN_FORMATS:
            s.violation("restSearch: returnFormat %r is no MISP format" % b.get("returnFormat"))
        t = b.get("type")
        if not (isinstance(t, list) and t and all(isinstance(x, str) and x in MISP_TYPES for x in t)):
            s.violation("restSearch: type %r" % (t,))
        for k in ("page", "limit"):
            if not (isinstance(b.get(k), int) and not isinstance(b.get(k), bool) and b[k] >= 1):
                s.violation("restSearch: %s %r" % (k, b.get(k)))
        for k in ("to_ids", "deleted", "includeEventTags", "published"):
            if k in b and not _flag(b[k]):
                s.violation("restSearch: %s %r" % (k, b[k]))
        if "last" in b and not (isinstance(b["last"], str) and re.fullmatch(r"\d+[smhdw]", b["last"])):
            s.violation("restSearch: last %r" % (b["last"],))
        if "tags" in b and not (isinstance(b["tags"], list) and all(isinstance(x, str) for x in b["tags"])):
            s.violation("restSearch: tags %r" % (b["tags"],))
        page = b.get("page")
        if page == 1:
            with s.lock:
                s.round += 1
        mode = s.rounds[s.round] if 0 <= s.round < len(s.rounds) else "ok"
        if mode == "error":
            return self._send(500, self._fixture("restsearch-error.json"))
        if mode == "timeout":
            time.sleep(2.0)  # wafer's timeout in these tests is 500ms
            return self._send(200, '{"response": {"Attribute": []}}')
        if mode == "garbage":
            return self._send(200, "<html>maintenance</html>", "text/html")
        if page == 1:
            return self._send(200, self._fixture("restsearch-page1.json"))
        if page == 2:
            return self._send(200, self._fixture("restsearch-page2.json"))
        self._send(200, '{"response": {"Attribute": []}}')

    def _sightings(self, b):
        s = self.server
        for k in b:
            if k not in SIGHTING_PARAMS:
                s.violation("sightings/add: unknown parameter %r" % k)
        v = b.get("values")
        if not (isinstance(v, list) and v and all(isinstance(x, str) and x for x in v)):
            s.violation("sightings/add: values %r" % (v,))
        if b.get("type") not in ("0", "1", "2", 0, 1, 2):
            s.violation("sightings/add: type %r" % (b.get("type"),))
        if not isinstance(b.get("source"), str):
            s.violation("sightings/add: source %r" % (b.get("source"),))
        if "timestamp" in b and not (isinstance(b["timestamp"], int) and b["timestamp"] > 1500000000):
            s.violation("sightings/add: timestamp %r" % (b["timestamp"],))
        if s.sightings_status != 200:
            return self._send(s.sightings_status, self._fixture("restsearch-error.json"))
        with s.lock:
            s.sightings.extend(v or [])
        self._send(200, self._fixture("sightings-add.json"))


@pytest.fixture
def misp():
    m = FakeMisp()
    yield m
    m.stop()


def run_misp(binary, tmp_path, conf, *args):
    path = tmp_path / "wafer.yaml"
    path.write_text(conf)
    p = subprocess.run([binary, "misp", "-c", str(path)] + list(args), capture_output=True, text=True, timeout=60)
    lines = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    rounds = [l for l in lines if "round" in l]
    lookups = [l for l in lines if "lookup" in l]
    other = [l for l in lines if "round" not in l and "lookup" not in l]
    return p, rounds, lookups, other


def api_conf(url, key=KEY, extra=""):
    return ("misp:\n  timeout: 500ms\n" + extra +
            "  api:\n    url: %s\n    key: %s\n    page_size: 3\n    last: 30d\n    tags: [tlp:green, scanner]\n"
            % (url, key))


def restsearch_requests(m):
    return [r for r in m.requests if r[1] == "/attributes/restSearch"]


def test_restsearch_pages_and_schema(misp, wafer_binary, tmp_path):
    p, rounds, lookups, _ = run_misp(
        wafer_binary, tmp_path, api_conf(misp.url),
        "--ip", "203.0.113.77", "--ip", "2001:db8:77::abcd", "--host", "www.login-verify.example",
        "--host", "login-verify.example", "--url", "/owa/index.php?user=a", "--url", "/owa/other.php",
        "--ua", "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
        "--ip", "203.0.113.78")
    assert p.returncode == 0, p.stderr
    assert misp.violations == []
    reqs = restsearch_requests(misp)
    assert [r[3]["page"] for r in reqs] == [1, 2]  # page 2 had fewer than limit: the last
    body = reqs[0][3]
    assert body["limit"] == 3 and body["returnFormat"] == "json" and body["last"] == "30d"
    assert body["tags"] == ["tlp:green", "scanner"]
    assert body["to_ids"] in (True, 1, "1")
    assert {"ip-src", "ip-dst", "domain", "hostname", "url", "user-agent"} <= set(body["type"])
    for r in reqs:
        assert r[2].get("Authorization") == KEY
        assert r[2].get("Accept") == "application/json"
    assert rounds == [{"round": 1, "failed": 0, "events": 3, "tables": 1,
                       "indicators": {"ip": 2, "domain": 1, "url": 1, "user-agent": 1}}]
    hits = {(l["lookup"], l["value"]): l for l in lookups}
    a = hits[("ip", "203.0.113.77")]
    assert a["hit"] and a["events"] == ["1204"] and a["tags"] == "tlp:green" and a["type"] == "ip-src"
    assert hits[("ip", "2001:db8:77::abcd")]["indicator"] == "2001:db8:77::/64"
    d = hits[("host", "www.login-verify.example")]
    assert d["hit"] and d["events"] == ["1207"] and "T1566" in d["tags"]
    assert hits[("url", "/owa/index.php?user=a")]["hit"]
    assert not hits[("url", "/owa/other.php")]["hit"]
    u = hits[("ua", "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)")]
    assert u["hit"] and u["events"] == ["1210"] and u["tags"] == "scanner"
    assert not hits[("ip", "203.0.113.78")]["hit"]


def test_failures_keep_the_table(misp, wafer_binary, tmp_path):
    misp.rounds = ["ok", "error", "timeout", "garbage", "ok"]
    t0 = time.monotonic()
    p, rounds, lookups, _ = run_misp(wafer_binary, tmp_path, api_conf(misp.url), "--rounds", "5",
                                     "--ip", "203.0.113.77")
    assert p.returncode == 1
    assert misp.violations == []
    full = {"ip": 2, "domain": 1, "url": 1, "user-agent": 1}
    assert [r["failed"] for r in rounds] == [0, 1, 1, 1, 0]
    assert all(r["indicators"] == full for r in rounds)
    assert [r["tables"] for r in rounds] == [1, 1, 1, 1, 2]  # a failed round publishes nothing
    assert lookups[0]["hit"]
    err = p.stderr
    assert "HTTP status 500" in err and "An Internal Error Has Occurred" in err
    assert "timed out" in err.lower()
    assert "the answer is not JSON" in err
    assert err.count("keeping its previous indicators") == 3
    assert time.monotonic() - t0 < 20


def test_wrong_key_loads_nothing(misp, wafer_binary, tmp_path):
    p, rounds, lookups, _ = run_misp(wafer_binary, tmp_path, api_conf(misp.url, key="not-the-key"),
                                     "--ip", "203.0.113.77")
    assert p.returncode == 1
    assert rounds[0]["failed"] == 1 and rounds[0]["tables"] == 0
    assert not lookups[0]["hit"]
    assert "HTTP status 403" in p.stderr and "Authentication failed" in p.stderr
    assert len(restsearch_requests(misp)) == 1


def test_feeds_over_http(misp, wafer_binary, tmp_path):
    conf = ("misp:\n  timeout: 2s\n  feeds:\n"
            "    - {name: circl, url: %s/feeds/misp, format: misp}\n"
            "    - {name: ips, url: %s/feeds/ips.csv, format: csv, tags: [bruteforce]}\n"
            "    - {name: text, url: %s/feeds/free.txt, format: freetext}\n" % (misp.url, misp.url, misp.url))
    p, rounds, lookups, _ = run_misp(wafer_binary, tmp_path, conf, "--ip", "203.0.113.10", "--ip", "198.51.100.23",
                                     "--host", "c2.botnet.example", "--host", "mail.badlogin.example")
    assert p.returncode == 0, p.stderr
    assert misp.violations == []
    paths = [r[1] for r in misp.requests]
    assert paths[0] == "/feeds/misp/manifest.json"
    assert sorted(paths[1:3]) == ["/feeds/misp/5f0c6a0e-8d34-4c1a-9d6e-2b1f3c4d5e6f.json",
                                  "/feeds/misp/a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d.json"]
    assert paths[3:] == ["/feeds/ips.csv", "/feeds/free.txt"]  # the hostile manifest key was not fetched
    assert all("Authorization" not in r[2] for r in misp.requests)  # feeds never get the API key
    assert rounds[0]["indicators"] == {"ip": 8, "domain": 3, "url": 3, "user-agent": 1}
    hits = {l["value"]: l for l in lookups}
    assert hits["203.0.113.10"]["hit"] and hits["203.0.113.10"]["tags"] == "feed:ips,bruteforce"
    assert hits["198.51.100.23"]["events"] == ["5f0c6a0e-8d34-4c1a-9d6e-2b1f3c4d5e6f",
                                               "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"]
    assert hits["c2.botnet.example"]["hit"] and hits["mail.badlogin.example"]["hit"]


def test_sightings(misp, wafer_binary, tmp_path):
    conf = api_conf(misp.url, extra="  sightings: true\n")
    p, rounds, lookups, other = run_misp(wafer_binary, tmp_path, conf, "--sightings", "--ip", "203.0.113.77",
                                         "--ip", "203.0.113.77", "--host", "login-verify.example",
                                         "--ip", "192.0.2.1")
    assert p.returncode == 0, p.stderr
    assert misp.violations == []
    assert other == [{"sightings_sent": 2}]  # duplicates merged; a miss is no sighting
    posts = [r for r in misp.requests if r[1] == "/sightings/add"]
    assert len(posts) == 1
    assert sorted(posts[0][3]["values"]) == ["203.0.113.77", "login-verify.example"]
    assert posts[0][3]["source"] == "wafer"
    assert posts[0][2].get("Authorization") == KEY


def test_api_unreachable(wafer_binary, tmp_path):
    p, rounds, lookups, _ = run_misp(wafer_binary, tmp_path, api_conf("http://127.0.0.1:1"), "--ip", "203.0.113.77")
    assert p.returncode == 1
    assert rounds[0]["failed"] == 1 and rounds[0]["tables"] == 0
    assert "Failed to connect" in p.stderr and "nothing loaded from it yet" in p.stderr


def test_sightings_rejected(misp, wafer_binary, tmp_path):
    misp.sightings_status = 500
    conf = api_conf(misp.url, extra="  sightings: true\n")
    p, rounds, lookups, other = run_misp(wafer_binary, tmp_path, conf, "--sightings", "--ip", "203.0.113.77")
    assert p.returncode == 1
    assert rounds[0]["failed"] == 0 and lookups[0]["hit"]
    assert other[0]["sightings_sent"] < 0
    assert "sightings: POST %s/sightings/add: HTTP status 500" % misp.url in p.stderr
    assert "1 kept for the next try" in p.stderr
    assert misp.violations == []


# -- inside `wafer run`: the importer starts with the server, a reload reconfigures it --------------

def _scrape(w):
    from harness import HTTP
    with HTTP(w.admin_port) as c:
        r = c.request("GET", "/metrics", host="admin")
    assert r.status == 200, r
    return r.body.decode()


def _metric(text, series):
    m = re.search(r"^%s (\S+)$" % re.escape(series), text, re.M)
    return float(m.group(1)) if m else None


def _wait_metric(w, series, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = _metric(_scrape(w), series)
        if got == want:
            return
        time.sleep(0.05)
    raise AssertionError("%s: %r, want %r" % (series, got, want))


def test_server_imports_and_reloads(misp, start_wafer, pyup):
    import signal
    feeds = [{"name": "ips", "url": misp.url + "/feeds/ips.csv", "format": "csv"}]
    w = start_wafer(pyup.address, misp={"timeout": "2s", "feeds": feeds})
    _wait_metric(w, 'wafer_ioc_indicators{kind="ip"}', 3)
    _wait_metric(w, 'wafer_misp_fetches_total{source="ips",result="ok"}', 1)
    assert _metric(_scrape(w), "wafer_ioc_tables_total") == 1

    # reload: the API joins; the CSV feed is fetched again at once and keeps its name
    cfg = dict(w.config)
    cfg["misp"] = {"timeout": "2s", "feeds": feeds,
                   "api": {"url": misp.url, "key": KEY, "page_size": 3, "refresh": "1h"}}
    w.write_config(cfg)
    w.send_signal(signal.SIGHUP)
    _wait_metric(w, 'wafer_ioc_indicators{kind="ip"}', 5)
    _wait_metric(w, 'wafer_ioc_indicators{kind="user-agent"}', 1)
    text = _scrape(w)
    assert _metric(text, 'wafer_misp_fetches_total{source="ips",result="ok"}') == 2
    assert _metric(text, 'wafer_misp_fetches_total{source="api",result="ok"}') == 1
    assert misp.violations == []

    # reload without the section: no source, no indicator
    cfg = dict(w.config)
    cfg.pop("misp", None)
    w.write_config(cfg)
    w.send_signal(signal.SIGHUP)
    _wait_metric(w, 'wafer_ioc_indicators{kind="ip"}', 0)
    assert "misp: ips:" in w.stderr() and "misp: api:" in w.stderr()


def test_check_rejects_a_bad_misp_section(wafer_binary, tmp_path):
    conf = tmp_path / "wafer.yaml"
    conf.write_text("listen:\n  - {address: 127.0.0.1:1}\nupstream:\n  servers: [{address: 127.0.0.1:2}]\n"
                    "misp:\n  feeds:\n    - {url: /x, format: stix}\n")
    p = subprocess.run([wafer_binary, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=20)
    assert p.returncode == 1
    assert "wafer.yaml:7:" in p.stderr and "misp.feeds[0].format" in p.stderr


# -- indicators on the request path --------------------------------------------------

def _indicator_wafer(start_wafer, pyup, tmp_path, action):
    feed = tmp_path / "agents.csv"
    feed.write_text("BadBot/6.6 (+scan)\n")
    events = str(tmp_path / "events.jsonl")
    w = start_wafer(pyup.address,
                    misp={"action": action, "feeds": [{"name": "agents", "url": str(feed), "format": "csv",
                                                       "type": "user-agent"}]},
                    events={"sinks": [{"type": "file", "path": events}]})
    _wait_metric(w, 'wafer_ioc_indicators{kind="user-agent"}', 1)
    return w, events


def _get(w, target, ua):
    from harness import HTTP, build_request
    c = HTTP(w.port, 5, w.host)
    c.send(build_request("GET", target, headers=[("User-Agent", ua)]))
    r = c.read_response()
    c.close()
    return r


def test_indicator_match_is_refused_before_inference(start_wafer, pyup, tmp_path):
    w, events = _indicator_wafer(start_wafer, pyup, tmp_path, "block")
    r = _get(w, "/ioc-block-1", "BadBot/6.6 (+scan)")
    assert r.status == 403
    assert not pyup.seen(lambda q: q["target"] == "/ioc-block-1")
    assert _get(w, "/ioc-block-2", "curl/8.0").status == 200
    from harness import read_events
    evs = read_events(events, 1)
    assert len(evs) == 1, evs
    ev = evs[0]
    assert ev["event"]["action"] == "deny" and ev["event"]["reason"] == "indicator", ev
    assert ev["http"]["response"]["status_code"] == 403
    assert _metric(_scrape(w), 'wafer_inspection_requests_total{result="indicator"}') == 1


def test_indicator_match_flagged_goes_on(start_wafer, pyup, tmp_path):
    w, events = _indicator_wafer(start_wafer, pyup, tmp_path, "flag")
    assert _get(w, "/ioc-flag-1", "BadBot/6.6 (+scan)").status == 200
    from harness import read_events
    evs = read_events(events, 1)
    assert len(evs) == 1 and evs[0]["event"]["action"] == "monitor" and evs[0]["event"]["reason"] == "indicator", evs
