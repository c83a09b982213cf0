"""Per-request placement through the handle: phases of a request stream,
saturation, failover and its delivery semantics, telemetry, calibration.

The local target is the real worker; "docker" and "lambda" are in-process
targets running the real runtime (tests/support/inprocess.py) so the router's
logic is tested on its own. The real Docker engine is used where it is the
subject (calibration against Docker, a container killed mid-map).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import straightline_sdk as straightline
from straightline_sdk import TargetFailure
from straightline_sdk.placement import MB
from straightline_sdk.targets.aws_lambda import LAMBDA_LIMITS
from straightline_sdk.placement.calibration import TIE, CostCurve, crossovers, fit, size_threshold
from tests.conftest import need, wait_until
from tests.support.inprocess import install


@pytest.fixture
def three_tiers(monkeypatch):
    docker = install(monkeypatch, "docker")
    lam = install(monkeypatch, "lambda", limits=LAMBDA_LIMITS)
    return docker, lam


def test_a_stream_of_phases_is_routed_as_the_paper_says(three_tiers):
    straightline.configure(rate_threshold=50.0, size_threshold=256 * 1024)

    @straightline.deploy(sample=(np.zeros(10),), targets=["local", "docker", "lambda"])
    def total(x):
        return float(np.sum(x))

    small, large = np.ones(100), np.ones(64 * 1024)   # 800 B and 512 KB
    seen = []
    # phase 1: slow and small -> local (moderate)
    for _ in range(3):
        time.sleep(0.1)          # the phase's pace: 10 req/s, below F = 50
        total(small)
        seen.append(total.placement.target)
    # phase 2: fast and small -> serverless
    for _ in range(30):
        total(small)
    seen.append(total.placement.target)
    # phase 3: large -> docker, whatever the rate
    total(large)
    seen.append(total.placement.target)
    assert seen == ["local", "local", "local", "lambda", "docker"]
    assert total.placement.reasons[0].startswith("input 512 KB > D = 256 KB → docker")
    by_target = {kind: st["calls"] for kind, st in total.stats().items()}
    assert by_target["docker"] == 1 and by_target["local"] >= 3 and by_target["lambda"] >= 20
    branches = [r.branch for r in total.calls]
    assert branches[:3] == ["moderate"] * 3 and branches[-1] == "large"


def test_targets_are_deployed_when_first_chosen_or_prewarmed(three_tiers):
    docker, lam = three_tiers

    @straightline.deploy(sample=(1,), targets=["local", "docker", "lambda"])
    def ident(x):
        return x

    assert set(ident.deployed_targets) == {"local"}
    pre = straightline.deploy(lambda x: x, sample=(1,), name="pre",
                              targets=["local", "docker", "lambda"], prewarm=True)
    assert set(pre.deployed_targets) == {"local", "docker", "lambda"}


def test_saturating_the_local_worker_sends_the_overflow_to_the_fallback(three_tiers, tmp_path):
    straightline.configure(options={"local": {"concurrency": 2}})
    release = tmp_path / "release"

    @straightline.deploy(sample=(0,), targets=["local", "docker"], rate=1)
    def wait_for(x):
        deadline = time.monotonic() + 10
        while x and not release.exists() and time.monotonic() < deadline:
            time.sleep(0.005)  # held until the test releases every call at once
        return x

    straightline.configure(rate_threshold=1e9)   # keep every call "moderate": local first
    futures = [wait_for.submit(1) for _ in range(5)]
    try:
        # the profile says a call is quick, so the three extra calls first wait for a local
        # slot (sooner than starting Docker); held past that expectation, they go to Docker
        assert wait_until(lambda: wait_for.target_overview()["local"]["waiting"] == 3, timeout=5)
        assert wait_until(lambda: sum(r.target == "docker" for r in wait_for.calls) >= 3, timeout=20)
    finally:
        release.touch()
    assert [f.result(timeout=30) for f in futures] == [1] * 5
    targets = [r.target for r in wait_for.calls]
    assert targets.count("local") == 2 and targets.count("docker") == 3
    assert all(r.fell_back for r in wait_for.calls if r.target == "docker")


def test_failover_on_a_target_failure_loses_no_call(three_tiers, caplog):
    docker, _ = three_tiers
    straightline.configure(size_threshold=1)          # every request is "large": docker first

    @straightline.deploy(sample=(1,), targets=["docker", "local"])
    def square(x):
        return x * x

    target = square.deployed_targets["docker"]
    target.fail_when = lambda n: (TargetFailure("container gone", target="docker", may_have_run=True)
                                  if 3 <= n <= 5 else None)
    out = square.map(range(200), chunksize=10)
    assert out == [x * x for x in range(200)]
    outcomes = [r.outcome for r in square.calls]
    assert outcomes.count("failed") == 3
    assert sum(r.items for r in square.calls if r.outcome == "ok") == 200
    assert "may have started there" in caplog.text
    assert "running it again on the local target" in caplog.text


def test_at_most_once_when_not_idempotent(three_tiers):
    straightline.configure(size_threshold=1)

    @straightline.deploy(sample=(1,), targets=["docker", "local"], idempotent=False)
    def charge(x):
        return x

    target = charge.deployed_targets["docker"]
    target.fail_next = [TargetFailure("connection reset mid-call", target="docker", may_have_run=True)]
    with pytest.raises(TargetFailure, match="connection reset"):
        charge(1)                                   # may have run: not run again elsewhere
    target.fail_next = [TargetFailure("connection refused", target="docker", may_have_run=False)]
    assert charge(2) == 2                           # never started: safe to run elsewhere
    assert charge.calls[-1].target == "local"


def test_the_users_exception_is_never_retried_elsewhere(three_tiers):
    straightline.configure(size_threshold=1)

    @straightline.deploy(sample=(0,), targets=["docker", "local"])
    def fail(x):
        if x:
            raise ValueError("bad input")
        return x

    with pytest.raises(ValueError, match="bad input"):
        fail(1)
    assert [r.target for r in fail.calls] == ["docker"]
    assert fail.calls[-1].outcome == "error"


def test_unhealthy_target_is_dropped_and_redeployed_when_chosen_again(three_tiers):
    docker, _ = three_tiers
    straightline.configure(size_threshold=1)

    @straightline.deploy(sample=(1,), targets=["docker", "local"])
    def ident(x):
        return x

    first = ident.deployed_targets["docker"]
    first.healthy = False
    first.fail_next = [TargetFailure("container exited (OOMKilled)", target="docker", may_have_run=True)]
    assert ident(5) == 5                          # failed over to local
    assert "docker" not in ident.deployed_targets
    assert ident(6) == 6                          # docker chosen again: a fresh deployment
    assert ident.deployed_targets["docker"] is not first
    assert len(docker.instances) == 2


def test_telemetry_records_every_call_and_aggregates_per_target(three_tiers):
    @straightline.deploy(sample=(1,), targets=["local"])
    def ident(x):
        return x

    for i in range(20):
        ident(i)
    with pytest.raises(TypeError):
        ident()
    st = ident.stats()["local"]
    assert st["requests"] == 21 and st["errors"] == 1 and st["calls"] == 21
    assert st["p50_ms"] > 0 and st["p95_ms"] >= st["p50_ms"]
    assert st["bytes_sent"] > 0 and st["bytes_received"] > 0
    rec = ident.calls[-1]
    assert rec.outcome == "error" and rec.target == "local" and rec.branch in ("moderate", "frequent-small")
    assert ident.telemetry.records.maxlen == 2000


# -- calibration ------------------------------------------------------------------------

def test_crossovers_follow_the_curves():
    local = CostCurve("local", 0.0002, 0.002)                  # 0.2 ms + 2 ms/MB
    docker = CostCurve("docker", 0.002, 0.001)                 # 2 ms + 1 ms/MB: wins past 1.8 MB
    lam = CostCurve("lambda", 0.05, 0.01, max_request_bytes=LAMBDA_LIMITS.max_request_bytes)
    d, _ = size_threshold({"local": local, "docker": docker, "lambda": lam})
    assert docker.latency(d) < local.latency(d) * (1 - TIE)   # clearly faster from D...
    assert docker.latency(d / 1.2) >= local.latency(d / 1.2) * (1 - TIE)   # ...not before
    found = crossovers({"local": local, "docker": docker, "lambda": lam}, runtime_s=0.01,
                       request_bytes=1000, local_concurrency=4)
    f = found.thresholds.rate
    service = local.latency(1000, 0.01)
    assert service / (1 - f * service / 4) == pytest.approx(lam.latency(1000, 0.01))
    assert found.thresholds.calibrated


def test_docker_never_faster_puts_d_past_every_request():
    d, basis = size_threshold({"local": CostCurve("local", 0.0002, 0.001),
                               "docker": CostCurve("docker", 0.0005, 0.002)})
    assert d >= 1 << 40 and "slower" in basis


def test_docker_within_the_tie_margin_does_not_take_the_traffic():
    local = CostCurve("local", 0.000120, 0.0010)
    nearly = CostCurve("docker", 0.000118, 0.00098)   # 2 % faster everywhere: noise, a tie
    d, basis = size_threshold({"local": local, "docker": nearly})
    assert d >= 1 << 40 and "tie" in basis
    clearly = CostCurve("docker", 0.000100, 0.0008)   # 17-20 % faster: Docker from the start
    assert size_threshold({"local": local, "docker": clearly})[0] == 0


def test_fit_anchors_the_overhead_at_the_smallest_request():
    curve = fit("x", [(0, 0.001), (MB, 0.003), (4 * MB, 0.009)])
    assert curve.overhead_s == pytest.approx(0.001)
    assert curve.per_mb_s == pytest.approx(0.002)


def test_calibrating_the_local_target_sets_thresholds_consistent_with_its_curve(tmp_path, monkeypatch):
    monkeypatch.setenv("STRAIGHTLINE_CACHE_DIR", str(tmp_path))

    @straightline.deploy(sample=(1,), targets=["local"])
    def ident(x):
        return x

    result = straightline.calibrate(ident, sizes=(0, 256 * 1024, 2 * MB), repeats=5)
    assert set(result.curves) == {"local"}
    curve = result.curves["local"]
    assert len(curve.points) == 3 and curve.overhead_s > 0
    th = ident.thresholds
    assert th.calibrated and th is result.thresholds
    service = curve.latency(ident.profile.request_bytes, result.runtime_s)
    assert th.rate == pytest.approx(curve.concurrency / service)   # local only: its capacity
    assert "calibrated" in str(ident.placement) or ident.placement.thresholds.calibrated
    # stored: calibrating again (a re-run cell) measures nothing
    assert straightline.calibrate(ident) is result
    ident.calibration = None
    again = straightline.calibrate(ident)
    assert again.thresholds == result.thresholds


def test_calibrating_a_pool_of_threads_counts_the_calls_its_cpus_keep_up_with(tmp_path, monkeypatch):
    """A function that waits most of its time gets a pool of many threads, but each
    call still uses a CPU part of the time: F is the rate the CPUs serve, not the
    rate of all the slots."""
    monkeypatch.setenv("STRAIGHTLINE_CACHE_DIR", str(tmp_path))
    straightline.configure(options={"local": {"processes": 1, "threads": 64}})

    @straightline.deploy(sample=(1,), targets=["local"])
    def half_busy(x):
        import time
        time.sleep(0.02)
        t0 = time.thread_time()
        while time.thread_time() - t0 < 0.01:   # ~1/3 of the call on the CPU
            pass
        return x

    result = straightline.calibrate(half_busy, sizes=(0, 256 * 1024), repeats=3)
    curve = result.curves["local"]
    assert curve.concurrency == 64
    service = curve.latency(half_busy.profile.request_bytes, result.runtime_s)
    th = half_busy.thresholds
    assert th.rate < 0.5 * curve.concurrency / service     # not all 64 slots at once
    assert "of a CPU busy" in th.basis


def test_calibration_against_real_docker_is_consistent_with_the_measured_curves(tmp_path, monkeypatch):
    from straightline_sdk.targets import probe
    need(probe("docker", {}, fresh=True).available, "a Docker engine (bash scripts/setup-docker.sh)")
    monkeypatch.setenv("STRAIGHTLINE_CACHE_DIR", str(tmp_path))

    @straightline.deploy(sample=(1,), targets=["local", "docker"])
    def ident(x):
        return x

    result = straightline.calibrate(ident, sizes=(0, 1 * MB, 4 * MB), repeats=5)
    assert set(result.curves) == {"local", "docker"}
    local, docker = result.curves["local"], result.curves["docker"]
    assert docker.cold_start_s is not None and docker.cold_start_s > 0
    d = result.thresholds.size
    if d >= 1 << 40:   # never clearly faster: slower, or a tie within TIE
        assert all(docker.latency(s) >= local.latency(s) * (1 - TIE) for s in (MB, 16 * MB, 256 * MB))
    else:
        assert docker.latency(d) < local.latency(d) * (1 - TIE)

