"""Inspection in the proxy: every request classified by the default model on
its way through, and the verdict acted on (block, monitor, tag), with the
overload policies, the body inspection limit, exclusions, client lists,
flow bans and security events.

The attack and benign texts below are ones the default model
(models/default) classifies reliably; `wafer classify -m models/default
'<unit text>'` shows their scores."""

import hashlib
import json
import os
import signal
import socket
import time
import uuid

import pytest

from harness import HTTP, ROOT, build_request, chunked, read_events

MODEL = os.path.join(ROOT, "models", "default")

BENIGN_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SQLI = "1 UNION SELECT username,password FROM users--"
SQLI_Q = "1%20UNION%20SELECT%20username,password%20FROM%20users--"
XSS = "<script>alert(document.cookie)</script>"
XSS_Q = "%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E"
CMDI = "; cat /etc/passwd"
TRAVERSAL_PATH = "/static/..%2f..%2f..%2f..%2fetc%2fpasswd"
COOKIE_SQLI = "id=1%27%20UNION%20SELECT%20password%20FROM%20users%20WHERE%20%271%27=%271"


def detection(**over):
    d = {"model": MODEL, "backend": "cpu", "threads": 1, "timeout": "3s"}
    d.update(over)
    return d


def pol(mode, **over):
    """A policy in `mode`; flow bans off unless asked for (the tests' client is always 127.0.0.1)."""
    p = {"mode": mode, "ban": {"detections": 0}}
    p.update(over)
    return p


def uniq(prefix="/insp"):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:12])


@pytest.fixture(scope="module")
def wafer_block(wafer_binary, pyup, tmp_path_factory):
    from harness import Wafer, finish_wafer
    w = Wafer(pyup.address, str(tmp_path_factory.mktemp("wafer")),
              detection=detection(), policy=pol("block"),
              proxy={"trust_request_id": True, "request_id_header": "X-Request-Id",
                     "x_forwarded_for": True, "forwarded": False, "via": True}).start()
    yield w
    finish_wafer(w)


@pytest.fixture(scope="module")
def wafer_plain(wafer_binary, pyup, tmp_path_factory):
    from harness import Wafer, finish_wafer
    w = Wafer(pyup.address, str(tmp_path_factory.mktemp("wafer")),
              proxy={"trust_request_id": True, "request_id_header": "X-Request-Id",
                     "x_forwarded_for": True, "forwarded": False, "via": True}).start()
    yield w
    finish_wafer(w)


def seen_one(up, target):
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        got = up.seen(lambda r: r["target"] == target)
        if got:
            return got[0]
        time.sleep(0.02)
    return None


# -- benign traffic passes unchanged ------------------------------------------------

BENIGN = [
    ("GET", "?q=best+pizza+in+town&page=2", [("User-Agent", BENIGN_UA), ("Accept", "text/html"),
                                              ("Cookie", "session=4f9a1c2e8b; theme=dark")], None),
    ("POST", "", [("Content-Type", "application/x-www-form-urlencoded"), ("User-Agent", BENIGN_UA)],
     b"name=Alice+Smith&comment=I+really+like+this+product%2C+thanks%21&rating=5"),
    ("POST", "", [("Content-Type", "application/json"), ("User-Agent", "curl/7.88.1")],
     json.dumps({"user": {"name": "alice", "tags": ["books", "music"]}, "qty": 3}).encode()),
    ("PUT", "?v=1", [("Content-Type", "application/octet-stream")], bytes(range(256)) * 40),
]


@pytest.mark.parametrize("method,query,headers,body", BENIGN, ids=["get", "form", "json", "binary"])
def test_benign_requests_pass_byte_for_byte(wafer_block, wafer_plain, pyup, method, query, headers, body):
    seen = []
    for w in (wafer_plain, wafer_block):
        target = uniq("/benign") + query
        rid = uuid.uuid4().hex
        with w.connect() as c:
            r = c.request(method, target, headers + [("X-Request-Id", rid)], body)
        assert r.status == 200, r.body[:300]
        got = seen_one(pyup, target)
        assert got is not None
        seen.append((got, target, rid))
    (a, ta, ra), (b, tb, rb) = seen
    norm = lambda g, t, rid: [(k, v.replace(rid, "RID")) for k, v in g["headers"]]
    assert norm(a, ta, ra) == norm(b, tb, rb)
    assert a["body_sha256"] == b["body_sha256"]
    assert a["body_len"] == (len(body) if body else 0)
    assert a["method"] == b["method"] == method


