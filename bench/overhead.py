"""Warm per-call overhead and map throughput: the SDK's targets next to Ray, Lithops
and the raw loopback floor, all measured in the same run.

    python bench/overhead.py            # a few minutes (Lithops' map is the slow part)
    python bench/overhead.py --quick    # about a minute

f(x) = x + 1, warm. Per variant: p50 and p99 of a trivial call, the throughput of a
1,000-item map (median of several maps), and p50 of a call on a 1 MB and a 10 MB float64 numpy array (the
result is as large). Variants:
  floor: http.client  stdlib ThreadingHTTPServer (TCP_NODELAY) in its own process,
                       called through http.client over a kept-alive connection: the
                       raw loopback floor as issue 2 defines it
  floor: raw socket    the same server called over the SDK's own raw-socket client
                       (WorkerClient): a stricter floor; both floors' "map" is the
                       items called one after the other
  SDK local / docker / ray   h(x), h.map(xs) through the handle (routing, telemetry, frames)
  Ray task, Ray actor  ray.get(f.remote(x)); map: ray.get([... for x in xs])
  Lithops localhost    FunctionExecutor(backend="localhost"): call_async + get_result;
                       map: fexec.map over the same items (~5 items/s here: minutes)
Trivial calls alternate between variants in rounds, so a noisy neighbour hits all alike.
Goals (issues 2 and 8): local call <= 0.2x a Ray task and <= 1.5x the raw floor
(printed against both floors); 10 MB <= 1.0x a Ray task; map throughput >= 3x Ray tasks.

Then (issue 12, bench/workload_maps.py, --no-workload-maps leaves it out): a CPU-bound
map of ~20 ms pure-Python items and an I/O-bound map of 50 ms sleeps on the local,
Docker and Ray targets next to a plain loop, multiprocessing.Pool,
ThreadPoolExecutor(32), joblib (loky) and Ray tasks. Goals: CPU-bound >= 0.9x
multiprocessing.Pool (local) and >= 0.9x Ray tasks (Ray); I/O-bound >= 0.9x the
32-thread pool (local).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

import common  # this script's folder is on sys.path
import workload_maps

import numpy

import straightline_sdk as straightline
from straightline_sdk.targets.http import WorkerClient

_HERE = os.path.dirname(os.path.abspath(__file__))
MB = 1024 * 1024


def add_one(x):
    return x + 1


def start_floor_server() -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, os.path.join(_HERE, "loopback_floor.py")],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        raise RuntimeError(f"the floor server did not start: {line!r}")
    return proc, int(line.split()[1])


class Floor:
    """The stdlib server called over the SDK's own raw-socket client: no auth, no
    frames, no routing; the strictest floor."""
    name = "floor: raw socket"

    def __init__(self):
        self.proc, port = start_floor_server()
        self.client = WorkerClient("127.0.0.1", port, "unused", target="floor", authenticate=False)

    def post(self, body) -> bytes:
        return self.client.request("POST", "/", [body], len(memoryview(body).cast("B"))).body

    def call(self, x):
        if isinstance(x, numpy.ndarray):
            return numpy.frombuffer(self.post(x), dtype=numpy.float64)
        return int(self.post(str(x).encode()))

    def map(self, xs):
        return [self.call(x) for x in xs]

    def close(self):
        self.client.close()
        self.proc.terminate()
        self.proc.wait(10)


class HttpClientFloor(Floor):
    """The same stdlib server called through http.client with a kept-alive
    connection: the raw loopback floor as issue 2 defines it."""
    name = "floor: http.client"

    def __init__(self):
        self.proc, port = start_floor_server()
        self.client = http.client.HTTPConnection("127.0.0.1", port)
        self.client.connect()
        self.client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def post(self, body) -> bytes:
        self.client.request("POST", "/", body=memoryview(body).cast("B"))
        return self.client.getresponse().read()


class Sdk:
    def __init__(self, kind: str):
        self.name = f"SDK {kind} target"
        # numpy: the payload rows send arrays, which the far side must be able to unpickle
        self.h = straightline.deploy(add_one, target=kind, name=f"bench_overhead_{kind}",
                                     requirements=["numpy"])
        self.call = self.h
        self.map = self.h.map

    def close(self):
        self.h.undeploy()


class RayTask:
    name = "Ray task"

    def __init__(self, ray):
        self.ray = ray
        self.fn = ray.remote(add_one)

    def call(self, x):
        return self.ray.get(self.fn.remote(x))

    def map(self, xs):
        return self.ray.get([self.fn.remote(x) for x in xs])

    def close(self):
        pass


class RayActor(RayTask):
    name = "Ray actor"

    def __init__(self, ray):
        self.ray = ray

        @ray.remote
        class Adder:
            def add_one(self, x):
                return x + 1

        self.actor = Adder.remote()
        self.fn = self.actor.add_one

    def close(self):
        self.ray.kill(self.actor)


class Lithops:
    """Lithops' localhost executor, measured in a child process with a hard time limit:
    its localhost backend hangs here now and then (a job whose runner finished but
    whose result the executor never sees), and a hang must cost the phases not yet
    measured, not the whole run. The child prints each phase's figures as it ends
    them (calls, then the map, then the payloads), so what was measured survives."""

    name = "Lithops localhost"

    def __init__(self, calls: int, map_items: int, payload_reps: dict, limit_s: float):
        import lithops  # noqa: F401  (ImportError: the column is skipped with the reason)
        self.plan = {"calls": calls, "map_items": map_items,
                     "payload_reps": {str(k): v for k, v in payload_reps.items()}}
        self.limit_s = limit_s

    def measure(self) -> dict:
        proc = subprocess.Popen([sys.executable, __file__, "--lithops-child", json.dumps(self.plan)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=self.limit_s)
            hung = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            hung = True
        got: dict = {"calls": [], "payload": {}, "payload_errors": {}}
        phase = "start-up"
        for line in out.splitlines():
            if line.startswith("{"):
                item = json.loads(line)
                phase = item.pop("phase", phase)
                for key, value in item.items():
                    if isinstance(value, dict):
                        got[key].update(value)
                    else:
                        got[key] = value
        if hung:
            got["incomplete"] = (f"its localhost executor hung during the {phase} phase and was "
                                 f"stopped after {self.limit_s:.0f} s (a job that finished in its "
                                 f"runner log was never reported done)")
        elif proc.returncode != 0:
            last = [line for line in err.splitlines() if line.strip()][-1:] or ["no output"]
            got["incomplete"] = f"the child failed in the {phase} phase (exit {proc.returncode}): {last[0][:300]}"
        if not got["calls"]:
            raise RuntimeError(f"nothing measured: {got.get('incomplete', 'no output')}")
        return got


def lithops_child(plan: dict) -> None:
    import lithops

    def executor():
        return lithops.FunctionExecutor(backend="localhost", storage="localhost", log_level=False)

    state = {"fexec": executor(), "hung": 0, "jobs": 0}

    def run(submit, limit_s: float):
        """One job's results. A job that hangs (its runner finished, the executor never
        hears of it) is given up after ``limit_s``, counted, and run once more on a
        fresh executor; the caller times only the attempt that answered."""
        for attempt in (1, 2):
            fexec = state["fexec"]
            state["jobs"] += 1
            try:
                return fexec.get_result(fs=submit(fexec), show_progressbar=False, timeout=limit_s)
            except TimeoutError:
                state["hung"] += 1
                state["fexec"] = executor()
                if attempt == 2:
                    raise

    def call(x):
        return run(lambda fexec: fexec.call_async(add_one, x), limit_s=10)

    def timed_call(x) -> float:
        while True:
            hung = state["hung"]
            t0 = time.perf_counter()
            result = call(x)
            elapsed = time.perf_counter() - t0
            if state["hung"] == hung:   # a retried call's time includes the hang: measure again
                check(result, x)
                return elapsed

    def emit(**figures) -> None:
        print(json.dumps({**figures, "hung": state["hung"], "jobs": state["jobs"]}), flush=True)

    emit(phase="calls")
    check(call(1), 1)
    check(call(2), 2)
    emit(calls=[timed_call(i) for i in range(plan["calls"])], phase="map")
    xs = list(range(plan["map_items"]))
    while True:
        hung = state["hung"]
        t0 = time.perf_counter()
        results = run(lambda fexec: fexec.map(add_one, xs), limit_s=max(60.0, 0.6 * len(xs)))
        map_s = time.perf_counter() - t0
        if state["hung"] == hung:
            break
    if list(results) != [x + 1 for x in xs]:
        raise AssertionError("Lithops map results wrong or out of order")
    emit(map_s=map_s)
    for size, reps in plan["payload_reps"].items():
        emit(phase=f"{int(size) // MB} MB payload")
        x = numpy.arange(int(size) // 8, dtype=numpy.float64)
        try:   # Lithops refuses call data over 4 MiB
            check(call(x), x)
        except Exception as exc:
            emit(payload_errors={size: f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"})
            continue
        emit(payload={size: [timed_call(x) for _ in range(reps)]})
    state["fexec"].clean()


def check(result, x) -> None:
    if isinstance(x, numpy.ndarray):
        if result.shape != x.shape or result[0] != x[0] + 1:
            raise AssertionError("wrong result for an array")
    elif result != x + 1:
        raise AssertionError(f"wrong result {result!r} for {x!r}")


def timed(fn, x) -> float:
    t0 = time.perf_counter()
    fn(x)
    return time.perf_counter() - t0


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("--no-lithops", action="store_true", help="leave Lithops out (slow)")
    p.add_argument("--lithops-child", help=argparse.SUPPRESS)
    p.add_argument("--no-workload-maps", action="store_true",
                   help="leave out the CPU-bound and I/O-bound maps (bench/workload_maps.py)")
    args = p.parse_args()
    if args.lithops_child:
        return lithops_child(json.loads(args.lithops_child))
    calls, rounds, map_items, map_reps, lithops_calls, lithops_map = 1000, 5, 1000, 5, 10, 1000
    payload_reps = {1 * MB: 60, 10 * MB: 20}
    if args.quick:
        calls, rounds, map_reps, lithops_calls, lithops_map = 300, 3, 3, 3, 100
        payload_reps = {1 * MB: 20, 10 * MB: 8}
    if args.dry_run:
        calls, rounds, map_items, map_reps = 20, 1, 50, 1
        payload_reps = {1 * MB: 2, 10 * MB: 2}
    report = common.Report("overhead", "Warm call overhead, f(x) = x + 1", vars(args))
    straightline.configure(progress=False)

    variants = {}

    def add(column, make):
        print(f"setting up {column} ...", flush=True)
        try:
            v = make()
            check(v.call(1), 1)
            for i in range(20):   # warm: workers started, code loaded, connections open
                v.call(i)
            variants[column] = v
        except Exception as exc:  # a column that cannot run is skipped with the reason
            report.skip(column, f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")

    add("floor: http.client", HttpClientFloor)
    add("floor: raw socket", Floor)
    add("SDK local", lambda: Sdk("local"))
    ray = None
    if args.dry_run:
        for column in ("SDK docker", "SDK ray", "Ray task", "Ray actor", "Lithops localhost"):
            report.skip(column, "dry run")
    else:
        ok, why = common.target_ready("docker")
        add("SDK docker", lambda: Sdk("docker")) if ok else report.skip("SDK docker", why)
        try:
            import ray
            t0 = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                     namespace="straightline")
            print(f"  ray {ray.__version__}: ray.init {time.perf_counter() - t0:.1f} s", flush=True)
            straightline.configure(options={"ray": {"address": ray.get_runtime_context().gcs_address}})
        except Exception as exc:
            ray = None
            for column in ("SDK ray", "Ray task", "Ray actor"):
                report.skip(column, f"Ray does not start here: {exc}")
        if ray is not None:
            ok, why = common.target_ready("ray", {"address": ray.get_runtime_context().gcs_address})
            add("SDK ray", lambda: Sdk("ray")) if ok else report.skip("SDK ray", why)
            add("Ray task", lambda: RayTask(ray))
            add("Ray actor", lambda: RayActor(ray))
    try:
        # -- maps of real work: CPU-bound and I/O-bound items (issue 12) ----------------
        if not args.no_workload_maps:
            workload_maps.run(report, quick=args.quick, dry_run=args.dry_run, ray=ray)
        # -- trivial calls, alternating rounds ----------------------------------------
        samples = {c: [] for c in variants}
        print(f"\ntrivial calls: {calls} per variant in {rounds} rounds", flush=True)
        for r in range(rounds):
            for column, v in variants.items():
                samples[column] += [timed(v.call, i) for i in range(calls // rounds)]
        # -- payloads ----------------------------------------------------------------
        payload = {}
        for size, reps in payload_reps.items():
            x = numpy.arange(size // 8, dtype=numpy.float64)
            for column, v in variants.items():
                try:
                    check(v.call(x), x)
                    payload[(column, size)] = [timed(v.call, x) for _ in range(reps)]
                except Exception as exc:
                    report.notes.append(f"{column}, {size // MB} MB: {type(exc).__name__}: "
                                        f"{str(exc).splitlines()[0][:200]}")
        # -- maps --------------------------------------------------------------------
        throughput, mapped = {}, {}
        for column, v in variants.items():
            n = map_items
            xs = list(range(n))
            times = []
            for _ in range(map_reps):
                t0 = time.perf_counter()
                out = v.map(xs)
                times.append(time.perf_counter() - t0)
                if list(out) != [x + 1 for x in xs]:
                    raise AssertionError(f"{column}: map results wrong or out of order")
            elapsed = common.median(times)
            throughput[column], mapped[column] = n / elapsed, n
            print(f"  map {column}: {n} items, median of {map_reps}: {elapsed:.3f} s", flush=True)
    finally:
        for v in list(variants.values()):
            try:
                v.close()
            except Exception as exc:
                print(f"  closing {v.name}: {exc}")
        if ray is not None:
            ray.shutdown()
    # -- Lithops, last and bounded (see the Lithops class) ---------------------------
    if args.dry_run:
        pass
    elif args.no_lithops:
        report.skip("Lithops localhost", "--no-lithops")
    else:
        column = "Lithops localhost"
        print(f"measuring {column}: {lithops_calls} calls, a {lithops_map}-item map ...", flush=True)
        try:
            got = Lithops(lithops_calls, lithops_map, {k: min(v, 3) for k, v in payload_reps.items()},
                          limit_s=180 + 1.3 * lithops_map).measure()
            variants[column] = None
            samples[column] = got["calls"]
            for size, values in got["payload"].items():
                payload[(column, int(size))] = values
            for size, why in got["payload_errors"].items():
                report.notes.append(f"{column}, {int(size) // MB} MB: {why}")
            if "map_s" in got:
                throughput[column], mapped[column] = lithops_map / got["map_s"], lithops_map
            if got.get("hung"):
                report.notes.append(
                    f"{column}: {got['hung']} of its {got['jobs']} jobs hung (the runner finished "
                    f"them, the executor never reported them done); each was given up after 10 s "
                    f"(a map: 0.6 s an item), run again on a fresh executor, and left out of the "
                    f"timings")
            if "incomplete" in got:
                report.notes.append(f"{column}: {got['incomplete']}; the phases before it are reported")
        except Exception as exc:
            report.skip(column, f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")

    def p50_ms(column, size=None):
        values = samples.get(column) if size is None else payload.get((column, size))
        return common.median(values) * 1000 if values else None

    base = "Ray task"
    for column in variants:
        row = {"variant": column, "p50_ms": p50_ms(column),
               "p99_ms": common.percentile(samples[column], 0.99) * 1000,
               "map_items_per_s": throughput.get(column), "map_items": mapped.get(column),
               "p50_1MB_ms": p50_ms(column, MB), "p50_10MB_ms": p50_ms(column, 10 * MB)}
        if base in variants:
            row["x_ray_task_p50"] = common.ratio(row["p50_ms"], p50_ms(base))
            row["x_ray_task_10MB"] = common.ratio(row["p50_10MB_ms"] or float("nan"), p50_ms(base, 10 * MB) or float("nan"))
            row["x_ray_task_map"] = common.ratio(row["map_items_per_s"], throughput.get(base))
        report.rows.append(row)
    print()
    print(report.table([("variant", "variant"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
                        ("x_ray_task_p50", "p50 / Ray task"), ("p50_1MB_ms", "1 MB p50 ms"),
                        ("p50_10MB_ms", "10 MB p50 ms"), ("x_ray_task_10MB", "10 MB / Ray task"),
                        ("map_items_per_s", "map items/s"), ("map_items", "map n"),
                        ("x_ray_task_map", "map / Ray tasks")]))

    local = "SDK local"
    have_ray = base in variants and local in variants
    lp, rp = p50_ms(local), p50_ms(base)
    report.goal("local call <= 0.2x a Ray task", (lp / rp <= 0.2) if have_ray else None,
                f"{lp / rp:.3f}x ({lp:.3f} ms vs {rp:.3f} ms)" if have_ray else "no Ray task measured")
    for floor, what in (("floor: http.client", "the raw floor (stdlib server, http.client keep-alive)"),
                        ("floor: raw socket", "the strict floor (stdlib server, raw-socket client)")):
        fp = p50_ms(floor)
        report.goal(f"local call within 1.5x of {what}", (lp / fp <= 1.5) if lp and fp else None,
                    f"{lp / fp:.2f}x ({lp:.3f} ms vs {fp:.3f} ms)" if lp and fp else "not measured")
    l10, r10 = p50_ms(local, 10 * MB), p50_ms(base, 10 * MB)
    report.goal("10 MB local call <= 1.0x a Ray task", (l10 / r10 <= 1.0) if l10 and r10 else None,
                f"{l10 / r10:.2f}x ({l10:.2f} ms vs {r10:.2f} ms)" if l10 and r10 else "not measured")
    lm, rm = throughput.get(local), throughput.get(base)
    report.goal("local map throughput >= 3x Ray tasks", (lm / rm >= 3.0) if lm and rm else None,
                f"{lm / rm:.2f}x ({lm:,.0f} vs {rm:,.0f} items/s)" if lm and rm else "not measured")
    report.finish(args.out, chart={"labels": [r["variant"] for r in report.rows],
                                   "values": [r["p50_ms"] for r in report.rows],
                                   "unit": "p50 ms per warm trivial call", "log": True})


if __name__ == "__main__":
    main()
