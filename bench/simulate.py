"""The what-if simulator checked against real replays, then run at cloud scale.

    python bench/simulate.py --validate   # real replays here (3x) vs the this-machine preset; minutes
    python bench/simulate.py --scale      # the full conv and code traces at 1x, 10x, 100x, cloud preset
    python bench/simulate.py              # both, and the speed check

--validate replays the same trace windows as bench/paper.py (Azure LLM traces, compressed
--compression times, 1 KiB a token) on this machine --repeats times for every placement it
can run here (StraightLine with the default thresholds, all-local, all-docker, all-lambda on
moto, random), and simulates each window with the this-machine preset and bench/paper.py's
client (a 32-thread pool, a 2 s start deadline, a 15 s time limit). The function's runtime
line is measured here first (the classifier at three sizes). Printed for every placement:
predicted against the median measured mean and p95, the error, and the replays' own spread
(max - min over median). Goal: error within 15 % (or within the spread, where that is wider)
for every placement with at least 50 completed requests.

--scale simulates every request of the conv and code traces at 1x, 10x and 100x their rate
under the cloud preset, with every policy (StraightLine with default, calibrated and tuned
thresholds, every static tier, random, the oracle). Goal: StraightLine with tuned thresholds
has a mean response time <= 0.7x the best static placement's at no more than its cost, and no
policy is both faster and cheaper. Where a goal is not met the output says which part fails.

Speed: one hour of the conv trace under every policy, this-machine preset, <= 5 s.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import statistics
import time

import common  # this script's folder is on sys.path
import paper

import straightline_sdk as straightline
from straightline_sdk import whatif as wi_fn
from straightline_sdk.whatif import engine, presets, traffic as traffic_mod
from straightline_sdk.whatif.models import ClientModel, FunctionModel

MB = 1024 * 1024


def measure_function(classify, width: int, source: bytes, reference_bytes: int) -> FunctionModel:
    """The classifier's runtime line here: three sizes, medians of five, least squares."""
    points = []
    for tokens in (100, 1000, 4000):
        data = bytearray(source[:tokens * width * 4])
        samples = []
        for _ in range(5):
            t0 = time.perf_counter()
            classify(data)
            samples.append(time.perf_counter() - t0)
        points.append((len(data) / MB, statistics.median(samples)))
    mx = sum(x for x, _ in points) / 3
    my = sum(y for _, y in points) / 3
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    ref = reference_bytes / MB
    when = time.strftime("%Y-%m-%d")
    return FunctionModel(runtime_s=max(0.0, my + slope * (ref - mx)), reference_bytes=reference_bytes,
                         runtime_per_mb_s=max(0.0, slope), result_bytes=64,
                         sources={"runtime_s": f"measured here by bench/simulate.py on {when}",
                                  "runtime_per_mb_s": f"measured here by bench/simulate.py on {when} "
                                                      f"(100, 1000, 4000 tokens)"})


def measure_line(h, source: bytes, width: int, tokens=(100, 1000, 4000), repeats: int = 5):
    """A deployed target's service line with this very function: (seconds at 0 MB, seconds
    per MB), from warm sequential calls at three sizes (medians)."""
    points = []
    for n in tokens:
        data = bytearray(source[:n * width * 4])
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            h(data)
            samples.append(time.perf_counter() - t0)
        points.append((len(data) / MB, statistics.median(samples)))
    if len(points) == 1:
        return points[0][1], 0.0
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    slope = max(0.0, sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points))
    return max(0.0, my - slope * mx), slope