def test_benign_chunked_body_is_inspected_and_forwarded_intact(wafer_block, pyup):
    data = b"name=Alice&comment=" + b"The+quick+brown+fox+jumps+over+the+lazy+dog.+" * 500
    target = uniq("/chunked-benign")
    with wafer_block.connect() as c:
        c.send(build_request("POST", target, [("Transfer-Encoding", "chunked"),
                                              ("Content-Type", "application/x-www-form-urlencoded")])
               + chunked(data, 999))
        r = c.read_response()
        assert r.status == 200
        assert r.json()["body_sha256"] == hashlib.sha256(data).hexdigest()
        assert c.request("GET", uniq("/after")).status == 200


# -- attacks are blocked -------------------------------------------------------------

def multipart(fields):
    boundary = "----wafer" + uuid.uuid4().hex
    out = b""
    for k, v in fields:
        out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (boundary, k, v)).encode()
    out += ("--%s--\r\n" % boundary).encode()
    return "multipart/form-data; boundary=" + boundary, out


def _mp():
    ct, body = multipart([("title", "hello"), ("cmd", CMDI)])
    return ("POST", "", [("Content-Type", ct)], body)


ATTACKS = {
    "query": ("GET", "?id=" + SQLI_Q, [], None),
    "query_xss": ("GET", "?q=" + XSS_Q, [], None),
    "path": ("GET", None, [], None),
    "urlencoded": ("POST", "", [("Content-Type", "application/x-www-form-urlencoded")],
                   b"title=hi&comment=" + XSS_Q.encode()),
    "json": ("POST", "", [("Content-Type", "application/json")],
             json.dumps({"user": {"name": SQLI}}).encode()),
    "multipart": _mp(),
    "cookie": ("GET", "", [("Cookie", "session=abc123; " + COOKIE_SQLI)], None),
    "header": ("GET", "", [("Referer", XSS)], None),
}


@pytest.mark.parametrize("where", sorted(ATTACKS))
def test_attacks_are_blocked_with_a_request_id(wafer_block, pyup, where):
    method, query, headers, body = ATTACKS[where]
    target = TRAVERSAL_PATH if query is None else uniq("/attack") + query
    with wafer_block.connect() as c:
        r = c.request(method, target, headers, body)
        assert r.status == 403, (where, r.status, r.body[:200])
        rid = r.header("X-Request-Id")
        assert rid and rid.encode() in r.body
        assert b"<html>" in r.body and r.header("Content-Type").startswith("text/html")
        # the body was read whole: the connection stays usable
        assert r.header("Connection") == "keep-alive"
        ok = c.request("GET", uniq("/after-block"))
        assert ok.status == 200
    assert not pyup.seen(lambda q: q["target"] == target)


def test_block_answers_json_when_accept_asks(wafer_block):
    with wafer_block.connect() as c:
        r = c.request("GET", uniq("/j") + "?id=" + SQLI_Q, [("Accept", "application/json")])
    assert r.status == 403
    assert r.header("Content-Type") == "application/json"
    j = r.json()
    assert j["status"] == 403 and j["request_id"] == r.header("X-Request-Id")


def _verdict_count(w, action, cls, route="default"):
    from harness import HTTP
    with HTTP(w.admin_port) as c:
        r = c.request("GET", "/metrics", host="admin")
    assert r.status == 200
    series = 'wafer_inspection_verdicts_total{action="%s",class="%s",route="%s"} ' % (action, cls, route)
    for line in r.body.decode().splitlines():
        if line.startswith(series):
            return float(line[len(series):])
    return 0.0


def test_verdicts_are_counted_by_action_class_and_route(wafer_block):
    blocked, passed = _verdict_count(wafer_block, "block", "sqli"), _verdict_count(wafer_block, "pass", "benign")
    with wafer_block.connect() as c:
        assert c.request("GET", uniq("/cnt") + "?id=" + SQLI_Q).status == 403
        assert c.request("GET", uniq("/cnt") + "?q=" + uuid.uuid4().hex + "%27%28").status == 200
    assert _verdict_count(wafer_block, "block", "sqli") == blocked + 1
    assert _verdict_count(wafer_block, "pass", "benign") == passed + 1


