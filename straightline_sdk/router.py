"""The router: where each request of one deployment goes, and what happens there.

Every request: observe the rate (f_t), take the size of its frame (r_d), ask the
placement Plan, deploy the chosen target the first time it is chosen, send the
frame, record the call. A target failure fails over to the next target in the
policy's order; the user's own exceptions never do (they travel inside the
response frame).

The router is given everything it needs (the deployment's spec, its static
features, the allowed kinds, the rate estimator, the telemetry) and never calls
back into the handle: ``Deployment`` is a facade over it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import replace

from . import output as call_output
from . import targets as target_registry
from .config import settings
from .errors import (CallTimeout, PlacementError, StraightLineError, TargetFailure,
                     TargetSaturated, TargetUnavailable)
from .placement import MB, Decision, Features, Plan, RateEstimator, TargetState, Thresholds
from .placement import capacity
from .placement.policy import MODERATE, PINNED
from .progress import Progress
from .protocol import decode_response, encode_request
from .targets.base import DeploySpec, Target
from .telemetry import Telemetry

log = logging.getLogger("straightline")

#: a target that failed is left alone this long before it may be chosen again
DOWN_FOR_S = 10.0
#: lines of a target's log kept when it is torn down (h.logs() after undeploy)
FINAL_LOG_LINES = 500
#: targets whose runtime does not echo captured output into their own log (Ray
#: streams its workers' output to the driver: echoing would print it twice)
KEEPS_OUTPUT_HERE = ("ray",)
#: the most requests a map keeps in flight (threads here; the targets' capacity decides below it)
MAP_MAX_IN_FLIGHT = 64
#: a kind marked down because its probe fails (engine or service down) is probed
#: again this often, and used again as soon as its probe passes
RECHECK_S = 1.0

#: A call without Resources(timeout_s=) still does not wait forever: past
#: max(DEADLINE_FLOOR_S, DEADLINE_FACTOR x the profiled run time x the items in the
#: request) without an answer, its target counts as failed (a TargetFailure: the
#: router fails over and the target is replaced). Generous on purpose: frozen and
#: vanished workers are caught sooner by the targets' liveness checks; this is the
#: bound for what those cannot see. Resources(timeout_s=math.inf) waits forever.
DEADLINE_FLOOR_S = 600.0
DEADLINE_FACTOR = 50.0


def default_deadline(runtime_s: float, items: int) -> float:
    """The deadline of a request of ``items`` calls of a function profiled at ``runtime_s``."""
    return max(DEADLINE_FLOOR_S, DEADLINE_FACTOR * max(runtime_s, 0.0) * max(items, 1))


class MapStopped(StraightLineError):
    """A map was interrupted: this chunk was not sent."""


class Router:
    """Routes one deployment's requests over its allowed targets, and owns them."""

    def __init__(self, name: str, spec: DeploySpec, allowed: tuple[str, ...], *,
                 pinned: str | None, idempotent: bool, rate: RateEstimator,
                 telemetry: Telemetry, features: Features, capture_output: bool = True,
                 options: dict | None = None, locate_code=None):
        self.name = name
        self.spec = spec
        self.allowed = allowed
        self.pinned = pinned
        self.idempotent = idempotent
        self.rate = rate
        self.telemetry = telemetry
        self.thresholds_override: Thresholds | None = None   # set by calibration
        self.last_decision: Decision | None = None
        self._static_features = features     # everything but the rate, which is read live
        self._targets: dict[str, Target] = {}
        self._states: dict[str, TargetState] = {}
        self._down_until: dict[str, float] = {}
        self._down_by_probe: set[str] = set()
        self._plan: Plan | None = None
        self._cond = threading.Condition()
        # per kind: requests waiting for a slot, first come first served; a freed
        # slot is handed to the first of them, never taken by a later arrival
        self._waiting: dict[str, deque] = {}
        self._deploy_lock = threading.RLock()
        self._closed = False
        self.capture_output = capture_output
        #: per kind, this deployment's options over configure()'s (deploy(options=))
        self.options = {kind: dict(opts) for kind, opts in (options or {}).items()}
        self._locate_code = locate_code        # names the files of code shipped by value
        self.output_log = call_output.OutputLog()   # captured output kept here (Ray's h.logs())
        self.final_logs: dict[str, str] = {}   # each target's log, kept at its teardown
        self.profile = None        # the deployment's Profile: sizes the targets' worker pools
        self.calibration = None    # measured cold starts and transfer costs, when calibrated
        self._service_s: dict[str, float] = {}   # per kind: a warm call's time per item (EWMA)

    # -- what the handle (and calibration, the panel) read and set -------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def thresholds(self) -> Thresholds:
        """F and D in force: calibrated ones if calibrated, else the configured ones."""
        return self.thresholds_override or settings().thresholds

    @property
    def deployed(self) -> dict[str, Target]:
        return dict(self._targets)

    def features(self) -> Features:
        return replace(self._static_features, rate=self.rate.rate())

    def set_features(self, features: Features) -> None:
        """New static features (a profile arrived): the plan is rebuilt on next use."""
        self._static_features = features
        self._plan = None

    def pin(self, kind: str | None) -> None:
        if kind is not None and kind not in self.allowed:
            raise PlacementError(f"cannot pin {kind!r}: not among the allowed targets {list(self.allowed)}")
        self.pinned = kind
        self.last_decision = None
        self._plan = None

    def use_thresholds(self, thresholds: Thresholds | None) -> None:
        """Thresholds measured by calibration (None: back to the configured ones)."""
        self.thresholds_override = thresholds
        self.last_decision = None

    def plan(self) -> Plan:
        """The placement Plan for the current features and targets (built when needed)."""
        plan = self._plan
        if plan is None:
            plan = self._plan = Plan(self.features(), self._refresh_states(), self.pinned)
        return plan

    def typical_decision(self) -> Decision:
        """Where the deployment's typical request (its profile) goes now."""
        if self.last_decision is None:
            features = self.features()
            self.last_decision = self.plan().decide(
                features.rate, features.request_bytes, self.thresholds, batch=1)
        return self.last_decision

    def overview(self) -> dict[str, dict]:
        states = self.plan().states
        overview = {}
        for kind in self.allowed:
            st = states.get(kind)
            target = self._targets.get(kind)
            if st is not None and not st.available:
                state, reason = "down", st.reason
            elif target is not None:
                state, reason = ("cold" if target.cold else "warm"), ""
            else:
                state, reason = "not deployed", ""
            excluded = self._plan.static_excluded.get(kind) if self._plan else None
            overview[kind] = {"state": state, "reason": reason or (excluded or ""),
                              "in_flight": st.in_flight if st else 0,
                              "waiting": st.waiting if st else 0,
                              # a target not deployed has no capacity until it is
                              "concurrency": (st.concurrency if target is not None else 0) if st else None,
                              **(target.describe() if target is not None else {})}
        return overview

    def map_concurrency(self) -> int:
        return self.map_capacity(0)[0]

    def map_capacity(self, items: int) -> tuple[int, tuple]:
        """(requests a map of ``items`` keeps in flight, the cold targets it may start).

        The warm (deployed, available) targets' capacity; a target that is not
        deployed counts 0, unless the map's work on the warm ones is long enough
        to pay for its cold start (capacity.worth_adding): then the map may start
        it, and its expected capacity joins."""
        plan = self.plan()
        order = plan.batch_candidates.get(PINNED) or plan.batch_candidates.get(MODERATE) or tuple(plan.states)
        usable = [kind for kind in order
                  if plan.states[kind].available and kind not in plan.static_excluded]
        warm = [kind for kind in usable if kind in self._targets]
        for kind in warm:   # a cluster may have grown or shrunk since the last map
            target = self._targets.get(kind)
            if target is not None:
                target.follow_capacity()
                plan.states[kind].concurrency = target.concurrency
        total = sum(plan.states[kind].concurrency or 8 for kind in warm)
        if not warm:   # nothing deployed yet: the first choice is started anyway
            return max(2, min(MAP_MAX_IN_FLIGHT, sum(plan.states[k].concurrency or 8
                                                      for k in usable[:1]) or 2)), ()
        overflow = []
        if items:
            work_left = items * self.service_time(warm[0]) / max(1, total)
            for kind in usable:
                if kind not in self._targets and capacity.worth_adding(work_left, self.cold_start_s(kind)):
                    overflow.append(kind)
                    total += self._expected_capacity(kind)
        return max(2, min(MAP_MAX_IN_FLIGHT, total)), tuple(overflow)

    # -- capacity-aware overflow (placement/capacity.py) ----------------------------

    def service_time(self, kind: str) -> float:
        """A call's time per item on ``kind``: measured on warm calls, else the profile's."""
        measured = self._service_s.get(kind)
        if measured is not None:
            return measured
        return (self.profile.runtime_s if self.profile is not None else 0.01) + 0.001

    def cold_start_s(self, kind: str) -> float:
        """How long ``kind`` takes to deploy and answer: calibrated, else the defaults."""
        curve = self.calibration.curves.get(kind) if self.calibration is not None else None
        if curve is not None and curve.cold_start_s is not None:
            return curve.cold_start_s
        return capacity.default_cold_start_s(kind)

    def _transfer_s(self, kind: str, size: int, n: int) -> float:
        curve = self.calibration.curves.get(kind) if self.calibration is not None else None
        return curve.per_mb_s * size * n / MB if curve is not None else 0.0

    def _expected_capacity(self, kind: str) -> int:
        """Calls at once a target not deployed yet would take (its CPUs, as its pool will)."""
        cpus = target_registry.probe(kind, settings().target_options(kind)).capacity.get("cpus")
        return max(1, int(cpus or 4))

    def _prefer_waiting(self, plan: Plan, decision: Decision, n: int, size: int, avoid: tuple,
                        overflow: tuple):
        """The paper's "local server unavailable" means unavailable, not briefly busy:
        when the policy passed over a busy warm target, wait for its slot if that
        is done sooner than its choice (cold start if not deployed, its queue,
        transfer); called under ``self._cond``. Returns (decision, patience): how
        long a wait chosen here may last before the request is placed again."""
        if decision.queued or not decision.passed_over:
            return decision, None
        chosen = decision.target
        for kind, _ in decision.passed_over:
            st = plan.states[kind]
            if kind in avoid or not st.available or kind not in self._targets or not st.saturated:
                continue
            if chosen in overflow:
                return decision, None   # the map decided this target is worth starting
            service = self.service_time(kind) * n
            wait = capacity.expected_wait_s(st.in_flight, st.waiting, st.concurrency, service)
            other = plan.states[chosen]
            deployed = chosen in self._targets
            other_service = self.service_time(chosen) * n
            elsewhere = capacity.finish_s(
                deployed=deployed, cold_start_s=self.cold_start_s(chosen),
                wait_s=capacity.expected_wait_s(other.in_flight, other.waiting, other.concurrency,
                                                other_service) if deployed else 0.0,
                service_s=other_service, transfer_s=self._transfer_s(chosen, size, n))
            if wait + service <= elsewhere:
                why = (f"~{wait * 1000:.0f} ms there beats {chosen}'s "
                       + (f"~{elsewhere * 1000:.0f} ms" if deployed else
                          f"cold start (~{self.cold_start_s(chosen):.1f} s, not deployed)"))
                return decision.wait_on(kind, why, note=st.note), max(0.0, elsewhere - service)
            return decision, None
        return decision, None

    # -- deploying ------------------------------------------------------------------

    def ensure_deployed(self, kind: str) -> Target:
        """The deployed target of ``kind``, deploying it now if it is not yet."""
        with self._deploy_lock:
            self.check_open()
            existing = self._targets.get(kind)
            if existing is not None:
                return existing
            cls = target_registry.target_class(kind)
            if cls is None:
                raise TargetUnavailable(f"the {kind} target is not available in this version",
                                        target=kind)
            spec = replace(self.spec, options=self.target_options(kind), profile=self.profile,
                           idempotent=self.idempotent)
            with Progress(f"deploying {self.name} to {kind}") as progress:
                target = cls(spec, progress=progress)
                target.deploy()
            self._targets[kind] = target
            state = self._states.get(kind)
            if state is not None:
                state.concurrency = target.concurrency
                state.note = getattr(target, "pool_note", "")
            return target

    def deploy_initial(self) -> None:
        """Deploy where the typical request belongs; if that fails, where it falls back to."""
        self.last_decision = None
        decision = self.typical_decision()
        try:
            self.ensure_deployed(decision.target)
        except TargetUnavailable as exc:
            self._mark_down(decision.target, str(exc).splitlines()[0])
            self.last_decision = None
            fallback = self.typical_decision()
            if fallback.target == decision.target:
                raise
            self.ensure_deployed(fallback.target)

    def prewarm(self, kinds=None) -> None:
        plan = self.plan()
        for kind in kinds or self.allowed:
            state = plan.states.get(kind)
            if state is not None and state.available and kind not in plan.static_excluded:
                self.ensure_deployed(kind)

    def close(self) -> dict[str, Target] | None:
        """Stop routing; returns the targets to tear down (None if already closed)."""
        with self._deploy_lock:
            if self._closed:
                return None
            self._closed = True
            deployed, self._targets = dict(self._targets), {}
        return deployed

    def target_options(self, kind: str):
        """``kind``'s typed options for this deployment: configure()'s, then deploy(options=)'s."""
        configured = settings().target_options(kind)
        overrides = self.options.get(kind)
        return configured.replace(**overrides) if overrides else configured

    def keep_final_log(self, kind: str, target: Target) -> None:
        """Keep ``target``'s log before it is torn down (h.logs() after undeploy)."""
        try:
            self.final_logs[kind] = target.logs(FINAL_LOG_LINES)
        except Exception as exc:  # a log that cannot be read must not stop the teardown
            log.debug("%s: the %s target's log could not be read: %s", self.name, kind, exc)

    def check_open(self) -> None:
        if self._closed:
            raise StraightLineError(f"deployment {self.name!r} was undeployed; decorate the "
                                    f"function again to redeploy it")

    # -- the call path ------------------------------------------------------------------

    def send(self, calls: list, n: int, chunk: bool = False, stop: threading.Event | None = None,
             overflow: tuple = ()):
        """Route one request of ``n`` calls (``chunk``: part of a map); returns (outcomes, decision).

        ``stop``: the map's interrupt; once set, nothing more is sent. ``overflow``: the
        cold (undeployed) targets a map decided are worth starting (``map_capacity``);
        any other busy-vs-cold choice is made per request (``_prefer_waiting``)."""
        self.check_open()
        if stop is not None and stop.is_set():
            raise MapStopped()
        options = call_output.request_options(self.capture_output)
        stream_id = None
        if options is not None and n == 1:   # a long single call streams its output
            stream_id = options["stream_id"] = call_output.new_stream_id()
        segments, total = encode_request(calls, options)
        size = total // n
        rate = self.rate.observe(count=n)
        thresholds = self.thresholds
        plan = self._plan or self.plan()
        if self._down_until:
            self._recover_targets(time.monotonic())
        avoid: tuple = ()
        waited_out: tuple = ()   # busy targets this request waited for longer than expected
        replaced: tuple = ()         # kinds whose failed target was dropped: one fresh try each
        retried: tuple = ()
        last_failure: TargetFailure | None = None
        rerun: tuple | None = None   # (target, why) of an attempt that may have run
        queue_s = 0.0
        timeout, deadline_is_default = self._deadline(n)
        kept: list = []   # a chunk's first outcomes, back before its target failed: not run again
        saturated: tuple = ()        # kinds that refused this request as full (it did not run)
        saturated_tries, saturated_s = 0, 0.0
        while True:
            with self._cond:
                try:
                    decision = plan.decide(rate, size, thresholds, batch=n, avoid=avoid)
                except PlacementError:
                    retry = next((k for k in avoid if k in replaced), None)
                    if retry is None and isinstance(last_failure, TargetSaturated) and (
                            not last_failure.retried) and (timeout is None or saturated_s < timeout):
                        # every target left refused the request as full (e.g. one still runs
                        # a call its caller abandoned): wait for a slot there, as a queued
                        # call would, rather than fail a call that never ran (a target that
                        # retried on its own, Lambda, has waited already: its refusal stands)
                        pause = min(0.5, 0.02 * 2 ** min(saturated_tries, 5))
                        saturated_tries += 1
                        saturated_s += pause
                        self._cond.wait(pause)
                        self.check_open()
                        if stop is not None and stop.is_set():
                            raise MapStopped()
                        avoid = tuple(k for k in avoid if k not in saturated)
                        continue
                    if retry is None:
                        if last_failure is not None:
                            raise last_failure from None
                        raise
                    # nowhere else to go, and the failed target was dropped: once
                    # more on a fresh one of the same kind (a new worker or container)
                    replaced = tuple(k for k in replaced if k != retry)
                    retried += (retry,)
                    avoid = tuple(k for k in avoid if k != retry)
                    continue
                decision, patience = self._prefer_waiting(plan, decision, n, size,
                                                          avoid + waited_out, overflow)
                state = plan.states[decision.target]
                if stop is not None and stop.is_set():
                    raise MapStopped()
                if decision.queued or self._waiting.get(decision.target):
                    # waits in line for a slot (first come, first served); a wait chosen
                    # over another target (patience) gives up once it has lasted as long
                    # as going there would have taken
                    queued_since = time.perf_counter()
                    try:
                        got = self._wait_for_slot(decision.target, state, patience, stop)
                    finally:
                        queue_s += time.perf_counter() - queued_since
                    if not got:
                        waited_out += (decision.target,)
                        continue   # the wait was longer than expected: decide again
                else:
                    state.in_flight += 1
            kind = decision.target
            if rerun is not None:   # said only once there is a target to run it again on
                log.warning("%s: the %s target failed during a call that may have started there "
                            "(%s); running it again on the %s target", self.name, *rerun, kind)
                rerun = None
            try:
                target = self._targets.get(kind)
                if target is None:
                    try:
                        target = self.ensure_deployed(kind)
                    except StraightLineError:
                        raise
                    except Exception as exc:   # the kind's SDK (docker, boto, ray) raised
                        raise TargetUnavailable(f"deploying to {kind} failed: {type(exc).__name__}: "
                                                f"{exc}", target=kind) from exc
                watch = call_output.streams.watch(target, stream_id, kind, self._locate_code,
                                                  self._redact) if stream_id else None
                t0 = time.perf_counter()
                try:
                    reply = (target.invoke_chunk if chunk else target.invoke)(
                        segments, total, timeout)
                except CallTimeout as exc:
                    if not deadline_is_default:
                        raise
                    raise TargetFailure(
                        f"the {kind} target gave no answer within the default deadline of "
                        f"{timeout:g} s ({exc})", target=kind, may_have_run=True,
                        hint="the deadline is derived from the profiled run time; "
                             "Resources(timeout_s=...) sets your own, math.inf waits forever") from None
                except (StraightLineError, KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:   # never the user's (those travel in the frame)
                    raise TargetFailure(f"the {kind} target failed: {type(exc).__name__}: {exc}",
                                        target=kind, may_have_run=True) from exc
                finally:
                    streamed = call_output.streams.stop(watch) if watch is not None else 0
                latency = time.perf_counter() - t0
            except TargetSaturated as exc:
                # refused, not run: counted as rejected (not a failure) and placed again;
                # the target is fine, so no health check and no redeploy
                last_failure = exc
                self.telemetry.record(kind, branch=decision.branch, fell_back=decision.fell_back,
                                      items=n, request_bytes=total, outcome="rejected",
                                      detail=str(exc).splitlines()[0][:200])
                avoid += (kind,)
                saturated += (kind,)
                continue
            except TargetFailure as exc:
                last_failure = exc
                finished = len(exc.completed) if chunk else 0
                if finished:   # the chunk's calls that came back count as done there
                    self._record_finished(kind, decision, exc.completed, t0, queue_s, rate)
                self.telemetry.record(kind, branch=decision.branch, fell_back=decision.fell_back,
                                      items=n - finished, request_bytes=total, outcome="failed",
                                      detail=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                                      queue_s=queue_s, rate=rate)
                if self._after_failure(kind, exc) and kind not in retried:
                    replaced += (kind,)
                if chunk and exc.completed:
                    # the items that finished came back before the failure: only the rest
                    # is sent again (at most the item that was running runs twice)
                    kept += exc.completed
                    calls = calls[len(exc.completed):]
                    if not calls:
                        return kept, decision
                    n = len(calls)
                    segments, total = encode_request(calls, options)
                    size = total // n
                if kept:
                    exc.completed = list(kept)
                if not self._may_retry(exc):
                    raise
                if exc.may_have_run:
                    rerun = (kind, str(exc).splitlines()[0])
                avoid += (kind,)
                continue
            except TargetUnavailable as exc:  # deploying the chosen target failed
                last_failure = TargetFailure(str(exc), target=kind, may_have_run=False)
                last_failure.completed = list(kept)
                self._mark_down(kind, str(exc).splitlines()[0])
                avoid += (kind,)
                continue
            finally:
                self._release_slot(kind, state)
            body = reply.body
            outcomes = decode_response(body) if reply.outcomes is None else reply.outcomes
            errors, function_s, detail = 0, 0.0, ""
            if streamed and len(outcomes[0]) > 2 and outcomes[0][2] is not None:
                outcomes[0][2]["streamed"] = streamed   # printed while it ran
            for outcome in outcomes:
                ok, value, meta = call_output.split(outcome)
                function_s += meta.get("function_s", 0.0)
                if kind in KEEPS_OUTPUT_HERE:
                    self.output_log.add(kind, meta)
                if not ok:
                    errors += 1
                    if not detail and isinstance(value, dict):
                        detail = f"{value.get('type', 'Exception')}: {value.get('message', '')}"[:300]
            self.telemetry.record(kind, branch=decision.branch, fell_back=decision.fell_back,
                                  items=n, request_bytes=total,
                                  response_bytes=len(body) if reply.outcomes is None else reply.size,
                                  latency_s=latency, cold=reply.cold,
                                  outcome="error" if errors else "ok", detail=detail,
                                  function_s=function_s, queue_s=queue_s, rate=rate)
            if not reply.cold:   # a warm call's time per item, for the expected waits
                old = self._service_s.get(kind)
                self._service_s[kind] = latency / n if old is None else 0.8 * old + 0.2 * latency / n
            self.last_decision = decision
            return (kept + outcomes if kept else outcomes), decision

    def _record_finished(self, kind: str, decision: Decision, outcomes: list, t0: float,
                         queue_s: float, rate: float) -> None:
        """The calls of a chunk that finished before its target failed: a record of
        their own, so each call of a map is counted done once."""
        errors = sum(1 for outcome in outcomes if not outcome[0])
        function_s = sum(call_output.split(outcome)[2].get("function_s", 0.0) for outcome in outcomes)
        self.telemetry.record(kind, branch=decision.branch, fell_back=decision.fell_back,
                              items=len(outcomes), latency_s=time.perf_counter() - t0,
                              outcome="error" if errors else "ok", function_s=function_s,
                              queue_s=queue_s, rate=rate)

    def _deadline(self, items: int) -> tuple[float | None, bool]:
        """(seconds a request may wait for its answer, whether that is the default)."""
        timeout = self.spec.resources.timeout_s
        if timeout is not None:
            return (None if math.isinf(timeout) else timeout), False
        return default_deadline(self._static_features.runtime_s, items), True

    def _wait_for_slot(self, kind: str, state: TargetState, patience: float | None = None,
                       stop: threading.Event | None = None) -> bool:
        """Join the line for ``kind`` (under self._cond) and wait until a slot is
        handed over: first come, first served, whatever threads arrive meanwhile.
        False when ``patience`` (seconds) ran out first: the request left the line
        and is placed again. Raises MapStopped once ``stop`` is set."""
        ticket = threading.Event()
        line = self._waiting.setdefault(kind, deque())
        line.append(ticket)
        if (state.concurrency is None or state.in_flight < state.concurrency) and line[0] is ticket:
            line.popleft()            # a slot is free and nobody is ahead
            state.in_flight += 1
            return True
        deadline = time.monotonic() + patience if patience is not None else None
        state.waiting += 1
        self._cond.release()
        try:
            while True:
                left = deadline - time.monotonic() if deadline is not None else None
                if ticket.wait(min(0.1, left) if left is not None else
                               0.1 if stop is not None else None):
                    break
                if (stop is not None and stop.is_set()) or (left is not None and left <= 0.1):
                    break
        finally:
            self._cond.acquire()
            state.waiting -= 1
        if ticket.is_set():           # the slot was handed over (perhaps as we gave up)
            if stop is not None and stop.is_set():
                self._hand_on(kind, state)
                raise MapStopped()
            return True
        line.remove(ticket)           # under the lock: no slot can be handed to it now
        if stop is not None and stop.is_set():
            raise MapStopped()
        return False

    def _hand_on(self, kind: str, state: TargetState) -> None:
        """A slot is free (under self._cond): to the first in line, else counted free."""
        line = self._waiting.get(kind)
        if line:
            line.popleft().set()  # the slot goes to the first in line; in_flight unchanged
        else:
            state.in_flight -= 1
            self._cond.notify_all()

    def _release_slot(self, kind: str, state: TargetState) -> None:
        with self._cond:
            self._hand_on(kind, state)

    def _redact(self, text: str) -> str:
        """A secret's value taken out of a running call's printed output."""
        secrets = getattr(self.spec, "secrets", None)
        return secrets.redact(text) if secrets else text

    def stream(self, calls: list):
        """One call of a generator function, streamed: (outcomes iterator, decision),
        or None when the chosen target cannot stream or could not start the stream
        (the caller then uses ``send``, which fails over)."""
        self.check_open()
        # the generator's prints come back with its items, as a call's do with its result
        segments, total = encode_request(calls, call_output.request_options(self.capture_output))
        rate = self.rate.observe(count=1)
        plan = self._plan or self.plan()
        if self._down_until:
            self._recover_targets(time.monotonic())
        decision = plan.decide(rate, total, self.thresholds, batch=1)
        kind = decision.target
        state = plan.states[kind]
        with self._cond:
            state.in_flight += 1
        started = False
        try:
            target = self._targets.get(kind) or self.ensure_deployed(kind)
            t0 = time.perf_counter()
            outcomes = target.stream(segments, total, self.spec.resources.timeout_s)
            if outcomes is None:
                return None
        except (TargetFailure, TargetUnavailable) as exc:
            log.debug("%s: streaming from %s could not start (%s); sending the call instead",
                      self.name, kind, str(exc).splitlines()[0])
            return None
        else:
            started = True
        finally:
            if not started:
                self._release_slot(kind, state)
        self.last_decision = decision
        return self._recorded_stream(outcomes, decision, state, total, t0), decision

    def _recorded_stream(self, outcomes, decision, state, total: int, t0: float):
        return _RecordedStream(self, outcomes, decision, state, total, t0)

    def _may_retry(self, exc: TargetFailure) -> bool:
        return not exc.may_have_run or self.idempotent

    def _after_failure(self, kind: str, exc: TargetFailure) -> bool:
        """A target failed a call: if it no longer answers, drop it, so the policy's
        next choice of it deploys it afresh (a new worker or container); if that
        deployment fails too, the kind is marked down for a while. True when the
        target was dropped (or already gone)."""
        target = self._targets.get(kind)
        if target is None:
            return True
        healthy, detail = target.health()
        if healthy:
            return False  # e.g. saturated or throttled: the target is fine, this call goes elsewhere
        log.warning("%s: the %s target stopped answering (%s); it will be redeployed when next chosen",
                    self.name, kind, detail.splitlines()[0][:200])
        with self._deploy_lock:
            if self._targets.get(kind) is target:
                del self._targets[kind]
        self.keep_final_log(kind, target)
        try:
            target.teardown()
        except Exception as teardown_exc:
            log.debug("teardown of failed %s target: %s", kind, teardown_exc)
        return True

    # -- target states ----------------------------------------------------------------

    def _refresh_states(self) -> dict[str, TargetState]:
        states = {}
        for kind in self.allowed:
            pr = target_registry.probe(kind, self.target_options(kind))
            old = self._states.get(kind)
            reason = pr.reason + (f" ({pr.hint})" if pr.hint else "")
            deployed = self._targets.get(kind)
            concurrency = deployed.concurrency if deployed else None
            note = getattr(deployed, "pool_note", "") if deployed else ""
            if old is not None:
                # updated in place, never replaced: calls in flight and requests waiting
                # for a slot hold this object and count themselves out of it when done;
                # a kind marked down stays down until _recover_targets lets it back
                if kind in self._down_until and not old.available:
                    old.limits = pr.limits
                else:
                    old.available, old.reason, old.limits = pr.available, reason, pr.limits
                old.concurrency, old.tier, old.note = concurrency, target_registry.tier_of(kind), note
                states[kind] = old
                continue
            states[kind] = TargetState(kind, pr.available, reason, pr.limits,
                                       concurrency=concurrency, tier=target_registry.tier_of(kind),
                                       note=note)
        self._states = states
        return states

    def _recover_targets(self, now: float) -> None:
        for kind, until in list(self._down_until.items()):
            if now < until:
                continue
            state = self._states.get(kind)
            if kind in self._down_by_probe:
                probe = target_registry.probe(kind, settings().target_options(kind), fresh=True)
                if not probe.available:     # still down: look again in a moment
                    self._down_until[kind] = now + RECHECK_S
                    if state is not None:
                        state.reason = probe.reason + (f" ({probe.hint})" if probe.hint else "")
                    continue
            self._down_until.pop(kind, None)
            self._down_by_probe.discard(kind)
            if state is not None:
                state.available, state.reason = True, ""

    def _mark_down(self, kind: str, reason: str) -> None:
        """Take ``kind`` out of placement. If its probe fails too (an engine or a
        service is down), it is probed again every RECHECK_S and used as soon as it
        passes; otherwise (a failed deploy) it is left alone for DOWN_FOR_S."""
        state = self._states.get(kind)
        if state is not None:
            state.available, state.reason = False, reason
        probe = target_registry.probe(kind, settings().target_options(kind), fresh=True)
        if probe.available:
            self._down_by_probe.discard(kind)
            self._down_until[kind] = time.monotonic() + DOWN_FOR_S
        else:
            self._down_by_probe.add(kind)
            self._down_until[kind] = time.monotonic() + RECHECK_S


class _RecordedStream:
    """A streamed call's outcomes; when it ends (exhausted, failed, left early or
    dropped unread) the target's slot is given back and the call recorded, once."""

    def __init__(self, router: Router, outcomes, decision: Decision, state: TargetState,
                 total: int, t0: float):
        self._router, self._outcomes, self._decision = router, outcomes, decision
        self._state, self._total, self._t0 = state, total, t0
        self._outcome = "ok"
        self._ended = False

    def __iter__(self):
        return self

    def __next__(self):
        try:
            outcome = next(self._outcomes)
        except StopIteration:
            self.close()
            raise
        except BaseException:
            self._outcome = "failed"
            self.close()
            raise
        if outcome[0] is False:   # (None: output written after the last item, no item)
            self._outcome = "error"
        return outcome

    def close(self) -> None:
        if self._ended:
            return
        self._ended = True
        close = getattr(self._outcomes, "close", None)
        if close is not None:
            close()
        router, decision = self._router, self._decision
        router._release_slot(decision.target, self._state)
        router.telemetry.record(decision.target, branch=decision.branch,
                                fell_back=decision.fell_back, items=1, request_bytes=self._total,
                                latency_s=time.perf_counter() - self._t0, outcome=self._outcome)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
