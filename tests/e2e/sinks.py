"""Destinations for the security-event sink tests (test_events.py).

- ForwardReceiver: a Fluentd forward protocol v1 server in Python (msgpack from
  Debian's python3-msgpack). It decodes Forward and PackedForward messages,
  checks them against the protocol (tag, entries of [EventTime, map], option
  "size" equal to the entry count, "chunk" present when acks are expected),
  optionally runs the shared-key handshake (HELO, checks PING's digest,
  answers PONG with its own), and acknowledges each chunk. It can be stopped
  and started again on the same port, and told to withhold acks.
- Rsyslog: a real rsyslogd (Debian) with its own configuration and work
  directory, listening on UDP, TCP and TLS (ossl stream driver) on loopback,
  writing each message raw and as parsed RFC 5424 parts to files.
- make_certs: a CA and a server certificate for localhost / 127.0.0.1.
- drive(): runs build/tests/secops_drive (emits events through the hub).
"""

import hashlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import threading
import time

import msgpack

from harness import ROOT, free_port, reap, spawn


def drive_bin():
    b = os.environ.get("WAFER_DRIVE_BIN")
    if b:
        return b
    wafer = os.environ.get("WAFER_BIN") or os.path.join(ROOT, "build", "wafer")
    return os.path.join(os.path.dirname(os.path.abspath(wafer)), "tests", "secops_drive")


def drive(conf_path, n=0, rate=0, prefix="ev", wait=10, delivered=None, timeout=120):
    """Runs secops_drive; returns (stats dict, stderr text)."""
    argv = [drive_bin(), "-c", conf_path, "-n", str(n), "-p", prefix, "-w", str(wait)]
    if rate:
        argv += ["-r", str(rate)]
    if delivered is not None:
        argv += ["-d", str(delivered)]
    p = subprocess.run(argv, capture_output=True, timeout=timeout)
    err = p.stderr.decode(errors="replace")
    if p.returncode != 0:
        raise RuntimeError("secops_drive failed (%d): %s" % (p.returncode, err))
    return json.loads(p.stdout.decode().strip().splitlines()[-1]), err


def sha512_hex(*parts):
    h = hashlib.sha512()
    for x in parts:
        h.update(x if isinstance(x, bytes) else x.encode())
    return h.hexdigest()


def _ext_hook(code, data):
    if code == 0 and len(data) == 8:
        return ("EventTime", int.from_bytes(data[:4], "big"), int.from_bytes(data[4:], "big"))
    return msgpack.ExtType(code, data)