def test_attack_in_a_chunked_body_is_blocked(wafer_block, pyup):
    data = b"a=1&b=2&comment=" + XSS_Q.encode()
    target = uniq("/chunked-attack")
    with wafer_block.connect() as c:
        c.send(build_request("POST", target, [("Transfer-Encoding", "chunked"),
                                              ("Content-Type", "application/x-www-form-urlencoded")])
               + chunked(data, 5))
        r = c.read_response()
        assert r.status == 403
        assert c.request("GET", uniq("/after")).status == 200
    assert not pyup.seen(lambda q: q["target"] == target)


def test_expect_continue_body_is_inspected(wafer_block, pyup):
    body = json.dumps({"q": SQLI}).encode()
    target = uniq("/expect")
    with wafer_block.connect() as c:
        c.send(build_request("POST", target, [("Content-Type", "application/json"), ("Expect", "100-continue"),
                                              ("Content-Length", str(len(body)))]))
        # wafer asks for the body itself: it must see it before anything goes upstream
        c.send(body)
        r = c.read_response()
        assert r.status == 403
    assert not pyup.seen(lambda q: q["target"] == target)


def test_pipelined_requests_keep_their_order(wafer_block):
    ts = [uniq("/p1"), uniq("/p2") + "?id=" + SQLI_Q, uniq("/p3")]
    with wafer_block.connect() as c:
        c.send(b"".join(build_request("GET", t) for t in ts))
        codes = [c.read_response().status for _ in ts]
    assert codes == [200, 403, 200]


def test_client_closing_while_parked_is_harmless(start_wafer, pyup):
    # a slow model: the request is parked when the client goes away
    os.environ["WAFER_TEST_INFER_DELAY_MS"] = "300"
    try:
        w = start_wafer(pyup.address, detection=detection(), policy=pol("block"))
    finally:
        del os.environ["WAFER_TEST_INFER_DELAY_MS"]
    for i in range(5):
        s = socket.create_connection((w.host, w.port))
        s.sendall(build_request("GET", uniq("/gone") + "?q=" + XSS_Q))
        if i % 2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    time.sleep(0.8)  # the late verdicts arrive and must be ignored
    with w.connect() as c:
        assert c.request("GET", uniq("/alive")).status == 200


# -- modes -------------------------------------------------------------------------

def test_monitor_mode_forwards_attacks_unchanged(start_wafer, pyup):
    w = start_wafer(pyup.address, detection=detection(), policy=pol("monitor"))
    target = uniq("/monitor") + "?id=" + SQLI_Q
    with w.connect() as c:
        r = c.request("GET", target)
    assert r.status == 200
    got = seen_one(pyup, target)
    assert got and not any(k.lower().startswith("x-wafer") for k, _ in got["headers"])


def test_tag_mode_adds_verdict_headers_and_strips_the_clients(start_wafer, pyup):
    w = start_wafer(pyup.address, detection=detection(), policy=pol("tag"))
    bad = uniq("/tag") + "?q=" + XSS_Q
    good = uniq("/tag") + "?q=best+pizza"
    with w.connect() as c:
        assert c.request("GET", bad, [("X-Wafer-Verdict", "benign"), ("x-wafer-score", "0")]).status == 200
        assert c.request("GET", good, [("X-Wafer-Verdict", "attack")]).status == 200
    hb = [(k.lower(), v) for k, v in seen_one(pyup, bad)["headers"]]
    hg = [(k.lower(), v) for k, v in seen_one(pyup, good)["headers"]]
    assert [v for k, v in hb if k == "x-wafer-verdict"] == ["attack"]
    assert [v for k, v in hg if k == "x-wafer-verdict"] == ["benign"]
    assert float([v for k, v in hb if k == "x-wafer-score"][0]) > 0.9
    assert len([1 for k, v in hb if k == "x-wafer-score"]) == 1


# -- overload ----------------------------------------------------------------------

