"""The what-if simulator: queueing theory, determinism, Little's law, overrides, the
policy being the real one, the API a notebook uses, and a tiny real validation."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

import straightline_sdk as straightline
from straightline_sdk.placement import Thresholds
from straightline_sdk.whatif import engine, presets, traffic
from straightline_sdk.whatif.models import FunctionModel, LocalModel
from straightline_sdk.whatif.presets import Setup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONV = os.path.join(ROOT, "bench", "traces", "azure-llm-2023", "conv.csv")


def mm1(rho: float, service_s: float = 0.01, n: int = 200_000, seed: int = 11):
    rate = rho / service_s
    tr = traffic.poisson(rate, duration_s=n / rate, size=0, seed=seed)
    setup = Setup("mm1", {"local": LocalModel(workers=1, slots=1, cores=1, overhead_s=0.0, per_mb_s=0.0)})
    fn = FunctionModel(runtime_s=service_s, jitter="exponential")
    return tr, engine.simulate(tr, setup, fn, engine.static("local"), seed=seed)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_mm1_mean_response_matches_the_closed_form(rho):
    service = 0.01
    _, result = mm1(rho, service)
    expected = service / (1 - rho)          # M/M/1: W = 1 / (mu - lambda)
    assert result.failed == 0
    assert abs(result.mean_s - expected) / expected < 0.03


def test_mmc_mean_response_matches_erlang_c():
    # M/M/2 at rho = 0.7: W = S + C(2, a) * S / (c (1 - rho)), Erlang C
    c, service, rho = 2, 0.01, 0.7
    rate = rho * c / service
    tr = traffic.poisson(rate, duration_s=200_000 / rate, size=0, seed=5)
    setup = Setup("mm2", {"local": LocalModel(workers=2, slots=1, cores=2, overhead_s=0.0, per_mb_s=0.0)})
    result = engine.simulate(tr, setup, FunctionModel(runtime_s=service, jitter="exponential"),
                             engine.static("local"), seed=5)
    a = rate * service
    p0_terms = sum(a ** k / math.factorial(k) for k in range(c))
    tail = a ** c / math.factorial(c) / (1 - rho)
    erlang_c = tail / (p0_terms + tail)
    expected = service + erlang_c * service / (c * (1 - rho))
    assert abs(result.mean_s - expected) / expected < 0.03


def test_littles_law_holds_on_the_output():
    tr, result = mm1(0.8, n=50_000, seed=3)
    arrivals, completions = result.arrivals, result.completions
    horizon = max(completions)
    # L: the time-average number in the system, integrated from the arrival and departure events
    events = sorted([(t, 1) for t in arrivals] + [(d, -1) for d in completions])
    area, level, last = 0.0, 0, 0.0
    for t, step in events:
        area += level * (t - last)
        level += step
        last = t
    L = area / horizon
    lam = len(arrivals) / horizon
    W = result.mean_s
    assert abs(L - lam * W) / L < 0.01


def test_the_same_seed_gives_the_same_result_and_another_seed_differs():
    tr = traffic.poisson(80, duration_s=30, size=[1024, 2 * 1024 * 1024], seed=1)
    fn = FunctionModel(runtime_s=0.01, jitter=0.5)
    a = straightline.whatif(None, tr, function=fn, preset="cloud", seed=4)
    b = straightline.whatif(None, tr, function=fn, preset="cloud", seed=4)
    c = straightline.whatif(None, tr, function=fn, preset="cloud", seed=5)
    assert [r.to_dict() for r in a.results] == [r.to_dict() for r in b.results]
    assert [r.mean_s for r in a.results] != [r.mean_s for r in c.results]


@pytest.mark.parametrize("preset", ["this-machine", "cloud"])
def test_every_model_parameter_can_be_overridden_and_records_its_source(preset):
    setup = presets.get(preset)
    for name, model in setup.tiers.items():
        for param, (value, source) in model.params().items():
            assert source, f"{name}.{param} has no provenance"
            new = (not value) if isinstance(value, bool) else \
                (value * 2 + 1 if isinstance(value, (int, float)) else 1234)
            changed = setup.override(name, **{param: new})
            assert getattr(changed.tiers[name], param) == new
            assert changed.tiers[name].params()[param][1] == "set by you"
            assert getattr(setup.tiers[name], param) == value     # the preset itself is unchanged
    for param in FunctionModel().params():
        assert getattr(FunctionModel().override(**{param: 3}), param) == 3
    with pytest.raises(TypeError, match="no parameter warp_speed"):
        setup.override("lambda", warp_speed=9)


def test_an_override_changes_the_prediction():
    tr = traffic.poisson(20, duration_s=60, size=1024, seed=2)
    fn = FunctionModel(runtime_s=0.01)
    base = straightline.whatif(None, tr, function=fn, preset="cloud", policies=["all-lambda"])
    slow = base.rerun(tiers={"lambda": {"warm_overhead_s": 0.5}})
    assert slow["all-lambda"].mean_s > base["all-lambda"].mean_s + 0.4
    assert slow.setup.tiers["lambda"].params()["warm_overhead_s"][1] == "set by you"


def test_lambda_cold_starts_follow_keep_alive_and_moto_is_cold_every_time():
    # one request every 2 s: with a 10 min keep-alive only the first is cold
    tr = traffic.Traffic(tuple(float(2 * i) for i in range(20)), (1024,) * 20, "steady")
    fn = FunctionModel(runtime_s=0.01)
    cloud = straightline.whatif(None, tr, function=fn, preset="cloud", policies=["all-lambda"])
    assert cloud["all-lambda"].cold_starts == {"lambda": 1}
    short = cloud.rerun(tiers={"lambda": {"keep_alive_s": 1.0}})
    assert short["all-lambda"].cold_starts == {"lambda": 20}
    moto = straightline.whatif(None, tr, function=fn, preset="this-machine", policies=["all-lambda"])
    assert moto["all-lambda"].cold_starts == {"lambda": 20}
    assert moto["all-lambda"].mean_s > 0.6


def test_lambda_cost_is_requests_plus_gb_seconds():
    tr = traffic.Traffic(tuple(float(i) for i in range(10)), (1024,) * 10, "ten")
    fn = FunctionModel(runtime_s=0.1004)
    r = straightline.whatif(None, tr, function=fn, preset="cloud", policies=["all-lambda"],
                            tiers={"lambda": {"memory_mb": 1024, "full_cpu_memory_mb": 1024,
                                              "bill_init": False}})["all-lambda"]
    # 10 x ($0.20 / M + 1 GB x 0.101 s (rounded up to the ms) x $0.0000166667)
    assert r.cost_usd == pytest.approx(10 * (0.2e-6 + 0.101 * 0.0000166667), rel=1e-6)


def test_the_real_policy_places_the_requests():
    """StraightLine's case split comes from Plan.decide: frequent small -> serverless,
    large -> Docker, the rest local (with default thresholds F = 20 req/s, D = 4 MB)."""
    small_fast = traffic.poisson(100, duration_s=20, size=1024, seed=1)
    r = straightline.whatif(None, small_fast, function=FunctionModel(runtime_s=0.001),
                            preset="cloud", policies=["straightline"])["straightline"]
    assert r.per_tier.get("lambda", 0) > 0.8 * r.requests
    large = traffic.poisson(1, duration_s=20, size=5 * 1024 * 1024, seed=1)   # the uplink carries it
    r = straightline.whatif(None, large, function=FunctionModel(runtime_s=0.001),
                            preset="cloud", policies=["straightline"])["straightline"]
    assert r.per_tier == {"docker": r.requests}
    slow = traffic.poisson(2, duration_s=20, size=1024, seed=1)
    r = straightline.whatif(None, slow, function=FunctionModel(runtime_s=0.001),
                            preset="cloud", policies=["straightline"])["straightline"]
    assert set(r.per_tier) == {"local"}


def test_payload_limits_fail_as_no_target_and_the_router_fails_over_on_moto():
    sizes = (1024, 200 * 1024, 5 * 1024 * 1024)
    tr = traffic.Traffic((0.0, 1.0, 2.0), sizes, "three")
    fn = FunctionModel(runtime_s=0.001)
    r = straightline.whatif(None, tr, function=fn, preset="this-machine", policies=["all-lambda"])["all-lambda"]
    assert r.failures == {"payload limit": 1, "no target": 1} and r.completed == 1
    to_lambda = engine.straightline(Thresholds(rate=0.0, size=1 << 40), "to-lambda")
    mixed = traffic.Traffic((0.0, 1.0, 2.0), (1024, 1024, 200 * 1024), "mixed")
    sl = straightline.whatif(None, mixed, function=fn, preset="this-machine", tiers=["lambda", "local"],
                             policies=[to_lambda])["to-lambda"]
    # the first request sees no rate yet (local); the second goes to moto's Lambda; the third
    # is over moto's event limit there, fails, and the router re-runs it locally
    assert sl.failed == 0 and sl.per_tier == {"local": 2, "lambda": 1}


def test_whatif_result_prints_shows_and_reruns(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("time,bytes\n0.0,1000\n0.5,2000000\n0.7,3000\n1.2,50000000\n")
    result = straightline.whatif(None, str(path), function={"runtime_s": 0.01}, preset="cloud")
    text = str(result)
    for label in ("straightline", "straightline-calibrated", "straightline-tuned", "all-local",
                  "all-docker", "all-lambda", "all-ray", "random", "oracle (lower bound)"):
        assert label in text
    assert "$/M req" in text and "p99 ms" in text
    assert "<svg" in result._repr_html_()
    assert result.widget.value.startswith("<div>")
    assert "lower bound" in str(result)
    again = result.rerun(preset="this-machine")
    assert again.setup.name == "this-machine" and len(again.results) == len(result.results)
    json.dumps(result.to_dict(), default=str)


def test_traffic_patterns_and_clear_errors():
    b = traffic.bursts(2, 50, every_s=10, burst_s=2, duration_s=60, seed=1)
    d = traffic.daily(5, period_s=600, duration_s=600, seed=1)
    assert len(b) > 0 and len(d) > 0
    assert traffic.poisson(10, 10, seed=3).times == traffic.poisson(10, 10, seed=3).times
    conv = traffic.from_csv(CONV)
    assert len(conv) == 19366 and conv.duration_s > 3000
    assert len(conv.scaled(10)) == len(conv) and conv.scaled(10).duration_s == pytest.approx(conv.duration_s / 10)
    with pytest.raises(TypeError, match="traffic must be"):
        straightline.whatif(None, 42, function={"runtime_s": 0.01})
    with pytest.raises(ValueError, match="unknown preset"):
        straightline.whatif(None, conv.window(0, 10), function={"runtime_s": 0.01}, preset="mars")
    with pytest.raises(ValueError, match="unknown policy"):
        straightline.whatif(None, conv.window(0, 10), function={"runtime_s": 0.01}, policies=["fastest"])
    with pytest.raises(ValueError, match="unknown tier"):
        straightline.whatif(None, conv.window(0, 10), function={"runtime_s": 0.01}, tiers=["moon"])


def test_whatif_from_a_deployments_own_calls():
    def double(x):
        return x * 2

    h = straightline.deploy(double, sample=(3,), target="local", name="whatif_calls")
    try:
        for i in range(20):
            h(i)
        result = straightline.whatif(h, h.calls, preset="cloud", policies=["straightline", "all-local", "oracle"])
        assert result.traffic.name == "h.calls" and len(result.traffic) == 20
        assert result["all-local"].completed == 20
        assert result.function.runtime_s == h.profile.runtime_s
    finally:
        h.undeploy()


def test_calibrate_with_an_objective_tunes_f_and_d_on_the_traffic():
    def double(x):
        return x * 2

    h = straightline.deploy(double, sample=(3,), targets=["local"], name="whatif_tune")
    try:
        tr = traffic.poisson(200, duration_s=30, size=1024, seed=1)
        cal = straightline.calibrate(h, objective="latency", traffic=tr, preset="cloud")
        assert h.thresholds is cal.thresholds and cal.thresholds.calibrated
        assert "minimise the predicted mean response time" in cal.thresholds.basis
        assert "req/s" in str(cal)
        cost = straightline.calibrate(h, objective="cost", traffic=tr, preset="cloud")
        assert "cost per million" in cost.thresholds.basis
    finally:
        h.undeploy()


def test_simulate_bench_dry_run_validates_a_tiny_window(tmp_path):
    """The validation runs end to end on a tiny window (local target only in a dry run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRAIGHTLINE_")}
    env["STRAIGHTLINE_CACHE_DIR"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = ROOT
    run = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "simulate.py"), "--dry-run",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=240,
                         cwd=ROOT, env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    data = json.loads((tmp_path / "simulate.json").read_text())
    assert data["rows"] and all(r["predicted_mean_ms"] > 0 for r in data["rows"])
    assert data["scale"] and {r["policy"] for r in data["scale"]} >= {"straightline-tuned", "oracle (lower bound)"}


def test_the_deployments_panel_shows_the_latest_whatif():
    def double(x):
        return x * 2

    h = straightline.deploy(double, sample=(3,), target="local", name="whatif_panel")
    try:
        h.panel   # the panel is open
        assert h._panel.whatif.value == ""
        straightline.whatif(h, traffic.poisson(5, duration_s=10, size=64, seed=1), preset="cloud",
                            policies=["all-local", "all-lambda"])
        assert "<svg" in h._panel.whatif.value and "all-lambda" in h._panel.whatif.value
    finally:
        h.undeploy()


def test_requests_to_remote_tiers_share_the_uplink():
    # two 1 MB requests at once over a 1 MB/s uplink: the second waits for the first's transfer
    tr = traffic.Traffic((0.0, 0.0), (1024 * 1024, 1024 * 1024), "two")
    fn = FunctionModel(runtime_s=0.01)
    r = straightline.whatif(None, tr, function=fn, policies=["all-lambda"],
                            preset=presets.cloud().override("network", uplink_mb_s=1.0))["all-lambda"]
    times = sorted(d - a for a, d in zip(r.arrivals, r.completions))
    assert times[0] == pytest.approx(1.0 + 0.25 + 0.03 + 0.01, rel=1e-6)   # transfer, cold, invoke, run
    # lands at 2 s, when the first one's instance is idle again: warm
    assert times[1] == pytest.approx(2.0 + 0.03 + 0.01, rel=1e-6)


def test_lambda_memory_follows_the_deployments_resources():
    def double(x):
        return x * 2

    h = straightline.deploy(double, sample=(3,), target="local", name="whatif_memory",
                            resources=straightline.Resources(memory_mb=3008))
    try:
        result = straightline.whatif(h, traffic.poisson(5, duration_s=5, size=64, seed=1), preset="cloud",
                                     policies=["all-lambda"])
        assert result.setup.tiers["lambda"].memory_mb == 3008
        assert "Resources" in result.setup.tiers["lambda"].params()["memory_mb"][1]
        mine = result.rerun(tiers={"lambda": {"memory_mb": 256}, "local": None})
        assert mine.setup.tiers["lambda"].memory_mb == 256
    finally:
        h.undeploy()
