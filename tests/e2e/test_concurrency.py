"""Many clients at once against wafer with two workers: every response
belongs to its own request, bodies intact."""

import hashlib
import random
import threading
import uuid

import pytest

from harness import Wafer, build_request, finish_wafer


@pytest.fixture(scope="module")
def wafer_2w(wafer_binary, pyup, tmp_path_factory):
    w = Wafer(pyup.address, str(tmp_path_factory.mktemp("wafer")), workers=2, upstream={"keepalive": 4}).start()
    yield w
    finish_wafer(w)


def _run_threads(n, fn):
    errors = []

    def wrap(i):
        try:
            fn(i)
        except BaseException as e:  # collected and reported by the test
            errors.append("client %d: %r" % (i, e))
    ts = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert not any(t.is_alive() for t in ts), "clients still running"
    return errors


def test_concurrent_keepalive_clients_get_their_own_responses(wafer_2w):
    tag = uuid.uuid4().hex

    def client(i):
        rnd = random.Random(i)
        with wafer_2w.connect(timeout=20) as c:
            for j in range(15):
                body = rnd.randbytes(rnd.choice([0, 1, 100, 5000, 70000]))
                target = "/cc/%s/%d/%d" % (tag, i, j)
                r = c.request("POST", target, body=body)
                assert r.status == 200
                got = r.json()
                assert got["target"] == target
                assert got["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert _run_threads(24, client) == []


def test_concurrent_pipelines(wafer_2w):
    tag = uuid.uuid4().hex

    def client(i):
        with wafer_2w.connect(timeout=20) as c:
            c.send(b"".join(build_request("GET", "/cp/%s/%d/%d" % (tag, i, j)) for j in range(8)))
            for j in range(8):
                assert c.read_response().json()["target"] == "/cp/%s/%d/%d" % (tag, i, j)
    assert _run_threads(16, client) == []


def test_concurrent_downloads_through_nginx(start_wafer, nginx):
    w = start_wafer(nginx.address, workers=2)
    path, sha = nginx.files[5 * (1 << 20) + 3]

    def client(i):
        with w.connect(timeout=20) as c:
            for _ in range(2):
                r = c.request("GET", path)
                assert r.status == 200
                assert hashlib.sha256(r.body).hexdigest() == sha
    assert _run_threads(8, client) == []
