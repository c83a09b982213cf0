"""The placement core: the StraightLine policy's branches and fallbacks,
constraint filtering, the rate estimator. Pure: no targets are started."""

import pytest

from straightline_sdk import PlacementError
from straightline_sdk.placement import (DEFAULT_THRESHOLDS, MB, Features, Limits,
                                        Plan, RateEstimator, TargetState, Thresholds, decide)
from straightline_sdk.targets.aws_lambda import LAMBDA_LIMITS

TH = Thresholds(rate=10.0, size=1 * MB)


def states(local=True, docker=True, lam=True, limits=None):
    limits = limits or {}
    return {
        "local": TargetState("local", local, "" if local else "worker down",
                             limits=limits.get("local", Limits(cpus=2.0, max_memory_mb=8000))),
        "docker": TargetState("docker", docker, "" if docker else "engine not running",
                              limits=limits.get("docker", Limits())),
        "lambda": TargetState("lambda", lam, "" if lam else "no credentials", limits=LAMBDA_LIMITS),
    }


@pytest.mark.parametrize("rate,size,expected", [
    (50.0, 1000, "lambda"),          # f > F and r_d < D: serverless
    (50.0, 3 * MB, "docker"),        # r_d > D: docker, whatever the rate
    (1.0, 3 * MB, "docker"),
    (1.0, 1000, "local"),            # moderate: the local server
    (10.0, 1000, "local"),           # f == F is not above F
    (50.0, 1 * MB, "local"),         # r_d == D is neither below nor above D
])
def test_paper_branches(rate, size, expected):
    d = decide(Features(rate=rate, request_bytes=size), states(), TH)
    assert d.target == expected
    assert not d.fell_back


def test_moderate_falls_back_to_docker_then_serverless():
    d = decide(Features(rate=1.0, request_bytes=1000), states(local=False), TH)
    assert d.target == "docker" and d.fell_back
    assert any("local passed over: worker down" in r for r in d.reasons)
    d = decide(Features(rate=1.0, request_bytes=1000), states(local=False, docker=False), TH)
    assert d.target == "lambda"


def test_serverless_unavailable_falls_back_to_local():
    d = decide(Features(rate=50.0, request_bytes=1000), states(lam=False), TH)
    assert d.target == "local"
    assert "lambda passed over: no credentials" in d.reasons


def test_large_without_docker_goes_local_and_never_to_lambda_over_its_limit():
    big = Features(rate=50.0, request_bytes=8 * MB)
    d = decide(big, states(docker=False), TH)
    assert d.target == "local"
    with pytest.raises(PlacementError) as err:  # lambda is excluded, not a fallback
        decide(big, states(docker=False, local=False), TH)
    assert "payload limit" in err.value.exclusions["lambda"]
    assert err.value.exclusions["docker"] == "engine not running"


def test_no_target_at_all_names_each_exclusion():
    gpu = Features(rate=1.0, request_bytes=10, gpus=1)
    with pytest.raises(PlacementError) as err:
        decide(gpu, states(), TH)
    assert set(err.value.exclusions) == {"local", "docker", "lambda"}
    assert "GPU" in str(err.value)


def test_constraints_filter_before_the_policy_ranks():
    # frequent and small would go to serverless, but Lambda has no GPU
    d = decide(Features(rate=50.0, request_bytes=10, gpus=1),
               states(limits={"docker": Limits(gpus=1)}), TH)
    assert d.target == "docker"
    assert any(r.startswith("lambda excluded: needs 1 GPU") for r in d.reasons)


def test_lambda_constraints_have_their_documented_values():
    for features, words in [
        (Features(request_bytes=5 * MB), "payload limit"),
        (Features(timeout_s=901), "timeout"),
        (Features(memory_mb=10241), "memory"),
        (Features(python=(3, 8)), "Python 3.8"),
        (Features(package_mb=251), "bundle"),
        (Features(gpus=1), "GPU"),
    ]:
        with pytest.raises(PlacementError, match=words):
            decide(features, {"lambda": TargetState("lambda", True, limits=LAMBDA_LIMITS)}, TH)
    ok = decide(Features(request_bytes=4 * MB, timeout_s=900, memory_mb=10240),
                {"lambda": TargetState("lambda", True, limits=LAMBDA_LIMITS)}, TH)
    assert ok.target == "lambda"


