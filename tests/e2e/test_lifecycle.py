"""Graceful shutdown on SIGTERM and configuration reload on SIGHUP."""

import os
import re
import signal
import socket
import subprocess
import threading
import time

from harness import HTTP, build_request, free_port, to_yaml, wafer_config


def _refused(port):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=1)
    except (ConnectionRefusedError, socket.timeout, TimeoutError):
        return True
    # accepted by the kernel but never served also counts as not accepting,
    # as long as it is closed rather than answered
    try:
        s.settimeout(1)
        s.sendall(build_request("GET", "/new-after-term"))
        d = s.recv(100)
        return not d.startswith(b"HTTP/1.1 200")
    except OSError:
        return True
    finally:
        s.close()


def test_sigterm_finishes_in_flight_request_then_exits(start_wafer, pyup):
    w = start_wafer(pyup.address, shutdown_timeout="5s")
    w.expect_exit = True
    result = {}

    def slow_client():
        with w.connect(timeout=10) as c:
            result["resp"] = c.request("GET", "/inflight?up_delay_headers=1000&up_delay_body=500&up_size=200000")
            result["closed_after"] = c.wait_closed(3)
    t = threading.Thread(target=slow_client)
    t.start()
    time.sleep(0.4)  # the request is with the upstream now
    t0 = time.monotonic()
    w.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    assert _refused(w.port), "new connections still served after SIGTERM"
    t.join(10)
    r = result.get("resp")
    assert r is not None and r.status == 200
    assert len(r.body) == 200000
    assert r.header("connection", "").lower() == "close"
    assert w.proc.wait(5) == 0
    assert time.monotonic() - t0 < 4
    assert result["closed_after"]


def test_sigterm_idle_keepalive_connections_do_not_delay_exit(start_wafer, pyup):
    w = start_wafer(pyup.address, shutdown_timeout="10s", timeouts={"idle": "30s"})
    w.expect_exit = True
    with w.connect() as c:
        assert c.request("GET", "/idle-then-term").status == 200
        t0 = time.monotonic()
        w.send_signal(signal.SIGTERM)
        assert w.proc.wait(5) == 0
        assert time.monotonic() - t0 < 2
        assert c.wait_closed(2)


def test_shutdown_timeout_bounds_the_drain(start_wafer, pyup):
    w = start_wafer(pyup.address, shutdown_timeout="1s", upstream={"timeout": "30s"})
    w.expect_exit = True
    c = w.connect(timeout=10)
    try:
        c.send(build_request("GET", "/forever?up_delay_headers=8000"))
        time.sleep(0.3)
        t0 = time.monotonic()
        w.send_signal(signal.SIGTERM)
        w.proc.wait(5)
        dt = time.monotonic() - t0
        assert 0.8 <= dt <= 2.5, "exited %.2fs after SIGTERM with shutdown_timeout 1s" % dt
    finally:
        c.close()


def test_sighup_switches_upstream_without_dropping_connections(start_wafer, pyup, pyup_b):
    w = start_wafer(pyup.address)
    with w.connect(timeout=5) as old:
        assert old.request("GET", "/before-reload").header("x-upstream") == "A"
        w.config["upstream"]["servers"] = [{"address": pyup_b.address}]
        w.write_config(w.config)
        w.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        got = None
        while time.monotonic() < deadline:
            with w.connect() as c:
                got = c.request("GET", "/after-reload").header("x-upstream")
            if got == "B":
                break
            time.sleep(0.1)
        assert got == "B", "new connections still go to the old upstream after SIGHUP"
        # the connection opened before the reload still works
        r = old.request("GET", "/old-conn-after-reload")
        assert r.status == 200 and r.header("x-upstream") in ("A", "B")
    assert w.proc.poll() is None