def measured_setup(handles: dict, source: bytes, width: int, client, reference_bytes: int,
                   previous: dict):
    """The this-machine preset with each tier's service line measured now through the
    deployed targets (the conditions of the replays that follow), and the function."""
    base = presets.this_machine()
    when = time.strftime("%Y-%m-%d %H:%M")
    how = f"measured by bench/simulate.py on {when}: warm calls of the classifier at 0.1, 1 and 4 MB"
    l0, l1 = measure_line(handles["all-local"], source, width)
    ref = reference_bytes / MB
    function = FunctionModel(runtime_s=l0 + l1 * ref, reference_bytes=reference_bytes, runtime_per_mb_s=l1,
                             result_bytes=64, sources={"runtime_s": how + " through the local worker "
                                                       "(transport included)", "runtime_per_mb_s": how})
    tiers = {"local": base.tiers["local"].override(overhead_s=0.0, per_mb_s=0.0)}
    if "all-docker" in handles:
        d0, d1 = measure_line(handles["all-docker"], source, width)
        speed = d1 / l1 if l1 else 1.0
        tiers["docker"] = base.tiers["docker"].override(speed=speed, overhead_s=max(0.0, d0 - l0 * speed),
                                                        per_mb_s=0.0)
    if "all-lambda" in handles:
        try:
            cold, _ = measure_line(handles["all-lambda"], source, width, tokens=(1,), repeats=3)
        except straightline.StraightLineError as exc:   # moto or its Docker engine hiccuped
            cold = previous.get("lambda_cold_s", base.tiers["lambda"].cold_start_s)
            print(f"  moto's invoke could not be measured ({str(exc).splitlines()[0][:120]}); "
                  f"keeping {cold:.2f} s", flush=True)
        previous["lambda_cold_s"] = cold
        tiers["lambda"] = base.tiers["lambda"].override(cold_start_s=cold, oversize_fail_s=cold)
    for model in tiers.values():
        for name, (_, source_text) in model.params().items():
            if source_text == "set by you":
                model.sources[name] = how
    extra = []
    if "docker" in tiers:
        extra.append(f"docker speed {tiers['docker'].speed:.2f}x, +{tiers['docker'].overhead_s * 1000:.2f} ms")
    if "lambda" in tiers:
        extra.append(f"moto invoke {tiers['lambda'].cold_start_s * 1000:.0f} ms")
    print(f"  measured: local {function.runtime_s * 1000:.1f} ms at 1 MB + {l1 * 1000:.1f} ms/MB; "
          + "; ".join(extra), flush=True)
    return presets.Setup("this-machine", tiers, client, base.description), function


def as_traffic(name: str, requests, width: int) -> traffic_mod.Traffic:
    # r_d is the serialized request: the rows plus the frame's few bytes
    return traffic_mod.Traffic(tuple(t for t, _ in requests),
                               tuple(tokens * width * 4 + 96 for _, tokens in requests), name)


# -- validation ---------------------------------------------------------------------------

