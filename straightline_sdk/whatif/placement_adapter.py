"""The one place the simulator touches the placement core.

The simulator names its tiers "local", "docker", "lambda", "ray"; the placement
core has its own names for them (``placement.features``). Everything that
crosses that line (building a Plan for the simulated targets, asking it where a
request goes, the default and calibrated thresholds) goes through this module,
so the policy is the real one, never a copy, and a change of names in the core
is adapted here alone.
"""

from __future__ import annotations

import sys

from ..errors import PlacementError
from ..placement import (CLUSTER, CONTAINER, DEFAULT_THRESHOLDS, LAMBDA_LIMITS, LOCAL, SERVERLESS,
                         Features, Limits, Plan, TargetState, Thresholds)
from ..placement.calibration import CostCurve, crossovers

#: simulator tier -> the placement core's kind
KIND = {"local": LOCAL, "docker": CONTAINER, "lambda": SERVERLESS, "ray": CLUSTER}
TIER = {kind: tier for tier, kind in KIND.items()}
#: names a user may use for a tier: the simulator's, the core's, the paper's
ALIASES = {**{t: t for t in KIND}, **TIER, "container": "docker", "serverless": "lambda",
           "cluster": "ray", "aws_lambda": "lambda"}

__all__ = ["ALIASES", "KIND", "TIER", "PlacementError", "Thresholds", "DEFAULT_THRESHOLDS",
           "tier_name", "make_states", "build_plan", "place", "set_in_flight", "model_thresholds", "features_of"]


def tier_name(name: str) -> str:
    try:
        return ALIASES[name]
    except KeyError:
        raise ValueError(f"unknown tier {name!r}: use one of {', '.join(KIND)}") from None


def features_of(function, resources=None) -> Features:
    """The deployment's static features, for the simulated function."""
    r = resources
    return Features(rate=0.0, request_bytes=function.reference_bytes,
                    result_bytes=function.result_bytes, runtime_s=function.runtime_s,
                    memory_mb=getattr(r, "memory_mb", None), cpus=getattr(r, "cpus", None),
                    gpus=getattr(r, "gpus", 0) or 0, timeout_s=getattr(r, "timeout_s", None),
                    python=sys.version_info[:2])


def _limits(tier: str, model) -> Limits:
    if tier == "lambda":
        return LAMBDA_LIMITS
    return Limits()


def make_states(models: dict) -> dict:
    """The simulated targets as the policy sees them: {tier: TargetState}, all
    available, none busy. The engine updates ``in_flight`` as requests start and end."""
    return {tier: TargetState(KIND[tier], True, "", _limits(tier, model), 0, model.concurrency())
            for tier, model in models.items()}


def build_plan(features: Features, states: dict, pinned: str | None = None):
    """A real Plan over the simulated targets' states (shared between plans)."""
    return Plan(features, {KIND[t]: s for t, s in states.items()}, KIND[pinned] if pinned else None)


def place(plan, rate: float, size: int, thresholds: Thresholds, avoid: tuple = ()):
    """Ask the real policy where one request goes: (tier, queued, branch, decision).
    Raises PlacementError when no simulated target can take it."""
    decision = plan.decide(rate, size, thresholds, batch=1,
                           avoid=tuple(KIND[a] for a in avoid) if avoid else ())
    return TIER[decision.target], decision.queued, decision.branch, decision


def set_in_flight(state, n: int) -> None:
    state.in_flight = n


def model_thresholds(models: dict, function) -> Thresholds:
    """F and D as ``calibrate()`` would set them had it measured these models:
    the same crossovers of the same lines (placement/calibration.py)."""
    curves = {}
    for tier, model in models.items():
        limit = LAMBDA_LIMITS.max_request_bytes if tier == "lambda" else None
        if tier == "lambda" and model.event_limit_bytes:
            limit = min(limit, model.event_limit_bytes)
        overhead = model.overhead_s + (model.cold_start_s if getattr(model, "cold_every_invoke", False) else 0)
        # the runtime on each tier differs by its speed: carry that in the overhead
        extra = function.runtime(function.reference_bytes) * (model.runtime_factor() - 1.0)
        curves[KIND[tier]] = CostCurve(KIND[tier], overhead + extra, model.per_mb_s,
                                       max_request_bytes=limit, concurrency=model.concurrency())
    local = models.get("local")
    found = crossovers(curves, runtime_s=function.runtime(function.reference_bytes),
                       request_bytes=function.reference_bytes,
                       local_concurrency=local.servers() if local else 1)
    th = found.thresholds
    return Thresholds(th.rate, th.size, True, "from the simulated tiers' lines, as calibrate() "
                      "computes them: " + th.basis.removeprefix("calibrated: "))
