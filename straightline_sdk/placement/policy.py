"""The StraightLine placement policy (Ching, Guan, Xu, Hu, arXiv 2407.18148).

The paper's empirical dynamic placing algorithm, for a request of frequency f_t
and data size r_d, with thresholds F and D:

    f_t > F and r_d < D   -> serverless          (frequent, small)
    r_d > D               -> docker              (large data)
    otherwise             -> the local server while it is available (moderate)
                             local unavailable, docker available -> docker
                             neither -> serverless

Constraints filter first (a target that cannot take the request is never chosen;
see constraints.py), then this order ranks what is left, and the first target
that is available and not saturated wins. When the rule's first choice is
unavailable the request falls through the "otherwise" chain, as in the paper.

Ray (a cluster, beyond the paper) enters each chain after docker: it is the
place for large data and batch work when no container is at hand, and it is
never preferred to the paper's own tiers for single small requests. One rule
moves it up, for batch work beyond local capacity: a map chunk (batch > 1) that
the local worker cannot take now (saturated, down or excluded) tries Ray before
Docker, because a container on this machine shares the CPUs the local worker
has used up while a cluster brings its own. The paper's first choice of each
branch stays first (serverless for frequent-small, Docker for large data), and
constraints still filter first: a GPU need only Ray meets goes to Ray.
"""

from __future__ import annotations

from dataclasses import replace

from ..errors import PlacementError
from .constraints import violation
from .features import MB, Features, TargetState, Thresholds, human_bytes, human_rate
from .tiers import CLUSTER, CONTAINER, LOCAL, SERVERLESS, TIERS, kinds_of, tier_of

# D: requests above it go to Docker. 4 MB keeps every serverless-bound request
# under Lambda's 6 MB payload once base64-encoded (x 4/3), and is where a
# container's per-megabyte cost starts to dominate a warm local call here.
# F: above it, serverless. 20 req/s is what one local worker process sustains
# for a ~50 ms function on a 1-2 core machine; calibrate() replaces both with
# the crossovers measured on the actual targets.
DEFAULT_THRESHOLDS = Thresholds(
    rate=20.0, size=4 * MB, calibrated=False,
    basis="defaults: D = 4 MB keeps serverless requests under Lambda's 6 MB after base64; "
          "F = 20 req/s is one local worker's capacity for a ~50 ms call",
)

FREQUENT_SMALL = "frequent-small"
LARGE = "large"
MODERATE = "moderate"
PINNED = "pinned"

#: each branch's tiers, most preferred first
ORDERS = {
    FREQUENT_SMALL: (SERVERLESS, LOCAL, CONTAINER, CLUSTER),
    LARGE: (CONTAINER, CLUSTER, LOCAL, SERVERLESS),
    MODERATE: (LOCAL, CONTAINER, CLUSTER, SERVERLESS),
}


def _cluster_before_container(order: tuple) -> tuple:
    if order[0] == CONTAINER:
        return order   # large data: the paper's rule keeps Docker first
    return tuple(CLUSTER if kind == CONTAINER else CONTAINER if kind == CLUSTER else kind
                 for kind in order)


#: the orders for batch work (map chunks): Ray before Docker after the first choice
BATCH_ORDERS = {branch: _cluster_before_container(order) for branch, order in ORDERS.items()}


def branch_of(rate: float, size: int, thresholds: Thresholds) -> str:
    """Which case of the paper's algorithm a request falls in."""
    if rate > thresholds.rate and size < thresholds.size:
        return FREQUENT_SMALL
    if size > thresholds.size:
        return LARGE
    return MODERATE


