"""Python upstream servers for what nginx cannot do.

One programmable HTTP/1.1 server (PyUpstream). By default it answers every
request with a JSON description of exactly what it received: method, target,
header list in order, body length and SHA-256, whether the body was chunked,
the trailers, and which upstream connection carried it. Query parameters
whose names start with ``up_`` change its behaviour for that one request:

    up_delay_headers=MS   wait before sending the response headers
    up_delay_body=MS      send headers (with Content-Length), wait, send body (JSON or up_size)
    up_status=N           response status (default 200)
    up_size=N             respond with N bytes of the test pattern instead of JSON
    up_chunks=N           respond chunked: N chunks (of up_chunk_size bytes, default 100)
    up_hop=1              add hop-by-hop headers to the response
    up_close=1            answer with Connection: close and close
    up_mode=close         read the request, then close without answering
    up_mode=reset         read the request, then reset the connection (RST)
    up_mode=garbage       answer with bytes that are not HTTP
    up_mode=partial_headers  send half a header block, then close
    up_mode=partial_body  send headers with Content-Length 1000 and 10 bytes, then close
    up_mode=eof_body      send a body delimited by closing the connection (no length)
    up_mode=cl_te         answer with both Content-Length and Transfer-Encoding
    up_mode=bad_cl        answer with Content-Length: 5x
    up_mode=cl_overflow   answer "hello" with Content-Length: 5, followed by stray bytes
                          on the same connection (a desync attempt), and keep it open
    up_mode=interim       send a 103 Early Hints (up_interim=N: N of them) before the final response
    up_mode=close_after   answer normally (keep-alive implied), then close the connection
    up_big_header=N       add a response header field of N bytes

Everything runs in daemon threads of the test process; every socket has a
timeout, and stop() closes the listener and every open connection.
"""

import hashlib
import json
import socket
import struct
import threading
import time
import urllib.parse

PATTERN_BLOCK = 1 << 20
_BASE = bytes((i * 131 + (i >> 8) * 7 + 11) & 0xFF for i in range(PATTERN_BLOCK))


def pattern_blocks(total, block=PATTERN_BLOCK):
    """Deterministic test data, the same byte stream whatever the block size:
    each 1 MiB of it starts with its index, so a reordered or repeated
    megabyte changes the hash."""
    i = 0
    sent = 0
    while sent < total:
        mib = struct.pack(">Q", i) + _BASE[8:]
        i += 1
        for off in range(0, PATTERN_BLOCK, block):
            n = min(block, PATTERN_BLOCK - off, total - sent)
            if n <= 0:
                return
            yield mib[off:off + n]
            sent += n


def pattern_bytes(total):
    return b"".join(pattern_blocks(total))


def pattern_sha256(total):
    h = hashlib.sha256()
    for b in pattern_blocks(total):
        h.update(b)
    return h.hexdigest()


class BadRequest(Exception):
    pass


class _Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        data = self.sock.recv(262144)
        if not data:
            raise EOFError
        self.buf += data

    def until(self, sep, limit=1 << 20):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + len(sep):]
                return out
            if len(self.buf) > limit:
                raise BadRequest("line too long")
            self.fill()

    def exact_into(self, n, sink):
        while n > 0:
            if not self.buf:
                self.fill()
            take = self.buf[:n]
            self.buf = self.buf[len(take):]
            sink(take)
            n -= len(take)


