"""Fixtures for wafer's integration tests (see harness.py and upstreams.py).

Upstreams are started once per session; wafer is started per module (for
tests that only send requests) or per test (for tests that change its
configuration, signal it or stop it). Everything is stopped at teardown.
"""

import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Nginx, Wafer, finish_wafer, wafer_bin  # noqa: E402
from upstreams import PyUpstream  # noqa: E402

TEST_DEADLINE_S = 150

# A SIGTERM to pytest (CI cancelling a run) still runs fixture teardown and
# the atexit hook in harness.py, so no wafer or nginx outlives the run.
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _show_logs_if_failed(request, wafers):
    """A failed test shows the end of each wafer's error log (in the
    report's captured-output section)."""
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for w in wafers:
            sys.stderr.write("--- wafer stderr (%s), last lines:\n%s\n" % (w.stderr_path, w.stderr()[-4000:]))


@pytest.fixture(autouse=True)
def _module_wafer_logs(request):
    yield
    wafers = []
    for name in request.fixturenames:
        if name.startswith("wafer_") and name != "wafer_binary":
            try:
                w = request.getfixturevalue(name)
            except Exception:
                continue
            if isinstance(w, Wafer):
                wafers.append(w)
    _show_logs_if_failed(request, wafers)


@pytest.fixture(autouse=True)
def _deadline():
    """No single test may hang the suite: SIGALRM fails it after a deadline."""
    def on_alarm(signum, frame):
        raise TimeoutError("test exceeded %ds" % TEST_DEADLINE_S)
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_DEADLINE_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="session")
def wafer_binary():
    b = wafer_bin()
    if not os.access(b, os.X_OK):
        pytest.fail("wafer binary not found at %s (build it, or set WAFER_BIN)" % b)
    return b


@pytest.fixture(scope="session")
def nginx(tmp_path_factory):
    n = Nginx(str(tmp_path_factory.mktemp("nginx"))).start()
    yield n
    n.stop()


@pytest.fixture(scope="session")
def pyup():
    u = PyUpstream("A")
    yield u
    u.stop()


@pytest.fixture(scope="session")
def pyup_b():
    u = PyUpstream("B")
    yield u
    u.stop()


@pytest.fixture
def start_wafer(wafer_binary, tmp_path_factory, request):
    """start_wafer(upstream_address, **config_overrides) -> running Wafer."""
    started = []

    def start(upstream_addr, **over):
        w = Wafer(upstream_addr, str(tmp_path_factory.mktemp("wafer")), **over)
        started.append(w)
        return w.start()
    yield start
    _show_logs_if_failed(request, started)
    for w in started:
        if getattr(w, "expect_exit", False):
            w.stop()
        else:
            finish_wafer(w)


@pytest.fixture(scope="module")
def wafer_py(wafer_binary, pyup, tmp_path_factory):
    """wafer in front of the Python echo upstream, default test config."""
    w = Wafer(pyup.address, str(tmp_path_factory.mktemp("wafer"))).start()
    yield w
    finish_wafer(w)


@pytest.fixture(scope="module")
def wafer_nginx(wafer_binary, nginx, tmp_path_factory):
    """wafer in front of nginx, default test config."""
    w = Wafer(nginx.address, str(tmp_path_factory.mktemp("wafer"))).start()
    yield w
    finish_wafer(w)
