"""``straightline.calibrate(h)``: measure the deployment's targets, set F and D.

Each available target is deployed (if it is not yet) and measured with this very
deployment: its cold start (deploy plus first answer), and warm echo requests of
several sizes (the runtime answers them without calling the function: this
measures the transport, the function's own runtime comes from the profile). The
crossovers of the fitted curves (placement/calibration.py) become the
deployment's thresholds. The result is stored with the deployment and on disk
under its content key, so a re-run cell or a restarted kernel does not measure
again unless asked (``force=True``).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass

from .local_state import cache_root
from .placement import LOCAL, MB, Thresholds, human_bytes, tier_of
from .placement.calibration import CostCurve, crossovers, fit
from .runtime import pool, wire

SIZES = (0, 64 * 1024, 1 * MB, 4 * MB, 16 * MB)


@dataclass(frozen=True)
class Calibration:
    thresholds: Thresholds
    curves: dict            # kind -> CostCurve
    measured_at: float
    runtime_s: float

    def __str__(self) -> str:
        th = self.thresholds
        lines = [f"F = {th.rate:.4g} req/s, D = {human_bytes(th.size)} ({th.basis})",
                 f"{'target':<8} {'overhead':>10} {'per MB':>10} {'cold start':>11}  points"]
        for kind, c in self.curves.items():
            cold = f"{c.cold_start_s:.2f} s" if c.cold_start_s is not None else "-"
            pts = ", ".join(f"{human_bytes(s)}: {t * 1000:.2f} ms" for s, t in c.points)
            lines.append(f"{kind:<8} {c.overhead_s * 1000:>7.2f} ms {c.per_mb_s * 1000:>7.2f} ms "
                         f"{cold:>11}  {pts}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"thresholds": asdict(self.thresholds), "measured_at": self.measured_at,
                           "runtime_s": self.runtime_s,
                           "curves": {k: asdict(c) for k, c in self.curves.items()}})

    @classmethod
    def from_json(cls, text: str) -> "Calibration":
        data = json.loads(text)
        curves = {k: CostCurve(**{**c, "points": tuple(tuple(p) for p in c["points"])})
                  for k, c in data["curves"].items()}
        return cls(Thresholds(**data["thresholds"]), curves, data["measured_at"], data["runtime_s"])


def _cache_path(key: str) -> str:
    return os.path.join(cache_root(), "calibration", f"{key[:32]}.json")


def _median_latency(target, size: int, repeats: int) -> float:
    segments, total = wire.echo_request(size, 64)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        target.invoke(segments, total, None)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def measure(h, kind: str, sizes=SIZES, repeats: int = 9) -> CostCurve:
    """Deploy ``kind`` for ``h`` if needed and fit its cost curve."""
    state = h.plan().states[kind]
    cold = None
    target = h.deployed_targets.get(kind)
    if target is None:
        t0 = time.perf_counter()
        target = h.deploy_target(kind)
        target.invoke(*wire.echo_request(0, 0), None)
        cold = time.perf_counter() - t0
    limit = state.limits.max_request_bytes
    usable = [s for s in sizes if limit is None or s + 1024 <= limit]
    target.invoke(*wire.echo_request(0, 0), None)  # warm
    points = tuple((s, _median_latency(target, s, repeats if s < 4 * MB else max(3, repeats // 3)))
                   for s in usable)
    return fit(kind, points, max_request_bytes=limit, cold_start_s=cold,
               concurrency=target.concurrency)


def calibrate(h, *, force: bool = False, sizes=SIZES, repeats: int = 9, objective: str | None = None,
              traffic=None, preset="this-machine") -> Calibration:
    """Measure ``h``'s available targets and set its thresholds F and D.

    Returns the Calibration (print it for the numbers behind the thresholds).
    With ``objective="latency"`` or ``"cost"`` (and ``traffic``: h.calls by default,
    a trace file or a whatif pattern), F and D are instead chosen by searching the
    what-if simulator over a grid on that traffic, with the ``preset``'s tier models
    (see docs/whatif.md); the basis explains the choice in words.
    """
    if objective is not None or traffic is not None:
        return _tune(h, objective or "latency", traffic, preset)
    if h.calibration is not None and not force:
        return h.calibration
    path = _cache_path(h.deploy_key)
    if not force and os.path.exists(path):
        try:
            with open(path) as f:
                result = Calibration.from_json(f.read())
            _apply(h, result)
            return result
        except (OSError, ValueError, TypeError, KeyError):
            pass  # a stale or damaged cache: measure again
    plan = h.plan()
    curves = {}
    for kind, state in plan.states.items():
        if state.available and kind not in plan.static_excluded:
            curves[kind] = measure(h, kind, sizes, repeats)
    profile = h.profile
    local = next((c for k, c in curves.items() if tier_of(k) == LOCAL), None)
    servers, servers_basis = local_servers((local.concurrency or 1) if local else 1, profile,
                                           pool.usable_cpus())
    found = crossovers(curves, runtime_s=profile.runtime_s if profile else 0.0,
                       request_bytes=profile.request_bytes if profile else 0,
                       local_concurrency=servers, servers_basis=servers_basis)
    result = Calibration(found.thresholds, curves, time.time(),
                         profile.runtime_s if profile else 0.0)
    _apply(h, result)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(result.to_json())
    return result


def local_servers(slots: int, profile, cpus: float) -> tuple[float, str]:
    """Calls the local pool serves at once: its slots (processes × threads), but
    no more than its CPUs keep up with. A function that mostly waits gets many
    threads (runtime/pool.py), yet each call still keeps a CPU busy for part of
    its time: 64 slots of calls on the CPU 40 % of their time are ~5 calls at
    once on 2 CPUs, and a rate threshold from 64 would hold 13× the traffic the
    pool can take. Returns (servers, why, in words, when the CPUs cap it)."""
    cpu_s = getattr(profile, "cpu_s", None) if profile is not None else None
    active = (profile.runtime_s - getattr(profile, "cpu_wait_s", 0.0)) if profile is not None else 0.0
    if not cpu_s or active <= 0 or cpus <= 0:
        return float(slots), ""
    share = min(1.0, cpu_s / active)
    by_cpu = cpus / share
    if by_cpu >= slots:
        return float(slots), ""
    servers = max(1.0, by_cpu)
    return servers, (f"{slots} slots, but each call keeps {share:.0%} of a CPU busy: {cpus:g} "
                     f"CPU(s) serve ~{servers:.1f} at once")


def _tune(h, objective: str, traffic, preset) -> Calibration:
    from .whatif import tune_thresholds
    tuned = tune_thresholds(h, traffic if traffic is not None else h.calls, objective=objective,
                            preset=preset)
    previous = h.calibration
    result = Calibration(tuned.thresholds, dict(previous.curves) if previous is not None else {},
                         time.time(), h.profile.runtime_s if h.profile else 0.0)
    _apply(h, result)
    return result


def _apply(h, result: Calibration) -> None:
    h.use_calibration(result)