def validate(args, report) -> None:
    replay_s = args.replay_s or (0.5 if args.dry_run else 6.0)
    repeats = 1 if args.dry_run else args.repeats
    model = paper.fit_model(args.width)
    classify = paper.make_classifier(model, args.width)
    paper.check_classifier(classify, model, args.width)
    windows = {}
    for name in args.traces.split(","):
        windows[name] = paper.window(paper.load_trace(name), args.offset_s, replay_s * args.compression,
                                     args.compression)
    import numpy
    largest = max((t for reqs in windows.values() for _, t in reqs), default=1)
    source = numpy.random.default_rng(2).normal(0, 2, max(largest, 4000) * args.width).astype(numpy.float32).tobytes()
    sample = (bytearray(source[:1024 * args.width * 4]),)

    measured: dict = {}
    predicted: dict = {}
    last_measured: dict = {}

    def policy_of(placement: str):
        if placement == "straightline":
            return engine.straightline(straightline.settings().thresholds)
        if placement == "random":
            return engine.random_policy()
        return engine.static(placement[4:])
    lambda_env = contextlib.nullcontext((None, "dry run")) if args.dry_run else common.moto_lambda()
    with lambda_env as (moto, moto_why):
        available = ["local"]
        if not args.dry_run:
            ok, why = common.target_ready("docker")
            available.append("docker") if ok else report.skip("all-docker", why)
            if moto is not None and common.target_ready("lambda")[0]:
                available.append("lambda")
            else:
                report.skip("all-lambda", moto_why or "lambda target not ready")
        resources = straightline.Resources(timeout_s=args.timeout)
        handles = {}
        try:
            for kind in available:
                h = straightline.deploy(classify, target=kind, name=f"simulate_{kind}", resources=resources)
                handles[f"all-{kind}"] = h
                h(bytearray(source[:args.width * 4]))
            handles["straightline"] = straightline.deploy(
                classify, sample=sample, targets=available, prewarm=True, name="simulate_straightline",
                resources=resources)
            statics = [handles[f"all-{k}"] for k in available]
            placements = ["straightline"] + [f"all-{k}" for k in available] + \
                (["random"] if len(statics) > 1 else [])
            client = ClientModel(max_in_flight=args.pool, start_deadline_s=args.start_deadline,
                                 timeout_s=args.timeout,
                                 sources={"max_in_flight": "bench/paper.py's replay pool",
                                          "start_deadline_s": "bench/paper.py", "timeout_s": "bench/paper.py"})
            for trace_name, requests in windows.items():
                tr = as_traffic(trace_name, requests, args.width)
                for placement in placements:
                    for rep in range(repeats):
                        # the model's inputs measured just before the replay it predicts: the
                        # machine's other load moves them from minute to minute
                        setup, function = measured_setup(handles, source, args.width, client,
                                                         1024 * args.width * 4, last_measured)
                        report.extra.setdefault("models", []).append({
                            "trace": trace_name, "placement": placement, "run": rep,
                            "function": {k: v for k, (v, _) in function.params().items()},
                            **{name: {k: v for k, (v, _) in m.params().items()}
                               for name, m in setup.tiers.items()}})
                        if placement == "random":
                            rng = random.Random(args.seed + rep)
                            picks = [rng.choice(statics) for _ in requests]
                            choose = lambda i, picks=picks: (picks[i].pinned, picks[i])  # noqa: E731
                        else:
                            h = handles[placement]
                            choose = lambda i, h=h, label=placement: (label, h)  # noqa: E731
                        print(f"replaying {trace_name} on {placement} ({len(requests)} requests), "
                              f"run {rep + 1}/{repeats} ...", flush=True)
                        results = paper.replay(requests, choose, width=args.width, pool_size=args.pool,
                                               start_deadline=args.start_deadline, timeout=args.timeout,
                                               source=source)
                        row = paper.summarize(placement, trace_name, results, {})
                        measured.setdefault((trace_name, placement), []).append(row)
                        predicted.setdefault((trace_name, placement), []).append(engine.simulate(
                            tr, setup, function, policy_of(placement), seed=args.seed + rep,
                            rate_window_s=straightline.settings().rate_window_s))
        finally:
            for h in handles.values():
                h.undeploy()

    for trace_name, requests in windows.items():
        for placement in [p for p in placements if (trace_name, p) in measured]:
            sims = predicted[(trace_name, placement)]
            sim_means = [r.mean_s * 1000 for r in sims if r.mean_s == r.mean_s]
            sim_p95s = [r.p95_s * 1000 for r in sims if r.p95_s == r.p95_s]
            runs = measured[(trace_name, placement)]
            means = [r["mean_ms"] for r in runs if r["mean_ms"] is not None]
            p95s = [r["p95_ms"] for r in runs if r["p95_ms"] == r["p95_ms"] and r["p95_ms"] is not None]
            completed = statistics.median([r["requests"] * (1 - r["failure_rate"]) for r in runs])
            row = {"trace": trace_name, "placement": placement, "requests": len(requests),
                   "completed": completed,
                   "measured_mean_ms": statistics.median(means) if means else math.nan,
                   "predicted_mean_ms": statistics.median(sim_means) if sim_means else math.nan,
                   "measured_p95_ms": statistics.median(p95s) if p95s else math.nan,
                   "predicted_p95_ms": statistics.median(sim_p95s) if sim_p95s else math.nan,
                   "measured_failed": statistics.median([r["failure_rate"] for r in runs]),
                   "predicted_failed": statistics.median([r.failed / r.requests for r in sims]),
                   "runs": len(runs)}
            for what, values in (("mean", means), ("p95", p95s)):
                m, p = row[f"measured_{what}_ms"], row[f"predicted_{what}_ms"]
                row[f"{what}_error"] = abs(p - m) / m if m and m == m else math.nan
                row[f"{what}_spread"] = (max(values) - min(values)) / m if len(values) > 1 and m else math.nan
            report.rows.append(row)
            if completed >= 50:
                ok = all(row[f"{w}_error"] <= max(0.15, row[f"{w}_spread"] if row[f"{w}_spread"] == row[f"{w}_spread"] else 0)
                         for w in ("mean", "p95"))
                report.goal(f"validate {trace_name} {placement}: error <= 15 % or within the spread", ok,
                            f"mean {common.fmt(row['predicted_mean_ms'])} vs {common.fmt(row['measured_mean_ms'])} ms "
                            f"(error {row['mean_error']:.0%}, spread {row['mean_spread']:.0%}); p95 "
                            f"{common.fmt(row['predicted_p95_ms'])} vs {common.fmt(row['measured_p95_ms'])} ms "
                            f"(error {row['p95_error']:.0%}, spread {row['p95_spread']:.0%})")
    print()
    print(report.table([("trace", "trace"), ("placement", "placement"), ("completed", "done"),
                        ("measured_mean_ms", "mean real"), ("predicted_mean_ms", "mean sim"),
                        ("mean_error", "err"), ("mean_spread", "spread"),
                        ("measured_p95_ms", "p95 real"), ("predicted_p95_ms", "p95 sim"),
                        ("p95_error", "err"), ("p95_spread", "spread"),
                        ("measured_failed", "failed real"), ("predicted_failed", "failed sim")]))


