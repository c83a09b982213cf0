"""The spine end to end on the local target: the decorator, the handle's API,
the worker's security, remote errors, serialization edge cases and cleanup.
Every test runs a real worker process."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import Future

import numpy as np
import psutil
import pytest
import requests

import straightline_sdk as straightline
from straightline_sdk import PackagingError, RemoteError, StraightLineError, TargetFailure
from straightline_sdk.targets.aws_lambda import LAMBDA_LIMITS
from tests.conftest import wait_until
from tests.support.inprocess import install

SCALE = 3


@pytest.fixture(autouse=True)
def local_only():
    """These tests are about the local target: no failing over to Docker."""
    straightline.configure(targets=["local"])


def worker_pid(h) -> int:
    return h.deployed_targets["local"].pid


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Boom(Exception):
    def __init__(self, code):
        super().__init__(f"boom {code}")
        self.code = code


# -- the decorator and the handle -------------------------------------------------

def test_bare_decorator_profiles_on_the_first_call_then_runs_on_the_worker():
    @straightline.deploy
    def add_one(x):
        return x + 1

    assert add_one.profile is None and not add_one.deployed_targets
    assert add_one(1) == 2                       # ran here, profiled
    assert add_one.profile is not None
    assert "local" in add_one.deployed_targets
    assert add_one(41) == 42                     # ran on the worker
    assert add_one.stats()["local"]["calls"] == 1


def test_sample_profiles_and_deploys_at_decoration():
    @straightline.deploy(sample=straightline.Sample(np.ones(1000), scale=2.0), rate=2)
    def scaled_sum(x, scale=1.0):
        return float(np.sum(x) * scale)

    assert "local" in scaled_sum.deployed_targets
    assert scaled_sum.profile.request_bytes > 8000
    assert scaled_sum(np.arange(4.0), scale=2.0) == 12.0
    p = scaled_sum.placement
    assert p.target == "local"
    assert p.reasons[0].startswith("rate ") and "→ local (moderate)" in p.reasons[0]
    assert str(p).startswith("local: ")


def test_sample_must_be_a_tuple_or_sample():
    with pytest.raises(TypeError, match=r"sample=\(x,\)"):
        straightline.deploy(lambda x: x, sample=5)


def test_lambda_functions_and_module_globals():
    h = straightline.deploy(lambda x: x * SCALE, sample=(1,), name="times-scale")
    assert h(5) == 15
    assert h.name == "times-scale"


def test_closure_over_a_50_mb_array():
    big = np.random.default_rng(0).random(50 * 1024 * 1024 // 8)

    @straightline.deploy(sample=(0,))
    def window_sum(i):
        return float(big[i:i + 1000].sum())

    assert window_sum(12345) == pytest.approx(float(big[12345:13345].sum()))


def test_large_arguments_and_results_round_trip():
    @straightline.deploy(sample=(np.zeros(4),))
    def double(a):
        return a * 2

    a = np.random.default_rng(1).random(2 * 1024 * 1024)  # 16 MB: out-of-band buffers
    out = double(a)
    assert out.dtype == a.dtype and np.array_equal(out, a * 2)


def test_map_keeps_input_order_and_uses_chunks():
    @straightline.deploy(sample=(1,))
    def square(x):
        return x * x

    assert square.map(range(500)) == [x * x for x in range(500)]
    st = square.stats()["local"]
    assert st["calls"] == 500 and st["requests"] < 500   # items travel in chunks


def test_map_with_several_iterables_and_constant_kwargs():
    @straightline.deploy(sample=(1, 2))
    def axpy(a, x, y=0):
        return a * x + y

    assert axpy.map([1, 2, 3], [10, 20, 30], kwargs={"y": 1}) == [11, 41, 91]
    assert axpy.map([]) == []


def test_map_return_exceptions_keeps_every_other_result():
    @straightline.deploy(sample=(1,))
    def check(x):
        if x % 7 == 3:
            raise Boom(x)
        return x

    out = check.map(range(30), return_exceptions=True, chunksize=4)
    for x, value in enumerate(out):
        if x % 7 == 3:
            assert isinstance(value, Boom) and value.code == x
        else:
            assert value == x


def test_map_raises_the_first_failure_by_default():
    @straightline.deploy(sample=(1,))
    def check(x):
        if x == 5:
            raise Boom(x)
        return x

    with pytest.raises(Boom) as err:
        check.map(range(20), chunksize=2)
    assert err.value.code == 5


def test_submit_returns_a_future():
    @straightline.deploy(sample=(1,))
    def slow_add(x):
        time.sleep(0.01)
        return x + 1

    futures = [slow_add.submit(i) for i in range(10)]
    assert all(isinstance(f, Future) for f in futures)
    assert [f.result(timeout=30) for f in futures] == list(range(1, 11))


def test_local_runs_in_process():
    @straightline.deploy(sample=(1,))
    def whoami(_):
        return os.getpid()

    assert whoami.local(0) == os.getpid()
    assert whoami(0) != os.getpid()


def test_context_manager_and_undeploy_stop_the_worker():
    with straightline.deploy(lambda x: x, sample=(1,), name="ctx") as h:
        pid = worker_pid(h)
        assert alive(pid)
        assert h in straightline.deployments()
    assert wait_until(lambda: not alive(pid))
    assert h not in straightline.deployments()
    with pytest.raises(StraightLineError, match="undeployed"):
        h(1)
    h.undeploy()  # idempotent


def test_rerunning_the_same_cell_reuses_the_live_deployment():
    def make():
        @straightline.deploy(sample=(1,), name="cell")
        def f(x):
            return x + 1
        return f

    first = make()
    pid = worker_pid(first)
    again = make()
    assert again is first and worker_pid(again) == pid

    @straightline.deploy(sample=(1,), name="cell")
    def f(x):  # an edited body: replaces the old deployment
        return x + 2

    assert f is not first and f(1) == 3
    assert wait_until(lambda: not alive(pid))


def test_repr_and_summary_never_show_the_token():
    h = straightline.deploy(lambda x: x, sample=(1,), name="secretive")
    h(1)
    token = h.spec.token
    texts = [repr(h), str(h), h.summary(), str(h.placement), repr(h.spec),
             repr(h.deployed_targets["local"].client), str(h.target_overview())]
    assert all(token not in t for t in texts)
    assert "secretive" in repr(h) and "local" in h.summary()
    assert token not in h.logs()


def test_threshold_change_takes_effect_on_the_next_call(monkeypatch):
    install(monkeypatch, "lambda", limits=LAMBDA_LIMITS)   # in-process: never real AWS

    @straightline.deploy(sample=(1,), targets=["local", "lambda"])
    def f(x):
        return x

    straightline.configure(rate_threshold=1e9)
    for i in range(5):
        f(i)
    assert f.placement.branch == "moderate"
    straightline.configure(rate_threshold=0.001)
    f(1)
    assert f.placement.branch == "frequent-small"
    assert f.placement.target == "lambda"
    assert "F = 0.001" in f.placement.reasons[0]


# -- remote errors ------------------------------------------------------------------

def test_remote_exception_keeps_its_type_and_points_at_user_code():
    @straightline.deploy(sample=(2,))
    def divide(x):
        denominator = x - 1
        return x / denominator

    with pytest.raises(ZeroDivisionError) as err:
        divide(1)
    tb = err.value.remote_traceback
    assert __file__ in tb
    assert "return x / denominator" in tb
    assert "straightline_sdk" not in tb.split("Traceback on the local target")[1]
    assert err.value.__cause__ is not None and "denominator" in str(err.value.__cause__)


def test_custom_exception_attributes_survive():
    @straightline.deploy(sample=(0,))
    def fail(code):
        if code:
            raise Boom(code)
        return code

    with pytest.raises(Boom) as err:
        fail(7)
    assert err.value.code == 7


def test_exception_that_cannot_travel_becomes_remote_error():
    @straightline.deploy(sample=(0,))
    def fail(x):
        class Local(Exception):
            def __reduce__(self):
                raise TypeError("not today")
        if x:
            raise Local("inner detail")
        return x

    with pytest.raises(RemoteError) as err:
        fail(1)
    assert err.value.type_name.endswith("Local") and "inner detail" in str(err.value)


# -- serialization errors -------------------------------------------------------------

LOCK = threading.Lock()


def test_unpicklable_global_is_named():
    def uses_lock(x):
        with LOCK:
            return x

    with pytest.raises(PackagingError, match=r"global 'LOCK' \(a lock\)"):
        straightline.deploy(uses_lock, sample=(1,))


def test_unpicklable_closure_cell_is_named():
    numbers = (i for i in range(10))

    def take(x):
        return next(numbers) + x

    with pytest.raises(PackagingError, match="closure variable 'numbers' \\(a generator\\)"):
        straightline.deploy(take, sample=(1,))


def test_unpicklable_argument_is_named_and_nothing_is_lost():
    @straightline.deploy(sample=(1,))
    def ident(x, y=None):
        return x

    with pytest.raises(PackagingError, match="keyword argument 'y'.*generator"):
        ident(1, y=(i for i in range(3)))
    assert ident(2) == 2  # the deployment still works


def test_unpicklable_result_is_a_packaging_error():
    @straightline.deploy(sample=(0,))
    def make_lock(x):
        return threading.Lock() if x else None

    with pytest.raises(PackagingError, match="cannot be serialized"):
        make_lock(1)


# -- local modules ------------------------------------------------------------------

def test_functions_from_local_modules_travel_by_value(tmp_path, monkeypatch):
    (tmp_path / "mylib_helpers.py").write_text("def triple(x):\n    return 3 * x\n")
    (tmp_path / "mylib_main.py").write_text(textwrap.dedent("""
        import mylib_helpers
        OFFSET = 1
        def compute(x):
            return mylib_helpers.triple(x) + OFFSET
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import mylib_main

    h = straightline.deploy(mylib_main.compute, sample=(1,))
    assert set(h.spec.package.local_modules) == {"mylib_helpers", "mylib_main"}
    assert h(2) == 7
    h.undeploy()
    # the worker could not import them now: by value, they still work
    os.remove(tmp_path / "mylib_helpers.py")
    os.remove(tmp_path / "mylib_main.py")
    h2 = straightline.deploy(mylib_main.compute, sample=(1,), name="by-value")
    assert h2(5) == 16


