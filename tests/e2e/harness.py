"""Processes and clients for wafer's integration tests.

- Wafer: runs `wafer run -c FILE` with a generated configuration on a free
  loopback port, waits until it accepts, keeps its stderr/stdout and access log
  in files, and always stops it (SIGTERM, then SIGKILL after a deadline).
- Nginx: a real nginx from Debian's package as an upstream, with static files
  of several sizes, `return` locations for status codes and an echo location.
- HTTP: a raw-socket HTTP/1.1 client that reads responses exactly as framed,
  so tests can send hostile bytes, pipeline, and see when a connection closes.
- curl(): runs curl with a timeout and returns (status, headers, body).

Every process started here is registered and killed at interpreter exit, so a
crashed test run never leaves processes behind.
"""

import atexit
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

from upstreams import pattern_bytes

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))

_live = set()


def _kill_all():
    for p in list(_live):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass


atexit.register(_kill_all)


def spawn(argv, stdout, stderr, **kw):
    """Starts a process in its own session (so its whole group can be killed)."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                         start_new_session=True, **kw)
    _live.add(p)
    return p


def reap(p, sig=signal.SIGTERM, timeout=5.0):
    """Stops a process started by spawn(); returns its exit status."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except OSError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait(5)
    else:
        # the leader is gone; make sure nothing else of its group lingers
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
    _live.discard(p)
    return p.returncode


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def closed_port():
    """A loopback port that nothing listens on (connect gets ECONNREFUSED)."""
    return free_port()