# the classifier for scale and speed: measured on the idle machine (docs/benchmarks.md,
# bench/paper.py's calibration, 2026-11-29: 19.6 ms a call at ~1 MB), its runtime in
# proportion to the request (it mean-pools the rows), so fixed numbers rather than a
# measurement on a busy machine
SCALE_FUNCTION = FunctionModel(
    runtime_s=0.0196, reference_bytes=MB, runtime_per_mb_s=0.0186, result_bytes=64,
    sources={"runtime_s": "measured on the idle machine: bench/paper.py's calibration, 2026-11-29",
             "runtime_per_mb_s": "the classifier mean-pools the rows: runtime in proportion to size "
                                 "(measured 3.5, 21 and 100 ms at 0.1, 1 and 3.9 MB)"})


# -- scale --------------------------------------------------------------------------------

def scale(args, report, function: FunctionModel) -> None:
    factors = [float(f) for f in args.factors.split(",")]
    rows = []
    for name in args.traces.split(","):
        base = traffic_mod.from_csv(os.path.join(paper.TRACES, f"{name}.csv"), bytes_per_token=args.width * 4)
        if args.dry_run:
            base = base.window(0, 60)
        for factor in factors:
            tr = base.scaled(factor) if factor != 1 else base
            t0 = time.perf_counter()
            setup = presets.cloud()
            if args.uplink_mb_s is not None:
                setup = setup.override("network", uplink_mb_s=args.uplink_mb_s or None)
            result = wi_fn(None, tr, preset=setup, function=function, seed=args.seed)
            took = time.perf_counter() - t0
            print(f"\n{name} x{factor:g}: {len(tr)} requests, simulated in {took:.1f} s")
            print(result.table(), flush=True)
            if result.tuned:
                print(f"tuned: {result.tuned.explanation}")
            for r in result.results:
                d = r.to_dict()
                d.update(trace=name, factor=factor, failed=r.failed,
                         failures=", ".join(f"{k} {v}" for k, v in r.failures.items()))
                rows.append(d)
            statics = [r for r in result.results if r.policy.kind == "static" and r.failed == 0]
            tuned = result["straightline-tuned"]
            label = f"{name} x{factor:g}"
            if not statics:
                report.goal(f"{label}: tuned mean <= 0.7x best static at no more cost", None,
                            "no static placement completes every request")
                continue
            best = min(statics, key=lambda r: r.mean_s)
            ratio = tuned.mean_s / best.mean_s
            cheaper = tuned.usd_per_million <= best.usd_per_million * 1.0001
            report.goal(f"{label}: straightline-tuned mean <= 0.7x best static ({best.label}) at no more cost",
                        ratio <= 0.7 and cheaper and tuned.failed == 0,
                        f"{tuned.mean_s * 1000:.3g} ms vs {best.mean_s * 1000:.3g} ms = {ratio:.2f}x"
                        f"{'' if ratio <= 0.7 else ' (speed part fails)'}; ${tuned.usd_per_million:.3g} "
                        f"vs ${best.usd_per_million:.3g} per million"
                        f"{'' if cheaper else ' (cost part fails)'}"
                        + (f"; {tuned.failed} failed" if tuned.failed else ""))
            # why, in words, where it can be said from the numbers
            why = []
            if best.usd_per_million == 0:
                why.append(f"the best static placement ({best.label}) costs nothing, so any offload costs more")
            oracle_r = next((r for r in result.results if r.policy.lower_bound), None)
            if oracle_r is not None and tuned.mean_s > 1.3 * oracle_r.mean_s and tuned.mean_s > best.mean_s:
                why.append(f"StraightLine falls through to the next tier whenever the local server is "
                           f"saturated, even where waiting for it is faster (the oracle: "
                           f"{oracle_r.mean_s * 1000:.3g} ms)")
            uplink = setup.network.uplink_mb_s
            if uplink and tr.duration_s:
                need = sum(tr.sizes) / MB / tr.duration_s
                if need > 0.5 * uplink:
                    why.append(f"the traffic carries {need:.3g} MB/s on average; the uplink to the cloud "
                               f"tiers {uplink:g} MB/s")
            if why and not (ratio <= 0.7 and cheaper):
                report.notes.append(f"{label}: " + "; ".join(why))
            dominating = [r.label for r in result.results if not r.policy.lower_bound and r is not tuned
                          and r.failed <= tuned.failed and r.mean_s < tuned.mean_s * 0.99
                          and r.usd_per_million < tuned.usd_per_million * 0.99]
            report.goal(f"{label}: no policy both faster and cheaper than straightline-tuned",
                        not dominating, ", ".join(dominating) or "none")
    report.extra["scale"] = rows


