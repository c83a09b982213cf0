"""The Docker target next to the local target, on this machine's engine.

    python bench/docker_target.py [--calls 2000] [--quick] [--dry-run]

  warm call       p50 of a trivial f(x) = x + 1 through the handle, docker vs local,
                  measured in alternating blocks in the same run; goal: ratio <= 1.3
  redeploy        an unchanged redeploy in a fresh process (as after a kernel
                  restart, keep=True): time of deploy() there, with the builds and
                  container starts it did; goal: 0 builds, 0 starts, < 0.1 s
  first result    decorate-to-first-result of new code whose dependency set's image
                  exists (images hold no function: 0 builds, one container start);
                  goal < 5 s and no build
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import common  # this script's folder is on sys.path

import straightline_sdk as straightline

_REDEPLOY = textwrap.dedent("""
    import json, time, sys
    import straightline_sdk as straightline

    def bump(x):
        return x + 1

    t0 = time.perf_counter()
    h = straightline.deploy(bump, target="docker", keep=True, name="bench-docker-redeploy")
    seconds = time.perf_counter() - t0
    assert h(1) == 2
    t1 = time.perf_counter()
    again = straightline.deploy(bump, target="docker", keep=True, name="bench-docker-redeploy")
    rerun = time.perf_counter() - t1   # the same cell run again in the same kernel
    assert again is h
    t = h.deployed_targets["docker"]
    print(json.dumps({"seconds": seconds, "rerun": rerun, "built": t.built, "adopted": t.adopted,
                      "container": t.container.id}))
""")


def define(source: str, name: str):
    namespace = {"__name__": "bench_cell"}
    exec(textwrap.dedent(source), namespace)
    return namespace[name]


def warm_calls(report, calls: int) -> None:
    bump = define("def bump(x):\n    return x + 1\n", "bump")
    local = straightline.deploy(bump, target="local", name="bench-local")
    docker = straightline.deploy(bump, target="docker", name="bench-docker")
    samples = {"local": [], "docker": []}
    for h in (local, docker):   # warm both: connections open, first-call costs paid
        for i in range(50):
            h(i)
    block = 100
    for start in range(0, calls, block):   # alternate, so drift of the machine hits both
        for kind, h in (("local", local), ("docker", docker)):
            for i in range(start, min(calls, start + block)):
                t0 = time.perf_counter()
                h(i)
                samples[kind].append(time.perf_counter() - t0)
    p50 = {k: common.median(v) * 1000 for k, v in samples.items()}
    p95 = {k: common.percentile(v, 0.95) * 1000 for k, v in samples.items()}
    for kind in ("local", "docker"):
        report.rows.append({"measure": f"warm call p50, {kind}", "value": p50[kind], "unit": "ms",
                            "detail": f"p95 {p95[kind]:.3f} ms, {len(samples[kind])} calls"})
    r = common.ratio(p50["docker"], p50["local"])
    report.rows.append({"measure": "warm call ratio docker/local", "value": r, "unit": "x",
                        "detail": "same run, alternating blocks of 100"})
    report.goal("warm call through the container <= 1.3x the local target's", r <= 1.3,
                f"{r:.2f}x ({p50['docker']:.3f} ms vs {p50['local']:.3f} ms)")
    print(f"warm p50: local {p50['local']:.3f} ms, docker {p50['docker']:.3f} ms, ratio {r:.2f}",
          flush=True)
    local.undeploy()
    docker.undeploy()


def redeploy(report) -> None:
    folder = tempfile.mkdtemp(prefix="bench-docker-")
    script = os.path.join(folder, "cell.py")
    with open(script, "w") as f:
        f.write(_REDEPLOY)

    def run() -> dict:
        done = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=300,
                              cwd=common.ROOT)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        return json.loads(done.stdout.strip().splitlines()[-1])

    first = run()
    second = run()
    import docker as docker_sdk
    try:
        docker_sdk.from_env().containers.get(first["container"]).remove(force=True)
    except docker_sdk.errors.NotFound:
        pass
    same = second["container"] == first["container"]
    builds, starts = len(second["built"]), 0 if second["adopted"] else 1
    report.rows.append({"measure": "first deploy (fresh process)", "value": first["seconds"] * 1000,
                        "unit": "ms", "detail": f"built {len(first['built'])} image(s)"})
    report.rows.append({"measure": "unchanged redeploy (fresh process)",
                        "value": second["seconds"] * 1000, "unit": "ms",
                        "detail": f"{builds} builds, {starts} starts, same container: {same}"})
    report.rows.append({"measure": "unchanged redeploy (same kernel, cell re-run)",
                        "value": second["rerun"] * 1000, "unit": "ms", "detail": "0 builds, 0 starts"})
    report.goal("unchanged redeploy: 0 builds, 0 starts, < 0.1 s (cell re-run)",
                builds == 0 and starts == 0 and same and second["rerun"] < 0.1,
                f"{second['rerun'] * 1000:.2f} ms, {builds} builds, {starts} starts")
    report.goal("unchanged redeploy: 0 builds, 0 starts, < 0.1 s (after a kernel restart)",
                builds == 0 and starts == 0 and same and second["seconds"] < 0.1,
                f"{second['seconds'] * 1000:.0f} ms (the first import of the target's modules "
                f"in the new process included)")
    print(f"unchanged redeploy: {second['seconds'] * 1000:.0f} ms, {builds} builds, {starts} starts",
          flush=True)


def first_result(report) -> None:
    salt = os.urandom(6).hex()   # new code: no container of it can be adopted
    fresh = define(f"def fresh(x):\n    return x * 3 + 0 * len({salt!r})\n", "fresh")
    t0 = time.perf_counter()
    h = straightline.deploy(fresh, target="docker", name="bench-docker-first")
    value = h(2)
    seconds = time.perf_counter() - t0
    assert value == 6
    built = h.deployed_targets["docker"].built
    report.rows.append({"measure": "decorate to first result (new code)", "value": seconds * 1000,
                        "unit": "ms", "detail": f"built {built}"})
    report.goal("decorate-to-first-result of new code on its dependency set's image < 5 s",
                seconds < 5.0, f"{seconds:.2f} s, built {len(built)} image(s)")
    report.goal("new code builds no image (images hold no function)", not built,
                f"built {built}")
    print(f"decorate to first result: {seconds:.2f} s (built {built})", flush=True)
    h.undeploy()


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--calls", type=int, default=2000, help="warm calls per target")
    args = p.parse_args()
    calls = 20 if args.dry_run else 400 if args.quick else args.calls
    report = common.Report("docker", "Docker target vs local target", vars(args))
    ok, why = common.docker_engine()
    if ok:
        ok, why = common.target_ready("docker")
    if args.dry_run or not ok:
        report.skip("docker", why or "dry run: local target only")
        bump = define("def bump(x):\n    return x + 1\n", "bump")
        with straightline.deploy(bump, target="local", name="bench-local") as h:
            assert [h(i) for i in range(calls)] == [i + 1 for i in range(calls)]
    else:
        first_result(report)   # first: the warm-call step would otherwise cache its dependencies
        warm_calls(report, calls)
        redeploy(report)
    print()
    print(report.table([("measure", "measure"), ("value", "value"), ("unit", "unit"),
                        ("detail", "detail")]))
    report.finish(args.out)


if __name__ == "__main__":
    main()