def test_sighup_with_broken_yaml_is_refused_and_logged(start_wafer, pyup):
    w = start_wafer(pyup.address)
    good = open(w.conf_path).read()
    lines = good.split("\n")
    bad_line = 3
    lines.insert(bad_line - 1, "listen: [unclosed")
    with open(w.conf_path, "w") as f:
        f.write("\n".join(lines))
    with w.connect() as c:
        assert c.request("GET", "/pre").status == 200
        w.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and w.conf_path + ":" not in w.stderr():
            time.sleep(0.05)
        err = w.stderr()
        assert re.search(re.escape(w.conf_path) + r":\d+", err), "no file:line in the log:\n" + err[-2000:]
        assert w.proc.poll() is None
        assert c.request("GET", "/post").header("x-upstream") == "A"
    with w.connect() as c:
        assert c.request("GET", "/post-new").header("x-upstream") == "A"


def test_sighup_with_unknown_key_is_refused_with_line(start_wafer, pyup, pyup_b):
    w = start_wafer(pyup.address)
    w.config["upstream"]["servers"] = [{"address": pyup_b.address}]
    w.config["limits"]["max_hedaers"] = 5  # typo: an unknown key
    w.write_config(w.config)
    lineno = [i + 1 for i, ln in enumerate(open(w.conf_path)) if "max_hedaers" in ln][0]
    w.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and "max_hedaers" not in w.stderr():
        time.sleep(0.05)
    err = w.stderr()
    assert re.search(re.escape(w.conf_path) + r":%d(:\d+)?:.*max_hedaers" % lineno, err), err[-2000:]
    with w.connect() as c:
        # the whole new file was refused, including its valid upstream change
        assert c.request("GET", "/still-a").header("x-upstream") == "A"


def test_repeated_reloads_under_traffic(start_wafer, pyup, pyup_b):
    w = start_wafer(pyup.address)
    stop = threading.Event()
    errors = []
    count = [0]

    def client():
        while not stop.is_set():
            try:
                with w.connect(timeout=5) as c:
                    for i in range(5):
                        r = c.request("GET", "/rl")
                        if r.status != 200:
                            errors.append(r.status)
                        count[0] += 1
            except Exception as e:  # any failure is a dropped request
                errors.append(repr(e))
    ts = [threading.Thread(target=client) for _ in range(2)]
    for t in ts:
        t.start()
    try:
        for i in range(6):
            w.config["upstream"]["servers"] = [{"address": (pyup_b if i % 2 == 0 else pyup).address}]
            w.write_config(w.config)
            w.send_signal(signal.SIGHUP)
            time.sleep(0.25)
    finally:
        stop.set()
        for t in ts:
            t.join(10)
    assert errors == []
    assert count[0] > 20
    assert w.proc.poll() is None


