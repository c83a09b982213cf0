"""Worker pools: a deployment uses the CPUs it has (issue 12).

Real worker processes throughout; no test asserts a timing.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import psutil
import pytest

import straightline_sdk as straightline
from straightline_sdk.runtime import pool
from tests.conftest import wait_until
from tests.test_docker import engine  # noqa: F401  (the fixture: a Docker engine and the base image)


def burn(x):
    """~20 ms of pure-Python CPU work, then the process that ran it."""
    t0 = time.thread_time()
    while time.thread_time() - t0 < 0.02:
        pass
    return os.getpid()


def test_a_cpu_bound_map_runs_in_more_than_one_worker_process():
    options = {} if pool.usable_cpus() >= 2 else {"processes": 2}   # a 1-CPU machine: ask for two
    straightline.configure(options={"local": options})
    h = straightline.deploy(burn, sample=(0,), targets=["local"])
    local = h.deployed_targets["local"]
    assert local.processes >= 2 and local.threads == 1   # CPU-bound: one call per process
    pids = set(h.map(range(24)))
    assert len(pids) >= 2
    assert os.getpid() not in pids
    supervisor = psutil.Process(local.pid)
    assert pids <= {child.pid for child in supervisor.children()}


def test_a_waiting_function_gets_threads_in_each_process():
    def wait_a_bit(x):
        time.sleep(0.05)
        return x

    h = straightline.deploy(wait_a_bit, sample=(0,), targets=["local"])
    local = h.deployed_targets["local"]
    assert local.threads > 1
    assert local.processes * local.threads >= pool.IO_SLOTS
    assert h.map(range(40)) == list(range(40))


def test_maps_reuse_their_sending_threads_and_undeploy_ends_them():
    """Starting a thread costs ~1 ms: a map of many short waits would spend more
    time starting its senders than waiting. Later maps of the same size send with
    the same threads (adding any the first did not need); undeploy ends them."""
    def wait_a_bit(x):
        time.sleep(0.01)
        return x

    def senders():
        return {t for t in threading.enumerate() if t.name.startswith("straightline-map")}

    h = straightline.deploy(wait_a_bit, sample=(0,), targets=["local"])
    before = senders()
    sent_by = []
    for _ in range(3):
        assert h.map(range(40), progress=False) == list(range(40))
        sent_by.append(senders() - before)
    first, second, third = sent_by
    assert first and first <= second <= third   # none ended: the same threads, kept
    h.undeploy()
    assert wait_until(lambda: not (senders() & third))


def test_pool_size_from_cpus_profile_and_memory():
    assert pool.pool_size(4, waits=False) == (4, 1, "")
    assert pool.pool_size(1.5, waits=False)[:2] == (2, 1)       # a 1.5-CPU quota: two processes
    assert pool.pool_size(2, waits=True)[:2] == (2, pool.IO_SLOTS // 2)
    processes, threads, note = pool.pool_size(8, waits=False, peak_memory_mb=1000, free_memory_mb=3000)
    assert processes == 2 and "shrunk from 8 to 2" in note and "1000 MB peak" in note
    assert pool.pool_size(8, waits=False, processes=3, threads=2)[:2] == (3, 2)


def test_usable_cpus_follow_the_affinity():
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        assert pool.usable_cpus() == 1
    finally:
        os.sched_setaffinity(0, before)


def test_memory_shrinks_the_pool_and_the_placement_says_so(monkeypatch):
    def allocate(n):
        return len(bytearray(n))

    monkeypatch.setattr(pool, "usable_cpus", lambda: 4.0)
    monkeypatch.setattr(pool, "available_memory_mb", lambda: 300.0)
    h = straightline.deploy(allocate, sample=(100 * 2 ** 20,), targets=["local"])
    local = h.deployed_targets["local"]
    assert local.processes < 4
    h(10)
    assert any("pool shrunk from 4 to" in line for line in h.placement.reasons)


def test_a_large_closure_is_shared_by_the_pool_not_copied():
    big = np.ones(150 * 2 ** 20 // 8)   # 150 MB

    def total(i):
        return float(big[i])

    straightline.configure(options={"local": {"processes": 2}})
    h = straightline.deploy(total, sample=(0,), targets=["local"])
    assert h.map(range(8)) == [1.0] * 8
    supervisor = psutil.Process(h.deployed_targets["local"].pid)
    children = supervisor.children()
    assert len(children) == 2, [(c.pid, c.status()) for c in children]
    for child in children:
        # unique memory: what this process holds alone; the array's pages are shared
        uss = child.memory_full_info().uss
        assert uss < 100 * 2 ** 20, f"process {child.pid} holds {uss / 2 ** 20:.0f} MB of its own"


def test_a_pool_process_that_dies_is_replaced_and_calls_go_on():
    straightline.configure(options={"local": {"processes": 2}})
    h = straightline.deploy(burn, sample=(0,), targets=["local"])
    supervisor = psutil.Process(h.deployed_targets["local"].pid)
    victim = supervisor.children()[1]
    os.kill(victim.pid, signal.SIGKILL)
    assert wait_until(lambda: len(supervisor.children()) == 2 and victim.pid not in
                      {c.pid for c in supervisor.children()})
    assert len(h.map(range(10))) == 10


def nap(seconds):
    time.sleep(seconds)
    return seconds


def _replace_every_pool_process(h) -> None:
    """Kill each process of the local pool, and wait until the supervisor has forked
    its replacement."""
    supervisor = psutil.Process(h.deployed_targets["local"].pid)
    for victim in supervisor.children():
        os.kill(victim.pid, signal.SIGKILL)
        assert wait_until(lambda: len(supervisor.children()) == 2 and victim.pid not in
                          {c.pid for c in supervisor.children()})

def test_a_death_before_a_call_is_not_blamed_on_it():
    """A pool process killed and replaced before a call began: the call, waiting
    longer than one liveness check on the new process, is answered, not failed."""
    straightline.configure(options={"local": {"processes": 2}})
    h = straightline.deploy(nap, sample=(0,), targets=["local"], idempotent=False)
    _replace_every_pool_process(h)
    assert h(1.0) == 1.0        # four liveness checks while it runs
    assert h.stats()["local"]["errors"] == 0



def test_a_death_before_a_map_chunk_is_not_blamed_on_it():
    """The same for a map's chunk (answered item by item, on its own path)."""
    straightline.configure(options={"local": {"processes": 2}})
    h = straightline.deploy(nap, sample=(0,), targets=["local"], idempotent=False)
    _replace_every_pool_process(h)
    assert h.map([0.6, 0.6], chunksize=2, progress=False) == [0.6, 0.6]   # liveness checks meanwhile
    assert h.stats()["local"]["errors"] == 0 and h.stats()["local"]["failures"] == 0

