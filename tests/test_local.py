"""The decorator and the handle on the local target: profiling, calls, maps,
submits, re-running a cell, what is shown. Every test runs a real worker process.
(Remote errors: test_local_errors.py; the worker's HTTP: test_worker_http.py;
cleanup and time limits: test_local_lifecycle.py.)"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future

import numpy as np
import pytest

import straightline_sdk as straightline
from straightline_sdk import StraightLineError
from straightline_sdk.targets.aws_lambda import LAMBDA_LIMITS
from tests.conftest import wait_until
from tests.support.inprocess import install
from tests.support.local_worker import alive, worker_pid
from tests.support.user_code import Boom

SCALE = 3


pytestmark = pytest.mark.local_only   # no failing over to Docker (tests/conftest.py)




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
    def f(x):  # an edited body: swapped into the running worker (issue 15)
        return x + 2

    assert f is first and f(1) == 3 and worker_pid(f) == pid


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