# -- the worker: security, JSON endpoint ---------------------------------------------

def test_worker_refuses_requests_without_the_right_token():
    h = straightline.deploy(lambda x: x, sample=(1,), name="guarded")
    client = h.deployed_targets["local"].client
    url = f"http://{client.host}:{client.port}"
    assert client.host == "127.0.0.1"
    s = requests.Session()
    s.trust_env = False
    assert s.get(f"{url}/health").status_code == 401
    assert s.post(f"{url}/json", json={"args": [1]}).status_code == 401
    bad = {"Authorization": "Bearer not-the-token"}
    assert s.get(f"{url}/health", headers=bad).status_code == 403
    assert s.post(f"{url}/invoke", data=b"x", headers=bad).status_code == 403
    key = {"Authorization": f"Bearer {h.spec.token}"}      # the key is never a credential on the wire
    assert s.get(f"{url}/health", headers=key).status_code == 403
    good = h.endpoint.headers
    assert s.get(f"{url}/health", headers=good).json()["ok"] is True
    assert s.post(f"{url}/invoke", data=b"x", headers=good).status_code == 403   # JSON calls only


def _exchange(client, request: bytes) -> tuple[int, bytes, bool]:
    """Send raw bytes to the worker: (status, body, whether it then closed the connection)."""
    with socket.create_connection((client.host, client.port), timeout=10) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()                  # skips a "100 Continue" as clients do
        body = response.read()
        sock.settimeout(0.5)
        try:
            closed = sock.recv(1) == b""
        except (TimeoutError, ConnectionResetError):
            closed = False
        return response.status, body, closed