class PyUpstream:
    KEEP_BODY = 65536  # bodies up to this size are returned in the JSON

    def __init__(self, name="py", port=0):
        """port: 0 picks a free one; a former instance's port brings it back."""
        self.name = name
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", port))
        self.lsock.listen(256)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self.lock = threading.Lock()
        self.requests = []  # every parsed request's description, in arrival order
        self.conns = {}
        self.next_conn = 1
        self.stopping = False
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)
        self.thread.start()

    # -- inspection from tests ---------------------------------------------
    def seen(self, pred):
        with self.lock:
            return [r for r in self.requests if pred(r)]

    def seen_path(self, fragment):
        return self.seen(lambda r: fragment in r["target"])

    @property
    def connections_accepted(self):
        return self.next_conn - 1

    # -- server ----------------------------------------------------------------
    def stop(self):
        self.stopping = True
        try:
            self.lsock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns.values())
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass
        self.thread.join(2)

    def _accept_loop(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                cid = self.next_conn
                self.next_conn += 1
                self.conns[cid] = c
            threading.Thread(target=self._serve, args=(c, cid), daemon=True).start()

    def _serve(self, c, cid):
        try:
            c.settimeout(30)
        except OSError:  # stop() closed the connection before this thread ran
            return
        r = _Reader(c)
        nreq = 0
        try:
            while not self.stopping:
                try:
                    req = self._read_request(c, r, cid, nreq)
                except EOFError:
                    return
                nreq += 1
                with self.lock:
                    self.requests.append(req)
                if not self._respond(c, req):
                    return
        except (OSError, BadRequest):
            return
        finally:
            with self.lock:
                self.conns.pop(cid, None)
            try:
                c.close()
            except OSError:
                pass

    def _read_request(self, c, r, cid, nreq):
        head = r.until(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        try:
            method, target, version = lines[0].decode("latin-1").split(" ")
        except ValueError:
            raise BadRequest("request line")
        headers = []
        for ln in lines[1:]:
            k, sep, v = ln.decode("latin-1").partition(":")
            if not sep:
                raise BadRequest("header line")
            headers.append([k, v.strip(" \t")])
        hmap = {}
        for k, v in headers:
            hmap.setdefault(k.lower(), []).append(v)
        te = ",".join(hmap.get("transfer-encoding", [])).lower()
        chunked = "chunked" in te
        expect = ",".join(hmap.get("expect", []))
        if expect.lower() == "100-continue":
            c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        h = hashlib.sha256()
        kept = []
        state = {"n": 0}

        def sink(b):
            h.update(b)
            state["n"] += len(b)
            if state["n"] <= self.KEEP_BODY:
                kept.append(b)

        trailers = []
        nchunks = 0
        if chunked:
            while True:
                line = r.until(b"\r\n").decode("latin-1")
                size = int(line.split(";", 1)[0].strip(), 16)
                if size == 0:
                    break
                nchunks += 1
                r.exact_into(size, sink)
                if r.until(b"\r\n") != b"":
                    raise BadRequest("chunk data not followed by CRLF")
            while True:
                line = r.until(b"\r\n")
                if line == b"":
                    break
                k, _, v = line.decode("latin-1").partition(":")
                trailers.append([k, v.strip()])
        elif "content-length" in hmap:
            r.exact_into(int(hmap["content-length"][0]), sink)
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
        return {
            "upstream": self.name,
            "conn_id": cid,
            "conn_request": nreq,
            "method": method,
            "target": target,
            "version": version,
            "headers": headers,
            "chunked": chunked,
            "chunks": nchunks,
            "trailers": trailers,
            "body_len": state["n"],
            "body_sha256": h.hexdigest(),
            "body": b"".join(kept).decode("latin-1") if state["n"] <= self.KEEP_BODY else None,
            "expect": expect,
            "time": time.time(),
            "_q": {k: v[0] for k, v in q.items() if k.startswith("up_")},
            "_close": "close" in ",".join(hmap.get("connection", [])).lower() or version == "HTTP/1.0",
        }

    def _respond(self, c, req):
        """Sends the response; returns False when the connection must end."""
        q = req.pop("_q")
        close = req.pop("_close")
        mode = q.get("up_mode")
        close = close or "up_close" in q
        if mode == "close":
            return False
        if mode == "reset":
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if mode == "garbage":
            c.sendall(b"\x00\x01garbage that is not HTTP at all\r\n\r\n")
            return False
        if mode == "partial_headers":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Le")
            return False
        if "up_delay_headers" in q:
            time.sleep(int(q["up_delay_headers"]) / 1000.0)
        status = int(q.get("up_status", "200"))
        extra = "X-Upstream: %s\r\nX-Conn-Id: %d\r\n" % (self.name, req["conn_id"])
        if "up_big_header" in q:
            extra += "X-Big: %s\r\n" % ("b" * int(q["up_big_header"]))
        if mode == "close_after":
            close = True  # without saying so in a Connection header
        if "up_hop" in q:
            extra += "Connection: X-Up-Hop\r\nX-Up-Hop: secret\r\nKeep-Alive: timeout=5\r\nX-Up-End2end: kept\r\n"
        if close and mode != "close_after":
            extra += "Connection: close\r\n"
        reason = {200: "OK", 201: "Created", 204: "No Content", 404: "Not Found", 500: "Internal Server Error"}.get(status, "Status")
        if mode == "eof_body":
            c.sendall(("HTTP/1.1 200 OK\r\n%sContent-Type: application/octet-stream\r\n\r\n" % extra).encode()
                      + pattern_bytes(int(q.get("up_size", "100000"))))
            return False
        if mode == "cl_te":
            c.sendall(("HTTP/1.1 200 OK\r\n%sContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5\r\nhello\r\n0\r\n\r\n" % extra).encode())
            return False
        if mode == "bad_cl":
            c.sendall(("HTTP/1.1 200 OK\r\n%sContent-Length: 5x\r\n\r\nhello" % extra).encode())
            return False
        if mode == "cl_overflow":
            c.sendall(("HTTP/1.1 200 OK\r\n%sContent-Length: 5\r\n\r\nhello"
                       "HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Smuggled: yes\r\n\r\nsmuggled" % extra).encode())
            return True
        if mode == "interim":
            for _ in range(int(q.get("up_interim", "1"))):
                c.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
        if mode == "partial_body":
            c.sendall(("HTTP/1.1 %d %s\r\n%sContent-Length: 1000\r\n\r\n" % (status, reason, extra)).encode() + b"0123456789")
            return False
        if "up_chunks" in q:
            n = int(q["up_chunks"])
            size = int(q.get("up_chunk_size", "100"))
            c.sendall(("HTTP/1.1 %d %s\r\n%sContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n" % (status, reason, extra)).encode())
            data = pattern_bytes(n * size)
            for i in range(n):
                c.sendall(b"%x\r\n" % size + data[i * size:(i + 1) * size] + b"\r\n")
            c.sendall(b"0\r\nX-Trailer: done\r\n\r\n")
            return not close
        if "up_size" in q:
            total = int(q["up_size"])
            c.sendall(("HTTP/1.1 %d %s\r\n%sContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % (status, reason, extra, total)).encode())
            if "up_delay_body" in q:
                time.sleep(int(q["up_delay_body"]) / 1000.0)
            if req["method"] != "HEAD":
                for b in pattern_blocks(total):
                    c.sendall(b)
            return not close
        body = json.dumps(req).encode()
        if status in (204, 304):
            body = b""
        hdr = ("HTTP/1.1 %d %s\r\n%sContent-Type: application/json\r\n" % (status, reason, extra))
        if status not in (204, 304):
            hdr += "Content-Length: %d\r\n" % len(body)
        hdr += "\r\n"
        if "up_delay_body" in q:
            c.sendall(hdr.encode())
            time.sleep(int(q["up_delay_body"]) / 1000.0)
            if req["method"] != "HEAD":
                c.sendall(body)
        else:
            c.sendall(hdr.encode() + (b"" if req["method"] == "HEAD" else body))
        return not close
