"""The discrete-event simulation (SimPy) of one placement policy on one traffic.

A request's life: it arrives (the trace's time); waits for a client thread if
the client has a bounded pool; its rate f_t is observed by the real
``RateEstimator``; the policy places it (StraightLine through the real
``Plan.decide`` on the simulated targets' states); the chosen tier serves it;
a target failure fails it over to the next target as the router does; its
response time is completion minus arrival.

Tiers:
- local, Docker, Ray: a FIFO queue in front of ``servers()`` executors. A
  request's service time is known when it is placed (the model's line plus the
  function's runtime, times a drawn jitter), so its start is the earliest
  executor's free time (the Kiefer-Wolfowitz recursion, exact for FIFO
  c-server queues) and its completion is one SimPy timeout. That keeps the cost
  to a few events a request, and lets the oracle see each tier's queue.
- Lambda: instances, each serving one request; an idle one is reused while it
  is younger than ``keep_alive_s``, else a new one starts cold; at the
  router's concurrency limit requests queue; events over the emulator's limit
  fail and fail over.

Every placement is the real ``Plan.decide`` (through placement_adapter.py); a plan pinned to
one tier gives the same answer for every request of a size while nothing failed, so it is
asked once per (tier, size) and the answer reused.

Policies: StraightLine (any thresholds), static (pinned to one tier), random
(a seeded uniform choice among the tiers, each then pinned) and the oracle
(each request to the tier where it would finish first, knowing every queue
and every service time in advance: a practical lower bound for per-request
placement, not a proven optimum).
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter, deque
from dataclasses import dataclass, field

import simpy

from ..placement import RateEstimator
from . import placement_adapter as core
from .models import ClientModel, FunctionModel

STRAIGHTLINE, STATIC, RANDOM, ORACLE = "straightline", "static", "random", "oracle"


@dataclass(frozen=True)
class Policy:
    """One placement policy to simulate."""

    label: str
    kind: str                     # straightline | static | random | oracle
    thresholds: object = None     # StraightLine: the Thresholds it uses
    tier: str | None = None       # static: the tier every request is pinned to
    note: str = ""

    @property
    def lower_bound(self) -> bool:
        return self.kind == ORACLE


def straightline(thresholds, label: str = "straightline", note: str = "") -> Policy:
    return Policy(label, STRAIGHTLINE, thresholds=thresholds, note=note)


def static(tier: str) -> Policy:
    tier = core.tier_name(tier)
    return Policy(f"all-{tier}", STATIC, tier=tier)


def random_policy() -> Policy:
    return Policy("random", RANDOM, note="each request to a tier drawn uniformly (seeded)")


def oracle() -> Policy:
    return Policy("oracle (lower bound)", ORACLE,
                  note="each request where it would finish first, knowing every queue and service "
                       "time in advance: a lower bound no real policy reaches")


# -- results ------------------------------------------------------------------------------

def percentile(ordered: list, q: float) -> float:
    if not ordered:
        return math.nan
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class RunResult:
    """What one policy did on one traffic (times in seconds, cost in dollars)."""

    policy: Policy
    requests: int
    completed: int
    mean_s: float
    p50_s: float
    p95_s: float
    p99_s: float
    failures: dict                 # cause -> count
    per_tier: dict                 # tier -> requests it answered
    cold_starts: dict              # tier -> cold starts
    cost_usd: float
    cost_by_tier: dict
    span_s: float                  # first arrival to last completion
    arrivals: list = field(repr=False, default_factory=list)
    completions: list = field(repr=False, default_factory=list)   # nan: failed
    tiers_of: list = field(repr=False, default_factory=list)

    @property
    def label(self) -> str:
        return self.policy.label

    @property
    def failed(self) -> int:
        return self.requests - self.completed

    @property
    def usd_per_million(self) -> float:
        return self.cost_usd / self.requests * 1e6 if self.requests else math.nan

    def to_dict(self) -> dict:
        return {"policy": self.label, "kind": self.policy.kind, "lower_bound": self.policy.lower_bound,
                "requests": self.requests, "completed": self.completed,
                "mean_ms": self.mean_s * 1000, "p50_ms": self.p50_s * 1000,
                "p95_ms": self.p95_s * 1000, "p99_ms": self.p99_s * 1000,
                "failures": dict(self.failures), "per_tier": dict(self.per_tier),
                "cold_starts": dict(self.cold_starts), "cost_usd": self.cost_usd,
                "usd_per_million": self.usd_per_million,
                "cost_by_tier": dict(self.cost_by_tier),
                "F": getattr(self.policy.thresholds, "rate", None),
                "D": getattr(self.policy.thresholds, "size", None)}


# -- the tiers ----------------------------------------------------------------------------

class _QueueTier:
    """FIFO queue before ``servers`` executors (local, Docker, Ray)."""

    __slots__ = ("env", "name", "model", "state", "run", "free", "in_flight", "first_use",
                 "prewarm", "served", "cold", "factor", "transport0", "per_mb")

    def __init__(self, env, name, model, state, run, prewarm: bool):
        self.env, self.name, self.model, self.state, self.run = env, name, model, state, run
        self.free = [0.0] * model.servers()
        self.in_flight = 0
        self.first_use = None
        self.prewarm = prewarm
        self.served = 0
        self.cold = 0
        self.factor = model.runtime_factor()
        self.transport0 = model.overhead_s
        self.per_mb = model.per_mb_s / core_MB

    def _first(self, now: float) -> None:
        self.first_use = now
        if not self.prewarm:
            ready = now + self.model.cold_start_s
            self.free = [ready] * len(self.free)
            self.cold += 1

    def service(self, size: int) -> float:
        return self.transport0 + self.per_mb * size + self.run.runtime(size) * self.factor

    def estimate(self, now: float, size: int) -> float:
        if self.first_use is None and not self.prewarm:
            return now + self.model.cold_start_s + self.service(size)
        return max(now, self.free[0]) + self.service(size)

    def hold(self) -> None:
        """Count a request in flight before it arrives (it is crossing the network)."""
        self.in_flight += 1
        self.state.in_flight = self.in_flight

    def submit(self, now: float, i: int, size: int, held: bool = False) -> None:
        if self.first_use is None:
            self._first(now)
        service = self.service(size)
        jitter = self.run.jitter
        if jitter is not None:
            service = jitter(service)
        start = heapq.heappop(self.free)
        if start < now:
            start = now
        finish = start + service
        heapq.heappush(self.free, finish)
        if not held:
            self.in_flight += 1
            self.state.in_flight = self.in_flight
        self.env.timeout(finish - now, i).callbacks.append(self._done)

    def _done(self, event) -> None:
        self.in_flight -= 1
        self.state.in_flight = self.in_flight
        self.served += 1
        self.run.completed(event.value, self.name)

    def cost(self, end: float, span_start: float) -> float:
        price = self.model.price_per_hour
        if not price or self.first_use is None:
            return 0.0
        units = getattr(self.model, "hosts", None) or getattr(self.model, "nodes", None) or 1
        since = span_start if self.name == "local" else self.first_use
        return price * units * max(0.0, end - since) / 3600.0


class _LambdaTier:
    """Instances created per concurrent request; idle ones kept ``keep_alive_s``."""

    __slots__ = ("env", "name", "model", "state", "run", "idle", "busy", "servers", "waiting",
                 "in_flight", "first_use", "served", "cold", "factor", "usd", "starters")

    def __init__(self, env, name, model, state, run):
        self.env, self.name, self.model, self.state, self.run = env, name, model, state, run
        self.idle: list = []          # idle since (s), most recent last
        self.busy = 0
        self.servers = model.servers()
        self.waiting: deque = deque()
        self.in_flight = 0
        self.first_use = None
        self.served = 0
        self.cold = 0
        self.factor = model.runtime_factor()
        self.usd = 0.0
        # an emulator (moto) that starts a container per invoke, a few at a time: a FIFO
        # queue before ``start_parallelism`` starters, every invoke cold
        self.starters = [0.0] * model.start_parallelism if model.start_parallelism else None

    def _warm_available(self, now: float) -> bool:
        m = self.model
        return bool(self.idle) and not m.cold_every_invoke and now - self.idle[-1] <= m.keep_alive_s

    def estimate(self, now: float, size: int) -> float:
        m = self.model
        if size > (m.event_limit_bytes or 1 << 62):
            return math.inf
        base = m.transport_s(size) + self.run.runtime(size) * self.factor
        if self.starters is not None:
            return max(now, self.starters[0]) + base + m.cold_start_s
        if self.busy < self.servers:
            return now + base + (0.0 if self._warm_available(now) else m.cold_start_s)
        return now + 2 * base + m.cold_start_s   # behind the queue: a rough bound for the oracle

    def hold(self) -> None:
        self.in_flight += 1
        self.state.in_flight = self.in_flight

    def submit(self, now: float, i: int, size: int, held: bool = False) -> None:
        if self.first_use is None:
            self.first_use = now
        if not held:
            self.in_flight += 1
            self.state.in_flight = self.in_flight
        m = self.model
        oversize = m.event_limit_bytes is not None and size > m.event_limit_bytes
        if self.starters is not None:
            start = max(now, heapq.heappop(self.starters))
            if oversize:
                finish = start + m.oversize_fail_s
            else:
                runtime = self.run.runtime(size) * self.factor
                if self.run.jitter is not None:
                    runtime = self.run.jitter(runtime)
                finish = start + m.cold_start_s + m.transport_s(size) + runtime
                self.cold += 1
            heapq.heappush(self.starters, finish)
            self.env.timeout(finish - now, i).callbacks.append(self._oversize if oversize else self._emulated)
            return
        if oversize:
            self.env.timeout(m.oversize_fail_s, i).callbacks.append(self._oversize)
            return
        if self.busy < self.servers:
            self._start(now, i, size)
        else:
            self.waiting.append((i, size))

    def _start(self, now: float, i: int, size: int) -> None:
        m = self.model
        self.busy += 1
        warm = self._warm_available(now)
        if warm:
            self.idle.pop()
        else:
            self.idle.clear()   # the most recent idle instance expired: so did every older one
            self.cold += 1
        runtime = self.run.runtime(size) * self.factor
        jitter = self.run.jitter
        if jitter is not None:
            runtime = jitter(runtime)
        init = 0.0 if warm else m.cold_start_s
        self.usd += m.bill(runtime + (init if m.bill_init else 0.0))
        self.env.timeout(m.transport_s(size) + init + runtime, i).callbacks.append(self._done)

    def _release(self) -> None:
        self.in_flight -= 1
        self.state.in_flight = self.in_flight

    def _done(self, event) -> None:
        now = self.env.now
        self.busy -= 1
        self._release()
        if not self.model.cold_every_invoke:
            self.idle.append(now)
        self.served += 1
        if self.waiting:
            i, size = self.waiting.popleft()
            self._start(now, i, size)
        self.run.completed(event.value, self.name)

    def _emulated(self, event) -> None:
        self._release()
        self.served += 1
        self.run.completed(event.value, self.name)

    def _oversize(self, event) -> None:
        self._release()
        self.run.target_failed(event.value, self.name, "payload limit")

    def cost(self, end: float, span_start: float) -> float:
        return self.usd


core_MB = 1024 * 1024


# -- one run --------------------------------------------------------------------------------

class _Run:
    def __init__(self, traffic, setup, function: FunctionModel, policy: Policy, *, seed: int,
                 features, rate_window_s: float, prior_rate: float, prewarm: bool, rates=None):
        self.env = env = simpy.Environment()
        self.times, self.sizes = traffic.times, traffic.sizes
        n = len(self.times)
        self.policy = policy
        self.function = function
        self.jitter = function.sampler(seed)
        self.client: ClientModel = setup.client
        models = setup.tiers
        self.states = core.make_states(models)
        self.tiers = {}
        for name, model in models.items():
            if name == "lambda":
                self.tiers[name] = _LambdaTier(env, name, model, self.states[name], self)
            else:
                self.tiers[name] = _QueueTier(env, name, model, self.states[name], self, prewarm)
        uplink = setup.network.uplink_mb_s
        self.link_s_per_byte = 1.0 / (uplink * core_MB) if uplink else None
        self.link_free = 0.0
        self.remote = {name for name, m in models.items() if getattr(m, "remote", False)}
        if policy.kind == STATIC and policy.tier not in models:
            raise ValueError(f"{policy.label}: the {policy.tier} tier is not among the simulated "
                             f"tiers ({', '.join(models)})")
        self.plan = core.build_plan(features, self.states, policy.tier if policy.kind == STATIC else None)
        self.pinned = {t: core.build_plan(features, self.states, t) for t in models} \
            if policy.kind in (RANDOM, ORACLE) else {}
        if policy.kind == RANDOM:
            rng = random.Random(f"whatif-random-policy-{seed}")
            names = list(models)
            self.picks = [rng.choice(names) for _ in range(n)]
        self.thresholds = policy.thresholds or core.DEFAULT_THRESHOLDS
        self.estimator = RateEstimator(window=rate_window_s, prior=prior_rate)
        # the rate f_t each request sees depends only on the arrival times when the client
        # sends each request as it arrives: then it can be computed once and shared by runs
        self.known_rates = rates is not None and self.client.max_in_flight is None
        self.rates = list(rates) if self.known_rates else [0.0] * n
        self.avoid: dict = {}
        self.last_cause: dict = {}
        self.done = [math.nan] * n
        self.where: list = [None] * n
        self.failures: Counter = Counter()
        self.client_busy = 0
        self.client_waiting: deque = deque()
        self._runtime_cache: dict = {}
        self._pinned_cache: dict = {}

    # the function's runtime at a size (sizes repeat in traces: cache the line's value)
    def runtime(self, size: int) -> float:
        r = self._runtime_cache.get(size)
        if r is None:
            r = self._runtime_cache[size] = self.function.runtime(size)
        return r

    def schedule_arrivals(self) -> None:
        # each arrival is one SimPy event that schedules the next: the event queue stays
        # small (a queue holding every arrival costs a log of the whole trace per event)
        if self.times:
            self.env.timeout(max(0.0, self.times[0] - self.env.now), 0).callbacks.append(self.arrive)

    def arrive(self, event) -> None:
        i = event.value
        times = self.times
        if i + 1 < len(times):
            delay = times[i + 1] - times[i]
            self.env.timeout(delay if delay > 0 else 0.0, i + 1).callbacks.append(self.arrive)
        limit = self.client.max_in_flight
        if limit is not None and self.client_busy >= limit:
            self.client_waiting.append(i)
        else:
            self.client_busy += 1
            self.dispatch(i)

    def _pinned(self, plan, key, rate: float, size: int, avoid: tuple) -> str:
        """A pinned plan's answer depends only on the request's size (constraints) while
        nothing failed: asked once per (tier, size), the rest from the cache."""
        if avoid:
            return core.place(plan, rate, size, self.thresholds, avoid)[0]
        hit = self._pinned_cache.get(key)
        if hit is None:
            try:
                hit = core.place(plan, rate, size, self.thresholds)[0]
            except core.PlacementError as exc:
                hit = exc
            self._pinned_cache[key] = hit
        if isinstance(hit, core.PlacementError):
            raise hit
        return hit

    def choose(self, i: int, rate: float, size: int, avoid: tuple) -> str:
        kind = self.policy.kind
        if kind == STRAIGHTLINE:
            return core.place(self.plan, rate, size, self.thresholds, avoid)[0]
        if kind == STATIC:
            return self._pinned(self.plan, size, rate, size, avoid)
        if kind == RANDOM:
            pick = self.picks[i]
            return self._pinned(self.pinned[pick], (pick, size), rate, size, avoid)
        best, best_t = None, math.inf
        now = self.env.now
        for name, tier in self.tiers.items():
            if name in avoid:
                continue
            try:
                self._pinned(self.pinned[name], (name, size), rate, size, ())
            except core.PlacementError:
                continue
            t = tier.estimate(self._after_link(now, size) if name in self.remote else now, size)
            if t < best_t:
                best, best_t = name, t
        if best is None:
            raise core.PlacementError("no simulated tier can take this request", {})
        return best

    def dispatch(self, i: int, avoid: tuple = ()) -> None:
        now = self.env.now
        size = self.sizes[i]
        if avoid or self.known_rates:
            rate = self.rates[i]
        else:
            self.rates[i] = rate = self.estimator.observe(now)
        try:
            tier = self.choose(i, rate, size, avoid)
        except core.PlacementError:
            self.finish(i, None, self.last_cause.get(i, "no target"))
            return
        if self.link_s_per_byte is not None and tier in self.remote:
            # across the shared uplink first, one transfer after another
            arrive = self._after_link(now, size)
            self.link_free = arrive
            target = self.tiers[tier]
            target.hold()
            self.env.timeout(arrive - now, (i, size, tier)).callbacks.append(self._landed)
            return
        self.tiers[tier].submit(now, i, size)

    def _after_link(self, now: float, size: int) -> float:
        if self.link_s_per_byte is None:
            return now
        return max(now, self.link_free) + size * self.link_s_per_byte

    def _landed(self, event) -> None:
        i, size, tier = event.value
        self.tiers[tier].submit(self.env.now, i, size, held=True)

    def target_failed(self, i: int, tier: str, cause: str) -> None:
        self.last_cause[i] = cause
        avoid = self.avoid.get(i, ()) + (tier,)
        self.avoid[i] = avoid
        self.dispatch(i, avoid)

    def completed(self, i: int, tier: str) -> None:
        timeout = self.client.timeout_s
        if timeout is not None and self.env.now - self.times[i] > timeout:
            self.finish(i, tier, "timeout")
        else:
            self.finish(i, tier, None)

    max_failures = None      # see simulate(give_up_over=)
    max_total_s = math.inf
    total_s = 0.0
    failed = 0

    def finish(self, i: int, tier, cause) -> None:
        if cause is None:
            now = self.env.now
            self.done[i] = now
            self.where[i] = tier
            if self.max_failures is not None:
                self.total_s += now - self.times[i]
                if self.total_s > self.max_total_s:
                    raise Abandoned()
        else:
            self.failures[cause] += 1
            self.failed += 1
            if self.max_failures is not None and self.failed > self.max_failures:
                raise Abandoned()
        if self.client.max_in_flight is not None:
            self._next_client()

    def _next_client(self) -> None:
        self.client_busy -= 1
        deadline = self.client.start_deadline_s
        now = self.env.now
        while self.client_waiting:
            i = self.client_waiting.popleft()
            if deadline is not None and now - self.times[i] > deadline:
                self.failures["saturation"] += 1
                continue
            self.client_busy += 1
            self.dispatch(i)
            return

    def result(self) -> RunResult:
        self.schedule_arrivals()
        self.env.run()
        times = self.times
        ok = sorted(d - t for d, t in zip(self.done, times) if d == d)
        n = len(times)
        end = max((d for d in self.done if d == d), default=times[-1] if n else 0.0)
        start = times[0] if n else 0.0
        cost_by = {name: tier.cost(end, start) for name, tier in self.tiers.items()}
        per_tier = Counter(w for w in self.where if w is not None)
        return RunResult(
            self.policy, n, len(ok),
            sum(ok) / len(ok) if ok else math.nan,
            percentile(ok, 0.5), percentile(ok, 0.95), percentile(ok, 0.99),
            dict(self.failures), dict(per_tier),
            {name: tier.cold for name, tier in self.tiers.items() if tier.cold},
            sum(cost_by.values()), cost_by, end - start,
            list(times), self.done, self.where)


class Abandoned(Exception):
    """A run stopped early: it had already done worse than the bound it was given."""


def simulate(traffic, setup, function: FunctionModel, policy: Policy, *, seed: int = 0,
             features=None, rate_window_s: float = 5.0, prior_rate: float = 0.0,
             prewarm: bool = True, rates=None, give_up_over=None) -> RunResult:
    """Simulate ``policy`` on ``traffic`` in ``setup`` (a presets.Setup). Deterministic
    for a seed. ``rates``: the f_t of each request, when already computed for this
    traffic with the same window and prior (see tune.observed_rates). ``give_up_over``:
    (failures, total response time s): raise Abandoned as soon as the run has more
    failures, or a larger total response time, than that (a search's pruning)."""
    if features is None:
        features = core.features_of(function)
    run = _Run(traffic, setup, function, policy, seed=seed, features=features,
               rate_window_s=rate_window_s, prior_rate=prior_rate, prewarm=prewarm, rates=rates)
    if give_up_over is not None:
        run.max_failures, run.max_total_s = give_up_over
    if not len(traffic):
        raise ValueError("the traffic has no requests")
    return run.result()