def _slow_wafer(start_wafer, pyup, policy, events=None, **det):
    os.environ["WAFER_TEST_INFER_DELAY_MS"] = "1500"
    extra = {"events": {"sinks": [{"type": "file", "path": events}]}} if events else {}
    try:
        return start_wafer(pyup.address, detection=detection(timeout="300ms", overload=policy, **det),
                           policy=pol("block"), **extra)
    finally:
        del os.environ["WAFER_TEST_INFER_DELAY_MS"]


def test_overload_fail_open_forwards_uninspected_and_says_so(start_wafer, pyup):
    w = _slow_wafer(start_wafer, pyup, "fail_open")
    target = uniq("/fo") + "?q=" + XSS_Q
    with w.connect() as c:
        r = c.request("GET", target)
    assert r.status == 200
    assert seen_one(pyup, target) is not None
    time.sleep(0.1)
    assert "detection overloaded (verdict timeout)" in w.stderr()
    assert "fail_open" in w.stderr()


def test_overload_fail_closed_answers_503_and_never_forwards(start_wafer, pyup, tmp_path):
    evpath = str(tmp_path / "events.jsonl")
    w = _slow_wafer(start_wafer, pyup, "fail_closed", events=evpath, max_queue=2)
    targets = [uniq("/fc") + "?q=word%d%%2C+%s" % (i, uuid.uuid4().hex) for i in range(6)]
    codes = []
    conns = [HTTP(w.port, 5, w.host) for _ in targets]
    for c, t in zip(conns, targets):
        c.send(build_request("GET", t))
    for c in conns:
        codes.append(c.read_response().status)
        c.close()
    assert set(codes) == {503}, codes
    time.sleep(0.2)
    for t in targets:
        assert not pyup.seen(lambda q: q["target"] == t)
    err = w.stderr()
    assert "answering 503 (overload: fail_closed)" in err
    assert "inference queue full" in err or "verdict timeout" in err
    evs = read_events(evpath, 6)
    assert len(evs) == 6 and all(e["event"]["action"] == "unavailable" and e["event"]["reason"] == "overload"
                                 and e["http"]["response"]["status_code"] == 503 for e in evs), evs


# -- bodies over the inspection limit -----------------------------------------------

def test_body_over_limit_inspect_prefix(start_wafer, pyup):
    w = start_wafer(pyup.address, detection=detection(inspect={"max_body_bytes": "4k"},
                                                      body_over_limit="inspect_prefix"),
                    policy=pol("block"))
    # an attack in the prefix is found; the rest is not read for inspection
    bad = b"comment=" + XSS_Q.encode() + b"&pad=" + b"a" * 20000
    good = b"comment=hello&pad=" + b"a" * 20000
    tb, tg = uniq("/big-bad"), uniq("/big-good")
    with w.connect() as c:
        r = c.request("POST", tb, [("Content-Type", "application/x-www-form-urlencoded")], bad)
        assert r.status == 403
    with w.connect() as c:
        r = c.request("POST", tg, [("Content-Type", "application/x-www-form-urlencoded")], good)
        assert r.status == 200
        assert r.json()["body_sha256"] == hashlib.sha256(good).hexdigest()


def test_body_over_limit_reject(start_wafer, pyup):
    w = start_wafer(pyup.address, detection=detection(inspect={"max_body_bytes": "4k"}, body_over_limit="reject"),
                    policy=pol("block"))
    t = uniq("/big-reject")
    with w.connect() as c:
        r = c.request("POST", t, [("Content-Type", "application/x-www-form-urlencoded")], b"a=" + b"b" * 10000)
        assert r.status == 413
    with w.connect() as c:
        c.send(build_request("POST", t + "c", [("Transfer-Encoding", "chunked")]) + chunked(b"x" * 10000, 1000))
        assert c.read_response().status == 413
    with w.connect() as c:
        assert c.request("POST", t + "s", [], b"a=b").status == 200
    assert not pyup.seen(lambda q: q["target"] == t)


# -- reload ----------------------------------------------------------------------------

def test_reload_changes_the_policy_for_new_requests(start_wafer, pyup):
    w = start_wafer(pyup.address, detection=detection(), policy=pol("block"))
    with w.connect() as c:
        assert c.request("GET", uniq("/r") + "?id=" + SQLI_Q).status == 403
    cfg = dict(w.config)
    cfg["policy"] = pol("monitor")
    w.write_config(cfg)
    w.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "configuration reloaded" not in w.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    with w.connect() as c:
        assert c.request("GET", uniq("/r") + "?id=" + SQLI_Q).status == 200


