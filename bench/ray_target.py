"""Ray used directly vs. the SDK's Ray target, measured in the same run.

    python bench/ray_target.py [--calls 2000] [--rounds 5]

Starts a local Ray cluster (2 CPUs) unless RAY_ADDRESS names one, then times a
warm f(x) = x + 1 as: a Ray task round trip, a Ray actor call, the SDK's Ray
target called through the handle (router, telemetry, frames, actor), and the
target's invoke alone (frames and actor, no router). The variants alternate in
rounds so a noisy neighbour hits them all alike. Prints p50 and p99 per variant
and the SDK's ratios to Ray's own calls.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


import ray

import straightline_sdk as straightline
from straightline_sdk.protocol import encode_request


def add_one(x):
    return x + 1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per variant (all rounds)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    t0 = time.perf_counter()
    ray.init(address=os.environ.get("RAY_ADDRESS"), num_cpus=None if os.environ.get("RAY_ADDRESS") else 2,
             include_dashboard=False, log_to_driver=False)
    print(f"ray {ray.__version__}: ray.init {time.perf_counter() - t0:.1f} s, "
          f"cluster {ray.cluster_resources().get('CPU', 0):g} CPUs")
    straightline.configure(options={"ray": {"address": ray.get_runtime_context().gcs_address}},
                           progress=False)

    task = ray.remote(add_one)

    @ray.remote
    class Adder:
        def add_one(self, x):
            return x + 1

    actor = Adder.remote()
    handle = straightline.deploy(add_one, target="ray", name="bench_add_one")
    target = handle.deployed_targets["ray"]
    segments, total = encode_request([((1,), {})])

    variants = {
        "Ray task round trip": lambda i: ray.get(task.remote(i)),
        "Ray actor call": lambda i: ray.get(actor.add_one.remote(i)),
        "SDK Ray target, h(x)": lambda i: handle(i),
        "SDK Ray target, invoke only": lambda i: target.invoke(segments, total, None),
    }
    for call in variants.values():          # warm: workers started, code loaded
        for i in range(50):
            call(i)
    assert handle(41) == 42

    samples: dict[str, list[float]] = {name: [] for name in variants}
    per_round = max(1, args.calls // args.rounds)
    for _ in range(args.rounds):
        for name, call in variants.items():
            times = samples[name]
            for i in range(per_round):
                start = time.perf_counter()
                call(i)
                times.append(time.perf_counter() - start)

    p50 = {name: statistics.median(t) * 1e3 for name, t in samples.items()}
    print(f"\n{per_round * args.rounds} warm calls each, {args.rounds} alternating rounds")
    print(f"{'variant':32} {'p50 ms':>8} {'p99 ms':>8}")
    for name, times in samples.items():
        print(f"{name:32} {p50[name]:8.3f} {percentile(times, 0.99) * 1e3:8.3f}")
    sdk = p50["SDK Ray target, h(x)"]
    print(f"\nSDK h(x) / Ray actor call  = {sdk / p50['Ray actor call']:.2f}x "
          f"(+{sdk - p50['Ray actor call']:.3f} ms)")
    print(f"SDK h(x) / Ray task        = {sdk / p50['Ray task round trip']:.2f}x")
    print(f"router + telemetry (h(x) - invoke) = {sdk - p50['SDK Ray target, invoke only']:.3f} ms")

    handle.undeploy()
    ray.shutdown()


if __name__ == "__main__":
    main()