def wait_accepting(port, timeout=10.0, proc=None, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


# -- YAML ------------------------------------------------------------------------

def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if s == "" or re.search(r"[:#{}\[\],&*!|>'\"%@`]|^\s|\s$", s) or s.lower() in ("yes", "no", "true", "false", "null", "on", "off", "~"):
        return json.dumps(s)
    return s


def to_yaml(obj, indent=0):
    """Block-style YAML for nested dicts/lists of scalars."""
    pad = "  " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append("%s%s:" % (pad, k))
                out.append(to_yaml(v, indent + 1))
            elif isinstance(v, list):
                out.append("%s%s: []" % (pad, k))
            elif isinstance(v, dict):
                out.append("%s%s: {}" % (pad, k))
            else:
                out.append("%s%s: %s" % (pad, k, _scalar(v)))
    else:
        for item in obj:
            if isinstance(item, dict):
                sub = to_yaml(item, indent + 1).split("\n")
                out.append("%s- %s" % (pad, sub[0].lstrip()))
                out.extend(sub[1:])
            else:
                out.append("%s- %s" % (pad, _scalar(item)))
    return "\n".join(x for x in out if x != "")


def merge(base, over):
    out = dict(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


# -- wafer -----------------------------------------------------------------------

def wafer_bin():
    b = os.environ.get("WAFER_BIN") or os.path.join(ROOT, "build", "wafer")
    return os.path.abspath(b)


def wafer_config(port, upstream_addr, tmpdir, **over):
    """The test configuration: short timeouts so the suite stays fast."""
    base = {
        "workers": 1,
        "pid_file": "",
        "log": {"level": "info", "error_log": "stderr", "access_log": os.path.join(tmpdir, "access.log")},
        "listen": [{"address": "127.0.0.1:%d" % port, "backlog": 511}],
        "upstream": {"servers": [{"address": upstream_addr}], "keepalive": 8, "connect_timeout": "1s", "timeout": "3s"},
        "proxy": {"x_forwarded_for": True, "forwarded": False, "via": True,
                  "request_id_header": "X-Request-Id", "trust_request_id": False},
        "limits": {"max_header_bytes": "16k", "max_headers": 100, "max_uri": "8k", "max_body": "1g",
                   "max_connections": 1000, "buffer_size": "64k"},
        "timeouts": {"header": "2s", "body": "2s", "idle": "2s", "send": "5s"},
        "shutdown_timeout": "3s",
        # the admin listener is on by default: a port of its own per wafer, so
        # that tests running side by side do not collide on 127.0.0.1:9901
        "admin": {"address": "127.0.0.1:%d" % free_port()},
    }
    return merge(base, over)


class Wafer:
    def __init__(self, upstream_addr, tmpdir=None, config=None, **over):
        self.tmpdir = tmpdir or tempfile.mkdtemp(prefix="wafer-e2e-")
        self.port = free_port()
        self.config = config if config is not None else wafer_config(self.port, upstream_addr, self.tmpdir, **over)
        # the first listen address is where tests connect
        addr = self.config["listen"][0]["address"]
        host, _, port = addr.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.conf_path = os.path.join(self.tmpdir, "wafer.yaml")
        self.write_config(self.config)
        self.stderr_path = os.path.join(self.tmpdir, "stderr.log")
        self.stdout_path = os.path.join(self.tmpdir, "stdout.log")
        self.access_path = self.config.get("log", {}).get("access_log")
        self.proc = None

    def write_config(self, cfg):
        text = to_yaml(cfg) + "\n" if isinstance(cfg, dict) else cfg
        tmp = self.conf_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.conf_path)

    def start(self, timeout=10.0):
        self._err = open(self.stderr_path, "ab")
        self._out = open(self.stdout_path, "ab")
        if os.environ.get("WAFER_E2E_STANDIN") == "nginx":
            # Harness self-check only: nginx as a reverse proxy in wafer's place.
            argv = ["nginx", "-p", self.tmpdir, "-c", self._standin_conf(), "-e", self.stderr_path]
        else:
            argv = [wafer_bin(), "run", "-c", self.conf_path]
        self.proc = spawn(argv, self._out, self._err, cwd=self.tmpdir)
        if not wait_accepting(self.port, timeout, self.proc, self.host):
            self.stop()
            raise RuntimeError("wafer did not start on port %d (exit %s); stderr:\n%s"
                               % (self.port, self.proc.returncode, self.stderr()[-3000:]))
        # the admin listener binds after the data listeners: wait for it too
        adm = self.admin_port
        if adm and self.config.get("admin", {}).get("enabled", True) and not os.environ.get("WAFER_E2E_STANDIN"):
            wait_accepting(adm, timeout, self.proc)
        return self

    def _standin_conf(self):
        c = self.config
        al = c["log"]["access_log"]
        al = "off" if al == "off" else "%s wjson" % ("/dev/stdout" if al == "stdout" else al)
        t = os.path.join(self.tmpdir, "ngtmp")
        os.makedirs(t, exist_ok=True)
        conf = f"""
daemon off; master_process on; user root; worker_processes 1; pid {self.tmpdir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  client_body_temp_path {t}/b; proxy_temp_path {t}/p; fastcgi_temp_path {t}/f; uwsgi_temp_path {t}/u; scgi_temp_path {t}/s;
  log_format wjson escape=json '{{"time":"$time_iso8601","request_id":"$request_id","client":"$remote_addr",'
    '"method":"$request_method","path":"$request_uri","status":$status,"bytes_in":$request_length,'
    '"bytes_out":$bytes_sent,"durations":{{"total":$request_time}},"upstream":"$upstream_addr"}}';
  access_log {al};
  upstream up {{ server {c["upstream"]["servers"][0]["address"]}; keepalive 8; }}
  server {{
    listen 127.0.0.1:{self.port};
    client_max_body_size 0; proxy_request_buffering off; proxy_buffering off;
    client_header_timeout {c["timeouts"]["header"]}; client_body_timeout {c["timeouts"]["body"]};
    keepalive_timeout {c["timeouts"]["idle"]}; send_timeout {c["timeouts"]["send"]};
    location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host $http_host; proxy_set_header X-Request-Id $request_id;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_read_timeout {c["upstream"]["timeout"]}; proxy_connect_timeout {c["upstream"]["connect_timeout"]}; }}
  }}
}}
"""
        p = os.path.join(self.tmpdir, "standin-nginx.conf")
        with open(p, "w") as f:
            f.write(conf)
        return p

    @property
    def pid(self):
        return self.proc.pid

    def send_signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        if self.proc is None:
            return None
        rc = reap(self.proc, sig, timeout)
        for f in (self._err, self._out):
            f.close()
        return rc

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def access_lines(self):
        if not self.access_path or not os.path.exists(self.access_path):
            return []
        with open(self.access_path, "rb") as f:
            return [ln for ln in f.read().decode("utf-8", "replace").split("\n") if ln.strip()]

    def access_records(self):
        return [json.loads(ln) for ln in self.access_lines()]

    def wait_access(self, pred, timeout=3.0):
        deadline = time.monotonic() + timeout
        while True:
            recs = []
            for ln in self.access_lines():
                try:
                    recs.append(json.loads(ln))
                except ValueError:
                    pass
            hit = [r for r in recs if pred(r)]
            if hit or time.monotonic() > deadline:
                return hit
            time.sleep(0.05)

    def vm_hwm_kib(self):
        """Peak resident memory (VmHWM) of wafer, summed with that of any
        child processes, in KiB."""
        def hwm(pid):
            try:
                with open("/proc/%d/status" % pid) as f:
                    for ln in f:
                        if ln.startswith("VmHWM:"):
                            return int(ln.split()[1])
            except OSError:
                pass
            return 0
        total = hwm(self.proc.pid)
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open("/proc/%s/stat" % d) as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if ppid == self.proc.pid:
                    total += hwm(int(d))
        return total

    @property
    def admin_port(self):
        """The admin listener's port (None when the configuration has none)."""
        adm = self.config.get("admin", {}) if isinstance(self.config, dict) else {}
        if not adm.get("address"):
            return None
        return int(adm["address"].rpartition(":")[2])

    def url(self, path="/"):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "http://%s:%d%s" % (host, self.port, path)

    def connect(self, timeout=5.0):
        return HTTP(self.port, timeout, self.host)


def finish_wafer(w):
    """Stops a wafer at teardown; fails the test if it had died on its own."""
    import pytest
    crashed = w.proc is not None and w.proc.poll() is not None
    rc = w.proc.returncode if crashed else None
    stop_rc = w.stop()
    if crashed:
        pytest.fail("wafer exited on its own during the test (status %s); stderr:\n%s"
                    % (rc, w.stderr()[-3000:]), pytrace=False)
    if stop_rc != 0:
        # SIGTERM is a graceful shutdown: exit status 0 (a sanitizer report
        # or a hang that needed SIGKILL shows up here)
        pytest.fail("wafer exited with status %s after SIGTERM; stderr:\n%s"
                    % (stop_rc, w.stderr()[-3000:]), pytrace=False)


def run_check(conf_path, timeout=10):
    """`wafer -t -c FILE` -> (exit status, stdout + stderr)."""
    p = subprocess.run([wafer_bin(), "-t", "-c", conf_path], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


# -- nginx upstream ----------------------------------------------------------------

STATIC_SIZES = [0, 1, 4095, 65537, (1 << 20) + 7, 5 * (1 << 20) + 3]
RETURN_CODES = [200, 201, 204, 301, 302, 400, 403, 404, 410, 500, 503]


class Nginx:
    """nginx as an upstream (or, with proxy_to, as a reverse proxy)."""

    def __init__(self, tmpdir=None, workers=1, port=None, extra_http=""):
        self.tmpdir = tmpdir or tempfile.mkdtemp(prefix="wafer-nginx-")
        self.port = port or free_port()
        www = os.path.join(self.tmpdir, "www")
        os.makedirs(www, exist_ok=True)
        os.makedirs(os.path.join(self.tmpdir, "tmp"), exist_ok=True)
        self.files = {}
        for n in STATIC_SIZES:
            name = "f%d.bin" % n
            data = pattern_bytes(n)
            with open(os.path.join(www, name), "wb") as f:
                f.write(data)
            self.files[n] = ("/static/" + name, hashlib.sha256(data).hexdigest())
        returns = "\n".join('        location = /status/%d { return %d%s; }' % (c, c, " /moved-here" if 300 <= c < 400 else "")
                             for c in RETURN_CODES)
        t = os.path.join(self.tmpdir, "tmp")
        conf = f"""
daemon off;
master_process on;
user root;
worker_processes {workers};
pid {self.tmpdir}/nginx.pid;
error_log {self.tmpdir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {t}/body;
    proxy_temp_path {t}/proxy;
    fastcgi_temp_path {t}/fastcgi;
    uwsgi_temp_path {t}/uwsgi;
    scgi_temp_path {t}/scgi;
    default_type application/octet-stream;
    keepalive_requests 100000;
    {extra_http}
    server {{
        listen 127.0.0.1:{self.port} reuseport backlog=4096;
        location /static/ {{ alias {www}/; }}
{returns}
        location /echo {{
            return 200 "method=$request_method uri=$request_uri host=$http_host xff=$http_x_forwarded_for via=$http_via fwd=$http_forwarded rid=$http_x_request_id conn=$http_connection\\n";
        }}
        location / {{ return 200 "nginx upstream\\n"; }}
    }}
}}
"""
        self.conf_path = os.path.join(self.tmpdir, "nginx.conf")
        with open(self.conf_path, "w") as f:
            f.write(conf)
        self.address = "127.0.0.1:%d" % self.port
        self.proc = None

    def start(self):
        self._log = open(os.path.join(self.tmpdir, "stderr.log"), "ab")
        self.proc = spawn(["nginx", "-p", self.tmpdir, "-c", self.conf_path, "-e", os.path.join(self.tmpdir, "error.log")],
                          self._log, self._log)
        if not wait_accepting(self.port, 10, self.proc):
            self.stop()
            with open(os.path.join(self.tmpdir, "error.log")) as f:
                raise RuntimeError("nginx did not start: " + f.read()[-2000:])
        return self

    def stop(self):
        if self.proc is not None:
            reap(self.proc, signal.SIGTERM, 5)
            self._log.close()
            self.proc = None


# -- raw HTTP client ---------------------------------------------------------------

class Response:
    def __init__(self, status, reason, version, headers, body, raw_head, interim):
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers  # list of (name, value) in order
        self.body = body
        self.raw_head = raw_head
        self.interim = interim  # 1xx responses seen before this one

    def header(self, name, default=None):
        vals = self.all(name)
        return vals[0] if vals else default

    def all(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r, %d body bytes>" % (self.status, self.headers, len(self.body))


class Closed(Exception):
    """The peer closed the connection before a complete response arrived."""


class HTTP:
    """A raw-socket HTTP/1.1 client: send bytes, read framed responses."""

    def __init__(self, port, timeout=5.0, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self):
        if self.eof:
            raise Closed("connection closed; %d bytes unread: %r" % (len(self.buf), self.buf[:200]))
        try:
            d = self.sock.recv(262144)
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
            raise Closed("connection closed; %d bytes unread: %r" % (len(self.buf), self.buf[:200]))
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n, sink=None):
        out = []
        while n > 0:
            if not self.buf:
                self._fill()
            take = self.buf[:n]
            self.buf = self.buf[len(take):]
            n -= len(take)
            if sink:
                sink(take)
            else:
                out.append(take)
        return b"".join(out)

    def read_response(self, method="GET", sink=None):
        """Reads one final response (1xx responses are collected in .interim).
        With sink, body bytes are passed to it instead of being kept."""
        interim = []
        while True:
            while b"\r\n\r\n" not in self.buf:
                self._fill()
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                raise AssertionError("not an HTTP response: %r" % head[:200])
            version, status = parts[0], int(parts[1])
            reason = parts[2] if len(parts) > 2 else ""
            headers = []
            for ln in lines[1:]:
                k, _, v = ln.partition(":")
                headers.append((k, v.strip(" \t")))
            if 100 <= status < 200 and status != 101:
                interim.append((status, headers))
                continue
            break
        resp = Response(status, reason, version, headers, b"", head, interim)
        if method == "HEAD" or status in (204, 304):
            return resp
        te = ",".join(resp.all("transfer-encoding")).lower()
        chunks = []
        keep = sink or chunks.append
        if "chunked" in te:
            resp.chunk_sizes = []
            while True:
                size = int(self._line().split(b";")[0].strip(), 16)
                resp.chunk_sizes.append(size)
                if size == 0:
                    break
                self._exact(size, keep)
                assert self._line() == b"", "chunk not followed by CRLF"
            resp.trailers = []
            while True:
                ln = self._line()
                if not ln:
                    break
                k, _, v = ln.decode("latin-1").partition(":")
                resp.trailers.append((k, v.strip()))
        elif resp.header("content-length") is not None:
            self._exact(int(resp.header("content-length")), keep)
        else:
            while True:
                if self.buf:
                    keep(self.buf)
                    self.buf = b""
                try:
                    self._fill()
                except Closed:
                    break
        resp.body = b"".join(chunks)
        return resp

    def request(self, method="GET", target="/", headers=None, body=None, host="test.local"):
        self.send(build_request(method, target, headers, body, host))
        return self.read_response(method)

    def wait_closed(self, timeout=3.0):
        """True when the peer closes (EOF or reset) within timeout, having sent
        nothing more; raises if it sends bytes instead."""
        self.sock.settimeout(timeout)
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        if d:
            raise AssertionError("expected the connection to close, got bytes: %r" % d[:300])
        return True

    def rest_until_closed(self, timeout=3.0):
        """Reads whatever arrives until EOF; returns (bytes, closed)."""
        self.sock.settimeout(timeout)
        data = self.buf
        self.buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                return data, False
            except ConnectionResetError:
                return data, True
            if not d:
                return data, True
            data += d
        return data, False


def build_request(method="GET", target="/", headers=None, body=None, host="test.local"):
    lines = ["%s %s HTTP/1.1" % (method, target)]
    names = [k.lower() for k, _ in (headers or [])]
    if host is not None and "host" not in names:
        lines.append("Host: %s" % host)
    for k, v in headers or []:
        lines.append("%s: %s" % (k, v))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if body is not None:
        data += body if isinstance(body, bytes) else body.encode("latin-1")
    return data


def chunked(data, size=1000, ext=None, trailers=None):
    out = b""
    for i in range(0, len(data), size):
        part = data[i:i + size]
        out += b"%x%s\r\n" % (len(part), (";" + ext).encode() if ext else b"") + part + b"\r\n"
    out += b"0\r\n"
    for k, v in trailers or []:
        out += ("%s: %s\r\n" % (k, v)).encode()
    return out + b"\r\n"


# -- curl ----------------------------------------------------------------------------

def curl(args, timeout=30, body_file=None):
    """Runs curl -sS -i style: returns (status, headers list, body bytes).
    `args` are extra curl arguments (the URL among them)."""
    fd, hdr_path = tempfile.mkstemp(prefix="curl-h-")
    os.close(fd)
    try:
        argv = ["curl", "-sS", "--max-time", str(timeout), "-D", hdr_path, "-o", body_file or "-"] + list(args)
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout + 10)
        with open(hdr_path, "rb") as f:
            raw = f.read().decode("latin-1")
    finally:
        os.unlink(hdr_path)
    if p.returncode != 0:
        raise RuntimeError("curl %s failed (%d): %s" % (args, p.returncode, p.stderr.decode()))
    # -D collects every response (1xx included); the last block is the final one
    blocks = [b for b in raw.split("\r\n\r\n") if b.strip()]
    lines = blocks[-1].split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = []
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers.append((k, v.strip()))
    return status, headers, p.stdout


def hdr(headers, name):
    n = name.lower()
    vals = [v for k, v in headers if k.lower() == n]
    return vals[0] if vals else None


def read_events(path, n, timeout=5.0):
    """The security events in a file sink's JSON-lines file, once there are at
    least n of them (or whatever is there when timeout seconds have passed)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as f:
                evs = [json.loads(ln) for ln in f if ln.strip()]
        except FileNotFoundError:
            evs = []
        if len(evs) >= n or time.monotonic() > deadline:
            return evs
        time.sleep(0.05)