class ForwardReceiver:
    def __init__(self, tag="wafer.security", shared_key=None, expect_ack=True, port=None):
        self.tag = tag
        self.shared_key = shared_key
        self.expect_ack = expect_ack
        self.port = port or free_port()
        self.records = []        # (chunk, record) in arrival order
        self.chunks = []         # chunk ids in arrival order
        self.modes = set()       # "forward" / "packed"
        self.errors = []         # protocol violations seen
        self.withhold_acks = 0   # acks to withhold (the client must resend)
        self.handshakes = 0
        self.spoil_pong = False  # answer PONG with a wrong digest (a server without the key)
        self.lock = threading.Lock()
        self._lsock = None
        self._thread = None
        self._stop = threading.Event()

    # -- control -------------------------------------------------------------

    def start(self):
        self._stop.clear()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        self._lsock = s
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Closes the listener and every connection (the sink sees resets)."""
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self._thread = None

    def request_ids(self):
        with self.lock:
            return [r.get("http", {}).get("request", {}).get("id") for _, r in self.records]

    def wait_for(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(set(self.request_ids())) >= n:
                return True
            time.sleep(0.02)
        return False

    # -- protocol -------------------------------------------------------------

    def _serve(self):
        conns = {}
        try:
            while not self._stop.is_set():
                r, _, _ = select.select([self._lsock] + list(conns), [], [], 0.05)
                for s in r:
                    if s is self._lsock:
                        c, _ = self._lsock.accept()
                        st = {"unp": msgpack.Unpacker(raw=False, ext_hook=_ext_hook, strict_map_key=False),
                              "state": "ready"}
                        if self.shared_key:
                            st["nonce"] = os.urandom(16)
                            st["state"] = "helo"
                            c.sendall(msgpack.packb(["HELO", {"nonce": st["nonce"], "auth": b"", "keepalive": True}]))
                        conns[c] = st
                        continue
                    try:
                        data = s.recv(65536)
                    except OSError:
                        data = b""
                    if not data:
                        conns.pop(s)
                        s.close()
                        continue
                    st = conns[s]
                    st["unp"].feed(data)
                    try:
                        for obj in st["unp"]:
                            self._on_message(s, st, obj)
                    except Exception as e:  # a protocol error closes the connection
                        self.errors.append("decode: %r" % (e,))
                        conns.pop(s)
                        s.close()
        finally:
            for c in conns:
                c.close()
            self._lsock.close()

    def _on_message(self, sock, st, obj):
        if st["state"] == "helo":
            if not (isinstance(obj, list) and len(obj) == 6 and obj[0] == "PING"):
                self.errors.append("expected PING, got %r" % (obj,))
                raise ValueError("no PING")
            _, host, salt, digest, user, pw = obj
            want = sha512_hex(salt, host, st["nonce"], self.shared_key)
            if digest != want:
                sock.sendall(msgpack.packb(["PONG", False, "shared_key mismatch", "receiver", ""]))
                self.errors.append("PING digest mismatch")
                raise ValueError("bad digest")
            pong = sha512_hex(salt, "receiver", st["nonce"], self.shared_key)
            sock.sendall(msgpack.packb(["PONG", True, "", "receiver", "0" * 128 if self.spoil_pong else pong]))
            st["state"] = "ready"
            self.handshakes += 1
            return
        if obj is None:
            return  # heartbeat
        if not (isinstance(obj, list) and len(obj) in (2, 3) and isinstance(obj[0], str)):
            self.errors.append("not a forward message: %r" % (obj,)[:200])
            return
        tag, payload = obj[0], obj[1]
        option = obj[2] if len(obj) == 3 else {}
        if tag != self.tag:
            self.errors.append("tag %r" % tag)
        if isinstance(payload, list):
            mode, entries = "forward", payload
        elif isinstance(payload, (bytes, str)):
            mode = "packed"
            raw = payload if isinstance(payload, bytes) else payload.encode()
            entries = _unpack_all(raw)
        else:
            self.errors.append("message mode not Forward/PackedForward: %r" % type(payload))
            return
        for e in entries:
            if not (isinstance(e, list) and len(e) == 2 and isinstance(e[0], tuple) and e[0][0] == "EventTime"
                    and isinstance(e[1], dict)):
                self.errors.append("entry is not [EventTime, map]: %r" % (e,)[:200])
        if not isinstance(option, dict) or option.get("size") != len(entries):
            self.errors.append("option size %r for %d entries" % (option, len(entries)))
        chunk = option.get("chunk") if isinstance(option, dict) else None
        if self.expect_ack and not chunk:
            self.errors.append("no chunk option")
        if not self.expect_ack and chunk:
            self.errors.append("chunk option without ack configured")
        with self.lock:
            if chunk and self.withhold_acks > 0:
                self.withhold_acks -= 1
                self.chunks.append(("withheld", chunk))
                return
            self.modes.add(mode)
            self.chunks.append(("acked" if chunk else "plain", chunk))
            for e in entries:
                self.records.append((chunk, e[1]))
        if chunk:
            sock.sendall(msgpack.packb({"ack": chunk}))


def _unpack_all(raw):
    u = msgpack.Unpacker(raw=False, ext_hook=_ext_hook, strict_map_key=False)
    u.feed(raw)
    return list(u)


def make_certs(d):
    """CA + server certificate (CN=localhost, SAN DNS:localhost, IP:127.0.0.1), and a second,
    unrelated CA. Returns a dict of paths."""
    os.makedirs(d, exist_ok=True)
    run = lambda *a: subprocess.run(a, cwd=d, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=wafer test CA")
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.pem",
        "-days", "2", "-subj", "/CN=another CA")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
        "-subj", "/CN=localhost")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "cli.key", "-out", "cli.csr",
        "-subj", "/CN=waf-1")
    run("openssl", "x509", "-req", "-in", "cli.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "cli.pem", "-days", "2")
    return {k: os.path.join(d, v) for k, v in
            {"ca": "ca.pem", "other_ca": "other.pem", "cert": "srv.pem", "key": "srv.key",
             "client_cert": "cli.pem", "client_key": "cli.key"}.items()}


class Rsyslog:
    """rsyslogd -n with its own configuration: imudp and imtcp (plain) on one port,
    imtcp with the ossl driver (TLS, server certificate from make_certs) on another,
    and on a third TLS that demands a client certificate signed by the CA."""

    def __init__(self, d, certs):
        self.dir = d
        self.work = os.path.join(d, "work")
        os.makedirs(self.work, exist_ok=True)
        self.port = free_port()
        self.tls_port = free_port()
        self.mtls_port = free_port()
        self.raw = os.path.join(d, "raw.log")
        self.parts = os.path.join(d, "parts.log")
        self.conf = os.path.join(d, "rsyslog.conf")
        with open(self.conf, "w") as f:
            f.write(f'''
global(workDirectory="{self.work}" maxMessageSize="64k"
       DefaultNetstreamDriverCAFile="{certs['ca']}" DefaultNetstreamDriverCertFile="{certs['cert']}"
       DefaultNetstreamDriverKeyFile="{certs['key']}")
module(load="imudp")
module(load="imtcp" maxSessions="100")
input(type="imudp" port="{self.port}" address="127.0.0.1")
input(type="imtcp" port="{self.port}" address="127.0.0.1")
input(type="imtcp" port="{self.tls_port}" address="127.0.0.1" streamDriver.name="ossl" streamDriver.mode="1"
      streamDriver.authMode="anon")
input(type="imtcp" port="{self.mtls_port}" address="127.0.0.1" streamDriver.name="ossl" streamDriver.mode="1"
      streamDriver.authMode="x509/certvalid")
template(name="raw" type="string" string="%rawmsg%\\n")
template(name="parts" type="list") {{
  property(name="pri") constant(value="\\t") property(name="timereported" dateFormat="rfc3339")
  constant(value="\\t") property(name="hostname") constant(value="\\t") property(name="app-name")
  constant(value="\\t") property(name="procid") constant(value="\\t") property(name="msgid")
  constant(value="\\t") property(name="structured-data") constant(value="\\t") property(name="msg" format="json")
  constant(value="\\n")
}}
action(type="omfile" file="{self.raw}" template="raw" flushOnTXEnd="on")
action(type="omfile" file="{self.parts}" template="parts" flushOnTXEnd="on")
''')
        self.proc = None

    def start(self):
        self._out = open(os.path.join(self.dir, "rsyslogd.out"), "ab")
        self.proc = spawn(["rsyslogd", "-n", "-f", self.conf, "-i", os.path.join(self.dir, "rsyslogd.pid")],
                          self._out, self._out)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                for port in (self.tls_port, self.mtls_port, self.port):
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("rsyslogd did not start")

    def stop(self):
        if self.proc:
            reap(self.proc)
            self.proc = None
            self._out.close()

    def lines(self, path):
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def wait_lines(self, path, n, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.lines(path)) >= n:
                return True
            time.sleep(0.05)
        return False


def have(cmd):
    return shutil.which(cmd) is not None


class ForwardReceiverProcess:
    """A ForwardReceiver in a process of its own (for load tests: its decoding
    must not compete with the load clients for the test process's GIL).
    Records go to a JSON-lines file (request id, chunk); SIGUSR1 makes it
    withhold every ack from then on, SIGUSR2 acknowledge again."""

    def __init__(self, d, port=None):
        self.port = port or free_port()
        self.out = os.path.join(d, "forward-records.jsonl")
        self.err = os.path.join(d, "forward-errors.txt")
        self.proc = None

    def start(self):
        self._log = open(self.err + ".stderr", "ab")
        self.proc = spawn(["/usr/bin/python3", os.path.abspath(__file__), "receiver", str(self.port), self.out,
                           self.err], subprocess.DEVNULL, self._log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("receiver did not start")

    def stop(self):
        if self.proc:
            reap(self.proc)
            self.proc = None
            self._log.close()

    def hang(self, on=True):
        os.kill(self.proc.pid, signal.SIGUSR1 if on else signal.SIGUSR2)

    def request_ids(self):
        try:
            with open(self.out) as f:
                return [json.loads(l)["id"] for l in f if l.endswith("\n")]
        except FileNotFoundError:
            return []

    def errors(self):
        try:
            with open(self.err) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def wait_for(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(set(self.request_ids())) >= n:
                return True
            time.sleep(0.05)
        return False


def _receiver_main(port, out, err):
    r = ForwardReceiver(port=int(port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGUSR1, lambda *a: setattr(r, "withhold_acks", 10 ** 9))
    signal.signal(signal.SIGUSR2, lambda *a: setattr(r, "withhold_acks", 0))
    r.start()
    done = 0
    with open(out, "a") as f:
        while not stop.is_set():
            time.sleep(0.02)
            with r.lock:
                recs = r.records[done:]
                done = len(r.records)
            for chunk, rec in recs:
                f.write(json.dumps({"id": rec.get("http", {}).get("request", {}).get("id"), "chunk": chunk}) + "\n")
            f.flush()
            if r.errors:
                with open(err, "a") as e:
                    e.write("\n".join(r.errors) + "\n")
                r.errors.clear()
    r.stop()


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 5 and sys.argv[1] == "receiver":
        _receiver_main(*sys.argv[2:])
