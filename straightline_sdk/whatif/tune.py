"""Tuned thresholds: F and D chosen by searching the simulator on given traffic.

The grid is built from the traffic itself: F at the quantiles of the rates f_t
the requests will see (the real RateEstimator over their arrivals), plus 0 and
"never"; D at the quantiles of their sizes, plus "never". Two settings that put
every request in the same case of the policy give the same simulation, so each
distinct assignment is simulated once.

Objectives:
- "latency": fewest failures, then the lowest mean response time (ties within
  1 % go to the cheaper);
- "cost": fewest failures, then the lowest dollars per million requests (ties
  within 1 % go to the faster).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..placement import RateEstimator
from . import engine
from . import placement_adapter as core

NEVER_RATE = math.inf
NEVER_SIZE = 1 << 40
RATE_QUANTILES = (0.25, 0.5, 0.75, 0.9, 0.99)
SIZE_QUANTILES = (0.5, 0.9, 0.99)


@dataclass
class Tuned:
    thresholds: object              # Thresholds
    objective: str
    explanation: str
    result: object                  # the RunResult of the chosen setting
    tried: list = field(default_factory=list)   # (F, D, RunResult or None if pruned)
    seen: dict = field(default_factory=dict, repr=False)   # case signature -> RunResult
    signature: object = field(default=None, repr=False)    # Thresholds -> case signature

    def result_for(self, thresholds):
        """The simulated result of ``thresholds`` on the same traffic, if the search ran it."""
        return self.seen.get(self.signature(thresholds.rate, thresholds.size))

    def __str__(self) -> str:
        return self.explanation


def _quantiles(values, qs):
    ordered = sorted(values)
    return [engine.percentile(ordered, q) for q in qs] if ordered else []


def observed_rates(traffic, window_s: float, prior: float) -> list:
    est = RateEstimator(window=window_s, prior=prior)
    return [est.observe(t) for t in traffic.times]


def _key(result, objective: str):
    if objective == "cost":
        return (result.failed, result.usd_per_million, result.mean_s)
    return (result.failed, result.mean_s, result.usd_per_million)


def _better(a, b, objective: str) -> bool:
    """Is result ``a`` better than ``b`` under the objective (1 % ties broken by the other)?"""
    if a.failed != b.failed:
        return a.failed < b.failed
    first, second = ("usd_per_million", "mean_s") if objective == "cost" else ("mean_s", "usd_per_million")
    x, y = getattr(a, first), getattr(b, first)
    if abs(x - y) > 0.01 * max(abs(x), abs(y), 1e-12):
        return x < y
    return getattr(a, second) < getattr(b, second)


def _fmt_rate(f: float) -> str:
    return "never" if math.isinf(f) else f"{f:.3g} req/s"


def _fmt_size(d: float) -> str:
    return "never" if d >= NEVER_SIZE else core_human_bytes(d)


def core_human_bytes(n: float) -> str:
    from ..placement import human_bytes
    return human_bytes(n)


def tune(traffic, setup, function, *, objective: str = "latency", seed: int = 0, features=None,
         rate_window_s: float = 5.0, prior_rate: float = 0.0, prewarm: bool = True,
         start=None, rates=None) -> Tuned:
    """Search F and D on ``traffic`` in ``setup``; returns the best setting and why."""
    if objective not in ("latency", "cost"):
        raise ValueError(f"objective must be 'latency' or 'cost', not {objective!r}")
    if rates is None:
        rates = observed_rates(traffic, rate_window_s, prior_rate)
    sizes = traffic.sizes
    f_grid = sorted({0.0, *(round(r, 3) for r in _quantiles(rates, RATE_QUANTILES)), NEVER_RATE})
    d_grid = sorted({*(int(s) for s in _quantiles(sizes, SIZE_QUANTILES)), NEVER_SIZE})
    if start is not None:
        f_grid = sorted(set(f_grid) | {start.rate})
        d_grid = sorted(set(d_grid) | {int(min(start.size, NEVER_SIZE))})
    seen: dict = {}
    tried = []

    def signature(f: float, d: int) -> bytes:
        # the policy's case for each request: identical cases, identical simulation
        return bytes(0 if (r > f and s < d) else 1 if s > d else 2 for r, s in zip(rates, sizes))

    pruned: set = set()

    def evaluate(f: float, d: int, best=None):
        sig = signature(f, d)
        if sig not in seen and sig not in pruned:
            th = core.Thresholds(f, d, True, "tuned")
            # for latency, a setting can be given up as soon as it has failed more requests
            # than the best so far, or (with none failed) spent 1 % more total response time
            bound = None
            if best is not None and objective == "latency":
                bound = (best.failed, best.mean_s * best.completed * 1.01 if best.failed == 0 else math.inf)
            try:
                seen[sig] = engine.simulate(traffic, setup, function, engine.straightline(th, "tuned"),
                                            seed=seed, features=features, rate_window_s=rate_window_s,
                                            prior_rate=prior_rate, prewarm=prewarm, rates=rates,
                                            give_up_over=bound)
            except engine.Abandoned:
                pruned.add(sig)
        tried.append((f, d, seen.get(sig)))
        return seen.get(sig)

    # coordinate search: F along the grid at the starting D, then D at the best F, once more
    best_f = start.rate if start is not None else f_grid[len(f_grid) // 2]
    best_d = int(min(start.size, NEVER_SIZE)) if start is not None else NEVER_SIZE
    best = evaluate(best_f, best_d)
    for _ in range(2):
        changed = False
        for f in f_grid:
            r = evaluate(f, best_d, best)
            if r is not None and _better(r, best, objective):
                best, best_f, changed = r, f, True
        for d in d_grid:
            r = evaluate(best_f, d, best)
            if r is not None and _better(r, best, objective):
                best, best_d, changed = r, d, True
        if not changed:
            break
    th = core.Thresholds(best_f, best_d, True, "")
    goal = "mean response time" if objective == "latency" else "cost per million requests"
    where = ", ".join(f"{t} {n}" for t, n in sorted(best.per_tier.items(), key=lambda kv: -kv[1]))
    failed = f", {best.failed} failed" if best.failed else ""
    text = (f"F = {_fmt_rate(best_f)}, D = {_fmt_size(best_d)} minimise the predicted {goal} on "
            f"{traffic.name} ({len(traffic)} requests, {setup.name} preset): mean "
            f"{best.mean_s * 1000:.3g} ms, p95 {best.p95_s * 1000:.3g} ms, "
            f"${best.usd_per_million:.3g} per million{failed}; requests to {where or 'none'} "
            f"({len(seen) + len(pruned)} distinct settings simulated, {len(pruned)} of them "
            f"given up early as worse)")
    th = core.Thresholds(th.rate, th.size, True, f"tuned for {objective}: {text}")
    return Tuned(th, objective, text, best, tried, seen, signature)
