"""Capacity-aware overflow, honest counters and interrupts (issue 12).

Real local workers (and the real Docker engine where a container is the
subject); no test asserts a timing beyond the issue's own bound (an interrupted
map stops within 0.5 s).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import straightline_sdk as straightline
from straightline_sdk.placement import capacity
from straightline_sdk.runtime import wire
from straightline_sdk.targets.http import WorkerClient
from tests.conftest import wait_until
from tests.support.inprocess import install
from tests.test_docker import engine  # noqa: F401  (the fixture: a Docker engine and the base image)


def test_expected_wait_and_the_cost_of_going_elsewhere():
    assert capacity.expected_wait_s(1, 0, 2, 0.05) == 0.0                 # a slot is free
    assert capacity.expected_wait_s(2, 0, 2, 0.05) == 0.05                # the next one to free up
    assert capacity.expected_wait_s(2, 3, 2, 0.05) == pytest.approx(0.1)  # two waves ahead
    assert capacity.expected_wait_s(0, 0, 0, 0.05) == math.inf            # not deployed: no capacity
    assert capacity.finish_s(deployed=False, cold_start_s=2.0, wait_s=0, service_s=0.05) == 2.05
    assert not capacity.worth_adding(work_left_s=1.0, cold_start_s=2.0)
    assert capacity.worth_adding(work_left_s=60.0, cold_start_s=2.0)


def test_a_maps_chunks_shrink_near_its_end_but_not_below_a_requests_worth():
    sizes = capacity.chunk_sizes(60, 2, item_s=0.015)
    assert sum(sizes) == 60
    assert sizes[0] == 7                         # a quarter of a sender's share, as Pool.map's
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] == 1   # the end in single calls
    trivial = capacity.chunk_sizes(1000, 8, item_s=1e-6)
    assert sum(trivial) == 1000 and min(trivial[:-1]) == 31   # too short to pay for more requests
    assert capacity.chunk_sizes(59, 2, item_s=None) == [7] * 8 + [3]   # no profile: fixed sizes
    assert capacity.chunk_sizes(3, 64, item_s=0.05) == [1, 1, 1]


def _ten_ms(x):
    time.sleep(0.01)
    return x


def test_a_map_of_long_items_ends_in_single_item_requests():
    """The last requests of a map carry one call each, so no process is left
    running a long last chunk while the others idle (the tail of a CPU-bound map)."""
    h = straightline.deploy(_ten_ms, sample=(0,), targets=["local"])
    assert h.map(range(60), concurrency=2, progress=False) == list(range(60))   # two senders
    sizes = [call.items for call in h.calls]
    assert sum(sizes) == 60 and max(sizes) > 1 and min(sizes) == 1


def _short(x):
    return x * 2


@pytest.mark.docker
def test_a_map_of_short_items_with_an_idle_local_pool_deploys_no_container(engine):
    h = straightline.deploy(_short, sample=(1,), targets=["local", "docker"])
    assert set(h.deployed_targets) == {"local"}
    assert h.map(range(2000)) == [2 * x for x in range(2000)]
    assert set(h.deployed_targets) == {"local"}                 # Docker was never started
    assert set(h.stats()) == {"local"}
    overview = h.target_overview()
    assert overview["docker"]["state"] == "not deployed" and overview["docker"]["concurrency"] == 0


def test_a_busy_local_pool_is_waited_for_when_that_is_sooner_than_a_cold_target(monkeypatch, tmp_path):
    install(monkeypatch, "docker")
    straightline.configure(options={"local": {"processes": 1, "threads": 1}},
                           rate_threshold=1e9)                  # every call "moderate": local first
    release = tmp_path / "release"

    def held(x):
        deadline = time.monotonic() + 10
        while x and not release.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        return x

    h = straightline.deploy(held, sample=(0,), targets=["local", "docker"])
    first = h.submit(1)
    assert wait_until(lambda: h.target_overview()["local"]["in_flight"] == 1)
    second = h.submit(1)
    assert wait_until(lambda: h.target_overview()["local"]["waiting"] == 1)
    release.touch()
    assert first.result(timeout=30) == second.result(timeout=30) == 1
    assert set(h.deployed_targets) == {"local"}                 # it waited; Docker stayed cold
    assert any("waits for a slot" in line and "cold start" in line for line in h.placement.reasons) \
        or h.placement.target == "local"


def test_a_saturated_worker_is_a_rejection_not_a_failure(monkeypatch, tmp_path):
    install(monkeypatch, "docker")
    straightline.configure(options={"local": {"processes": 1, "threads": 1}}, rate_threshold=1e9)
    release = tmp_path / "release"

    def held(x):
        deadline = time.monotonic() + 10
        while x == "hold" and not release.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        return x

    h = straightline.deploy(held, sample=("go",), targets=["local", "docker"])
    local = h.deployed_targets["local"]
    # another client (a colleague's curl, a second kernel) takes the worker's only slot
    other = WorkerClient(local.client.host, local.client.port, h.spec.token, target="local")
    segments, total = wire.encode([(("hold",), {})])
    import threading
    holder = threading.Thread(target=other.request, args=("POST", "/invoke", segments, total),
                              kwargs={"content_type": wire.FRAME_CONTENT_TYPE, "timeout": 30})
    holder.start()
    try:
        assert wait_until(lambda: local.client.get("/health").json()["in_flight"] == 1)
        assert h("go") == "go"                 # refused with 503 by the worker, run on Docker
    finally:
        release.touch()
        holder.join(30)
        other.close()
    stats = h.stats()
    assert stats["local"]["rejected"] == 1 and stats["local"]["failures"] == 0
    assert stats["docker"]["calls"] == 1
    outcomes = [(r.target, r.outcome) for r in h.calls]
    assert ("local", "rejected") in outcomes and ("local", "failed") not in outcomes
    assert h("go") == "go" and h.stats()["local"]["failures"] == 0   # local still serves
    from straightline_sdk.panel import Panel
    html = Panel(h)._targets_html(h.target_overview(), h.stats(), closed=False)
    assert "data-field='rejected'" in html and ">1</td>" in html


def _sleepy(x):
    time.sleep(0.02)
    return os.getpid()


@pytest.mark.docker
def test_one_container_start_is_one_cold_start(engine):
    h = straightline.deploy(_sleepy, target="docker", name="one-cold-start")
    results = h.map(range(40), chunksize=1, concurrency=8)    # many first calls at once
    assert len(results) == 40
    assert h.stats()["docker"]["cold_starts"] == 1
    assert sum(r.cold for r in h.calls) == 1


INTERRUPTED_MAP = textwrap.dedent('''
    import json, os, sys, time
    import straightline_sdk as straightline
    marks = sys.argv[1]
    straightline.configure(progress=False, options={"local": {"processes": 1, "threads": 1}})

    def slow(x):
        open(os.path.join(marks, str(x)), "w").close()
        time.sleep(1.0)
        return x

    h = straightline.deploy(slow, target="local")
    print("READY", flush=True)
    try:
        h.map(range(20), chunksize=1)
        print(json.dumps({"interrupted": False}), flush=True)
    except KeyboardInterrupt:
        stopped_at = time.time()
        started = len(os.listdir(marks))
        time.sleep(2.5)                       # anything still being sent would start by now
        after = h(99)                          # the deployment still answers
        print(json.dumps({"interrupted": True, "stopped_at": stopped_at, "started": started,
                          "started_later": len(os.listdir(marks)) - 1, "after": after}), flush=True)
''')


def test_an_interrupted_map_stops_promptly_and_the_deployment_still_answers(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED_MAP, str(marks)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "READY"
        assert wait_until(lambda: len(os.listdir(marks)) >= 1, timeout=30)   # the map is running
        sent_at = time.time()
        proc.send_signal(signal.SIGINT)                                      # Ctrl-C
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    got = json.loads(out.strip().splitlines()[-1])
    assert got["interrupted"], err[-2000:]
    assert got["stopped_at"] - sent_at < 0.5                  # the bound
    assert got["started_later"] == got["started"]             # nothing more was sent after it
    assert got["started"] < 20
    assert got["after"] == 99


def test_an_interrupt_raised_in_the_main_thread_stops_the_map(tmp_path):
    """The kernel's "interrupt" as IPython delivers it: KeyboardInterrupt in the main thread."""
    import _thread
    import threading

    straightline.configure(options={"local": {"processes": 1, "threads": 1}})
    marks = tmp_path

    def slow(x):
        open(os.path.join(marks, str(x)), "w").close()
        time.sleep(0.5)
        return x

    h = straightline.deploy(slow, target="local")
    timer = threading.Timer(0.8, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        h.map(range(20), chunksize=1, progress=False)
    stopped = len(os.listdir(marks))
    assert stopped < 20
    assert h(7) == 7                                          # usable afterwards
    assert len(os.listdir(marks)) == stopped + 1              # only that call ran since
