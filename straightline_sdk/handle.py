"""The handle a decorated function becomes, and the router behind its calls.

Every call: serialize the arguments (that size is r_d), observe the rate (f_t),
ask the deployment's placement Plan, deploy the chosen target the first time it
is chosen, send the frame, record the call. A target failure fails over to the
next target in the policy's order; the user's own exceptions never do.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import replace

from . import targets as target_registry
from .config import settings
from .errors import PlacementError, StraightLineError, TargetFailure, TargetUnavailable
from .packaging import FunctionPackage, encode_request
from .packaging.payload import code_locations
from .placement import (MB, Features, Plan, RateEstimator, TargetState, Thresholds,
                        human_bytes)
from .profile import Profile, profile_call
from .progress import Progress
from .remote import rebuild_exception
from .runtime import wire
from .targets.base import DeploySpec, Resources, Target
from .telemetry import Telemetry

log = logging.getLogger("straightline")

#: a target that failed is left alone this long before it may be chosen again
DOWN_FOR_S = 10.0


class Sample:
    """The arguments of one representative call: ``Sample(x, k=2)``."""

    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs

    @classmethod
    def of(cls, sample) -> "Sample":
        if isinstance(sample, Sample):
            return sample
        if isinstance(sample, tuple):
            return cls(*sample)
        raise TypeError(
            f"sample must be a tuple of positional arguments, e.g. sample=(x,), or "
            f"straightline.Sample(x, key=value); got a {type(sample).__qualname__}")

    def __repr__(self):
        return f"Sample({len(self.args)} args, {sorted(self.kwargs)})"


class Deployment:
    """A deployed function. Call it like the function; see also map, submit, local."""

    def __init__(self, fn, package: FunctionPackage, *, rate: float | None, target: str | None,
                 targets, requirements, resources: Resources, keep: bool, idempotent: bool,
                 deploy_key: str):
        self.fn = fn
        self.name = package.name
        self.deploy_key = deploy_key
        self.pinned = target
        self.declared_rate = float(rate or 0.0)
        self.idempotent = idempotent
        self.keep = keep
        allowed = tuple(targets) if targets else ((target,) if target else settings().targets)
        if target is not None and target not in allowed:
            raise PlacementError(f"target={target!r} is not among targets={list(allowed)}")
        self.allowed = allowed
        self.spec = DeploySpec(package, resources, tuple(requirements or ()), keep=keep)
        self.telemetry = Telemetry()
        self.profile: Profile | None = None
        self.thresholds_override: Thresholds | None = None   # set by calibration
        self.calibration = None
        self._rate = RateEstimator(window=settings().rate_window_s, prior=self.declared_rate)
        self._targets: dict[str, Target] = {}
        self._states: dict[str, TargetState] = {}
        self._down_until: dict[str, float] = {}
        self._plan: Plan | None = None
        self._last_decision = None
        self._cond = threading.Condition()
        self._deploy_lock = threading.RLock()
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False
        self._code_locations: dict | None = None   # built at the first remote error
        self._panel = None

    # -- public API ------------------------------------------------------------

    def __call__(self, *args, **kwargs):
        if self.profile is None and self.pinned is None:
            result = self._profile_first_call(args, kwargs)
            if result is not _NOT_PROFILED:
                return result
        outcomes, decision = self._send([(args, kwargs)], 1)
        ok, value = outcomes[0]
        if ok:
            return value
        raise self._rebuild(value, decision.target)

    def map(self, *iterables, kwargs: dict | None = None, return_exceptions: bool = False,
            chunksize: int | None = None, concurrency: int | None = None,
            progress: bool | None = None) -> list:
        """Call the function on each item (``zip(*iterables)`` as positional
        arguments, ``kwargs`` for every call), concurrently; results in input order.

        With ``return_exceptions=True`` a failed item's exception takes its place
        in the list and every other item's result is kept. Otherwise the first
        failure stops the map and is raised (items already sent still finish).
        Items travel in chunks (``chunksize``) so small calls are not dominated by
        per-request overhead. With ``Resources(timeout_s=)`` each call travels alone:
        the limit is per call, and a chunk's calls run one after another.
        """
        self._check_open()
        items = list(zip(*iterables))
        kw = dict(kwargs or {})
        n = len(items)
        results: list = [None] * n
        if n == 0:
            return results
        start = 0
        if self.profile is None and self.pinned is None:
            first = self._profile_first_call(items[0], kw, capture=return_exceptions)
            if first is not _NOT_PROFILED:
                results[0] = first
                start = 1
        workers = concurrency or self._map_concurrency()
        timeout_s = self.spec.resources.timeout_s
        if chunksize is None:
            chunksize = 1 if timeout_s else max(1, min(256, (n - start) // (workers * 4) or 1))
        elif timeout_s and chunksize > 1:
            raise ValueError(
                f"chunksize={chunksize} with Resources(timeout_s={timeout_s:g}): the time limit is "
                f"per call, and a chunk's calls run one after another in one request; leave "
                f"chunksize out (each call then travels alone) or drop timeout_s")
        chunks = [(i, items[i:i + chunksize]) for i in range(start, n, chunksize)]
        failed: list[tuple[int, BaseException]] = []
        with Progress(f"{self.name}.map", total=n, enabled=progress) as bar, \
                ThreadPoolExecutor(max_workers=workers, thread_name_prefix="straightline-map") as pool:
            bar.advance(start)
            futures = {pool.submit(self._send, [(args, kw) for args in chunk], len(chunk), True): (i, chunk)
                       for i, chunk in chunks}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    i, chunk = futures[fut]
                    errors = 0
                    try:
                        outcomes, decision = fut.result()
                    except Exception as exc:  # the request failed as a whole, on every target
                        outcomes, decision, errors = [(False, exc)] * len(chunk), None, len(chunk)
                        for j in range(len(chunk)):
                            results[i + j] = exc
                            failed.append((i + j, exc))
                    else:
                        for j, (ok, value) in enumerate(outcomes):
                            if ok:
                                results[i + j] = value
                            else:
                                exc = self._rebuild(value, decision.target)
                                results[i + j] = exc
                                failed.append((i + j, exc))
                                errors += 1
                    bar.advance(len(chunk), errors=errors)
                if failed and not return_exceptions:
                    for fut in pending:
                        fut.cancel()
        if failed and not return_exceptions:
            index, exc = min(failed, key=lambda f: f[0])
            log.debug("%s.map: %d of %d items failed; raising item %d's error", self.name,
                      len(failed), n, index)
            raise exc
        return results

    def submit(self, *args, **kwargs) -> Future:
        """Start a call in the background; returns a concurrent.futures.Future."""
        self._check_open()
        with self._deploy_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=32,
                                                    thread_name_prefix=f"straightline-{self.name}")
        return self._executor.submit(self, *args, **kwargs)

    def local(self, *args, **kwargs):
        """Run the function here, in this process: no serialization, no target."""
        return self.fn(*args, **kwargs)

    @property
    def placement(self):
        """The latest placement decision (target, features, reasons in words)."""
        if self._last_decision is None:
            features = self.features()
            self._last_decision = self._get_plan().decide(
                features.rate, features.request_bytes, self.thresholds, batch=1)
        return self._last_decision

    @property
    def thresholds(self) -> Thresholds:
        """F and D in force: calibrated ones if calibrated, else the configured ones."""
        return self.thresholds_override or settings().thresholds

    def stats(self) -> dict[str, dict]:
        """Per target: requests, calls, errors, failures, bytes, p50/p95 latency (ms)."""
        return self.telemetry.stats()

    @property
    def calls(self):
        """The most recent call records (bounded)."""
        return self.telemetry.recent()

    @property
    def endpoint(self):
        """The JSON door for other programs: URL, bearer token (JSON calls only),
        ``curl(...)`` line, OpenAPI description. Deploys the local worker if no
        HTTP worker is deployed yet."""
        from .endpoint import endpoint_of
        return endpoint_of(self)

    @property
    def deployed_targets(self) -> dict[str, Target]:
        return dict(self._targets)

    def target_overview(self) -> dict[str, dict]:
        """Each allowed target's state for people: "warm" (deployed, has answered),
        "cold" (deployed, not called yet), "down" (failed or unavailable, with
        the reason), "not deployed" (available, deployed when first chosen)."""
        states = self._get_plan().states
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
                              "concurrency": st.concurrency if st else None,
                              **(target.describe() if target is not None else {})}
        return overview

    def pin(self, kind: str | None) -> None:
        """Send every call to ``kind`` (one of the allowed targets); ``None``
        returns to automatic placement. Takes effect on the next call."""
        if kind is not None and kind not in self.allowed:
            raise PlacementError(f"cannot pin {kind!r}: not among the allowed targets {list(self.allowed)}")
        self.pinned = kind
        self._last_decision = None
        self._invalidate_plan()

    @property
    def panel(self):
        """The live ipywidgets panel of this deployment (built on first use)."""
        if self._panel is None:
            from .panel import Panel
            self._panel = Panel(self)
        return self._panel.widget

    def _ipython_display_(self):
        from IPython.display import display
        display(self.panel)

    def logs(self, target: str | None = None, tail: int = 100) -> str:
        """The output of the function's target (the last-used one by default)."""
        kind = target or (self._last_decision.target if self._last_decision else None) \
            or next(iter(self._targets), None)
        t = self._targets.get(kind) if kind else None
        return t.logs(tail) if t is not None else ""

    def undeploy(self) -> None:
        """Tear down every target this deployment started. Idempotent."""
        with self._deploy_lock:
            if self._closed:
                return
            self._closed = True
            deployed, self._targets = dict(self._targets), {}
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        for kind, target in deployed.items():
            try:
                target.teardown()
            except Exception as exc:  # teardown of one target must not stop the others'
                log.warning("%s: teardown of the %s target failed: %s", self.name, kind, exc)
        _unregister(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.undeploy()

    def __repr__(self):
        where = ", ".join(self._targets) or "nothing deployed yet"
        calls = sum(t["calls"] for t in self.telemetry.totals.values())
        state = "undeployed" if self._closed else where
        return f"<Deployment {self.name!r} on {state}; {calls} calls>"

    def __str__(self):
        return self.summary()

    def summary(self) -> str:
        """A text view of the deployment: placement, targets, thresholds, stats."""
        lines = [repr(self)]
        if self.profile is not None:
            lines.append(f"  profile: {self.profile}")
        th = self.thresholds
        lines.append(f"  thresholds: F = {th.rate:g} req/s, D = {human_bytes(th.size)} "
                     f"({'calibrated' if th.calibrated else th.basis or 'configured'})")
        if self._last_decision is not None:
            lines.append(f"  placement: {self._last_decision.target}")
            lines += [f"    {reason}" for reason in self._last_decision.reasons]
        for kind, st in self.stats().items():
            p50 = f"{st['p50_ms']:.2f} ms" if st["p50_ms"] is not None else "-"
            lines.append(f"  {kind}: {st['calls']} calls, {st['errors']} errors, "
                         f"{st['failures']} target failures, p50 {p50}")
        return "\n".join(lines)

    # -- placement -----------------------------------------------------------

    def features(self) -> Features:
        """The deployment's features: the profile (if any), resources, declared rate."""
        p = self.profile
        r = self.spec.resources
        return Features(
            rate=self._rate.rate(), request_bytes=p.request_bytes if p else 0,
            result_bytes=p.result_bytes if p else 0, runtime_s=p.runtime_s if p else 0.0,
            peak_memory_mb=p.peak_memory_mb if p else 0.0, memory_mb=r.memory_mb, cpus=r.cpus,
            gpus=r.gpus, timeout_s=r.timeout_s, python=sys.version_info[:2],
            package_mb=len(self.spec.package.payload) / MB,
        )

    def _target_options(self, kind: str) -> dict:
        return settings().target_options(kind)

    def _refresh_states(self) -> dict[str, TargetState]:
        states = {}
        for kind in self.allowed:
            pr = target_registry.probe(kind, self._target_options(kind))
            old = self._states.get(kind)
            reason = pr.reason + (f" ({pr.hint})" if pr.hint else "")
            deployed = self._targets.get(kind)
            states[kind] = TargetState(
                kind, pr.available, reason, pr.limits, in_flight=old.in_flight if old else 0,
                concurrency=deployed.concurrency if deployed else None)
        self._states = states
        return states

    def _get_plan(self) -> Plan:
        plan = self._plan
        if plan is None:
            plan = self._plan = Plan(self.features(), self._refresh_states(), self.pinned)
        return plan

    def _invalidate_plan(self) -> None:
        self._plan = None

    def _recover_targets(self, now: float) -> None:
        for kind, until in list(self._down_until.items()):
            if now >= until:
                del self._down_until[kind]
                state = self._states.get(kind)
                if state is not None:
                    state.available, state.reason = True, ""

    def _mark_down(self, kind: str, reason: str) -> None:
        state = self._states.get(kind)
        if state is not None:
            state.available, state.reason = False, reason
        self._down_until[kind] = time.monotonic() + DOWN_FOR_S

    # -- the call path -----------------------------------------------------------

    def _send(self, calls: list, n: int, chunk: bool = False):
        """Route one request of ``n`` calls (``chunk``: part of a map); returns (outcomes, decision)."""
        self._check_open()
        segments, total = encode_request(calls)
        size = total // n
        rate = self._rate.observe(count=n)
        thresholds = self.thresholds
        plan = self._plan or self._get_plan()
        if self._down_until:
            self._recover_targets(time.monotonic())
        avoid: tuple = ()
        last_failure: TargetFailure | None = None
        rerun: tuple | None = None   # (target, why) of an attempt that may have run
        while True:
            with self._cond:
                try:
                    decision = plan.decide(rate, size, thresholds, batch=n, avoid=avoid)
                except PlacementError:
                    if last_failure is not None:
                        raise last_failure from None
                    raise
                state = plan.states[decision.target]
                if decision.queued:
                    while state.concurrency is not None and state.in_flight >= state.concurrency:
                        self._cond.wait()
                state.in_flight += 1
            kind = decision.target
            if rerun is not None:   # said only once there is a target to run it again on
                log.warning("%s: the %s target failed during a call that may have started there "
                            "(%s); running it again on the %s target", self.name, *rerun, kind)
                rerun = None
            try:
                target = self._targets.get(kind) or self._deploy(kind)
                cold = target.cold
                t0 = time.perf_counter()
                body = (target.invoke_chunk if chunk else target.invoke)(
                    segments, total, self.spec.resources.timeout_s)
                latency = time.perf_counter() - t0
                if target.last_call_cold is not None:
                    cold = target.last_call_cold
            except TargetFailure as exc:
                last_failure = exc
                self.telemetry.record(kind, decision.branch, decision.fell_back, n, total, 0, 0.0,
                                      False, "failed", str(exc).splitlines()[0][:200])
                self._after_failure(kind, exc)
                if not self._may_retry(exc):
                    raise
                if exc.may_have_run:
                    rerun = (kind, str(exc).splitlines()[0])
                avoid += (kind,)
                continue
            except TargetUnavailable as exc:  # deploying the chosen target failed
                last_failure = TargetFailure(str(exc), target=kind, may_have_run=False)
                self._mark_down(kind, str(exc).splitlines()[0])
                avoid += (kind,)
                continue
            finally:
                with self._cond:
                    state.in_flight -= 1
                    self._cond.notify()
            outcomes = wire.decode(body)
            errors = 0
            for ok, _ in outcomes:
                if not ok:
                    errors += 1
            self.telemetry.record(kind, decision.branch, decision.fell_back, n, total, len(body),
                                  latency, cold, "error" if errors else "ok")
            self._last_decision = decision
            return outcomes, decision

    def _rebuild(self, info: dict, target: str) -> BaseException:
        if self._code_locations is None:
            self._code_locations = code_locations(self.fn)
        return rebuild_exception(info, target, self._code_locations)

    def _may_retry(self, exc: TargetFailure) -> bool:
        return not exc.may_have_run or self.idempotent

    def _after_failure(self, kind: str, exc: TargetFailure) -> None:
        """A target failed a call: if it no longer answers, drop it, so the policy's
        next choice of it deploys it afresh (a new worker or container); if that
        deployment fails too, the kind is marked down for a while."""
        target = self._targets.get(kind)
        if target is None:
            return
        healthy, detail = target.health()
        if healthy:
            return  # e.g. saturated or throttled: the target is fine, this call goes elsewhere
        log.warning("%s: the %s target stopped answering (%s); it will be redeployed when next chosen",
                    self.name, kind, detail.splitlines()[0][:200])
        with self._deploy_lock:
            if self._targets.get(kind) is target:
                del self._targets[kind]
        try:
            target.teardown()
        except Exception as teardown_exc:
            log.debug("teardown of failed %s target: %s", kind, teardown_exc)

    def _deploy(self, kind: str) -> Target:
        with self._deploy_lock:
            self._check_open()
            existing = self._targets.get(kind)
            if existing is not None:
                return existing
            cls = target_registry.target_class(kind)
            if cls is None:
                raise TargetUnavailable(f"the {kind} target is not available in this version",
                                        target=kind)
            spec = replace(self.spec, options=self._target_options(kind))
            with Progress(f"deploying {self.name} to {kind}") as progress:
                target = cls(spec, progress=progress)
                target.deploy()
            self._targets[kind] = target
            state = self._states.get(kind)
            if state is not None:
                state.concurrency = target.concurrency
            return target

    def prewarm(self, kinds=None) -> None:
        """Deploy targets now rather than when first chosen (all allowed, available ones by default)."""
        plan = self._get_plan()
        for kind in kinds or self.allowed:
            state = plan.states.get(kind)
            if state is not None and state.available and kind not in plan.static_excluded:
                self._deploy(kind)

    def _map_concurrency(self) -> int:
        total = 0
        for kind, state in self._get_plan().states.items():
            if state.available:
                total += state.concurrency or 8
        return max(2, min(32, total))

    def _profile_first_call(self, args, kwargs, capture: bool = False):
        """Without a sample, the first call runs here, profiled, and places the deployment."""
        with self._deploy_lock:
            if self.profile is not None:
                return _NOT_PROFILED
            try:
                profile, result = profile_call(self.fn, tuple(args), dict(kwargs))
            except Exception as exc:
                if capture:
                    return exc
                raise
            self.set_profile(profile)
            self.deploy_initial()
            return result

    def set_profile(self, profile: Profile) -> None:
        self.profile = profile
        self._invalidate_plan()

    def deploy_initial(self) -> None:
        """Deploy where the profile says the deployment's typical request belongs."""
        self._last_decision = None
        decision = self.placement
        try:
            self._deploy(decision.target)
        except TargetUnavailable as exc:
            self._mark_down(decision.target, str(exc).splitlines()[0])
            self._last_decision = None
            fallback = self.placement
            if fallback.target == decision.target:
                raise
            self._deploy(fallback.target)

    def _check_open(self) -> None:
        if self._closed:
            raise StraightLineError(f"deployment {self.name!r} was undeployed; decorate the "
                                    f"function again to redeploy it")


_NOT_PROFILED = object()

# -- live deployments ------------------------------------------------------------

_live: dict[str, Deployment] = {}
_live_lock = threading.Lock()


def register(dep: Deployment) -> None:
    with _live_lock:
        _live[dep.name] = dep


def _unregister(dep: Deployment) -> None:
    with _live_lock:
        if _live.get(dep.name) is dep:
            del _live[dep.name]


def live(name: str) -> Deployment | None:
    with _live_lock:
        return _live.get(name)


def deployments() -> list[Deployment]:
    """The deployments of this process that are still deployed."""
    with _live_lock:
        return list(_live.values())


@atexit.register
def _undeploy_all_at_exit() -> None:
    for dep in deployments():
        if not dep.keep:
            dep.undeploy()
