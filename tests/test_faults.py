"""Issue 17's fault findings against real worker processes: the worker's life
does not hang on a thread, the user's own exits are the user's outcome, a
frozen worker is a target failure and not a hang, the local memory limit."""

from __future__ import annotations

import contextlib
import os
import signal
import threading

import psutil
import pytest

import straightline_sdk as straightline
from straightline_sdk import TargetFailure
from straightline_sdk.runtime import wire
from tests.conftest import in_thread, wait_until
from tests.support.inprocess import install


pytestmark = pytest.mark.local_only   # no failing over to Docker (tests/conftest.py)


def _worker(h):
    return h.deployed_targets["local"]


def _serving_pid(h) -> int:
    """The process that serves a lone call: the worker itself, or its pool's first
    process (a lone call always goes to the lowest-numbered idle one)."""
    client = _worker(h).client
    members = getattr(client, "members", None)
    return members[0].get(wire.HEALTH_PATH).json()["pid"] if members else _worker(h).pid


# -- finding 4: the worker outlives the thread that started it -----------------------

def test_a_worker_deployed_from_a_thread_outlives_the_thread():
    box = {}

    def deploy_in_thread():
        box["h"] = straightline.deploy(lambda x: x + 1, sample=(1,), name="from-thread")

    thread = threading.Thread(target=deploy_in_thread)
    thread.start()
    thread.join()
    h = box["h"]
    pid = _worker(h).pid
    assert not wait_until(lambda: _worker(h).proc.poll() is not None, timeout=2)   # still there
    assert h(1) == 2
    assert _worker(h).pid == pid and h.stats()["local"]["failures"] == 0


def test_a_redeploy_inside_a_map_thread_keeps_its_worker(tmp_path):
    log = tmp_path / "runs.txt"

    def note(x):
        with open(log, "a") as f:
            f.write(f"{x}\n")
        return x

    h = straightline.deploy(note, sample=(0,), name="map-redeploy", idempotent=True)
    dead = _worker(h).pid
    os.kill(dead, signal.SIGKILL)
    assert wait_until(lambda: _worker(h).proc.poll() is not None)
    # the map's own threads notice the dead worker and start a fresh one; the
    # threads end with the map, and the fresh worker must not end with them
    assert h.map(range(20), concurrency=4) == list(range(20))
    assert _worker(h).pid != dead
    pid = _worker(h).pid
    assert not wait_until(lambda: _worker(h).proc.poll() is not None, timeout=2)
    assert h(99) == 99 and _worker(h).pid == pid
    runs = log.read_text().split()
    assert sorted(runs[1:]) == sorted([str(i) for i in range(20)] + ["99"])   # each once


# -- finding 8: the user's exit is the user's ----------------------------------------

def _exits(how, x):
    import os as _os
    import sys as _sys
    if x == 0:
        return "fine"
    if how == "sys.exit":
        _sys.exit(3)
    if how == "KeyboardInterrupt":
        raise KeyboardInterrupt("from the function")
    _os._exit(3)


