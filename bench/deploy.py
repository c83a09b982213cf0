"""Decorate-to-first-result time per target: cold, re-run, and cached redeploy.

    python bench/deploy.py            # every target that is available here
    python bench/deploy.py --quick    # one repetition each

For each target (local; docker; lambda through a moto server this script starts;
ray on a local cluster this script starts), the time from ``straightline.deploy(fn,
target=kind)`` to the first result of ``h(1)``:
  cold      a function whose content is new (a fresh salt in its closure), so every
            content-hashed artifact of the function (bundle, Lambda function) is made
            anew; Docker images hold only the dependency set and the runtime, so a
            new function on Docker builds no image once its set's image exists (the
            "images built" column says how many the cold deploy built); the base
            image and installed wheels are whatever this machine has cached
  re-run    the same decoration again while the deployment is live (a notebook
            cell run twice): the live deployment comes back, nothing is rebuilt
  redeploy  undeploy, then decorate the unchanged function again: what the content
            hash lets the target reuse (an image, a bundle) is reused
  edit      decorate an edited function (new content, same settings) while the
            deployment is warm: the running worker, container or actor takes the new
            payload in place (no image build, no restart); Lambda updates its code
ray.init itself is reported on its own line, not inside Ray's numbers.
"""

from __future__ import annotations

import secrets
import time

import common  # this script's folder is on sys.path

import straightline_sdk as straightline


def make_function(salt: str):
    def add_one(x):
        # the salt rides in the closure: a new salt is new content, hence a cold deploy
        return x + 1 if salt else x
    return add_one


def first_result_s(fn, kind: str) -> float:
    t0 = time.perf_counter()
    h = straightline.deploy(fn, target=kind, name=f"bench_deploy_{kind}")
    result = h(1)
    elapsed = time.perf_counter() - t0
    if result != 2:
        raise AssertionError(f"{kind}: h(1) returned {result!r}")
    first_result_s.built = list(getattr(h.deployed_targets.get(kind), "built", []) or [])
    return elapsed


def measure(kind: str, reps: int) -> dict:
    fn = make_function(secrets.token_hex(8))
    cold = first_result_s(fn, kind)
    cold_built = len(first_result_s.built)
    rerun = [first_result_s(fn, kind) for _ in range(reps)]
    edit = [first_result_s(make_function(secrets.token_hex(8)), kind) for _ in range(reps)]
    fn = make_function(secrets.token_hex(8))
    first_result_s(fn, kind)
    redeploy = []
    for _ in range(reps):
        straightline.deploy(fn, target=kind, name=f"bench_deploy_{kind}").undeploy()
        redeploy.append(first_result_s(fn, kind))
    straightline.deploy(fn, target=kind, name=f"bench_deploy_{kind}").undeploy()
    return {"target": kind, "cold_s": cold, "rerun_s": common.median(rerun),
            "redeploy_s": common.median(redeploy), "edit_s": common.median(edit), "reps": reps,
            "cold_built": cold_built}


def main() -> None:
    args = common.parser(__doc__).parse_args()
    reps = 1 if (args.quick or args.dry_run) else 3
    report = common.Report("deploy", "Decorate to first result", vars(args))
    straightline.configure(progress=False)

    def run(kind: str, options: dict | None = None) -> None:
        ok, why = common.target_ready(kind, options)
        if not ok:
            report.skip(kind, why)
            return
        print(f"measuring {kind} ...", flush=True)
        try:
            report.rows.append(measure(kind, reps))
        except Exception as exc:
            report.skip(kind, f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
        finally:
            for dep in straightline.deployments():
                dep.undeploy()

    run("local")
    if args.dry_run:
        for kind in ("docker", "lambda", "ray"):
            report.skip(kind, "dry run")
    else:
        engine, why = common.docker_engine()
        run("docker") if engine else report.skip("docker", why)
        with common.moto_lambda() as (server, why):
            if server is None:
                report.skip("lambda", why)
            else:
                print(f"moto server at {server.url}", flush=True)
                run("lambda")
        try:
            import ray
            t0 = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="straightline")
            report.extra["ray_init_s"] = time.perf_counter() - t0
            address = ray.get_runtime_context().gcs_address
            straightline.configure(options={"ray": {"address": address}})
            run("ray", {"address": address})
            ray.shutdown()
        except ImportError as exc:
            report.skip("ray", f"Ray is not installed: {exc}")
        except Exception as exc:   # a cluster that cannot start here: the other rows stand
            report.skip("ray", f"a local Ray cluster did not start: {str(exc).splitlines()[0][:200]}")

    print()
    print(report.table([("target", "target"), ("cold_s", "cold s"), ("rerun_s", "re-run s"),
                        ("redeploy_s", "redeploy (cached) s"), ("edit_s", "edit a warm deployment s"),
                        ("cold_built", "images built (cold)"), ("reps", "reps")]))
    if "ray_init_s" in report.extra:
        print(f"\nray.init (a local 2-CPU cluster, not counted above): {report.extra['ray_init_s']:.1f} s")
    docker = next((r for r in report.rows if r["target"] == "docker"), None)
    if docker:
        report.goal("edit a warm Docker deployment: first result <= 0.3 s, no image built",
                    docker["edit_s"] <= 0.3, f"{docker['edit_s']:.3f} s")
        report.goal("a new function on Docker builds no image once its dependency set's exists",
                    docker["cold_built"] == 0 or None,
                    f"the cold deploy built {docker['cold_built']} image(s)"
                    + ("" if docker["cold_built"] == 0 else " (the first use of this set here?)"))
    local = next((r for r in report.rows if r["target"] == "local"), None)
    if local:
        for row in report.rows:
            row["cold_x_local"] = common.ratio(row["cold_s"], local["cold_s"])
    labels, values = [], []
    for row in report.rows:
        for key, what in (("cold_s", "cold"), ("redeploy_s", "cached redeploy"), ("rerun_s", "re-run"),
                          ("edit_s", "edit (warm)")):
            labels.append(f"{row['target']} {what}")
            values.append(row[key])
    report.finish(args.out, chart={"labels": labels, "values": values,
                                   "unit": "seconds to first result", "log": True})


if __name__ == "__main__":
    main()