def test_reload_with_a_bad_model_keeps_the_old_one(start_wafer, pyup, tmp_path):
    w = start_wafer(pyup.address, detection=detection(), policy=pol("block"))
    bad = tmp_path / "badmodel"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    cfg = dict(w.config)
    cfg["detection"] = detection(model=str(bad))
    w.write_config(cfg)
    w.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "new model is refused" not in w.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    err = w.stderr()
    assert "new model is refused" in err and str(bad) in err
    with w.connect() as c:
        assert c.request("GET", uniq("/r") + "?id=" + SQLI_Q).status == 403
        assert c.request("GET", uniq("/r") + "?q=hello").status == 200


def test_reload_swaps_in_a_new_model(start_wafer, pyup, tmp_path):
    import shutil
    w = start_wafer(pyup.address, detection=detection(), policy=pol("block"))
    m2 = tmp_path / "model2"
    shutil.copytree(MODEL, str(m2))
    cfg = dict(w.config)
    cfg["detection"] = detection(model=str(m2))
    w.write_config(cfg)
    w.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "now serves new requests" not in w.stderr() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "(%s) now serves new requests" % m2 in w.stderr()
    with w.connect() as c:
        assert c.request("GET", uniq("/m2") + "?id=" + SQLI_Q).status == 403
        assert c.request("GET", uniq("/m2") + "?q=best+pizza").status == 200


# -- policy: exclusions, routes, client lists ----------------------------------------

def test_exclusion_silences_one_parameter_and_class_only(start_wafer, pyup):
    w = start_wafer(pyup.address, detection=detection(),
                    policy=pol("block", exclusions=[{"kind": "query", "name": "html", "classes": ["xss"]}]))
    with w.connect() as c:
        assert c.request("GET", uniq("/ex") + "?html=" + XSS_Q).status == 200      # excluded
        assert c.request("GET", uniq("/ex") + "?q=" + XSS_Q).status == 403         # another parameter
        assert c.request("GET", uniq("/ex") + "?html=" + SQLI_Q).status == 403     # another class


def test_routes_choose_the_mode_by_host_and_path(start_wafer, pyup):
    w = start_wafer(pyup.address, detection=detection(),
                    policy=pol("block", routes=[{"name": "api", "path": "/api", "mode": "monitor"},
                                                {"name": "legacy", "host": "old.example", "mode": "off"}]))
    with w.connect() as c:
        assert c.request("GET", "/api/x?id=" + SQLI_Q).status == 200
        assert c.request("GET", "/shop/x?id=" + SQLI_Q).status == 403
        assert c.request("GET", "/shop/x?id=" + SQLI_Q, host="old.example").status == 200


def test_allow_listed_clients_are_not_inspected(start_wafer, pyup):
    w = start_wafer(pyup.address, detection=detection(), policy=pol("block", allow=["127.0.0.1/32"]))
    with w.connect() as c:
        assert c.request("GET", uniq("/al") + "?id=" + SQLI_Q).status == 200


def test_deny_listed_clients_are_refused_before_parsing(start_wafer, pyup):
    w = start_wafer(pyup.address, detection=detection(), policy=pol("block", deny=["127.0.0.0/8"]))
    with w.connect() as c:
        c.send(build_request("GET", uniq("/dn")))
        assert c.wait_closed(3)
    assert not pyup.seen_path("/dn-")


# -- flow bans -------------------------------------------------------------------------

