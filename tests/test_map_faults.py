"""Issue 17, finding 9: a worker killed during a map costs a re-run of the calls
that were running, not of whole chunks. Each item notes its run in a file (one
line per run, appended), so the test counts what actually ran twice; the worker
is killed with SIGKILL mid-map, as the fault-injection run did.

Before chunks were answered item by item, a kill re-ran every call of each
chunk in flight (58-62 of 2,000 items in the report; here up to chunk size x
processes); now at most the calls in flight at the moment of the kill run
again (Docker: tests/test_docker_faults.py)."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest

import straightline_sdk as straightline
from straightline_sdk import TargetFailure
from tests.conftest import wait_until
from tests.support.local_worker import alive, worker_pid

ITEMS = 2000


def noting(path: str):
    """f(x) = 2x, noting each run of x in ``path`` (an O_APPEND line: atomic)."""
    def run(x):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, b"%d\n" % x)
        finally:
            os.close(fd)
        end = time.perf_counter() + 0.002    # CPU-bound: a pool of processes, one call each
        while time.perf_counter() < end:
            pass
        return 2 * x
    return run


def runs(path: str) -> list[int]:
    try:
        with open(path) as f:
            return [int(line) for line in f.read().split()]
    except FileNotFoundError:
        return []


def kill_worker(h) -> None:
    """SIGKILL to the local worker and every process of its pool at once."""
    pid = worker_pid(h)
    pool = [p.pid for p in psutil.Process(pid).children()]
    for p in (pid, *pool):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert wait_until(lambda: not any(alive(p) for p in (pid, *pool)), timeout=15)


def _map_in_thread(h, items, **kwargs):
    box: dict = {}

    def run():
        try:
            box["value"] = h.map(items, progress=False, **kwargs)
        except BaseException as exc:   # noqa: BLE001 - the test inspects it
            box["value"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_a_worker_killed_mid_map_reruns_only_the_calls_in_flight(tmp_path):
    path = str(tmp_path / "runs")
    h = straightline.deploy(noting(path), sample=(0,), targets=["local"], name="map-kill")
    os.unlink(path)                                  # the profile's run is not counted
    in_flight = h.deployed_targets["local"].concurrency   # processes x threads
    thread, box = _map_in_thread(h, range(ITEMS))
    assert wait_until(lambda: len(runs(path)) >= ITEMS // 5, timeout=120, interval=0.005)
    kill_worker(h)
    thread.join(300)
    assert not thread.is_alive(), "the map hung after the kill"
    assert box["value"] == [2 * x for x in range(ITEMS)]       # nothing lost, nothing wrong
    ran = runs(path)
    assert sorted(set(ran)) == list(range(ITEMS))
    duplicates = len(ran) - ITEMS
    assert h.stats()["local"]["failures"] >= 1, "the kill came after the map"
    assert duplicates <= in_flight, (f"{duplicates} calls ran twice; at most the {in_flight} "
                                     f"in flight at the kill may")
    # each call is counted done once: the finished part of a failed chunk has its own record
    assert sum(r.items for r in h.calls if r.outcome == "ok") == ITEMS


def test_a_map_that_may_not_run_twice_keeps_what_finished_before_the_kill(tmp_path):
    path = str(tmp_path / "runs")
    h = straightline.deploy(noting(path), sample=(0,), targets=["local"], name="map-kill-once",
                            idempotent=False)
    os.unlink(path)
    in_flight = h.deployed_targets["local"].concurrency
    thread, box = _map_in_thread(h, range(ITEMS), return_exceptions=True)
    assert wait_until(lambda: len(runs(path)) >= ITEMS // 5, timeout=120, interval=0.005)
    kill_worker(h)
    thread.join(300)
    assert not thread.is_alive(), "the map hung after the kill"
    results = box["value"]
    assert isinstance(results, list) and len(results) == ITEMS
    ran = runs(path)
    assert len(ran) == len(set(ran)), "a call of a deployment that may not run twice ran twice"
    failed = {i for i, r in enumerate(results) if isinstance(r, TargetFailure)}
    assert failed, "the kill came after the map"
    assert all(results[i] == 2 * i for i in range(ITEMS) if i not in failed)
    # a call that finished before the kill keeps its result: only the calls that
    # were running when it came (they may have finished) fail among those that ran
    ran_but_failed = failed & set(ran)
    assert len(ran_but_failed) <= in_flight, (f"{len(ran_but_failed)} calls that ran were "
                                              f"reported failed; at most the {in_flight} in "
                                              f"flight at the kill may be")


def _slow_double(x):
    end = time.perf_counter() + 0.0015     # each call's record is sent on its own
    while time.perf_counter() < end:
        pass
    return 2 * x


def test_a_chunk_answered_item_by_item_on_a_signed_connection(monkeypatch):
    """Off loopback every record of a chunk's answer carries its MAC; the
    connection serves further requests after the done record."""
    from straightline_sdk.runtime import auth, wire
    from straightline_sdk.targets.http import invoke_worker
    monkeypatch.setattr(auth, "is_loopback", lambda host: False)   # sign as off loopback
    h = straightline.deploy(_slow_double, sample=(1,), targets=["local"], name="signed-chunk")
    assert h.map(range(300), chunksize=50) == [2 * x for x in range(300)]
    client = h.deployed_targets["local"].client
    member = getattr(client, "members", [client])[0]
    segments, total = wire.encode([((x,), {}) for x in range(20)])
    for _ in range(2):   # twice on the same kept-alive, signed connection
        reply = invoke_worker(member, segments, total, 30.0, what="the local worker", each=True)
        assert [value for ok, value, *_ in reply.outcomes] == [2 * x for x in range(20)]
    conn = member._idle[-1]
    assert conn.session is not None    # the test really signed
    assert h(21) == 42                 # a plain call after it on the same connections


def test_a_tampered_item_record_is_refused_and_nothing_after_it_is_kept(monkeypatch):
    """A record whose MAC does not verify ends the answer: it is not unpickled,
    and only the verified records before it count as finished."""
    from straightline_sdk.runtime import auth, wire
    from straightline_sdk.targets import http
    monkeypatch.setattr(auth, "is_loopback", lambda host: False)
    h = straightline.deploy(_slow_double, sample=(1,), targets=["local"], name="tampered-chunk")
    client = h.deployed_targets["local"].client
    member = getattr(client, "members", [client])[0]
    real_mac = auth.mac
    seen = {"records": 0}

    def corrupting_mac(key, label, *rest):
        tag = real_mac(key, label, *rest)
        if label == b"rec":   # the client's check of each record (the worker is another process)
            seen["records"] += 1
            if seen["records"] == 3:
                return "0" * len(tag)
        return tag

    monkeypatch.setattr(auth, "mac", corrupting_mac)
    segments, total = wire.encode([((x,), {}) for x in range(10)])
    with pytest.raises(http.PeerNotVerified, match="not signed") as caught:
        http.invoke_worker(member, segments, total, 30.0, what="the local worker", each=True)
    assert [value for ok, value, *_ in caught.value.completed] == [0, 2]


def test_a_worker_frozen_mid_chunk_fails_the_chunk_instead_of_hanging_the_map(tmp_path):
    """The liveness check also runs between a chunk's records: a worker stopped
    (SIGSTOP) after it has sent some of a chunk's calls is a target failure, and
    the map completes on a fresh worker."""
    path = str(tmp_path / "runs")
    h = straightline.deploy(noting(path), sample=(0,), targets=["local"], name="map-frozen")
    os.unlink(path)
    pid = worker_pid(h)
    pool = [p.pid for p in psutil.Process(pid).children()] or [pid]
    thread, box = _map_in_thread(h, range(ITEMS // 2), chunksize=250)   # long chunks
    assert wait_until(lambda: len(runs(path)) >= 100, timeout=120, interval=0.005)
    for p in pool:
        os.kill(p, signal.SIGSTOP)
    try:
        thread.join(120)
        assert not thread.is_alive(), "the map hung on a stopped worker"
        assert box["value"] == [2 * x for x in range(ITEMS // 2)]
        assert any("is stopped" in r.detail for r in h.calls if r.outcome == "failed")
    finally:
        for p in (pid, *pool):
            try:
                os.kill(p, signal.SIGCONT)
            except ProcessLookupError:
                pass
