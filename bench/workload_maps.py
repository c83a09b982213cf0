"""Maps of real work, for bench/overhead.py (issue 12): a CPU-bound pure-Python
item of ~20 ms and an I/O-bound item (a 50 ms sleep), each mapped by the SDK's
local, Docker and Ray targets and by the usual tools, in the same run:

    plain loop                  [f(x) for x in xs] in this process
    multiprocessing.Pool        Pool(CPUs).map, fork, warmed
    ThreadPoolExecutor(32)      concurrent.futures, 32 threads
    joblib loky                 Parallel(n_jobs=CPUs, backend="loky"), warmed
    Ray tasks                   ray.get([f.remote(x) for x in xs]), num_cpus=1 each
    SDK local/docker/ray        h.map(xs), deployed with a sample (the profile sizes the pool)

Each figure is the median of a few maps (wall time, items/s). Functions live in
this module so every peer can import them by reference.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ThreadPoolExecutor

import common

import straightline_sdk as straightline
from straightline_sdk.runtime.pool import usable_cpus

#: fixed, so every peer (forked, spawned, in a container) runs the same item:
#: ~20 ms on the reference machine (docs/benchmarks.md); the run prints its own
LOOPS = 170_000


def cpu_item(x):
    """Pure Python, holds the GIL all along."""
    total = 0
    for i in range(LOOPS):
        total += (i ^ x) & 7
    return total


def io_item(x):
    time.sleep(0.05)
    return x


def cpu_item_seconds() -> float:
    """One CPU item's time here, serially (the median of five)."""
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        cpu_item(0)
        times.append(time.perf_counter() - t0)
    return common.median(times)


class Peer:
    def __init__(self, name, run, close=lambda: None):
        self.name, self.run, self.close = name, run, close


def _peers(fn, cpus: int, ray, dry_run: bool) -> list:
    peers = [Peer("plain loop", lambda xs: [fn(x) for x in xs])]
    pool = multiprocessing.get_context("fork").Pool(cpus)
    peers.append(Peer(f"multiprocessing.Pool({cpus})", lambda xs: pool.map(fn, xs), pool.terminate))
    threads = ThreadPoolExecutor(32)
    peers.append(Peer("ThreadPoolExecutor(32)", lambda xs: list(threads.map(fn, xs)),
                      lambda: threads.shutdown(wait=False)))
    if dry_run:
        return peers
    try:
        from joblib import Parallel, delayed
        parallel = Parallel(n_jobs=cpus, backend="loky")
        peers.append(Peer(f"joblib loky ({cpus})", lambda xs: parallel(delayed(fn)(x) for x in xs)))
    except ImportError:
        pass
    if ray is not None:
        remote = ray.remote(num_cpus=1)(fn)
        peers.append(Peer("Ray tasks", lambda xs: ray.get([remote.remote(x) for x in xs])))
    return peers


def _sdk(kind: str, fn, sample_x):
    h = straightline.deploy(fn, targets=[kind], sample=(sample_x,), name=f"bench_{fn.__name__}_{kind}")
    target = h.deployed_targets.get(kind)
    described = target.describe() if target is not None else {}
    size = f"{described.get('processes', '?')}x{described.get('threads', '?')}" \
        if "processes" in described else f"{getattr(target, 'concurrency', '?')} at once"
    return Peer(f"SDK {kind} ({size})", lambda xs: h.map(xs, progress=False), h.undeploy)


def run(report, *, quick: bool, dry_run: bool, ray=None, kinds=("local", "docker", "ray")) -> None:
    """Measure both workloads; rows go to report.extra["workload_maps"], goals to report."""
    cpus = max(1, int(usable_cpus()))
    item_s = cpu_item_seconds()
    n_cpu, n_io, reps = (60, 64, 3) if not quick else (40, 64, 2)
    if dry_run:
        n_cpu, n_io, reps = 6, 8, 1
    print(f"\nworkload maps: {cpus} usable CPUs; CPU item {item_s * 1000:.1f} ms, "
          f"{n_cpu} items; I/O item 50 ms sleep, {n_io} items; median of {reps}", flush=True)
    rows = []
    for workload, fn, n in (("cpu 20 ms", cpu_item, n_cpu), ("io 50 ms", io_item, n_io)):
        xs = list(range(n))
        expected = [fn(x) for x in xs[:3]] if fn is io_item else None
        peers = _peers(fn, cpus, ray, dry_run)
        for kind in (("local",) if dry_run else kinds):
            ok, why = common.target_ready(kind) if kind != "ray" or ray is None else (True, "")
            if kind == "ray" and ray is None:
                ok, why = False, "Ray is not running in this benchmark"
            if not ok:
                report.skip(f"SDK {kind} map ({workload})", why)
                continue
            try:
                peers.append(_sdk(kind, fn, 0))
            except Exception as exc:
                report.skip(f"SDK {kind} map ({workload})", f"{type(exc).__name__}: {str(exc)[:200]}")
        for peer in peers:
            try:
                peer.run(xs)   # warm, at full size: processes started, code loaded, a map's threads made
                times = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    out = list(peer.run(xs))
                    times.append(time.perf_counter() - t0)
                    if expected is not None and out[:3] != expected:
                        raise AssertionError(f"{peer.name}: wrong results")
                elapsed = common.median(times)
                rows.append({"workload": workload, "variant": peer.name, "items": n,
                             "map_s": elapsed, "items_per_s": n / elapsed})
                print(f"  {workload:9} {peer.name:32} {elapsed:7.3f} s  {n / elapsed:8.1f} items/s",
                      flush=True)
            except Exception as exc:
                report.notes.append(f"{workload}, {peer.name}: {type(exc).__name__}: {str(exc)[:200]}")
            finally:
                try:
                    peer.close()
                except Exception:
                    pass
    base = {}
    for row in rows:
        if row["variant"] == "plain loop":
            base[row["workload"]] = row["items_per_s"]
    for row in rows:
        row["x_loop"] = common.ratio(row["items_per_s"], base.get(row["workload"], float("nan")))
    report.extra["workload_maps"] = {"cpus": cpus, "cpu_item_ms": item_s * 1000, "rows": rows}
    print()
    print(report.table([("workload", "workload"), ("variant", "variant"), ("items", "n"),
                        ("map_s", "map s"), ("items_per_s", "items/s"), ("x_loop", "x plain loop")],
                       rows))

    def rate(workload, prefix):
        values = [r["items_per_s"] for r in rows if r["workload"] == workload
                  and r["variant"].startswith(prefix)]
        return values[0] if values else None

    for workload, sdk, peer, bound in (
            ("cpu 20 ms", "SDK local", "multiprocessing.Pool", 0.9),
            ("cpu 20 ms", "SDK ray", "Ray tasks", 0.9),
            ("io 50 ms", "SDK local", "ThreadPoolExecutor(32)", 0.9)):
        a, b = rate(workload, sdk), rate(workload, peer)
        report.goal(f"{workload} map: {sdk} >= {bound}x {peer}", (a / b >= bound) if a and b else None,
                    f"{a / b:.2f}x ({a:.1f} vs {b:.1f} items/s)" if a and b else "not measured")