def test_repeated_detections_ban_the_client_until_the_ban_ends(start_wafer, pyup):
    import urllib.request
    w = start_wafer(pyup.address, detection=detection(),
                    policy=pol("block", ban={"detections": 2, "window": "10s", "duration": "2s"}))
    with w.connect() as c:
        assert c.request("GET", uniq("/b") + "?id=" + SQLI_Q).status == 403
        assert c.request("GET", uniq("/b") + "?q=" + XSS_Q).status == 403
        # banned: even a benign request on the open connection is refused, without inspection
        t = uniq("/b-benign")
        r = c.request("GET", t)
        assert r.status == 403
    assert not pyup.seen(lambda q: q["target"] == t)
    # new connections are closed at once
    with w.connect() as c:
        c.send(build_request("GET", uniq("/b-new")))
        assert c.wait_closed(3)
    # the ban is visible on the admin listener
    with urllib.request.urlopen("http://127.0.0.1:%d/bans" % w.admin_port, timeout=5) as r:
        bans = json.loads(r.read())
    assert any(b["client"] == "127.0.0.1" for b in bans)
    # and removable there
    req = urllib.request.Request("http://127.0.0.1:%d/bans/127.0.0.1" % w.admin_port, method="DELETE")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200
    with w.connect() as c:
        assert c.request("GET", uniq("/b-lifted")).status == 200
        # banned again, then the ban runs out
        assert c.request("GET", uniq("/b") + "?id=" + SQLI_Q).status == 403
        assert c.request("GET", uniq("/b") + "?q=" + XSS_Q).status == 403
        assert c.request("GET", uniq("/b-again")).status == 403
    time.sleep(2.3)
    with w.connect() as c:
        assert c.request("GET", uniq("/b-after")).status == 200
    assert "banned for 2000ms after 2 detections" in w.stderr()


# -- security events, readiness, version -----------------------------------------------

def test_blocked_and_monitored_requests_write_security_events(start_wafer, pyup, tmp_path):
    import urllib.request
    evpath = str(tmp_path / "events.jsonl")
    w = start_wafer(pyup.address, detection=detection(),
                    policy=pol("block", routes=[{"name": "watch", "path": "/watch", "mode": "monitor"}]),
                    events={"sinks": [{"type": "file", "path": evpath}]})
    with w.connect() as c:
        r = c.request("GET", "/shop?id=" + SQLI_Q, [("User-Agent", "evil-bot/1.0")])
        assert r.status == 403
        rid = r.header("X-Request-Id")
        assert c.request("GET", "/watch/x", [("Referer", XSS)]).status == 200
        assert c.request("GET", uniq("/ok") + "?q=best+pizza").status == 200
    evs = read_events(evpath, 2)
    assert len(evs) == 2, evs
    blk = [e for e in evs if e["event"]["action"] == "block"][0]
    assert blk["http"]["request"]["id"] == rid
    assert blk["http"]["response"]["status_code"] == 403
    assert blk["source"]["ip"] == "127.0.0.1"
    assert blk["url"]["path"] == "/shop"
    assert blk["user_agent"]["original"] == "evil-bot/1.0"
    with open(os.path.join(MODEL, "wafer.json")) as f:
        sqli_threshold = json.load(f)["thresholds"]["sqli"]
    assert blk["wafer"]["class"] == "sqli" and sqli_threshold <= blk["wafer"]["score"] <= 1
    assert blk["wafer"]["model"] == "wafer-default-2026.11-r2"
    u = blk["wafer"]["units"][0]
    assert u["kind"] == "query" and u["name"] == "id" and "UNION SELECT" in u["text"] and u["class"] == "sqli"
    mon = [e for e in evs if e["event"]["action"] == "monitor"][0]
    assert mon["wafer"]["route"] == "watch"
    assert mon["wafer"]["units"][0]["kind"] == "header" and mon["wafer"]["class"] == "xss"
    # readiness and the model on /version
    base = "http://127.0.0.1:%d" % w.admin_port
    with urllib.request.urlopen(base + "/ready", timeout=5) as r:
        assert r.status == 200
    with urllib.request.urlopen(base + "/version", timeout=5) as r:
        v = json.loads(r.read())
    assert v["model"]["id"] == "wafer-default-2026.11-r2" and v["model"]["backend"] == "cpu"
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        text = r.read().decode()
    assert 'wafer_inspection_requests_total{result="blocked"} 1' in text
    assert 'wafer_inspection_requests_total{result="monitored"} 1' in text
    assert "wafer_detect_batch_size_count" in text and "wafer_detect_run_seconds_bucket" in text


