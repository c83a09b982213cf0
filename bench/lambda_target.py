"""Deploy and invoke times of the AWS Lambda target, measured against moto (NOT real AWS).

    python bench/lambda_target.py [--calls 10] [--quick] [--dry-run]

Starts moto in server mode on 127.0.0.1 (its Lambda runs every invocation in a
fresh Docker container of the stand-in runtime image; scripts/setup-docker.sh
builds it) and times, for a trivial f(x) = x + 1:

  bundle       building the zip bundle (runtime, cloudpickle, payload)
  create       the first deploy: CreateFunction and waiting until Active
  unchanged    a redeploy of the same code (keep=True, as after a notebook restart):
               GetFunction and tags only, nothing uploaded
  update       a redeploy of edited code: UpdateFunctionCode and waiting
  invoke       calls through the handle (router, frames, base64 event, Invoke)

moto starts a container per invoke, so every call is a cold start (~1 s here);
on real AWS a warm call costs tens of milliseconds and a cold start depends on
the bundle. These numbers describe this machine with moto, not AWS.
"""

from __future__ import annotations

import textwrap
import time

import common  # this script's folder is on sys.path

import straightline_sdk as straightline
from straightline_sdk.packaging import package_function
from straightline_sdk.targets.aws_lambda import bundle as lambda_zip


def define(source: str):
    namespace = {"__name__": "bench_cell"}
    exec(textwrap.dedent(source), namespace)
    return namespace["bump"]


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--calls", type=int, default=10, help="invokes to time (each a cold start on moto)")
    args = p.parse_args()
    calls = 3 if args.quick or args.dry_run else args.calls
    report = common.Report("lambda", "AWS Lambda target against moto (not real AWS)", vars(args))
    v1 = define("def bump(x):\n    return x + 1\n")
    v2 = define("def bump(x):\n    return x + 2\n")

    package = package_function(v1, "bump")
    rounds = 3 if args.dry_run else 10
    times = []
    for _ in range(rounds):
        bundle, dt = timed(lambda: lambda_zip.build_bundle(lambda_zip.plan_bundle(package), "bench"))
        times.append(dt)
    report.rows.append({"step": "bundle (build the zip)", "ms": common.median(times) * 1000,
                        "detail": f"{len(bundle.data) / 1024:.0f} KB zipped, "
                                  f"{bundle.unzipped_bytes / 1024:.0f} KB unzipped, {bundle.files} files"})
    print(f"bundle: {report.rows[-1]['ms']:.1f} ms ({report.rows[-1]['detail']})", flush=True)

    if args.dry_run:
        report.skip("moto", "dry run: the bundle only")
        report.notes.append("dry run: only the bundle was built; no moto, no deploy, no invoke")
    else:
        with common.moto_lambda() as (server, why):
            if server is None:
                report.skip("moto", why)
            else:
                measure(report, v1, v2, calls)
    print()
    print(report.table([("step", "step (against moto)"), ("ms", "ms"), ("detail", "detail")]))
    report.notes.append("moto runs each invocation in a new container: every call is a cold start. "
                        "Real AWS differs (warm calls ~tens of ms); measure there with -m real_aws.")
    report.finish(args.out, chart={"labels": [r["step"] for r in report.rows],
                                   "values": [r["ms"] for r in report.rows], "unit": "ms (moto)",
                                   "log": True})


def measure(report, v1, v2, calls: int) -> None:
    h, dt = timed(lambda: straightline.deploy(v1, name="bench-lambda", target="lambda", keep=True))
    target = h.deployed_targets["lambda"]
    report.rows.append({"step": "create (first deploy)", "ms": dt * 1000,
                        "detail": f"uploaded={target.describe()['uploaded']}"})
    print(f"create: {dt * 1000:.0f} ms", flush=True)
    h.undeploy()  # keep=True: the function stays
    h, dt = timed(lambda: straightline.deploy(v1, name="bench-lambda", target="lambda", keep=True))
    report.rows.append({"step": "unchanged redeploy", "ms": dt * 1000,
                        "detail": f"uploaded={h.deployed_targets['lambda'].describe()['uploaded']}"})
    print(f"unchanged redeploy: {dt * 1000:.0f} ms", flush=True)
    h.undeploy()
    h, dt = timed(lambda: straightline.deploy(v2, name="bench-lambda", target="lambda", keep=False))
    target = h.deployed_targets["lambda"]
    report.rows.append({"step": "update (edited code)", "ms": dt * 1000,
                        "detail": f"uploaded={target.describe()['uploaded']}"})
    print(f"update: {dt * 1000:.0f} ms", flush=True)
    latencies = []
    for i in range(calls):
        value, dt = timed(lambda: h(i))
        assert value == i + 2, value
        latencies.append(dt)
    d = target.describe()
    report.rows.append({"step": f"invoke (p50 of {calls})", "ms": common.median(latencies) * 1000,
                        "detail": f"p95 {common.percentile(latencies, 0.95) * 1000:.0f} ms, "
                                  f"cold starts {d['cold_starts']}/{d['calls']}"})
    print(f"invoke: p50 {report.rows[-1]['ms']:.0f} ms ({report.rows[-1]['detail']})", flush=True)
    h.undeploy()


if __name__ == "__main__":
    main()