class Decision:
    """Where one request goes, and why. ``reasons`` are built only when read:
    a decision is made on every call, its explanation is read rarely."""

    __slots__ = ("target", "branch", "rate", "request_bytes", "batch", "features", "thresholds",
                 "excluded", "passed_over", "queued", "names", "note", "wait_reason", "notes")

    def __init__(self, target, branch, rate, request_bytes, batch, features, thresholds,
                 excluded=(), passed_over=(), queued=False, names=None, note="", wait_reason="",
                 notes=()):
        self.target = target
        self.branch = branch
        self.rate = rate                  # f_t of this request
        self.request_bytes = request_bytes  # r_d of this request (per item)
        self.batch = batch
        self.features = features          # the deployment's static features (profile, resources)
        self.thresholds = thresholds
        self.excluded = excluded          # ((kind, constraint violated), ...)
        self.passed_over = passed_over    # ((kind, why not available now), ...)
        self.queued = queued              # every candidate saturated: waits on target
        self.notes = notes                # the chosen target's notes (its Limits.notes)
        self.names = names                # tier -> the kinds that stand for it, in words
        self.note = note                  # the chosen target's own note (its pool's size)
        self.wait_reason = wait_reason    # why it waits for a busy target rather than go elsewhere

    @property
    def fell_back(self) -> bool:
        return bool(self.passed_over)

    @property
    def reasons(self) -> list[str]:
        t = self.thresholds
        names = self.names or _tier_names({})
        rate, size = human_rate(self.rate), human_bytes(self.request_bytes)
        F, D = human_rate(t.rate), human_bytes(t.size)
        if self.branch == FREQUENT_SMALL:
            first = f"rate {rate} > F = {F} and input {size} < D = {D} → {names[SERVERLESS]} (frequent, small)"
        elif self.branch == LARGE:
            first = f"input {size} > D = {D} → {names[CONTAINER]} (large data)"
        elif self.branch == PINNED:
            first = f"pinned to {self.target} by the deployment"
        elif self.rate > t.rate:
            first = f"input {size} = D = {D}, neither small nor large → {names[LOCAL]} (moderate)"
        else:
            first = f"rate {rate} ≤ F = {F}, input {size} ≤ D = {D} → {names[LOCAL]} (moderate)"
        lines = [first]
        target_tier = tier_of(self.target)
        preferred = ORDERS[self.branch][0] if self.branch in ORDERS else target_tier
        mentioned = {tier_of(kind) for kind, _ in self.excluded + self.passed_over}
        if preferred != target_tier and preferred not in mentioned:
            lines.append(f"{names[preferred]} is not among the allowed targets")
        lines += [f"{kind} excluded: {why}" for kind, why in self.excluded]
        lines += [f"{kind} passed over: {why}" for kind, why in self.passed_over]
        if self.batch > 1 and target_tier == CLUSTER and self.branch in (MODERATE, FREQUENT_SMALL):
            lines.append(f"a batch of {self.batch} items beyond local capacity → {self.target} before "
                         f"{names[CONTAINER]}: a container here shares the CPUs the local worker "
                         f"has used up, the cluster brings its own")
        lines += [f"{self.target}: {note}" for note in self.notes]
        if target_tier == LOCAL and self.features.memory_mb:
            lines.append(f"{self.target}: memory_mb = {self.features.memory_mb} MB is enforced on "
                         f"each worker process (RLIMIT_AS: past it an allocation raises MemoryError)")
        if self.queued and self.wait_reason:
            lines.append(f"{self.target} is busy → waits for a slot: {self.wait_reason}")
        elif self.queued:
            lines.append(f"every candidate is saturated → waits for {self.target}")
        elif target_tier != preferred:
            lines.append(f"→ {self.target}")
        if self.note:
            lines.append(f"{self.target}: {self.note}")
        return lines

    def wait_on(self, kind: str, why: str, note: str = "", notes=()) -> "Decision":
        """This decision changed to wait for a slot on ``kind``, a busy target the
        policy passed over, because that is sooner than its choice (capacity.py)."""
        passed_over = tuple(p for p in self.passed_over if p[0] != kind)
        return Decision(kind, self.branch, self.rate, self.request_bytes, self.batch, self.features,
                        self.thresholds, self.excluded, passed_over, queued=True, names=self.names,
                        note=note, wait_reason=why, notes=notes)

    def __str__(self) -> str:
        return f"{self.target}: " + "; ".join(self.reasons)

    def __repr__(self) -> str:
        return f"<Decision {self.target} ({self.branch}{', fell back' if self.fell_back else ''})>"

    def to_dict(self) -> dict:
        return {"target": self.target, "branch": self.branch, "reasons": self.reasons,
                "fell_back": self.fell_back, "rate": self.rate,
                "request_bytes": self.request_bytes, "F": self.thresholds.rate,
                "D": self.thresholds.size, "calibrated": self.thresholds.calibrated}


