"""straightline.Executor: the concurrent.futures behaviours users rely on, on real
local workers, and the placement machinery behind each call."""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time

import pytest

import straightline_sdk as straightline
from straightline_sdk import PackagingError
from tests.conftest import wait_until


class Boom(Exception):
    pass


def slow_square(x, delay=0.0):
    time.sleep(delay)
    return x * x


def fail(message):
    raise Boom(message)


def wait_for(event_file):
    """Blocks until the test lets it go (the file appears): a call that is surely running."""
    import os
    import time as t
    while not os.path.exists(event_file):
        t.sleep(0.01)
    return "released"


@pytest.fixture
def ex():
    with straightline.Executor(targets=["local"]) as executor:
        yield executor


def test_submit_result_and_call_records(ex):
    future = ex.submit(slow_square, 7)
    assert isinstance(future, cf.Future)
    assert future.result(timeout=60) == 49
    (dep,) = ex.deployments
    assert dep.fn is slow_square and dep.allowed == ("local",)
    assert [r.target for r in dep.calls] == ["local"]   # ran on the worker, not profiled here
    assert ex.submit(slow_square, 3, delay=0).result() == 9       # keyword arguments
    assert len(ex.deployments) == 1                                # deployed once


def test_exception_keeps_its_type_and_remote_traceback(ex):
    future = ex.submit(fail, "bad input")
    exc = future.exception(timeout=60)
    assert isinstance(exc, Boom) and str(exc) == "bad input"
    with pytest.raises(Boom, match="bad input") as info:
        future.result()
    assert "Traceback on the local target" in str(info.value.__cause__)


def test_lambdas_and_closures_are_deployed_once_per_content(ex):
    base = 10
    futures = [ex.submit(lambda x: x + base, i) for i in range(5)]   # a new lambda each time
    assert [f.result(timeout=60) for f in futures] == [10, 11, 12, 13, 14]
    assert ex.submit(lambda x: x * base, 2).result() == 20            # another function
    assert len(ex.deployments) == 2
    assert all(d.name.startswith(ex.name + "/") and "<lambda>@" in d.name for d in ex.deployments)


def test_map_keeps_input_order_with_and_without_chunks(ex):
    delays = [0.2, 0.0, 0.1, 0.0, 0.05, 0.0]
    assert list(ex.map(slow_square, range(6), delays)) == [0, 1, 4, 9, 16, 25]
    assert list(ex.map(slow_square, range(7), [0] * 7, chunksize=3)) == [i * i for i in range(7)]
    dep = ex.deployment(slow_square)
    assert sorted(r.items for r in dep.calls[-3:]) == [1, 3, 3]   # a chunk is one request
    assert list(ex.map(slow_square, [])) == []


def test_map_timeout_raises_timeout_error(ex, tmp_path):
    release = str(tmp_path / "release")
    results = ex.map(wait_for, [release, release])
    with pytest.raises(TimeoutError):
        next(ex.map(wait_for, [release], timeout=0.2))
    (tmp_path / "release").touch()
    assert list(results) == ["released", "released"]