def test_a_model_that_does_not_load_is_a_configuration_error(start_wafer, pyup, tmp_path):
    from harness import Wafer, run_check
    w = Wafer(pyup.address, str(tmp_path), detection=detection(model=str(tmp_path / "nomodel")), policy=pol("block"))
    rc, out = run_check(w.conf_path)
    assert rc == 1 and str(tmp_path / "nomodel") in out
    (tmp_path / "b").mkdir()
    bad_class = Wafer(pyup.address, str(tmp_path / "b"), detection=detection(),
                      policy=pol("block", thresholds={"sqlinjection": 0.9}))
    rc, out = run_check(bad_class.conf_path)
    assert rc == 1 and "sqlinjection" in out


def _units_metrics(w):
    import re
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % w.admin_port, timeout=5) as r:
        text = r.read().decode()
    return {k: int(v) for k, v in re.findall(r'wafer_inspection_units_total\{state="(\w+)"\} (\d+)', text)}


def test_long_values_are_cached_by_their_token_ids(start_wafer, pyup):
    """A unit text over 232 bytes is cached by its token ids: the same long value again is answered by the cache,
    a long attack is blocked both times, and a long value that differs is classified anew."""
    w = start_wafer(pyup.address, detection=detection(), policy=pol("block"))
    token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0" * 5
    attack = SQLI_Q + "%20" + "a" * 250
    with w.connect() as c:
        assert c.request("GET", uniq("/c"), [("Cookie", "session=" + token)]).status == 200
        m0 = _units_metrics(w)
        assert c.request("GET", uniq("/c"), [("Cookie", "session=" + token)]).status == 200
        m1 = _units_metrics(w)
        assert m1["cached"] == m0["cached"] + 1 and m1["model"] == m0["model"], (m0, m1)
        # a change in what the model reads (its first 64 tokens) is a new key
        assert c.request("GET", uniq("/c"), [("Cookie", "session=x" + token)]).status == 200
        m2 = _units_metrics(w)
        assert m2["model"] == m1["model"] + 1, (m1, m2)
        assert c.request("GET", "/shop?id=" + attack).status == 403
        m3 = _units_metrics(w)
        assert c.request("GET", "/shop?id=" + attack).status == 403
        m4 = _units_metrics(w)
        assert m4["cached"] == m3["cached"] + 1 and m4["model"] == m3["model"], (m3, m4)


def test_values_that_fill_every_position_are_cached(start_wafer, pyup):
    """A value long enough to fill all the model's positions (128 token ids, more than 116 16-bit ids fit in an
    entry) is cached too: its ids are packed in the bits the vocabulary needs. Twice the same: one model run."""
    import urllib.parse
    w = start_wafer(pyup.address, detection=detection(), policy=pol("block"))
    prose = ("We stayed three nights at the lake house and the kids loved the boat trips. The kitchen was small "
             "but had everything we needed, and the owner left fresh bread every morning. Parking is a short walk "
             "up the hill, which is worth knowing if you travel with heavy bags. We would happily come back next "
             "summer with our friends from the city, and we recommend the fish restaurant by the harbour. ") * 3
    body = urllib.parse.urlencode({"comment": prose}).encode()
    hdr = [("Content-Type", "application/x-www-form-urlencoded")]
    with w.connect() as c:
        assert c.request("POST", "/f", hdr, body).status == 200
        m0 = _units_metrics(w)
        for _ in range(3):
            assert c.request("POST", "/f", hdr, body).status == 200
        m1 = _units_metrics(w)
        assert m1["model"] == m0["model"] and m1["cached"] == m0["cached"] + 3 * m0["model"], (m0, m1)


def test_workers_share_the_cache(start_wafer, pyup):
    """A value one worker sent to the model is answered from the cache on every connection, whichever worker it
    lands on."""
    w = start_wafer(pyup.address, workers=2, detection=detection(), policy=pol("block"))
    target = "/shared?q=" + uuid.uuid4().hex + "%2C+best+pizza"  # a comma: not fast-path safe
    with w.connect() as c:
        assert c.request("GET", target).status == 200
    m0 = _units_metrics(w)
    for _ in range(16):  # new connections: the kernel spreads them over both workers
        with w.connect() as c:
            assert c.request("GET", target).status == 200
    m1 = _units_metrics(w)
    assert m1["model"] == m0["model"] and m1["cached"] == m0["cached"] + 16, (m0, m1)
