"""`wafer -t -c FILE`, --help, --version, and the JSON access log."""

import json
import os
import re
import socket
import struct
import subprocess
import time
import uuid

import pytest

from harness import free_port, run_check, to_yaml, wafer_config


def _write(tmp_path, text, name="wafer.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_help_and_version(wafer_binary):
    p = subprocess.run([wafer_binary, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
    assert p.returncode == 0 and b"run" in p.stdout and b"-t" in p.stdout
    p = subprocess.run([wafer_binary, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
    assert p.returncode == 0 and re.match(rb"wafer \d+\.\d+", p.stdout)


def test_check_valid_config(wafer_binary, tmp_path):
    path = _write(tmp_path, to_yaml(wafer_config(free_port(), "127.0.0.1:9", str(tmp_path))) + "\n")
    rc, out = run_check(path)
    assert rc == 0, out
    assert re.search(r"valid|\bok\b", out, re.I), out
    assert "invalid" not in out.lower()


def test_check_minimal_config(wafer_binary, tmp_path):
    path = _write(tmp_path, "listen:\n  - address: 127.0.0.1:%d\nupstream:\n  servers:\n    - address: 127.0.0.1:9\n" % free_port())
    rc, out = run_check(path)
    assert rc == 0, out


def _base_lines(tmp_path):
    return to_yaml(wafer_config(free_port(), "127.0.0.1:9", str(tmp_path))).split("\n")


def _replace(lines, prefix, new):
    """Replaces the first line whose stripped text starts with prefix; returns its 1-based number."""
    for i, ln in enumerate(lines):
        if ln.strip().startswith(prefix):
            indent = ln[:len(ln) - len(ln.lstrip())]
            lines[i] = indent + new
            return i + 1
    raise KeyError(prefix)


BAD = [
    # (name, line prefix to replace, new text, key expected in the message)
    ("unknown_top_key", "workers:", "wrokers: 2", "wrokers"),
    ("unknown_nested_key", "max_headers:", "max_hedaers: 100", "max_hedaers"),
    ("bad_duration", "header:", "header: fast", "header"),
    ("bad_size", "max_body:", "max_body: 10q", "max_body"),
    ("bad_workers", "workers:", "workers: lots", "workers"),
    ("negative_keepalive", "keepalive:", "keepalive: -3", "keepalive"),
    ("bad_level", "level:", "level: loud", "level"),
    ("bad_bool", "via:", "via: maybe", "via"),
    ("bad_port", "- address:", "- address: 127.0.0.1:99999", "address"),
    ("bad_host", "- address:", "- address: not a host", "address"),
]


@pytest.mark.parametrize("name,prefix,new,key", BAD, ids=[b[0] for b in BAD])
def test_check_invalid_config_names_file_line_and_key(wafer_binary, tmp_path, name, prefix, new, key):
    lines = _base_lines(tmp_path)
    lineno = _replace(lines, prefix, new)
    path = _write(tmp_path, "\n".join(lines) + "\n")
    rc, out = run_check(path)
    assert rc == 1, out
    assert re.search(re.escape(path) + r":%d:\d+: [\w.\[\]]*%s\b" % (lineno, re.escape(key)), out), out


def test_check_yaml_syntax_error_names_file_and_line(wafer_binary, tmp_path):
    lines = _base_lines(tmp_path)
    lines.insert(4, "  oops: [unclosed")
    path = _write(tmp_path, "\n".join(lines) + "\n")
    rc, out = run_check(path)
    assert rc == 1, out
    assert re.search(re.escape(path) + r":\d+", out), out


def test_check_wrong_type_section(wafer_binary, tmp_path):
    path = _write(tmp_path, "listen: 127.0.0.1:8080\nupstream:\n  servers:\n    - address: 127.0.0.1:9\n")
    rc, out = run_check(path)
    assert rc == 1
    assert re.search(re.escape(path) + r":1:\d+: listen", out), out


def test_check_empty_upstream_list(wafer_binary, tmp_path):
    path = _write(tmp_path, "listen:\n  - address: 127.0.0.1:8080\nupstream:\n  servers: []\n")
    rc, out = run_check(path)
    assert rc == 1
    assert re.search(re.escape(path) + r":\d+:\d+: upstream", out), out


def test_check_missing_file(wafer_binary, tmp_path):
    path = str(tmp_path / "nope.yaml")
    rc, out = run_check(path)
    assert rc == 1
    assert path in out


def test_run_refuses_invalid_config(wafer_binary, tmp_path):
    lines = _base_lines(tmp_path)
    _replace(lines, "workers:", "wrokers: 2")
    path = _write(tmp_path, "\n".join(lines) + "\n")
    p = subprocess.run([wafer_binary, "run", "-c", path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=10)
    assert p.returncode != 0
    assert b"wrokers" in p.stdout


ACCESS_FIELDS = ("time", "request_id", "client", "method", "path", "status", "bytes_in", "bytes_out",
                 "durations", "upstream")


def test_access_log_lines_are_json_with_documented_fields(wafer_py, pyup):
    tag = uuid.uuid4().hex
    with wafer_py.connect() as c:
        c.request("GET", "/al/%s/get?q=1" % tag)
        c.request("POST", "/al/%s/post" % tag, body=b"x" * 12345)
        c.request("GET", "/al/%s/st?up_status=404" % tag)
        c.request("GET", "/al/%s/big?up_size=300000" % tag)
    recs = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and len(recs) < 4:
        lines = wafer_py.access_lines()
        recs = []
        for ln in lines:
            rec = json.loads(ln)  # every line, not only ours, must be valid JSON
            assert isinstance(rec, dict)
            if tag in str(rec.get("path")):
                recs.append(rec)
        time.sleep(0.05)
    assert len(recs) == 4, recs
    for rec in recs:
        for f in ACCESS_FIELDS:
            assert f in rec, (f, rec)
        assert "127.0.0.1" in str(rec["client"])
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", rec["time"]), rec["time"]
        durs = rec["durations"].values() if isinstance(rec["durations"], dict) else [rec["durations"]]
        assert durs and all(isinstance(d, (int, float)) and 0 <= d < 60000 for d in durs), rec["durations"]
        assert isinstance(rec["status"], int) and isinstance(rec["bytes_in"], int) and isinstance(rec["bytes_out"], int)
        assert pyup.address in json.dumps(rec["upstream"])
        assert rec["request_id"]
    by = {rec["path"].split("?")[0].rsplit("/", 1)[1]: rec for rec in recs}
    assert by["get"]["method"] == "GET" and by["get"]["status"] == 200
    assert by["post"]["method"] == "POST" and by["post"]["bytes_in"] >= 12345
    assert by["st"]["status"] == 404
    assert by["big"]["bytes_out"] >= 300000
    assert len({r["request_id"] for r in recs}) == 4


def test_access_log_to_stdout_and_off(start_wafer, pyup):
    w = start_wafer(pyup.address, log={"access_log": "stdout"})
    tag = uuid.uuid4().hex
    with w.connect() as c:
        assert c.request("GET", "/stdout/" + tag).status == 200
    deadline = time.monotonic() + 3
    hit = []
    while time.monotonic() < deadline and not hit:
        with open(w.stdout_path) as f:
            hit = [json.loads(ln) for ln in f if tag in ln]
        time.sleep(0.05)
    assert len(hit) == 1 and hit[0]["status"] == 200

    w2 = start_wafer(pyup.address, log={"access_log": "off"})
    with w2.connect() as c:
        assert c.request("GET", "/off/" + tag).status == 200
    time.sleep(0.3)
    assert tag not in open(w2.stdout_path).read()
    assert not os.path.exists(os.path.join(w2.tmpdir, "access.log"))


def test_access_log_records_rejected_requests(start_wafer, pyup):
    w = start_wafer(pyup.address)
    with w.connect() as c:
        c.send(b"GET /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        assert c.read_response().status == 400
    recs = w.wait_access(lambda r: r.get("status") == 400)
    assert len(recs) == 1, "a rejected request was not logged"
    assert recs[0]["request_id"] and recs[0]["bytes_out"] > 0


def test_access_log_status_499_when_the_client_resets_first(start_wafer, pyup):
    """docs/configuration.md: status 499 when the client closed first. A
    client that resets its connection while the upstream is still thinking
    is such a case. (A plain FIN is not: it may be a half-close from a client
    still waiting for its response, see test_responses.py.)"""
    w = start_wafer(pyup.address)
    tag = uuid.uuid4().hex
    s = socket.create_connection(("127.0.0.1", w.port), timeout=2)
    s.sendall(b"GET /abort-log/%s?up_delay_headers=500 HTTP/1.1\r\nHost: x\r\n\r\n" % tag.encode())
    time.sleep(0.1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    recs = w.wait_access(lambda r: tag in str(r.get("path")), timeout=3)
    assert len(recs) == 1 and recs[0]["status"] == 499, recs
    assert recs[0]["durations"]["total_ms"] < 400, "the upstream exchange was not stopped at the reset"


def test_access_log_stays_valid_json_with_hostile_targets(start_wafer, pyup):
    """Quotes, backslashes, bytes >= 0x80 and long targets in the request:
    every access log line is still one valid JSON object."""
    w = start_wafer(pyup.address)
    tag = uuid.uuid4().hex
    targets = [b'/q"uote/' + tag.encode(), b"/back\\slash/" + tag.encode(), b"/utf8/\xc3\xa9\xff/" + tag.encode(),
               b"/long/" + tag.encode() + b"/" + b"L" * 4000, b"/ctl/%00%0a%0d/" + tag.encode()]
    for t in targets:
        with w.connect() as c:
            c.send(b"GET " + t + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                c.read_response()
            except Exception:
                pass
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and len(w.access_lines()) < len(targets):
        time.sleep(0.05)
    lines = w.access_lines()
    assert len(lines) == len(targets), lines
    for ln in lines:
        rec = json.loads(ln)
        assert isinstance(rec, dict) and "\n" not in ln
        if rec["path"].startswith("/long/"):
            assert 0 < len(rec["path"]) <= 2048  # ASCII: cut at 2048 bytes


def test_access_log_path_has_no_query_string(wafer_py):
    tag = uuid.uuid4().hex
    with wafer_py.connect() as c:
        c.request("GET", "/nq/%s?secret=hunter2" % tag)
    recs = wafer_py.wait_access(lambda r: tag in str(r.get("path")))
    assert recs and recs[0]["path"] == "/nq/" + tag
    assert "hunter2" not in json.dumps(recs[0])


def test_check_accepts_the_documented_example(wafer_binary, tmp_path):
    """The configuration schema exactly as the issue's contract shows it."""
    path = _write(tmp_path, """workers: auto
pid_file: ""
log: {level: info, error_log: stderr, access_log: stdout}
listen: [{address: 127.0.0.1:8080, backlog: 511}]
upstream: {servers: [{address: 127.0.0.1:8081}], keepalive: 32, connect_timeout: 5s, timeout: 60s}
proxy: {x_forwarded_for: true, forwarded: false, via: true, request_id_header: X-Request-Id, trust_request_id: false}
limits: {max_header_bytes: 16k, max_headers: 100, max_uri: 8k, max_body: 1g, max_connections: 10000, buffer_size: 64k}
timeouts: {header: 30s, body: 60s, idle: 75s, send: 60s}
shutdown_timeout: 30s
""")
    rc, out = run_check(path)
    assert rc == 0, out


def test_check_repository_config(wafer_binary):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "conf", "wafer.yaml")
    if not os.path.exists(path):
        pytest.skip("no conf/wafer.yaml in this tree")
    rc, out = run_check(os.path.abspath(path))
    assert rc == 0, out