def test_map_raises_the_first_failure_in_order(ex):
    results = ex.map(lambda x: 1 // x, [1, 0, 2])
    assert next(results) == 1
    with pytest.raises(ZeroDivisionError):
        next(results)


def test_as_completed_and_wait(ex):
    futures = [ex.submit(slow_square, i, 0.05 * (3 - i)) for i in range(3)]
    assert sorted(f.result() for f in cf.as_completed(futures, timeout=60)) == [0, 1, 4]
    done, not_done = cf.wait([ex.submit(slow_square, 2), ex.submit(fail, "x")],
                             return_when=cf.ALL_COMPLETED, timeout=60)
    assert len(done) == 2 and not not_done
    first = cf.wait([ex.submit(fail, "y"), ex.submit(slow_square, 1, 0.5)],
                    return_when=cf.FIRST_EXCEPTION, timeout=60)
    assert any(isinstance(f.exception(), Boom) for f in first.done)


def test_cancel_a_pending_future(tmp_path):
    release = str(tmp_path / "release")
    with straightline.Executor(targets=["local"], max_workers=1) as ex:
        running = ex.submit(wait_for, release)
        pending = ex.submit(slow_square, 4)
        assert wait_until(running.running, timeout=60)
        assert pending.cancel() and pending.cancelled()
        assert not running.cancel()            # started: cannot be cancelled
        (tmp_path / "release").touch()
        assert running.result(timeout=60) == "released"
        with pytest.raises(cf.CancelledError):
            pending.result()


def test_shutdown_cancels_pending_futures_and_undeploys(tmp_path):
    release = str(tmp_path / "release")
    ex = straightline.Executor(targets=["local"], max_workers=1)
    running = ex.submit(wait_for, release)
    queued = [ex.submit(slow_square, i) for i in range(3)]
    assert wait_until(running.running, timeout=60)
    deps = ex.deployments
    threading.Timer(0.3, (tmp_path / "release").touch).start()
    ex.shutdown(wait=True, cancel_futures=True)
    assert running.result() == "released"
    assert all(f.cancelled() for f in queued)
    assert not any(d in straightline.deployments() for d in deps)   # nothing left running
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(slow_square, 1)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.map(slow_square, [1])


def test_shutdown_without_waiting_lets_calls_finish_then_undeploys():
    ex = straightline.Executor(targets=["local"])
    future = ex.submit(slow_square, 5, 0.5)
    (dep,) = ex.deployments
    ex.shutdown(wait=False)
    assert future.result(timeout=60) == 25     # the call in flight was not cut off
    assert wait_until(lambda: dep not in straightline.deployments(), timeout=30)


def test_context_manager_waits_and_undeploys():
    with straightline.Executor(targets=["local"]) as ex:
        future = ex.submit(slow_square, 6, 0.2)
        deps = ex.deployments
    assert future.done() and future.result() == 36
    assert not any(d in straightline.deployments() for d in deps)
    assert "shut down" in repr(ex)


def test_callbacks_run_when_done(ex):
    seen = []
    done = threading.Event()
    future = ex.submit(slow_square, 3)
    future.add_done_callback(lambda f: (seen.append(f.result()), done.set()))
    assert done.wait(60) and seen == [9]


def total(values):
    return sum(int(v) for v in values)


def test_what_the_first_call_carries_is_installed_over_there(ex):
    import numpy as np
    assert ex.submit(total, np.arange(4)).result(timeout=60) == 6
    # total never names numpy; a container must still unpickle the array
    assert "numpy" in ex.deployment(total).spec.requirements


def test_an_unpicklable_function_fails_at_submit_with_the_culprit(ex):
    lock = threading.Lock()
    with pytest.raises(PackagingError, match="lock"):
        ex.submit(lambda: lock.locked())


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown target"):
        straightline.Executor(targets=["lokal"])
    with pytest.raises(ValueError, match="max_workers"):
        straightline.Executor(max_workers=0)
    with straightline.Executor(targets=["local"]) as ex:
        with pytest.raises(TypeError, match="callable"):
            ex.submit(42)
        with pytest.raises(ValueError, match="chunksize"):
            ex.map(slow_square, [1], chunksize=0)


def test_a_deployment_can_be_submitted_as_it_is(ex):
    h = straightline.deploy(slow_square, sample=(2,), targets=["local"], name="own")
    assert ex.submit(h, 3).result(timeout=60) == 9
    assert ex.deployments == []   # not the executor's: it stays deployed after shutdown
    ex.shutdown()
    assert h in straightline.deployments()


def test_a_worker_started_from_a_thread_outlives_that_thread():
    # An executor's (or a map's) thread may be the first to need a worker; the worker
    # must not die when that thread ends.
    h = straightline.deploy(lambda x: x + 1, name="from-a-thread", targets=["local"])
    starter = threading.Thread(target=h.prewarm)
    starter.start()
    starter.join()
    pid = h.deployed_targets["local"].pid
    assert [h(1), h(2)] == [2, 3]      # the first is the profile, here; the second goes to the worker
    assert h.deployed_targets["local"].pid == pid
    assert h.stats()["local"]["failures"] == 0