class Plan:
    """The policy prepared for one deployment and one set of targets.

    The constraints that do not depend on the request (Python version, GPUs,
    memory, timeout, bundle size) are checked once here; ``decide`` then checks
    only the request's size and the targets' availability, which keeps the
    per-call decision to a few microseconds. Rebuild the plan when the
    deployment's features or the set of targets change; availability and
    in-flight counts are read live from the TargetState objects.
    """

    __slots__ = ("features", "states", "pinned", "static_excluded", "candidates", "batch_candidates",
                 "names")

    def __init__(self, features: Features, states: dict[str, TargetState], pinned: str | None = None):
        self.features = features
        self.states = states
        self.pinned = pinned
        unsized = replace(features, request_bytes=0, result_bytes=0)
        self.static_excluded = {}
        for kind, state in states.items():
            why = violation(unsized, state.limits)
            if why is not None:
                self.static_excluded[kind] = why
        tiers = {kind: state.tier or tier_of(kind) for kind, state in states.items()}
        self.names = _tier_names(tiers)

        def kinds_in(order: tuple) -> tuple:
            return tuple(kind for tier in order for kind in states if tiers[kind] == tier)

        if pinned is not None:
            self.candidates = {PINNED: (pinned,) if pinned in states else ()}
            self.batch_candidates = self.candidates
        else:
            self.candidates = {branch: kinds_in(order) for branch, order in ORDERS.items()}
            self.batch_candidates = {branch: kinds_in(order) for branch, order in BATCH_ORDERS.items()}

    def decide(self, rate: float, request_bytes: int, thresholds: Thresholds, *,
               batch: int = 1, avoid: tuple = ()) -> Decision:
        """Choose a target for one request of ``request_bytes`` (per item) at ``rate``."""
        branch = PINNED if self.pinned is not None else branch_of(rate, request_bytes, thresholds)
        states = self.states
        static_excluded = self.static_excluded
        excluded = None
        passed_over = None
        saturated_first = None
        request_total = request_bytes * batch
        for kind in (self.batch_candidates if batch > 1 else self.candidates)[branch]:
            state = states[kind]
            if kind in static_excluded:
                excluded = (excluded or []) + [(kind, static_excluded[kind])]
                continue
            limits = state.limits
            if limits.max_request_bytes is not None and (
                    request_total > limits.max_request_bytes
                    or self.features.result_bytes * batch > (limits.max_result_bytes or 1 << 62)):
                why = violation(replace(self.features, request_bytes=request_bytes, batch=batch), limits)
                if why is not None:
                    excluded = (excluded or []) + [(kind, why)]
                    continue
            if not state.available:
                passed_over = (passed_over or []) + [(kind, state.reason or "not available")]
            elif kind in avoid:
                passed_over = (passed_over or []) + [(kind, "failed this call already")]
            elif state.concurrency is not None and state.in_flight >= state.concurrency:
                passed_over = (passed_over or []) + [
                    (kind, f"saturated ({state.in_flight}/{state.concurrency} busy)")]
                if saturated_first is None:
                    saturated_first = kind
            else:
                return Decision(kind, branch, rate, request_bytes, batch, self.features, thresholds,
                                tuple(excluded or ()), tuple(passed_over or ()), names=self.names,
                                note=state.note, notes=limits.notes)
        if saturated_first is not None:
            return Decision(saturated_first, branch, rate, request_bytes, batch, self.features,
                            thresholds, tuple(excluded or ()), tuple(passed_over or ()), queued=True,
                            names=self.names, note=states[saturated_first].note,
                            notes=states[saturated_first].limits.notes)
        problems = (excluded or []) + (passed_over or [])
        if self.pinned is not None and self.pinned not in states:
            problems.append((self.pinned, "not among the allowed targets"))
        detail = "; ".join(f"{kind}: {why}" for kind, why in problems) or "no targets allowed"
        raise PlacementError(f"no allowed target can take this request ({detail})", dict(problems))


def _tier_names(tiers: dict[str, str]) -> dict[str, str]:
    """tier -> the kinds that stand for it in words: the allowed ones of that tier,
    else every kind declared for it, else the tier's own name."""
    names = {}
    for tier in TIERS:
        kinds = [kind for kind, t in tiers.items() if t == tier] or list(kinds_of(tier))
        names[tier] = "/".join(kinds) or tier
    return names


def decide(features: Features, states: dict[str, TargetState], thresholds: Thresholds,
           *, pinned: str | None = None, avoid: tuple = ()) -> Decision:
    """Choose a target for the request ``features`` describes (a one-off Plan).

    ``states`` holds the allowed targets only. ``avoid`` names targets that
    already failed this very call (failover). Raises PlacementError when no
    allowed target can take the request at all.
    """
    return Plan(features, states, pinned).decide(
        features.rate, features.request_bytes, thresholds, batch=features.batch, avoid=avoid)