def speed(args, report, function: FunctionModel) -> None:
    conv = traffic_mod.from_csv(os.path.join(paper.TRACES, "conv.csv"), bytes_per_token=args.width * 4)
    hour = conv.window(0, 60 if args.dry_run else 3600)
    t0, c0 = time.perf_counter(), time.process_time()
    result = wi_fn(None, hour, preset="this-machine", function=function, seed=args.seed)
    took, cpu = time.perf_counter() - t0, time.process_time() - c0
    load = os.getloadavg()[0]
    report.extra["speed"] = {"requests": len(hour), "policies": len(result.results), "seconds": took,
                             "cpu_seconds": cpu, "loadavg": load}
    # on a shared machine the wall time measures the other processes too: the goal is read on
    # the CPU time this process got, and the wall time is printed beside it
    report.goal("one hour of the conv trace under every policy in <= 5 s", cpu <= 5.0,
                f"{cpu:.2f} s of CPU ({took:.2f} s wall at load average {load:.1f} on "
                f"{os.cpu_count()} cores) for {len(hour)} requests x {len(result.results)} policies")


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--validate", action="store_true")
    p.add_argument("--scale", action="store_true")
    p.add_argument("--traces", default="conv,code")
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--compression", type=float, default=4.0)
    p.add_argument("--replay-s", type=float, default=None, help="replayed seconds per window (default 6)")
    p.add_argument("--offset-s", type=float, default=300.0,
                   help="where the windows start in the traces (300 s: both traces busy there)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--pool", type=int, default=32)
    p.add_argument("--start-deadline", type=float, default=2.0)
    p.add_argument("--timeout", type=float, default=15.0)
    p.add_argument("--factors", default="1,10,100")
    p.add_argument("--uplink-mb-s", type=float, default=None,
                   help="--scale: the laptop's uplink in MB/s (default: the cloud preset's 12.5; 0: no limit)")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    both = not args.validate and not args.scale
    report = common.Report("simulate", "What-if simulator: validation here, and the traces at cloud scale",
                           vars(args))
    straightline.configure(progress=False)
    if args.validate or both:
        validate(args, report)
    if args.scale or both:
        scale(args, report, SCALE_FUNCTION)
        speed(args, report, SCALE_FUNCTION)
    chart_rows = [r for r in report.rows if r.get("predicted_mean_ms")]
    report.finish(args.out, chart={"labels": [f"{r['trace']} {r['placement']} {k}" for r in chart_rows
                                              for k in ("real", "sim")],
                                   "values": [v for r in chart_rows
                                              for v in (r["measured_mean_ms"], r["predicted_mean_ms"])],
                                   "unit": "mean response time, ms: real replay (median) vs simulated",
                                   "log": True} if chart_rows else None)


if __name__ == "__main__":
    main()