def test_pid_file_is_written(start_wafer, pyup, tmp_path):
    pid_path = str(tmp_path / "wafer.pid")
    w = start_wafer(pyup.address, pid_file=pid_path)
    deadline = time.monotonic() + 2
    while not os.path.exists(pid_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    with open(pid_path) as f:
        assert int(f.read().strip()) == w.pid


def test_sighup_applies_new_limits_to_new_requests(start_wafer, pyup):
    w = start_wafer(pyup.address)
    long_target = "/lim?" + "a" * 3000
    with w.connect() as c:
        assert c.request("GET", long_target).status == 200
    w.config["limits"]["max_uri"] = "1k"
    w.write_config(w.config)
    w.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    status = None
    while time.monotonic() < deadline:
        with w.connect() as c:
            status = c.request("GET", long_target).status
        if status == 414:
            break
        time.sleep(0.1)
    assert status == 414, "max_uri from the reloaded configuration not applied"


def test_sighup_during_an_in_flight_request(start_wafer, pyup, pyup_b):
    w = start_wafer(pyup.address)
    result = {}

    def slow():
        with w.connect(timeout=10) as c:
            result["r"] = c.request("GET", "/reload-inflight?up_delay_headers=800&up_size=100000")
    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    w.config["upstream"]["servers"] = [{"address": pyup_b.address}]
    w.write_config(w.config)
    w.send_signal(signal.SIGHUP)
    t.join(10)
    r = result.get("r")
    assert r is not None and r.status == 200 and len(r.body) == 100000
    assert r.header("x-upstream") == "A"
    assert w.proc.poll() is None


def test_sighup_opens_new_listen_addresses_and_closes_removed_ones(start_wafer, pyup):
    w = start_wafer(pyup.address)
    old_port, new_port = w.port, free_port()
    w.config["listen"] = [{"address": "127.0.0.1:%d" % new_port}]
    w.write_config(w.config)
    w.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    ok = False
    while time.monotonic() < deadline and not ok:
        try:
            with socket.create_connection(("127.0.0.1", new_port), timeout=1):
                ok = True
        except OSError:
            time.sleep(0.05)
    assert ok, "the new listen address was not opened"
    with HTTP(new_port) as c:
        assert c.request("GET", "/new-listener").status == 200
    time.sleep(0.2)
    try:
        socket.create_connection(("127.0.0.1", old_port), timeout=1).close()
        raise AssertionError("the removed listen address still accepts")
    except ConnectionRefusedError:
        pass


def test_sighup_refuses_a_listen_address_that_cannot_be_bound(start_wafer, pyup, pyup_b):
    w = start_wafer(pyup.address)
    w.config["listen"] = w.config["listen"] + [{"address": pyup_b.address}]  # in use by the upstream
    w.config["upstream"]["servers"] = [{"address": pyup_b.address}]
    w.write_config(w.config)
    w.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    with w.connect() as c:
        assert c.request("GET", "/still-old").header("x-upstream") == "A"
    assert w.proc.poll() is None


def test_sigusr1_reopens_the_access_log(start_wafer, pyup):
    w = start_wafer(pyup.address)
    with w.connect() as c:
        assert c.request("GET", "/before-rotate").status == 200
    assert w.wait_access(lambda r: r.get("path") == "/before-rotate")
    os.rename(w.access_path, w.access_path + ".1")
    w.send_signal(signal.SIGUSR1)
    time.sleep(0.3)
    with w.connect() as c:
        assert c.request("GET", "/after-rotate").status == 200
    assert w.wait_access(lambda r: r.get("path") == "/after-rotate"), "nothing logged to the reopened file"
    with open(w.access_path + ".1") as f:
        assert "/after-rotate" not in f.read()


def test_daemon_mode_detaches_and_stops_on_sigterm(wafer_binary, pyup, tmp_path):
    port = free_port()
    pid_path = str(tmp_path / "d.pid")
    cfg = wafer_config(port, pyup.address, str(tmp_path), pid_file=pid_path,
                       log={"error_log": str(tmp_path / "error.log")})
    conf = tmp_path / "d.yaml"
    conf.write_text(to_yaml(cfg) + "\n")
    p = subprocess.run([wafer_binary, "run", "-c", str(conf), "--daemon"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
    pid = None
    try:
        assert p.returncode == 0, p.stdout
        deadline = time.monotonic() + 3
        while not os.path.exists(pid_path) and time.monotonic() < deadline:
            time.sleep(0.02)
        with open(pid_path) as f:
            pid = int(f.read().strip())
        with HTTP(port) as c:  # the listener is open as soon as the starter exited
            assert c.request("GET", "/daemon").status == 200
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                pid = None
                break
            time.sleep(0.05)
        assert pid is None, "daemon still running 5s after SIGTERM"
    finally:
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def test_daemon_mode_exits_1_when_the_address_is_taken(wafer_binary, pyup, tmp_path):
    cfg = wafer_config(pyup.port, pyup.address, str(tmp_path), log={"error_log": str(tmp_path / "error.log")})
    conf = tmp_path / "d.yaml"
    conf.write_text(to_yaml(cfg) + "\n")
    p = subprocess.run([wafer_binary, "run", "-c", str(conf), "--daemon"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
    assert p.returncode == 1