def _health_request(token: str, *headers: str, version: str = "HTTP/1.1") -> bytes:
    lines = [f"GET /health {version}", "Host: x", f"authorization: Bearer {token}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("request_bytes, status", [
    (b"NONSENSE\r\n\r\n", 400),
    (b"GET /health HTTP/2.0\r\n\r\n", 400),
    (b"POST /invoke HTTP/1.1\r\nContent-Length : 3\r\n\r\nabc", 400),        # space before the colon
    (b"POST /invoke HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc", 400),
    (b"POST /invoke HTTP/1.1\r\nContent-Length: -3\r\n\r\n", 400),
    (b"POST /invoke HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 401),
    (b"POST /json HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(65)) + b"\r\n", 431),
    (b"GET /health HTTP/1.1\r\nX-Long: " + b"y" * 70000 + b"\r\n\r\n", 431),
])
def test_worker_refuses_malformed_requests_with_a_status(request_bytes, status):
    h = straightline.deploy(lambda x: x, sample=(1,), name="strict")
    got, _, closed = _exchange(h.deployed_targets["local"].client, request_bytes)
    assert (got, closed) == (status, True)
    assert h(5) == 5                   # the worker serves on


def test_worker_reads_headers_in_any_case_and_honours_connection_rules():
    h = straightline.deploy(lambda x: x, sample=(1,), name="lenient")
    client, token = h.deployed_targets["local"].client, h.endpoint.token
    status, body, closed = _exchange(client, _health_request(token))
    assert status == 200 and json.loads(body)["ok"] is True and not closed   # kept alive
    assert _exchange(client, _health_request(token, "Connection: close"))[::2] == (200, True)
    assert _exchange(client, _health_request(token, version="HTTP/1.0"))[::2] == (200, True)
    body = json.dumps({"args": [7]}).encode()
    expect = (f"POST /json HTTP/1.1\r\nAUTHORIZATION: Bearer {token}\r\nExpect: 100-continue\r\n"
              f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    status, answer, _ = _exchange(client, expect)
    assert (status, json.loads(answer)) == (200, {"result": 7})


def test_json_endpoint_over_plain_http():
    @straightline.deploy(sample=([1, 2],))
    def total(xs, offset=0):
        return {"sum": sum(xs) + offset}

    client = total.deployed_targets["local"].client
    url = f"http://{client.host}:{client.port}/json"
    headers = total.endpoint.headers
    assert total.endpoint.url == url
    s = requests.Session()
    s.trust_env = False
    r = s.post(url, json={"args": [[1, 2, 3]], "kwargs": {"offset": 10}}, headers=headers)
    assert r.status_code == 200 and r.json() == {"result": {"sum": 16}}
    r = s.post(url, json={"args": [[1, "a"]]}, headers=headers)
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "TypeError"
    assert "in total" in r.json()["error"]["traceback"]
    r = s.post(url, data=b"{not json", headers=headers)
    assert r.status_code == 400


# -- cleanup ---------------------------------------------------------------------------

def _run_script(body: str) -> subprocess.Popen:
    code = textwrap.dedent(body)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=os.getcwd())


def test_no_worker_left_after_interpreter_exit():
    proc = _run_script("""
        import straightline_sdk as straightline
        h = straightline.deploy(lambda x: x, sample=(1,), name="exit")
        print(h.deployed_targets["local"].pid, flush=True)
    """)
    pid = int(proc.stdout.readline())
    assert proc.wait(timeout=60) == 0
    assert wait_until(lambda: not alive(pid))


def test_no_worker_left_after_the_parent_is_killed():
    proc = _run_script("""
        import time, straightline_sdk as straightline
        h = straightline.deploy(lambda x: x, sample=(1,), name="orphan")
        print(h.deployed_targets["local"].pid, flush=True)
        time.sleep(600)
    """)
    pid = int(proc.stdout.readline())
    assert alive(pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert wait_until(lambda: not alive(pid), timeout=15)


def test_a_dead_worker_is_a_target_failure_then_redeployed():
    @straightline.deploy(sample=(1,))
    def ident(x):
        return x

    pid = worker_pid(ident)
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not alive(pid))
    assert ident(1) == 1               # the failure is recorded; the call runs on a fresh worker
    assert worker_pid(ident) != pid
    assert ident.stats()["local"]["failures"] == 1
    assert "has exited" in [r for r in ident.calls if r.outcome == "failed"][-1].detail


def test_a_map_under_a_time_limit_holds_each_call_to_it_not_each_chunk():
    @straightline.deploy(sample=(0.0,), targets=["local"],
                         resources=straightline.Resources(timeout_s=0.5))
    def nap(seconds):
        time.sleep(seconds)
        return seconds

    # 8 calls of 0.3 s, one at a time: each within the limit, any two together over it
    assert nap.map([0.3] * 8, concurrency=1) == [0.3] * 8
    assert [r.items for r in nap.calls] == [1] * 8
    with pytest.raises(ValueError, match="time limit is per call"):
        nap.map([0.0] * 4, chunksize=2)


def test_a_call_past_its_time_limit_is_stopped_not_left_running():
    @straightline.deploy(sample=(0,), resources=straightline.Resources(timeout_s=0.5))
    def nap(seconds):
        time.sleep(seconds)
        return seconds

    pid = worker_pid(nap)
    with pytest.raises(straightline.CallTimeout, match="0.5 s time limit.*worker was replaced"):
        nap(3)
    assert not alive(pid)              # the runaway call's process is gone...
    assert nap(0) == 0                 # ...and a fresh worker serves the next call
    assert worker_pid(nap) != pid
