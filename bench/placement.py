"""Per-call cost of routing and telemetry, next to a warm local call in the same run.

    python bench/placement.py            # ~20 s
    python bench/placement.py --quick    # ~5 s

Times, as medians per call (µs):
  Plan.decide              the policy on one request (three shapes: moderate, frequent-small, large)
  RateEstimator.observe    f_t's sliding window
  Telemetry.record         one call record into the ring buffer
  routing + telemetry      the three above, summed (what the goal is about)
  encode + decode          the request and response frames (serialization, not routing)
  handle, no transport     h(x) end to end on a trivial in-process target that returns a
                           ready response frame: everything the client does except the network
  warm local call          h(x) on the real local target (worker process over loopback)
Each piece is timed in batches of calls (the timer's own cost is spread over the batch),
and the median of the batches' per-call times is reported.
Goals (issue 5): routing + telemetry <= 2 µs median and <= 5% of a warm local call.
"""

from __future__ import annotations

import contextlib
import time

import common  # this script's folder is on sys.path

import straightline_sdk as straightline
from straightline_sdk import targets as target_registry
from straightline_sdk.protocol import encode_request
from straightline_sdk.placement import (DEFAULT_THRESHOLDS, Features, Limits,
                                        Plan, RateEstimator, TargetState)
from straightline_sdk.targets.aws_lambda import LAMBDA_LIMITS
from straightline_sdk.runtime import wire
from straightline_sdk.targets.base import Probe, Reply, Target
from straightline_sdk.telemetry import Telemetry


def add_one(x):
    return x + 1


class NullTarget(Target):
    """A target with no transport: answers every request with a ready response frame.
    Registered under "local" only while this benchmark measures the handle."""

    kind = "local"
    concurrency = 8
    response = wire.encode_bytes([(True, 2)])

    @classmethod
    def probe(cls, options):
        return Probe(True, limits=Limits())

    def deploy(self):
        pass

    def invoke(self, segments, total, timeout):
        return Reply(self.response)

    def health(self):
        return True, "ok"

    def teardown(self):
        pass


@contextlib.contextmanager
def null_target_as_local():
    saved = target_registry.REGISTRY["local"]
    target_registry.REGISTRY["local"] = f"{__name__}:NullTarget"
    target_registry.clear_probes()
    try:
        yield
    finally:
        target_registry.REGISTRY["local"] = saved
        target_registry.clear_probes()


def per_call_us(fn, batches: int, inner: int) -> list[float]:
    """Per-call times (µs) of ``batches`` batches of ``inner`` calls each."""
    clock = time.perf_counter_ns
    for _ in range(inner):  # warm
        fn()
    out = []
    for _ in range(batches):
        t0 = clock()
        for _ in range(inner):
            fn()
        out.append((clock() - t0) / inner / 1000)
    return out


def main() -> None:
    args = common.parser(__doc__).parse_args()
    batches, inner, local_calls = (300, 1000, 3000)
    if args.quick:
        batches, inner, local_calls = (100, 500, 1000)
    if args.dry_run:
        batches, inner, local_calls = (5, 50, 50)
    report = common.Report("placement", "Routing and telemetry cost per call", vars(args))
    straightline.configure(progress=False, targets=["local"])
    print(f"{batches} batches x {inner} calls per piece; {local_calls} warm local calls\n", flush=True)

    # -- the policy alone, on three request shapes --------------------------------
    features = Features(request_bytes=64, result_bytes=64, runtime_s=1e-6)
    states = {"local": TargetState("local", True, concurrency=4),
              "docker": TargetState("docker", True, concurrency=8),
              "lambda": TargetState("lambda", True, limits=LAMBDA_LIMITS, concurrency=10)}
    plan = Plan(features, states)
    th = DEFAULT_THRESHOLDS
    shapes = {"Plan.decide, moderate -> local": (1.0, 64),
              "Plan.decide, frequent-small -> lambda": (th.rate * 2, 64),
              "Plan.decide, large -> docker": (1.0, 2 * th.size)}
    pieces = {}
    for label, (rate, size) in shapes.items():
        assert plan.decide(rate, size, th).target == label.rsplit(" ", 1)[1]
        pieces[label] = per_call_us(lambda r=rate, s=size: plan.decide(r, s, th), batches, inner)

    estimator = RateEstimator(window=5.0)
    pieces["RateEstimator.observe"] = per_call_us(estimator.observe, batches, inner)
    telemetry = Telemetry()
    pieces["Telemetry.record"] = per_call_us(
        lambda: telemetry.record("local", branch="moderate", items=1, request_bytes=120,
                                 response_bytes=90, latency_s=1e-4, outcome="ok"), batches, inner)

    request = [((1,), {})]
    response = wire.encode_bytes([(True, 2)])
    pieces["encode_request + wire.decode"] = per_call_us(
        lambda: (encode_request(request), wire.decode(response)), batches, inner)

    # -- the handle's whole client side, transport left out ------------------------
    with null_target_as_local():
        h = straightline.deploy(add_one, sample=(1,), targets=["local"], name="bench_placement_null")
        try:
            assert isinstance(h.deployed_targets["local"], NullTarget)
            assert h(1) == 2
            pieces["handle h(x), no transport"] = per_call_us(lambda: h(1), batches, inner)
        finally:
            h.undeploy()

    # -- a warm local call, the yardstick ---------------------------------------------
    local = straightline.deploy(add_one, target="local", name="bench_placement_local")
    try:
        assert local(41) == 42
        local_batches = max(5, local_calls // 20)
        local_us = per_call_us(lambda: local(1), local_batches, 20)
    finally:
        local.undeploy()
    local_p50 = common.median(local_us)

    decide_key = "Plan.decide, moderate -> local"
    routing = (common.median(pieces[decide_key]) + common.median(pieces["RateEstimator.observe"])
               + common.median(pieces["Telemetry.record"]))
    for label, values in pieces.items():
        p50 = common.median(values)
        report.rows.append({"piece": label, "p50_us": p50, "p99_us": common.percentile(values, 0.99),
                            "pct_of_local_call": 100 * common.ratio(p50, local_p50)})
    report.rows.insert(5, {"piece": "routing + telemetry (decide + observe + record)", "p50_us": routing,
                           "p99_us": None, "pct_of_local_call": 100 * common.ratio(routing, local_p50)})
    report.rows.append({"piece": "warm local call h(x)", "p50_us": local_p50,
                        "p99_us": common.percentile(local_us, 0.99), "pct_of_local_call": 100.0})

    print(report.table([("piece", "piece"), ("p50_us", "p50 µs"), ("p99_us", "p99 µs (of batch means)"),
                        ("pct_of_local_call", "% of warm local call")]))
    report.goal("routing + telemetry <= 2 µs median", routing <= 2.0, f"{routing:.2f} µs")
    pct = 100 * common.ratio(routing, local_p50)
    report.goal("routing + telemetry <= 5% of a warm local call", pct <= 5.0,
                f"{pct:.2f}% of {local_p50:.0f} µs")
    handle_extra = common.median(pieces["handle h(x), no transport"]) - common.median(
        pieces["encode_request + wire.decode"])
    report.notes.append(f"the handle's client side without serialization (h(x) on the null target minus "
                        f"encode + decode) is {handle_extra:.2f} µs: routing and telemetry plus the "
                        f"call's locks, in-flight accounting and the Python call layers of the handle")
    report.finish(args.out, chart={"labels": [r["piece"] for r in report.rows],
                                   "values": [r["p50_us"] for r in report.rows],
                                   "unit": "median µs per call", "log": True})


if __name__ == "__main__":
    main()
