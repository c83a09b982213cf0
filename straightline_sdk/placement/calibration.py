"""Thresholds F and D as the crossovers of measured cost curves (pure).

Each target is measured with the deployment itself (see straightline_sdk/calibration.py):
a warm call's latency at several request sizes is fitted to a line,

    latency(size) = overhead + per_mb x size_in_MB          (+ the function's runtime)

and the thresholds are where the curves cross:

- D, the size above which Docker beats the other tiers: the smallest size from which
  the Docker line stays below the best line of the others (each other tier only up to
  its own payload limit) by more than ``TIE`` (5 %). Closer than that is a tie: on one
  machine Docker and the local worker measure within microseconds of each other, and
  a threshold decided by noise would move all traffic from run to run. If Docker is
  never clearly faster in the range, D is set past the range ("large requests stay on
  the other tiers"); if it is at every size, D is 0.
- F, the rate above which serverless beats the local server given the local
  worker's capacity: the local worker is a queue of ``c`` slots, each call taking
  S = local latency + runtime, so its response time grows as S / (1 - rate x S / c).
  F is the rate at which that reaches serverless's latency L:
  F = (c / S) x (1 - S / L); 0 when serverless is faster even unloaded. Without a
  serverless target, F is the local worker's capacity c / S.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .features import MB, Thresholds, human_bytes, human_rate
from .tiers import CONTAINER, LOCAL, SERVERLESS, tier_of

#: sizes on which the curves are compared (1 KB .. 1 GB, log-spaced)
GRID = tuple(int(1024 * 2 ** (i / 4)) for i in range(0, 81))
NEVER = 1 << 40   # "past any request": D when Docker never wins
TIE = 0.05        # Docker counts as faster only when below the best other tier by more than this


@dataclass(frozen=True)
class CostCurve:
    kind: str
    overhead_s: float                 # warm latency of an empty request
    per_mb_s: float                   # added latency per MB of request
    points: tuple = ()                # ((request bytes, median latency s), ...) measured
    max_request_bytes: int | None = None
    cold_start_s: float | None = None
    concurrency: int | None = None

    def latency(self, size_bytes: float, runtime_s: float = 0.0) -> float:
        return self.overhead_s + self.per_mb_s * size_bytes / MB + runtime_s

    def takes(self, size_bytes: float) -> bool:
        return self.max_request_bytes is None or size_bytes <= self.max_request_bytes


def fit(kind: str, points, **extra) -> CostCurve:
    """The line through the smallest request's latency (the overhead) that fits the
    others best (least squares, slope >= 0). Anchoring the intercept keeps the
    large, slow points from pulling the small-call overhead to zero."""
    pts = sorted((float(s), float(t)) for s, t in points)
    size0, overhead = pts[0]
    rest = [(s - size0, t - overhead) for s, t in pts[1:]]
    denominator = sum(s * s for s, _ in rest)
    slope = sum(s * t for s, t in rest) / denominator if denominator else 0.0
    return CostCurve(kind, overhead, max(0.0, slope) * MB, tuple(points), **extra)


@dataclass(frozen=True)
class Crossovers:
    thresholds: Thresholds
    size_basis: str
    rate_basis: str
    curves: dict = field(default_factory=dict)


def _of_tier(curves: dict[str, CostCurve], tier: str) -> CostCurve | None:
    """The curve of the first kind of ``tier`` (curves are keyed by kind)."""
    return next((c for k, c in curves.items() if tier_of(k) == tier), None)


def size_threshold(curves: dict[str, CostCurve]) -> tuple[int, str]:
    docker = _of_tier(curves, CONTAINER)
    others = [c for c in curves.values() if c is not docker]
    if docker is None or not others:
        return NEVER, "no Docker curve, or nothing to compare it with"

    def docker_wins(size: int) -> bool:
        best = min((c.latency(size) for c in others if c.takes(size)), default=math.inf)
        return docker.latency(size) < best * (1 - TIE)

    wins = [docker_wins(s) for s in GRID]
    if all(wins):
        return 0, f"Docker was faster than the other tiers by over {TIE:.0%} at every size"
    if not wins[-1]:
        return NEVER, (f"Docker was slower than the other tiers, or within {TIE:.0%} of them (a "
                       f"tie), at sizes up to {human_bytes(GRID[-1])}: large requests stay on them")
    last_loss = max(i for i, w in enumerate(wins) if not w)
    d = GRID[last_loss + 1]
    return d, f"Docker is faster than the other tiers by over {TIE:.0%} from {human_bytes(d)} up"


def rate_threshold(curves: dict[str, CostCurve], runtime_s: float, request_bytes: int,
                   local_concurrency: float, servers_basis: str = "") -> tuple[float, str]:
    """``local_concurrency``: calls the local pool serves at once (its slots, capped
    by its CPUs: calibration.local_servers); ``servers_basis`` says how, if capped."""
    local = _of_tier(curves, LOCAL)
    if local is None:
        return math.inf, "no local curve: serverless is not preferred by rate"
    service = local.latency(request_bytes, runtime_s)
    capacity = local_concurrency / service
    serverless = _of_tier(curves, SERVERLESS)
    servers = f"{local_concurrency:g} slots" + (f" ({servers_basis})" if servers_basis else "")
    if serverless is None:
        return capacity, (f"the local worker's capacity: {servers} / "
                          f"{service * 1000:.2f} ms = {human_rate(capacity)}")
    remote = serverless.latency(request_bytes, runtime_s)
    if remote <= service:
        return 0.0, (f"serverless ({remote * 1000:.1f} ms) is faster than the local worker "
                     f"({service * 1000:.1f} ms) even unloaded")
    f = capacity * (1.0 - service / remote)
    return f, (f"the local worker ({servers}, {service * 1000:.2f} ms a call) "
               f"queues up to serverless's {remote * 1000:.1f} ms at {human_rate(f)}")


def crossovers(curves: dict[str, CostCurve], *, runtime_s: float, request_bytes: int,
               local_concurrency: float, servers_basis: str = "") -> Crossovers:
    d, size_basis = size_threshold(curves)
    f, rate_basis = rate_threshold(curves, runtime_s, request_bytes, local_concurrency,
                                   servers_basis)
    th = Thresholds(rate=f, size=d, calibrated=True,
                    basis=f"calibrated: D: {size_basis}; F: {rate_basis}")
    return Crossovers(th, size_basis, rate_basis, dict(curves))