def test_a_pool_is_healthy_only_when_every_process_answers():
    """Calls go to every process of a pool: one that no longer answers (here
    stopped, as a hung process would be) makes the worker unhealthy, not just the
    first. The check is the one the Docker target runs (``worker_health``)."""
    from straightline_sdk.targets.http import worker_health
    straightline.configure(options={"local": {"processes": 2}})
    h = straightline.deploy(burn, sample=(0,), targets=["local"])
    local = h.deployed_targets["local"]
    assert worker_health(local.client) == (True, "ok")
    second_port = local.client.ports[1]
    second = next(child for child in psutil.Process(local.pid).children()
                  if any(c.laddr.port == second_port and c.status == psutil.CONN_LISTEN
                         for c in child.net_connections("tcp")))
    os.kill(second.pid, signal.SIGSTOP)
    try:
        healthy, detail = worker_health(local.client)
        assert not healthy and f":{second_port}" in detail and "process 1" in detail
    finally:
        os.kill(second.pid, signal.SIGCONT)
    assert worker_health(local.client) == (True, "ok")


def test_pool_processes_exit_with_the_supervisor():
    straightline.configure(options={"local": {"processes": 2}})
    h = straightline.deploy(burn, sample=(0,), targets=["local"])
    supervisor = psutil.Process(h.deployed_targets["local"].pid)
    children = supervisor.children()
    os.kill(supervisor.pid, signal.SIGKILL)
    assert wait_until(lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE
                                      for c in children))


# -- Docker: the container's CPU limit sizes its pool ---------------------------------

def test_a_container_runs_as_many_processes_as_its_cpu_limit(engine):
    h = straightline.deploy(burn, sample=(0,), targets=["docker"],
                            resources=straightline.Resources(cpus=2))
    docker = h.deployed_targets["docker"]
    assert (docker.processes, docker.threads) == (2, 1)
    assert len(set(h.map(range(16)))) == 2          # two processes in the one container
    assert h.stats()["docker"]["failures"] == 0
    h.undeploy()

    one = straightline.deploy(burn, sample=(1,), targets=["docker"],
                              resources=straightline.Resources(cpus=1), name="burn_one_cpu")
    assert one.deployed_targets["docker"].processes == 1
    assert len(set(one.map(range(6)))) == 1