@contextlib.contextmanager
def _stopped(pid: int):
    """The process stopped (SIGSTOP, as a debugger or a hung host would leave it)
    for the block, and let go on after it if it still exists."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass

def test_a_frozen_worker_fails_a_call_that_may_not_run_twice():
    h = straightline.deploy(lambda x: x, sample=(1,), name="frozen-once", idempotent=False)
    pid = _serving_pid(h)
    with _stopped(pid):
        finished, value = in_thread(lambda: h(1), timeout=60)
        assert finished and isinstance(value, TargetFailure) and "is stopped" in str(value)


def test_a_call_without_a_time_limit_has_a_default_deadline(monkeypatch):
    from straightline_sdk import router
    monkeypatch.setattr(router, "DEADLINE_FLOOR_S", 1.0)

    def nap(seconds):
        import time as _time
        _time.sleep(seconds)
        return seconds

    h = straightline.deploy(nap, sample=(0.01,), name="deadline", idempotent=False)
    assert h(0.2) == 0.2
    finished, value = in_thread(lambda: h(30), timeout=60)   # alive but never answering in time
    assert finished and isinstance(value, TargetFailure) and "default deadline" in str(value)
    assert h(0.1) == 0.1                       # the stuck worker was replaced


@pytest.mark.parametrize("how, raised", [
    ("sys.exit", SystemExit), ("KeyboardInterrupt", KeyboardInterrupt), ("os._exit", SystemExit),
])
def test_the_users_exit_is_reported_as_what_it_is_and_not_rerun(monkeypatch, how, raised):
    install(monkeypatch, "docker")
    h = straightline.deploy(_exits, sample=(how, 0), name=f"exit-{how}",
                            targets=["local", "docker"], target="local")
    h.pin(None)
    pid = _worker(h).pid
    with pytest.raises(raised) as info:
        h(how, 1)
    if how != "KeyboardInterrupt":
        assert info.value.code == 3
    assert "os._exit(3)" in info.value.remote_traceback if how == "os._exit" else True
    assert _worker(h).pid == pid and _worker(h).proc.poll() is None   # the worker lives on
    assert h(how, 0) == "fine"
    assert h.stats()["local"]["failures"] == 0
    assert h.stats().get("docker", {}).get("calls", 0) == 0          # never re-run elsewhere


def test_the_users_exit_in_a_map_item_is_that_items_outcome():
    h = straightline.deploy(_exits, sample=("sys.exit", 0), name="exit-map")
    out = h.map(["sys.exit"] * 6, [0, 1, 0, 0, 1, 0], return_exceptions=True)
    assert [type(x).__name__ if isinstance(x, BaseException) else x for x in out] == \
        ["fine", "SystemExit", "fine", "fine", "SystemExit", "fine"]


# -- finding 6 (local): a frozen worker is a target failure, not a hang ---------------

def test_a_frozen_worker_fails_the_call_instead_of_hanging_it():
    h = straightline.deploy(lambda x: x, sample=(1,), name="frozen")
    pid = _serving_pid(h)
    with _stopped(pid):
        finished, value = in_thread(lambda: h(1), timeout=60)
        assert finished, "the call hung on a stopped worker"
        assert value == 1                         # run again on a fresh worker (idempotent)
        assert "is stopped" in [r for r in h.calls if r.outcome == "failed"][-1].detail
        assert h(2) == 2
        assert _worker(h).pid != pid
        assert wait_until(lambda: not psutil.pid_exists(pid) or
                          psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, timeout=10)


def test_a_frozen_worker_fails_over_with_a_warm_fallback(monkeypatch):
    install(monkeypatch, "docker")
    h = straightline.deploy(lambda x: x * 10, sample=(1,), name="frozen-failover",
                            targets=["local", "docker"], target="local")
    h.pin(None)
    pid = _serving_pid(h)
    with _stopped(pid):
        finished, value = in_thread(lambda: h(4), timeout=60)
        assert finished and value == 40
        stats = h.stats()
        assert stats["local"]["failures"] == 1 and stats["docker"]["calls"] == 1


# -- finding 10 (local part): Resources(memory_mb=) holds on the local target --------

def test_the_local_target_enforces_memory_mb():
    def allocate(mb):
        block = bytearray(mb * 1024 * 1024)
        return len(block) // (1024 * 1024)

    h = straightline.deploy(allocate, sample=(1,), name="memory-cap",
                            resources=straightline.Resources(memory_mb=256))
    pid = _worker(h).pid
    with pytest.raises(MemoryError):
        h(3000)
    assert h(64) == 64                              # within the limit, and the worker lives on
    assert _worker(h).pid == pid
    assert any("memory_mb = 256 MB is enforced" in r for r in h.placement.reasons)



def test_a_killed_process_leaves_no_worker_files():
    import subprocess
    import sys
    code = ("import time, straightline_sdk as straightline\n"
            "straightline.configure(targets=['local'])\n"
            "h = straightline.deploy(lambda x: x, sample=(1,), name='leftovers')\n"
            "t = h.deployed_targets['local']\n"
            "print(t.pid, t.log_path, flush=True)\n"
            "time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid, log_path = proc.stdout.readline().split()
    folder = os.path.dirname(log_path)
    assert os.path.exists(os.path.join(folder, "function.pkl"))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert wait_until(lambda: not psutil.pid_exists(int(pid)), timeout=15)
    assert wait_until(lambda: not os.path.exists(folder), timeout=5)   # payload and log gone


# -- finding 7: a freed slot goes to the first in line, not to whoever asks next ----

_started: list = []
_gates: dict = {}


def _gated(name):
    import sys   # the fake target runs it in this process: the test's own state, by name
    here = sys.modules[__name__]
    here._started.append(name)
    here._gates[name].wait(60)
    return name


def _waiting_for_a_slot(thread: threading.Thread) -> bool:
    """The thread is blocked inside Router.send (in line for a slot)."""
    import sys
    frame = sys._current_frames().get(thread.ident)
    top = frame
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return top is not None and top.f_code.co_name == "wait" and "send" in names


def test_a_freed_slot_goes_to_the_first_in_line_not_to_a_later_arrival():
    """One slot; A holds it and asks again at once when it is done, while W1, W2
    and W3 wait in that order. First come, first served: W1, W2, W3, then A's
    second call. Deterministic: the GIL's switch interval is made long, so A runs
    on from its release to its next request without a thread switch (a plain
    Condition let A take the freed slot back before W1 woke: verified against
    the router before c8b21dd, where the order was A1, A2, W1, ...)."""
    import sys
    from straightline_sdk.testing import fake_target
    _started.clear()
    _gates.clear()
    _gates.update({name: threading.Event() for name in ("A1", "A2", "W1", "W2", "W3")})
    interval = sys.getswitchinterval()
    with fake_target("local", slots=1):
        h = straightline.deploy(_gated, target="local", name="fifo-slots")
        threads = []
        try:
            a = threading.Thread(target=lambda: (h("A1"), h("A2")), daemon=True)
            a.start()
            threads.append(a)
            assert wait_until(lambda: _started == ["A1"])
            for name in ("W1", "W2", "W3"):       # in line, in this order
                t = threading.Thread(target=h, args=(name,), daemon=True)
                t.start()
                threads.append(t)
                assert wait_until(lambda: _waiting_for_a_slot(t))
            sys.setswitchinterval(100.0)
            for k in range(1, 6):                 # free the slot: whoever holds it finishes
                assert wait_until(lambda: len(_started) == k, timeout=30)
                _gates[_started[-1]].set()
        finally:
            sys.setswitchinterval(interval)
            for gate in _gates.values():
                gate.set()
            for t in threads:
                t.join(30)
            h.undeploy()
    assert _started == ["A1", "W1", "W2", "W3", "A2"]