def test_saturated_target_sends_overflow_to_the_fallback_and_queues_when_all_are_full():
    st = states(lam=False)
    st["local"].concurrency, st["local"].in_flight = 2, 2
    d = decide(Features(rate=1.0, request_bytes=100), st, TH)
    assert d.target == "docker"
    assert any("saturated (2/2 busy)" in r for r in d.reasons)
    st["docker"].concurrency, st["docker"].in_flight = 1, 1
    d = decide(Features(rate=1.0, request_bytes=100), st, TH)
    assert d.queued and d.target == "local"


def test_avoid_skips_targets_that_failed_this_call():
    d = decide(Features(rate=1.0, request_bytes=100), states(), TH, avoid=("local",))
    assert d.target == "docker"
    assert "local passed over: failed this call already" in d.reasons


def test_pinned_target_is_the_only_candidate():
    d = decide(Features(rate=50.0, request_bytes=100), states(), TH, pinned="docker")
    assert d.target == "docker" and d.branch == "pinned"
    with pytest.raises(PlacementError, match="engine not running"):
        decide(Features(rate=50.0), states(docker=False), TH, pinned="docker")


def test_reasons_read_as_the_rule_with_numbers():
    d = decide(Features(rate=1.0, request_bytes=48 * MB), states(), Thresholds(10.0, 8 * MB))
    assert d.reasons[0] == "input 48 MB > D = 8 MB → docker (large data)"
    assert str(d).startswith("docker: ")
    d = decide(Features(rate=50.0, request_bytes=100), {"local": states()["local"]}, TH)
    assert "lambda is not among the allowed targets" in d.reasons


def test_plan_sees_availability_changes_without_rebuilding():
    st = states()
    plan = Plan(Features(), st)
    assert plan.decide(1.0, 100, TH).target == "local"
    st["local"].available = False
    assert plan.decide(1.0, 100, TH).target == "docker"
    st["local"].available = True
    assert plan.decide(1.0, 100, TH).target == "local"


def test_a_threshold_change_changes_the_next_decision():
    plan = Plan(Features(), states())
    assert plan.decide(50.0, 100, Thresholds(100.0, MB)).target == "local"
    assert plan.decide(50.0, 100, Thresholds(10.0, MB)).target == "lambda"


def test_default_thresholds_keep_serverless_requests_under_lambdas_limit():
    # any request the policy sends to serverless (r_d < D) fits Lambda's payload after base64
    assert DEFAULT_THRESHOLDS.size * 4 / 3 <= 6 * 1000 * 1000
    assert DEFAULT_THRESHOLDS.size <= LAMBDA_LIMITS.max_request_bytes


class TestRate:
    def test_prior_until_two_arrivals(self):
        r = RateEstimator(window=5.0, prior=3.0)
        assert r.rate(now=0.0) == 3.0
        assert r.observe(now=1.0) == 3.0

    def test_burst_reads_as_its_rate(self):
        r = RateEstimator(window=5.0)
        for i in range(11):
            rate = r.observe(now=100.0 + i * 0.01)  # 10 gaps of 10 ms
        assert rate == pytest.approx(100.0)

    def test_full_window_counts_arrivals_per_window(self):
        r = RateEstimator(window=5.0)
        for i in range(50):
            rate = r.observe(now=float(i) * 0.1 + 0.1)  # 10 req/s for 5 s
        assert rate == pytest.approx(10.0, rel=0.05)

    def test_old_arrivals_leave_the_window(self):
        r = RateEstimator(window=5.0, prior=0.5)
        for i in range(20):
            r.observe(now=float(i) * 0.01)
        assert r.rate(now=100.0) == 0.5

    def test_batch_counts_each_item(self):
        r = RateEstimator(window=5.0)
        r.observe(now=0.0)
        assert r.observe(now=1.0, count=10) == pytest.approx(10.0)
