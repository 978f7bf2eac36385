"""TLS termination, mutual TLS and TLS to upstreams, with real clients.

Certificates are generated here with the openssl CLI: a CA, server
certificates for two names (a.test, which also covers *.wild.test, and
b.test), client certificates with a SPIFFE URI SAN and with a plain subject
(CN=ops), a CA of strangers with a client certificate of its own, and a
certificate for an nginx upstream (upstream.test). Clients are curl,
`openssl s_client` and Python's ssl module.
"""

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

from harness import Nginx, curl, free_port, hdr, wait_accepting

OPENSSL_TIMEOUT = 10
REQ = b"GET /r HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"


def sh(argv, cwd, input=None, timeout=OPENSSL_TIMEOUT):
    p = subprocess.run(argv, cwd=cwd, input=input, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def make_key_csr(d, name, subj):
    rc, out = sh(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", name + ".key", "-out", name + ".csr", "-subj", subj], d)
    assert rc == 0, out


def sign(d, name, ca, ext):
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write(ext + "\n")
    rc, out = sh(["openssl", "x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
                  "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext"], d)
    assert rc == 0, out


def make_ca(d, name, cn):
    rc, out = sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", name + ".key", "-out", name + ".pem", "-days", "2", "-subj", "/CN=" + cn], d)
    assert rc == 0, out


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pki"))
    make_ca(d, "ca", "wafer test CA")
    make_ca(d, "other", "strangers CA")
    certs = [
        ("a", "/CN=a.test", "ca", "subjectAltName=DNS:a.test,DNS:*.wild.test"),
        ("b", "/CN=b.test", "ca", "subjectAltName=DNS:b.test"),
        ("upstream", "/CN=upstream.test", "ca", "subjectAltName=DNS:upstream.test"),
        ("spiffe", "/CN=web", "ca", "subjectAltName=URI:spiffe://example.org/ns/prod/sa/web\n"
                                    "extendedKeyUsage=clientAuth"),
        ("dev", "/CN=dev", "ca", "subjectAltName=URI:spiffe://example.org/ns/dev/sa/web\n"
                                 "extendedKeyUsage=clientAuth"),
        ("ops", "/O=Example/CN=ops", "ca", "extendedKeyUsage=clientAuth"),
        ("rogue", "/CN=ops", "other", "extendedKeyUsage=clientAuth"),
    ]
    for name, subj, ca, ext in certs:
        make_key_csr(d, name, subj)
        sign(d, name, ca, ext)
    with open(os.path.join(d, "garbage.pem"), "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    return d


def p(pki, name):
    return os.path.join(pki, name)


def tls_listen(w_port, pki, **tls):
    conf = {"certificates": [{"cert": p(pki, "a.pem"), "key": p(pki, "a.key")},
                             {"cert": p(pki, "b.pem"), "key": p(pki, "b.key")}]}
    conf.update(tls)
    return [{"address": "127.0.0.1:%d" % w_port, "tls": conf}]


@pytest.fixture
def tls_wafer(start_wafer, pyup, pki):
    """start_tls(**tls_overrides, proxy=..., extra=...) -> Wafer serving TLS in front of the echo upstream."""
    def start(proxy=None, **tls):
        port = free_port()
        over = {"listen": tls_listen(port, pki, **tls)}
        if proxy:
            over["proxy"] = proxy
        return start_wafer(pyup.address, **over)
    return start


def https(w, name="a.test", path="/", args=(), ca="ca.pem", pki=None):
    return curl(["--cacert", p(pki, ca), "--resolve", "%s:%d:127.0.0.1" % (name, w.port),
                 "https://%s:%d%s" % (name, w.port, path)] + list(args))


def s_client(pki, w, *args, data=b""):
    argv = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % w.port, "-CAfile", p(pki, "ca.pem")] + list(args)
    return sh(argv, pki, input=data)


def counters(w):
    """The counters line wafer logs on SIGUSR2, as a dict."""
    before = w.stderr().count("counters:")
    w.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        text = w.stderr()
        if text.count("counters:") > before:
            line = text[text.rindex("counters:"):].split("\n")[0]
            return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
        time.sleep(0.05)
    raise AssertionError("no counters line")


def wait_log(w, text, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in w.stderr():
            return True
        time.sleep(0.05)
    return False


def tls_socket(w, pki, name="a.test", cert=None):
    ctx = ssl.create_default_context(cafile=p(pki, "ca.pem"))
    if cert:
        ctx.load_cert_chain(p(pki, cert + ".pem"), p(pki, cert + ".key"))
    raw = socket.create_connection(("127.0.0.1", w.port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname=name)


def exchange(s, path="/", host="a.test", extra=""):
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path, host, extra)).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        assert d, "connection closed before a response"
        buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    m = re.search(rb"content-length: *(\d+)", head, re.I)
    n = int(m.group(1)) if m else 0
    while len(body) < n:
        d = s.recv(65536)
        assert d
        body += d
    return int(head.split(b" ")[1]), body


def cert_cn(out):
    m = re.search(r"subject=.*?CN *= *([\w.*-]+)", out)
    return m.group(1) if m else None


# ---- handshakes, SNI, ALPN, versions, resumption -----------------------------------------------------------------

def test_curl_handshake_alpn_http11(tls_wafer, pki):
    w = tls_wafer()
    st, headers, body = https(w, pki=pki, args=["-w", "\n%{http_version} %{ssl_verify_result}"])
    assert st == 200
    assert body.decode().split("\n")[-1] == "1.1 0"
    st, _, body = https(w, pki=pki, path="/hello")
    assert st == 200 and json.loads(body)["target"] == "/hello"
    c = counters(w)
    assert c.get("tls_handshakes", 0) >= 2


def test_s_client_sni_chooses_certificate(tls_wafer, pki):
    w = tls_wafer()
    for name, want in [("a.test", "a.test"), ("b.test", "b.test"), ("x.wild.test", "a.test"),
                       ("unknown.test", "a.test")]:
        rc, out = s_client(pki, w, "-servername", name)
        assert "Verify return code: 0" in out or name == "unknown.test", out
        assert cert_cn(out) == want, (name, out[-2000:])
    rc, out = s_client(pki, w, "-noservername")
    assert cert_cn(out) == "a.test"
    # curl checks the name against the certificate it gets
    assert https(w, name="b.test", pki=pki)[0] == 200


def test_alpn_without_http11_refused(tls_wafer, pki):
    w = tls_wafer()
    rc, out = s_client(pki, w, "-servername", "a.test", "-alpn", "h2")
    assert "no application protocol" in out.lower() or "alert" in out.lower(), out
    rc, out = s_client(pki, w, "-servername", "a.test", "-alpn", "h2,http/1.1")
    assert "ALPN protocol: http/1.1" in out
    assert counters(w).get("tls_failed_alpn") == 1


@pytest.mark.parametrize("flag,proto", [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
def test_forced_version_and_resumption(tls_wafer, pki, flag, proto, tmp_path):
    w = tls_wafer()
    sess = str(tmp_path / "sess.pem")
    req = REQ
    rc, out = s_client(pki, w, "-servername", "a.test", flag, "-sess_out", sess, "-ign_eof", data=req)
    assert "Protocol  : " + proto in out or ("New, " + proto) in out, out[-1500:]
    assert "HTTP/1.1 200" in out
    rc, out = s_client(pki, w, "-servername", "a.test", flag, "-sess_in", sess, "-ign_eof", data=req)
    assert "Reused, " + proto in out, out[-1500:]
    assert "HTTP/1.1 200" in out
    c = counters(w)
    assert c.get("tls_resumed") == 1 and c.get("tls_handshakes") == 2


def test_resumption_with_session_cache_only(tls_wafer, pki, tmp_path):
    w = tls_wafer(session_tickets=False)
    sess = str(tmp_path / "sess.pem")
    for proto in ("-tls1_2", "-tls1_3"):
        # TLS 1.3 sends its (stateful) ticket after the handshake: read a response to receive it
        s_client(pki, w, "-servername", "a.test", proto, "-sess_out", sess, "-ign_eof", data=REQ)
        rc, out = s_client(pki, w, "-servername", "a.test", proto, "-sess_in", sess)
        assert "Reused" in out, (proto, out[-1500:])


def test_protocols_restricted(tls_wafer, pki):
    w = tls_wafer(protocols=["TLSv1.3"])
    rc, out = s_client(pki, w, "-servername", "a.test", "-tls1_2")
    assert rc != 0 and "Cipher is (NONE)" in out or "alert" in out.lower(), out[-1500:]
    rc, out = s_client(pki, w, "-servername", "a.test", "-tls1_3")
    assert "TLSv1.3" in out and rc == 0
    assert counters(w).get("tls_failed_protocol") == 1


def test_ciphers_configurable(tls_wafer, pki):
    w = tls_wafer(protocols=["TLSv1.2"], ciphers="ECDHE-ECDSA-CHACHA20-POLY1305")
    rc, out = s_client(pki, w, "-servername", "a.test", "-tls1_2")
    assert "ECDHE-ECDSA-CHACHA20-POLY1305" in out
    rc, out = s_client(pki, w, "-servername", "a.test", "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert rc != 0
    assert counters(w).get("tls_failed_protocol") == 1


def test_wrong_server_ca_refused_by_client(tls_wafer, pki):
    w = tls_wafer()
    with pytest.raises(RuntimeError, match=r"\(60\)"):
        https(w, pki=pki, ca="other.pem")


def test_plain_http_on_tls_port_counted(tls_wafer, pki):
    w = tls_wafer()
    with socket.create_connection(("127.0.0.1", w.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        s.settimeout(5)
        got = b""
        try:
            while True:
                d = s.recv(4096)
                if not d:
                    break
                got += d
        except ConnectionResetError:
            pass
    assert got.startswith(b"HTTP/1.1 400 Bad Request\r\n") and got.endswith(b"use https:// to reach it.\n"), got
    assert counters(w).get("tls_failed_plain_http") == 1


def test_handshake_timeout(tls_wafer, pki):
    w = tls_wafer()
    with socket.create_connection(("127.0.0.1", w.port), timeout=6) as s:
        s.sendall(b"\x16\x03\x01\x00")  # the start of a ClientHello, then nothing
        t0 = time.monotonic()
        try:
            d = s.recv(100)
        except ConnectionResetError:
            d = b""
        assert d == b"" and time.monotonic() - t0 < 4.5  # timeouts.header is 2s in the test config
    assert counters(w).get("tls_failed_timeout") == 1


def test_large_bodies_both_ways(tls_wafer, pki, tmp_path):
    w = tls_wafer()
    data = os.urandom(3 * 1024 * 1024 + 17)
    f = tmp_path / "up.bin"
    f.write_bytes(data)
    st, _, body = https(w, pki=pki, path="/up", args=["--data-binary", "@" + str(f)])
    assert st == 200
    info = json.loads(body)
    import hashlib
    assert info["body_sha256"] == hashlib.sha256(data).hexdigest()
    st, _, body = https(w, pki=pki, path="/?up_size=5000000")
    assert st == 200 and len(body) == 5000000


# ---- mutual TLS and the identity header ------------------------------------------------------------------------

def test_client_cert_required_and_wrong_ca_refused(tls_wafer, pki):
    w = tls_wafer(client_ca=p(pki, "ca.pem"), client_verify="required")
    for cert in ("spiffe", "ops"):
        st, _, _ = https(w, pki=pki, args=["--cert", p(pki, cert + ".pem"), "--key", p(pki, cert + ".key")])
        assert st == 200
    with pytest.raises(RuntimeError):
        https(w, pki=pki, args=["--cert", p(pki, "rogue.pem"), "--key", p(pki, "rogue.key")])
    with pytest.raises(RuntimeError):
        https(w, pki=pki)
    rc, out = s_client(pki, w, "-servername", "a.test", "-cert", p(pki, "rogue.pem"), "-key", p(pki, "rogue.key"),
                       data=b"GET / HTTP/1.0\r\n\r\n")
    assert "HTTP/1.1 200" not in out
    c = counters(w)
    assert c.get("tls_failed_certificate", 0) >= 3


def test_identity_passed_upstream_not_forgeable(tls_wafer, pki):
    w = tls_wafer(client_ca=p(pki, "ca.pem"), client_verify="optional", proxy={"pass_client_identity": True})
    forged = ["-H", "X-Client-Identity: spiffe://example.org/ns/prod/sa/admin"]

    def seen(args):
        st, _, body = https(w, pki=pki, args=args + forged)
        assert st == 200
        return [v for k, v in json.loads(body)["headers"] if k.lower() == "x-client-identity"]
    assert seen(["--cert", p(pki, "spiffe.pem"), "--key", p(pki, "spiffe.key")]) == \
        ["spiffe://example.org/ns/prod/sa/web"]
    assert seen(["--cert", p(pki, "ops.pem"), "--key", p(pki, "ops.key")]) == ["CN=ops,O=Example"]
    assert seen([]) == []  # no certificate: the forged header is removed, none added


def test_identity_header_off_by_default(tls_wafer, pki):
    w = tls_wafer(client_ca=p(pki, "ca.pem"), client_verify="optional")
    st, _, body = https(w, pki=pki, args=["--cert", p(pki, "spiffe.pem"), "--key", p(pki, "spiffe.key"),
                                          "-H", "X-Client-Identity: forged"])
    names = [v for k, v in json.loads(body)["headers"] if k.lower() == "x-client-identity"]
    assert names == ["forged"]  # passed through unchanged: wafer does not claim the header


# ---- reloads ---------------------------------------------------------------------------------------------------

def test_reload_new_certificate_old_connection_unaffected(tls_wafer, pki):
    w = tls_wafer()
    old = tls_socket(w, pki, "a.test")
    assert exchange(old)[0] == 200
    assert "a.test" in str(old.getpeercert()["subject"])
    cfg = dict(w.config)
    cfg["listen"] = [{"address": "127.0.0.1:%d" % w.port,
                      "tls": {"certificates": [{"cert": p(pki, "b.pem"), "key": p(pki, "b.key"),
                                                "names": ["a.test", "b.test"]}]}}]
    w.write_config(cfg)
    w.send_signal(signal.SIGHUP)
    assert wait_log(w, "configuration reloaded")
    # a new connection gets the new certificate (b.test, also answering to a.test by names:)
    rc, out = s_client(pki, w, "-servername", "a.test")
    assert cert_cn(out) == "b.test", out[-1500:]
    # the old connection keeps its session and serves on
    assert exchange(old)[0] == 200
    old.close()


def test_reload_bad_certificate_refused_old_kept(tls_wafer, pki):
    w = tls_wafer()
    cfg = dict(w.config)
    cfg["listen"] = [{"address": "127.0.0.1:%d" % w.port,
                      "tls": {"certificates": [{"cert": p(pki, "garbage.pem"), "key": p(pki, "b.key")}]}}]
    w.write_config(cfg)
    w.send_signal(signal.SIGHUP)
    assert wait_log(w, "reload refused")
    line = [ln for ln in w.stderr().split("\n") if "reload refused" in ln][-1]
    assert "garbage.pem" in line and "certificates[0].cert" in line, line
    # mismatched key: refused with the key file named
    cfg["listen"][0]["tls"]["certificates"][0] = {"cert": p(pki, "b.pem"), "key": p(pki, "a.key")}
    w.write_config(cfg)
    w.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while w.stderr().count("reload refused") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    line = [ln for ln in w.stderr().split("\n") if "reload refused" in ln][-1]
    assert "a.key" in line, line
    rc, out = s_client(pki, w, "-servername", "b.test")
    assert cert_cn(out) == "b.test"
    rc, out = s_client(pki, w, "-servername", "a.test")
    assert cert_cn(out) == "a.test"
    assert https(w, pki=pki)[0] == 200


def test_ticket_keys_survive_reload(tls_wafer, pki, tmp_path):
    w = tls_wafer()
    sess = str(tmp_path / "sess.pem")
    s_client(pki, w, "-servername", "a.test", "-tls1_3", "-sess_out", sess, "-ign_eof", data=REQ)
    w.send_signal(signal.SIGHUP)
    assert wait_log(w, "configuration reloaded")
    rc, out = s_client(pki, w, "-servername", "a.test", "-tls1_3", "-sess_in", sess)
    assert "Reused" in out


# ---- TLS to upstreams ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nginx_tls(pki, tmp_path_factory):
    port = free_port()
    extra = """
    server {
        listen 127.0.0.1:%d ssl;
        ssl_certificate %s; ssl_certificate_key %s;
        location /reused { return 200 "$ssl_session_reused\\n"; }
        location / { return 200 "tls upstream sni=$ssl_server_name\\n"; }
    }""" % (port, p(pki, "upstream.pem"), p(pki, "upstream.key"))
    n = Nginx(str(tmp_path_factory.mktemp("nginx-tls")), extra_http=extra).start()
    assert wait_accepting(port, 10)
    n.tls_address = "127.0.0.1:%d" % port
    yield n
    n.stop()


def test_upstream_tls_verified(start_wafer, nginx_tls, pki):
    w = start_wafer(nginx_tls.tls_address,
                    upstream={"servers": [{"address": nginx_tls.tls_address}],
                              "tls": {"ca": p(pki, "ca.pem"), "server_name": "upstream.test"}})
    for _ in range(3):
        st, _, body = curl([w.url("/x")])
        assert st == 200 and body == b"tls upstream sni=upstream.test\n"
    c = counters(w)
    assert c.get("tls_upstream_handshakes", 0) >= 1 and not c.get("tls_upstream_failed")


def test_upstream_tls_wrong_ca_502(start_wafer, nginx_tls, pki):
    w = start_wafer(nginx_tls.tls_address,
                    upstream={"servers": [{"address": nginx_tls.tls_address}],
                              "tls": {"ca": p(pki, "other.pem"), "server_name": "upstream.test"}})
    st, _, _ = curl([w.url("/x")])
    assert st == 502
    assert wait_log(w, "certificate verification")
    assert counters(w).get("tls_upstream_failed") == 1


def test_upstream_tls_wrong_name_502(start_wafer, nginx_tls, pki):
    w = start_wafer(nginx_tls.tls_address,
                    upstream={"servers": [{"address": nginx_tls.tls_address}],
                              "tls": {"ca": p(pki, "ca.pem"), "server_name": "elsewhere.test"}})
    st, _, _ = curl([w.url("/x")])
    assert st == 502
    assert wait_log(w, "hostname mismatch")


def test_resumed_session_keeps_identity(tls_wafer, pki, tmp_path):
    w = tls_wafer(client_ca=p(pki, "ca.pem"), client_verify="required", proxy={"pass_client_identity": True})
    sess = str(tmp_path / "sess.pem")
    for proto in ("-tls1_2", "-tls1_3"):
        rc, out = s_client(pki, w, "-servername", "a.test", proto, "-cert", p(pki, "spiffe.pem"), "-key",
                           p(pki, "spiffe.key"), "-sess_out", sess, "-ign_eof", data=REQ)
        assert "spiffe://example.org/ns/prod/sa/web" in out, out[-1500:]
        # resumed: no certificate is sent again; the session still carries the verified identity
        rc, out = s_client(pki, w, "-servername", "a.test", proto, "-sess_in", sess, "-ign_eof", data=REQ)
        assert "Reused" in out, out[-1500:]
        assert "spiffe://example.org/ns/prod/sa/web" in out, out[-1500:]


# ---- identity policies on routes -------------------------------------------------------------------------------

ROUTES = [
    {"name": "admin", "path": "/admin", "access": {"identities": ["spiffe://example.org/ns/prod/*", "CN=ops,*"]}},
    {"name": "internal", "path": "/internal", "access": {"require_client_cert": True}},
    {"name": "public", "path": "/public"},
]


@pytest.fixture
def policy_wafer(start_wafer, pyup, pki, tmp_path):
    port = free_port()
    events = str(tmp_path / "events.jsonl")
    w = start_wafer(pyup.address, listen=tls_listen(port, pki, client_ca=p(pki, "ca.pem"), client_verify="optional"),
                    policy={"routes": ROUTES}, events={"sinks": [{"type": "file", "path": events}]})
    w.events_path = events
    return w


def as_client(w, pki, cert, path):
    args = ["--cert", p(pki, cert + ".pem"), "--key", p(pki, cert + ".key")] if cert else []
    return https(w, pki=pki, path=path, args=args)


def read_events(w, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(w.events_path) as f:
                evs = [json.loads(ln) for ln in f if ln.strip()]
        except OSError:
            evs = []
        if len(evs) >= n or time.monotonic() > deadline:
            return evs
        time.sleep(0.05)


def test_identity_policy_allows(policy_wafer, pki):
    w = policy_wafer
    for cert, path in [("spiffe", "/admin"), ("ops", "/admin/users"), ("dev", "/internal"), ("spiffe", "/internal/x"),
                       (None, "/public"), (None, "/"), ("dev", "/administrator")]:
        st, _, body = as_client(w, pki, cert, path)
        assert st == 200, (cert, path, body)
        assert json.loads(body)["target"] == path
    assert not counters(w).get("identity_denied")


def test_identity_policy_refuses_with_event(policy_wafer, pki):
    w = policy_wafer
    cases = [("dev", "/admin"), (None, "/admin"), (None, "/internal"), ("dev", "/%61dmin/x"), ("dev", "/x/../admin"),
             ("dev", "//admin")]
    for cert, path in cases:
        st, headers, body = as_client(w, pki, cert, path)
        assert st == 403, (cert, path)
        rid = body.decode().split("request id: ")[1].strip()
        assert len(rid) == 32
    evs = read_events(w, len(cases))
    assert len(evs) == len(cases)
    first = evs[0]
    assert first["event"]["action"] == "deny" and first["event"]["reason"] == "identity"
    assert first["http"]["response"]["status_code"] == 403
    assert first["wafer"]["identity"] == "spiffe://example.org/ns/dev/sa/web"
    assert first["wafer"]["route"] == "admin"
    assert first["url"]["path"] == "/admin"
    assert "identity" not in evs[1].get("wafer", {})  # no certificate: no identity
    assert evs[2]["wafer"]["route"] == "internal"
    assert [e["wafer"]["route"] for e in evs[3:]] == ["admin"] * 3
    log = w.stderr()
    assert 'identity "spiffe://example.org/ns/dev/sa/web" may not reach route admin: 403' in log
    assert "no verified client certificate for route internal: 403" in log
    assert counters(w).get("identity_denied") == len(cases)
    # nothing refused reached the upstream; an allowed request on the same wafer still does
    assert as_client(w, pki, "spiffe", "/admin")[0] == 200


def test_identity_policy_config_errors(tmp_path, pki):
    from harness import run_check, to_yaml, wafer_config
    cfg = wafer_config(free_port(), "127.0.0.1:1", str(tmp_path))
    cfg["policy"] = {"routes": [{"name": "admin", "path": "/admin",
                                 "access": {"identities": ["x"], "require_client_cert": False}}]}
    path = tmp_path / "bad.yaml"
    path.write_text(to_yaml(cfg) + "\n")
    rc, out = run_check(str(path))
    assert rc == 1 and "policy.routes[0].access.require_client_cert" in out, out
    cfg["policy"]["routes"][0]["access"] = {"identitys": ["x"]}
    path.write_text(to_yaml(cfg) + "\n")
    rc, out = run_check(str(path))
    assert rc == 1 and "identitys" in out, out


def test_upstream_tls_resumes_sessions(start_wafer, nginx_tls, pki):
    w = start_wafer(nginx_tls.tls_address,
                    upstream={"servers": [{"address": nginx_tls.tls_address}], "keepalive": 0,
                              "tls": {"ca": p(pki, "ca.pem"), "server_name": "upstream.test"}})
    seen = [curl([w.url("/reused")])[2].strip() for _ in range(4)]
    assert seen[0] == b"." and seen[1:] == [b"r"] * 3, seen  # nginx's $ssl_session_reused
    c = counters(w)
    assert c.get("tls_upstream_handshakes") == 4 and c.get("tls_upstream_resumed") == 3
