"""Maps of real work, for bench/overhead.py (issue 12): a CPU-bound pure-Python
item of ~20 ms and an I/O-bound item (a 50 ms sleep), each mapped by the SDK's
local, Docker and Ray targets and by the usual tools, in the same run:

    plain loop                  [f(x) for x in xs] in this process
    multiprocessing.Pool        Pool(CPUs).map, fork, warmed
    ThreadPoolExecutor(32)      concurrent.futures, 32 threads
    joblib loky                 Parallel(n_jobs=CPUs, backend="loky"), warmed
    Ray tasks                   ray.get([f.remote(x) for x in xs]), num_cpus=1 each
    SDK local/docker/ray        h.map(xs), deployed with a sample (the profile sizes the pool)

The variants take turns: each round maps once with every variant, in an order
that rotates from round to round, so a slow spell of the machine falls on all of
them alike. Each figure is the median over rounds (wall time, items/s); a goal's
ratio is the median of the rounds' ratios. On a shared virtual machine the same
CPU item can take 11 ms or 20 ms of CPU time from one tenth of a second to the
next, in any process (docs/benchmarks.md), so the CPU-bound rows also say how
busy the variant kept the machine with the items themselves ("CPU use": the
items' own CPU seconds / (wall seconds x CPUs)), which that drift does not move.
Functions live in this module so every peer can import them by reference.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor

import common

import straightline_sdk as straightline
from straightline_sdk.runtime.pool import usable_cpus

#: fixed, so every peer (forked, spawned, in a container) runs the same item:
#: ~20 ms on the reference machine (docs/benchmarks.md); the run prints its own
LOOPS = 170_000


def cpu_item(x):
    """Pure Python, holds the GIL all along; returns its result and the CPU
    seconds it took (for the "CPU use" column)."""
    started = time.thread_time()
    total = 0
    for i in range(LOOPS):
        total += (i ^ x) & 7
    return total, time.thread_time() - started


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


def _rounds(workload: str, peers: list, xs: list, reps: int, expected, report,
            cpus: int) -> list[dict]:
    """Warm every peer with one full-size map (processes started, code loaded, a
    map's threads made), then ``reps`` rounds of one timed map each, the order
    rotating; closes the peers. One row per peer that ran."""
    live = []
    for peer in peers:
        try:
            peer.run(xs)
            live.append(peer)
        except Exception as exc:
            report.notes.append(f"{workload}, {peer.name}: {type(exc).__name__}: {str(exc)[:200]}")
    times: dict[str, list] = {p.name: [] for p in live}
    uses: dict[str, list] = {p.name: [] for p in live}
    for round_ in range(reps):
        shift = round_ % max(1, len(live))
        for peer in live[shift:] + live[:shift]:
            if peer.name not in times:
                continue
            try:
                t0 = time.perf_counter()
                out = list(peer.run(xs))
                elapsed = time.perf_counter() - t0
                if expected is not None and out[:len(expected)] != expected:
                    raise AssertionError(f"{peer.name}: wrong results")
                times[peer.name].append(elapsed)
                if out and type(out[0]) is tuple:     # the CPU item's own CPU seconds
                    uses[peer.name].append(sum(o[1] for o in out) / (elapsed * cpus))
            except Exception as exc:
                report.notes.append(f"{workload}, {peer.name}: {type(exc).__name__}: {str(exc)[:200]}")
                times.pop(peer.name)
    for peer in peers:
        try:
            peer.close()
        except Exception:
            pass
    rows = []
    for peer in live:
        if peer.name not in times:
            continue
        elapsed = common.median(times[peer.name])
        row = {"workload": workload, "variant": peer.name, "items": len(xs), "map_s": elapsed,
               "items_per_s": len(xs) / elapsed, "round_s": times[peer.name]}
        if uses[peer.name]:
            row["cpu_use"] = common.median(uses[peer.name])
        rows.append(row)
        use = f"  CPU use {row['cpu_use']:.2f}" if "cpu_use" in row else ""
        print(f"  {workload:9} {peer.name:32} {elapsed:7.3f} s  {len(xs) / elapsed:8.1f} items/s{use}",
              flush=True)
    return rows


def run(report, *, quick: bool, dry_run: bool, ray=None, kinds=("local", "docker", "ray")) -> None:
    """Measure both workloads; rows go to report.extra["workload_maps"], goals to report."""
    cpus = max(1, int(usable_cpus()))
    item_s = cpu_item_seconds()
    # rounds: the CPU-bound ratio drifts with the host (one round's ratio ranged
    # 0.74-1.23x over 30 rounds), so it gets more of them than the I/O-bound one
    n_cpu, n_io, reps_cpu, reps_io = (60, 64, 15, 5) if not quick else (40, 64, 5, 3)
    if dry_run:
        n_cpu, n_io, reps_cpu, reps_io = 6, 8, 1, 1
    print(f"\nworkload maps: {cpus} usable CPUs; CPU item {item_s * 1000:.1f} ms, "
          f"{n_cpu} items, {reps_cpu} rounds; I/O item 50 ms sleep, {n_io} items, {reps_io} rounds",
          flush=True)
    rows = []
    for workload, fn, n, reps in (("cpu 20 ms", cpu_item, n_cpu, reps_cpu),
                                  ("io 50 ms", io_item, n_io, reps_io)):
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
        rows += _rounds(workload, peers, xs, reps, expected, report, cpus)
    base = {}
    for row in rows:
        if row["variant"] == "plain loop":
            base[row["workload"]] = row["items_per_s"]
    for row in rows:
        row["x_loop"] = common.ratio(row["items_per_s"], base.get(row["workload"], float("nan")))
    report.extra["workload_maps"] = {"cpus": cpus, "cpu_item_ms": item_s * 1000, "rows": rows}
    print()
    print(report.table([("workload", "workload"), ("variant", "variant"), ("items", "n"),
                        ("map_s", "map s"), ("items_per_s", "items/s"), ("x_loop", "x plain loop"),
                        ("cpu_use", "CPU use")],
                       rows))

    def row_of(workload, prefix):
        found = [r for r in rows if r["workload"] == workload and r["variant"].startswith(prefix)]
        return found[0] if found else None

    for workload, sdk, peer, bound in (
            ("cpu 20 ms", "SDK local", "multiprocessing.Pool", 0.9),
            ("cpu 20 ms", "SDK ray", "Ray tasks", 0.9),
            ("io 50 ms", "SDK local", "ThreadPoolExecutor(32)", 0.9)):
        a, b = row_of(workload, sdk), row_of(workload, peer)
        if a is None or b is None:
            report.goal(f"{workload} map: {sdk} >= {bound}x {peer}", None, "not measured")
            continue
        # throughput ratio round by round (the two maps of a round ran close together)
        ratio = common.median([tb / ta for ta, tb in zip(a["round_s"], b["round_s"])])
        detail = (f"{ratio:.2f}x, median of {len(a['round_s'])} rounds' ratios "
                  f"(medians: {a['items_per_s']:.1f} vs {b['items_per_s']:.1f} items/s)")
        if "cpu_use" in a and "cpu_use" in b:
            detail += f"; CPU use {a['cpu_use']:.2f} vs {b['cpu_use']:.2f}"
        report.goal(f"{workload} map: {sdk} >= {bound}x {peer}", ratio >= bound, detail)
