"""Timeouts and upstream failures: slowloris, idle keep-alive, body
timeout, upstream timeout (504), refused / garbage / closing upstreams (502).
Error bodies carry the request id that the access log records."""

import socket
import time
import uuid

import pytest

from harness import Closed, build_request, closed_port, finish_wafer, Wafer

T = {"header": "1s", "body": "1s", "idle": "1s", "send": "5s"}


@pytest.fixture(scope="module")
def wafer_t(wafer_binary, pyup, tmp_path_factory):
    w = Wafer(pyup.address, str(tmp_path_factory.mktemp("wafer")), timeouts=T,
              upstream={"timeout": "1s", "connect_timeout": "1s"}).start()
    yield w
    finish_wafer(w)


def _closed_within(c, lo, hi):
    """Waits for the server to close; returns the elapsed time. A 408 before
    closing is fine."""
    t0 = time.monotonic()
    data, closed = c.rest_until_closed(hi + 1)
    dt = time.monotonic() - t0
    assert closed, "still open after %.1fs" % dt
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:200]
    return dt


def test_header_timeout_closes_slowloris(wafer_t):
    with wafer_t.connect() as c:
        c.send(b"GET /slowloris HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        closed = False
        # one header byte every 200 ms: each read is recent, but the header
        # as a whole is late, and the header timeout is for the whole header
        for i in range(25):
            try:
                c.send(b"X-%d: %d\r\n" % (i, i))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            c.sock.settimeout(0.2)
            try:
                d = c.sock.recv(4096)
                if d == b"" or d.startswith(b"HTTP/1.1 408"):
                    closed = True
                    break
                raise AssertionError("unexpected bytes %r" % d[:100])
            except TimeoutError:
                pass
            except ConnectionResetError:
                closed = True
                break
        dt = time.monotonic() - t0
        assert closed, "slowloris connection still open after %.1fs" % dt
        assert dt < 2.5


def test_header_timeout_on_silent_connection(wafer_t):
    with wafer_t.connect() as c:
        dt = _closed_within(c, 0.5, 3)
        assert 0.5 <= dt <= 3


def test_idle_keepalive_timeout(wafer_t):
    with wafer_t.connect() as c:
        assert c.request("GET", "/idle").status == 200
        dt = _closed_within(c, 0.5, 3)
        assert 0.5 <= dt <= 3


def test_keepalive_survives_when_used_before_idle_timeout(wafer_t):
    with wafer_t.connect() as c:
        for i in range(4):
            assert c.request("GET", "/busy/%d" % i).status == 200
            time.sleep(0.5)


def test_body_timeout(wafer_t):
    with wafer_t.connect() as c:
        c.send(build_request("POST", "/slow-body", [("Content-Length", "100")]) + b"0123456789")
        t0 = time.monotonic()
        data, closed = c.rest_until_closed(4)
        dt = time.monotonic() - t0
        assert closed, "connection with a stalled body still open after %.1fs" % dt
        assert dt < 3.5
        if data:
            assert data.split(b" ")[1] in (b"408", b"400", b"502", b"504"), data[:200]


def _rid_in_body_and_log(w, r, tag):
    recs = w.wait_access(lambda x: tag in str(x.get("path")))
    assert len(recs) == 1, recs
    rid = recs[0]["request_id"]
    assert rid and rid.encode() in r.body, "error body %r lacks request id %r" % (r.body[:300], rid)
    assert recs[0]["status"] == r.status


def test_upstream_timeout_is_504(wafer_t):
    tag = uuid.uuid4().hex
    with wafer_t.connect() as c:
        t0 = time.monotonic()
        r = c.request("GET", "/slow/%s?up_delay_headers=3000" % tag)
        dt = time.monotonic() - t0
        assert r.status == 504
        assert 0.8 <= dt <= 2.5, dt
    _rid_in_body_and_log(wafer_t, r, tag)


def test_upstream_slow_but_within_timeout_passes(wafer_t):
    with wafer_t.connect() as c:
        r = c.request("GET", "/slowish?up_delay_headers=400")
        assert r.status == 200


def test_upstream_stalls_mid_body(wafer_t):
    """Headers arrive, then the body stalls past the upstream timeout: the
    client cannot get a 504 any more, so the connection must be closed
    (never a response that looks complete)."""
    with wafer_t.connect() as c:
        c.send(build_request("GET", "/stall-body?up_delay_body=3000"))
        t0 = time.monotonic()
        try:
            r = c.read_response()
            raise AssertionError("got a complete response %r" % r)
        except Closed:
            pass
        assert time.monotonic() - t0 < 2.8


def _same_or_new_connection(w, c, r):
    """After an error response the client connection may be kept or closed,
    but only as that response announced: Connection: close means closed."""
    if r.header("connection", "").lower() == "close":
        assert c.wait_closed(3), "Connection: close announced but the connection stayed open"
        c.close()
        return w.connect()
    return c


def test_upstream_refused_is_502(start_wafer):
    w = start_wafer("127.0.0.1:%d" % closed_port())
    tag = uuid.uuid4().hex
    c = w.connect()
    try:
        r = c.request("GET", "/refused/" + tag)
        assert r.status == 502
        c = _same_or_new_connection(w, c, r)
        assert c.request("GET", "/refused2/" + tag).status == 502
    finally:
        c.close()
    _rid_in_body_and_log(w, r, "/refused/" + tag)


@pytest.mark.parametrize("mode", ["close", "reset", "garbage", "partial_headers"])
def test_failing_upstream_is_502(wafer_t, mode):
    tag = uuid.uuid4().hex
    with wafer_t.connect() as c:
        r = c.request("GET", "/fail/%s?up_mode=%s" % (tag, mode))
        assert r.status == 502
    _rid_in_body_and_log(wafer_t, r, tag)
    # wafer keeps serving
    with wafer_t.connect() as c:
        assert c.request("GET", "/after-fail").status == 200


def test_upstream_closes_mid_body(wafer_t):
    with wafer_t.connect() as c:
        c.send(build_request("GET", "/partial-body?up_mode=partial_body"))
        with pytest.raises(Closed):
            c.read_response()
    with wafer_t.connect() as c:
        assert c.request("GET", "/after-partial").status == 200


def test_failures_do_not_poison_the_upstream_pool(wafer_t):
    c = wafer_t.connect()
    try:
        for i in range(3):
            r = c.request("GET", "/p/%d?up_mode=close" % i)
            assert r.status == 502
            c = _same_or_new_connection(wafer_t, c, r)
            r = c.request("GET", "/p/ok%d" % i)
            assert r.status == 200
    finally:
        c.close()


class _Blackhole:
    """A listener whose accept queue is full and never drained: a connect()
    to it hangs (the kernel drops the SYNs), as with an unreachable host."""

    def __init__(self):
        self.l = socket.socket()
        self.l.bind(("127.0.0.1", 0))
        self.l.listen(0)
        self.address = "127.0.0.1:%d" % self.l.getsockname()[1]
        self.fill = []
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(self.l.getsockname())
            except BlockingIOError:
                pass
            self.fill.append(s)
        time.sleep(0.1)

    def close(self):
        for s in self.fill + [self.l]:
            s.close()


def test_upstream_connect_timeout(start_wafer):
    bh = _Blackhole()
    try:
        w = start_wafer(bh.address, upstream={"connect_timeout": "1s", "timeout": "10s"})
        tag = uuid.uuid4().hex
        with w.connect(timeout=8) as c:
            t0 = time.monotonic()
            r = c.request("GET", "/ct/" + tag)
            dt = time.monotonic() - t0
        assert r.status in (502, 504)
        assert 0.8 <= dt <= 3.0, "answered after %.2fs with connect_timeout 1s" % dt
        _rid_in_body_and_log(w, r, tag)
    finally:
        bh.close()


def test_send_timeout_drops_a_client_that_stops_reading(start_wafer, pyup):
    w = start_wafer(pyup.address, timeouts={"send": "1s"})
    total = 64 << 20
    with w.connect(timeout=10) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.send(build_request("GET", "/stuck-reader?up_size=%d" % total))
        time.sleep(3)  # not reading at all
        got = 0
        closed = False
        c.sock.settimeout(3)
        while True:
            try:
                d = c.sock.recv(1 << 20)
            except ConnectionResetError:
                closed = True
                break
            except TimeoutError:
                break
            if not d:
                closed = True
                break
            got += len(d)
        assert closed, "the connection of a client that stopped reading is still open"
        assert got < total
    assert w.vm_hwm_kib() < 64 * 1024
    with w.connect() as c:
        assert c.request("GET", "/after-stuck").status == 200


def test_partial_header_gets_408(wafer_t):
    """docs/configuration.md: a partial header gets 408 at the header timeout."""
    with wafer_t.connect() as c:
        c.send(b"GET /partial HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n")
        r = c.read_response()
        assert r.status == 408
        assert c.wait_closed(2)


def test_stalled_body_gets_408(wafer_t):
    """docs/configuration.md: a stalled body gets 408 if no response began."""
    with wafer_t.connect() as c:
        c.send(build_request("POST", "/stall", [("Content-Length", "100")]) + b"0123456789")
        r = c.read_response()
        assert r.status == 408
        assert c.wait_closed(2)
