"""Nothing left running, and what happens when a worker dies or a call runs past
its time limit. Every test runs a real worker process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

import straightline_sdk as straightline
from straightline_sdk import TargetFailure
from tests.conftest import wait_until
from tests.support.local_worker import alive, worker_pid


pytestmark = pytest.mark.local_only   # no failing over to Docker (tests/conftest.py)




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
    pool = psutil.Process(pid).children()   # the pool's processes die with their supervisor
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: not alive(pid) and not any(alive(p.pid) for p in pool))
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
