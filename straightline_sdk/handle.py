"""The handle a decorated function becomes: ``Deployment``.

A facade: calls, maps, submits and the views (placement, stats, panel) are
here; where each request goes and what happens there is the Router's
(router.py), which the handle makes and which never calls back into it.
"""

from __future__ import annotations

import atexit
import functools
import logging
import sys
import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait

from .config import settings
from .environment import SecretValues, applied, environment_bytes
from .errors import PlacementError, StraightLineError
from .packaging import FunctionPackage
from .packaging.identity import deployed_codes, translate_frames
from .placement import MB, Features, Plan, RateEstimator, Thresholds, capacity, human_bytes
from .profile import Profile, profile_call
from . import output as call_output
from .progress import Progress
from .protocol import CodeIndex, code_locations, rebuild_exception
from .resources import Resources
from .router import DOWN_FOR_S, KEEPS_OUTPUT_HERE, Router  # noqa: F401  (DOWN_FOR_S: where it used to live)
from .targets.base import DeploySpec, Target, note_gone, note_live
from .telemetry import Telemetry

log = logging.getLogger("straightline")


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
                 deploy_key: str, capture_output: bool = True, options: dict | None = None,
                 env: tuple = (), secrets: SecretValues | None = None):
        self.fn = fn
        self._deployed_fn = fn      # the function whose payload the targets run (see adopt_edit)
        self._deployed_codes = deployed_codes(fn)   # its code and its helpers', as deployed
        self._line_map: dict = {}
        self.name = package.name
        self.deploy_key = deploy_key
        self.setting_key = ""       # deploy()'s hash of everything but the code (see swap_function)
        self.declared_rate = float(rate or 0.0)
        self.keep = keep
        allowed = tuple(targets) if targets else ((target,) if target else settings().targets)
        self.router_allowed = allowed
        if target is not None and target not in allowed:
            raise PlacementError(f"target={target!r} is not among targets={list(allowed)}")
        self.spec = DeploySpec(package, resources, tuple(requirements or ()), keep=keep,
                               env=tuple(env), secrets=secrets or SecretValues())
        self.telemetry = Telemetry()
        self.profile: Profile | None = None
        self.calibration = None
        self.router = Router(self.name, self.spec, allowed, pinned=target, idempotent=idempotent,
                             rate=RateEstimator(window=settings().rate_window_s,
                                                prior=self.declared_rate),
                             telemetry=self.telemetry, features=self._static_features(),
                             capture_output=capture_output, options=options,
                             locate_code=self._locate_code)
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._async_executor: ThreadPoolExecutor | None = None
        self._map_pools: dict[int, ThreadPoolExecutor] = {}   # idle map senders, by size
        self._code_locations: dict | None = None   # built at the first remote error
        self._panel = None

    # -- public API ------------------------------------------------------------

    def __call__(self, *args, **kwargs):
        if self.profile is None and self.pinned is None:
            result = self._profile_first_call(args, kwargs)
            if result is not _NOT_PROFILED:
                return result
        try:
            if self.spec.package.is_generator:
                streamed = self.router.stream([(args, kwargs)])
                if streamed is not None:
                    return self._items(*streamed)
            outcomes, decision = self.router.send([(args, kwargs)], 1)
        except StraightLineError as exc:   # e.g. a target's failure quoting the function's output
            raise redact_error(exc, self.spec.secrets)
        ok, value, meta = call_output.split(outcomes[0])
        call_output.show(meta, decision.target, locate=self._locate_code,
                         redact=self._redact_output())
        if ok:
            return iter(value) if self.spec.package.is_generator else value
        if self.spec.package.is_generator and isinstance(value, dict) and value.get("items_before"):
            # a target that answers once (Ray): the items the generator gave before its
            # error, then the error, as a streamed call gives them
            return _items_then(value["items_before"], self._rebuild(value, decision.target))
        raise self._rebuild(value, decision.target)

    def _items(self, outcomes, decision):
        """A streamed call's items, as they arrive; its error raised where it came."""
        try:
            for outcome in outcomes:
                ok, value, meta = call_output.split(outcome)
                if meta:   # what the generator printed before this item (or after the last)
                    call_output.show(meta, decision.target, locate=self._locate_code,
                                     redact=self._redact_output())
                if ok is None:
                    continue
                if not ok:
                    raise self._rebuild(value, decision.target)
                yield value
        finally:
            outcomes.close()   # left early: the connection closes, the far side's generator stops

    async def aio(self, *args, **kwargs):
        """``await h.aio(x)``: the call, awaited (same arguments as ``h(x)``). Works
        in a notebook's running event loop and under ``asyncio.run``; cancelling
        the awaiting task cancels the call as Ctrl-C does."""
        from . import aio
        return await aio.call(self, args, kwargs)

    async def amap(self, *iterables, kwargs: dict | None = None,
                   return_exceptions: bool = False) -> list:
        """``await h.amap(xs)``: every item's result in input order, like ``map``;
        at most as many calls in flight as ``map`` would run."""
        from . import aio
        return await aio.amap(self, iterables, kwargs, return_exceptions)

    def amap_iter(self, *iterables, kwargs: dict | None = None, return_exceptions: bool = False,
                  ordered: bool = True):
        """``async for r in h.amap_iter(xs)``: results as they come (input order
        unless ``ordered=False``); the iterable is consumed as results are taken."""
        from . import aio
        return aio.amap_iter(self, iterables, kwargs, return_exceptions, ordered)

    def _async_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._async_executor is None:
                self._async_executor = ThreadPoolExecutor(
                    max_workers=self.router.map_concurrency(),
                    thread_name_prefix=f"straightline-aio-{self.name}")
            return self._async_executor

    def swap_function(self, fn, package, deploy_key: str) -> bool:
        """An edited function, swapped into every deployed target without a restart
        or an image build; False when a target cannot (the caller redeploys).
        The rate, the telemetry and the panel carry on."""
        from dataclasses import replace
        spec = replace(self.spec, package=package)
        with self.router._deploy_lock:
            for kind, target in self.router.deployed.items():
                try:
                    if not target.swap(replace(spec, options=target.spec.options)):
                        return False
                except Exception as exc:   # e.g. the payload does not load there
                    log.info("%s: swapping the edited function into the %s target failed (%s); "
                             "redeploying", self.name, kind, str(exc).splitlines()[0])
                    return False
            self.spec = self.router.spec = spec
        self.fn = self._deployed_fn = fn
        self._deployed_codes = deployed_codes(fn)
        self._line_map, self._code_locations = {}, None
        self.deploy_key = deploy_key
        functools.update_wrapper(self, fn, updated=())
        self.router.set_features(self._static_features())
        return True

    def adopt_edit(self, fn) -> None:
        """``fn`` means the same as the deployed function but its lines moved (a
        comment or blank line added): keep the deployment, run ``local`` with
        the new one, and point remote tracebacks at the lines as they are now."""
        from .packaging.identity import line_map
        self.fn = fn
        self._line_map = line_map(self._deployed_codes, fn)
        self._code_locations = None

    def map(self, *iterables, kwargs: dict | None = None, return_exceptions: bool = False,
            chunksize: int | None = None, concurrency: int | None = None,
            progress: bool | None = None, first_index: int = 0) -> list:
        """Call the function on each item (``zip(*iterables)`` as positional
        arguments, ``kwargs`` for every call), concurrently; results in input order.

        With ``return_exceptions=True`` a failed item's exception takes its place
        in the list and every other item's result is kept. Otherwise the first
        failure stops the map and is raised (items already sent still finish).
        Ctrl-C (or a kernel interrupt) stops it at once: nothing more is sent, and
        the items already running finish on their target.
        Items travel in chunks (``chunksize``) so small calls are not dominated by
        per-request overhead. With ``Resources(timeout_s=)`` each call travels alone:
        the limit is per call, and a chunk's calls run one after another.
        What an item prints is shown tagged with its index (``[local #3]``),
        counted from ``first_index`` (an Executor's chunk numbers its items in the
        whole map).
        """
        self.router.check_open()
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
        workers, overflow = ((concurrency, tuple(self.allowed)) if concurrency
                             else self.router.map_capacity(n - start))
        timeout_s = self.spec.resources.timeout_s
        if chunksize is None:
            sizes = [1] * (n - start) if timeout_s else capacity.chunk_sizes(
                n - start, workers, self.profile.runtime_s if self.profile is not None else None)
        elif timeout_s and chunksize > 1:
            raise ValueError(
                f"chunksize={chunksize} with Resources(timeout_s={timeout_s:g}): the time limit is "
                f"per call, and a chunk's calls run one after another in one request; leave "
                f"chunksize out (each call then travels alone) or drop timeout_s")
        else:
            sizes = [chunksize] * -(-(n - start) // chunksize)
        chunks, i = [], start
        for size in sizes:
            chunks.append((i, items[i:i + size]))
            i += size
        failed: list[tuple[int, BaseException]] = []
        stop = threading.Event()   # set on an interrupt: nothing more is sent
        pool = self._take_map_pool(workers)
        with Progress(f"{self.name}.map", total=n, enabled=progress) as bar:
            try:
                bar.advance(start)
                futures = {pool.submit(self.router.send, [(args, kw) for args in chunk], len(chunk),
                                       True, stop, overflow): (i, chunk)
                           for i, chunk in chunks}
                pending = set(futures)
                while pending:
                    # a bounded wait: the main thread sees Ctrl-C / a kernel interrupt at once
                    done, pending = wait(pending, timeout=0.1, return_when=FIRST_EXCEPTION)
                    for fut in done:
                        i, chunk = futures[fut]
                        errors = 0
                        try:
                            outcomes, decision = fut.result()
                            where = decision.target
                        except Exception as exc:  # the request failed on every target
                            # its first items may have finished before (a chunk answered item
                            # by item): they keep their outcomes, the rest get the failure
                            outcomes = getattr(exc, "completed", None) or []
                            where = getattr(exc, "target", None) or "remote"
                            errors = len(chunk) - len(outcomes)
                            for j in range(len(outcomes), len(chunk)):
                                results[i + j] = exc
                                failed.append((i + j, exc))
                        for j, outcome in enumerate(outcomes):
                            ok, value, meta = call_output.split(outcome)
                            if meta.get("output") or meta.get("truncated"):
                                with bar.printing():   # a terminal bar steps aside for the lines
                                    call_output.show(meta, where,
                                                     index=first_index + i + j,
                                                     locate=self._locate_code,
                                                     redact=self._redact_output())
                            if ok:
                                results[i + j] = value
                            else:
                                exc = self._rebuild(value, where)
                                results[i + j] = exc
                                failed.append((i + j, exc))
                                errors += 1
                        bar.advance(len(chunk), errors=errors)
                    if failed and not return_exceptions:
                        for fut in pending:
                            fut.cancel()
            except BaseException:
                # KeyboardInterrupt (Ctrl-C, "interrupt kernel") or any other exit: stop at once.
                # Queued chunks are dropped and none is sent after this; chunks already running
                # finish on their target in the background (a running call cannot be recalled).
                stop.set()
                pool.shutdown(wait=False, cancel_futures=True)   # not kept: its threads are busy
                raise
            self._give_back_map_pool(workers, pool)
        if failed and not return_exceptions:
            index, exc = min(failed, key=lambda f: f[0])
            log.debug("%s.map: %d of %d items failed; raising item %d's error", self.name,
                      len(failed), n, index)
            raise exc
        return results

    def _take_map_pool(self, workers: int) -> ThreadPoolExecutor:
        """The threads that send a map's chunks, kept from the last map of this size:
        starting a thread takes ~1 ms (it waits until the thread runs), and a map of
        64 short I/O calls would otherwise spend 64 ms starting its senders. A map
        running while another holds the pool gets a pool of its own."""
        with self._lock:
            pool = self._map_pools.pop(workers, None)
        return pool or ThreadPoolExecutor(max_workers=workers, thread_name_prefix="straightline-map")

    def _give_back_map_pool(self, workers: int, pool: ThreadPoolExecutor) -> None:
        """Keep the pool, idle now, for the next map: one per size, a few sizes."""
        with self._lock:
            keep = not self.router.closed and workers not in self._map_pools \
                and len(self._map_pools) < 4
            if keep:
                self._map_pools[workers] = pool
        if not keep:
            pool.shutdown(wait=False, cancel_futures=True)

    def submit(self, *args, **kwargs) -> Future:
        """Start a call in the background; returns a concurrent.futures.Future."""
        self.router.check_open()
        with self._lock:
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
        return self.router.typical_decision()

    @property
    def thresholds(self) -> Thresholds:
        """F and D in force: calibrated ones if calibrated, else the configured ones."""
        return self.router.thresholds

    @property
    def thresholds_override(self) -> Thresholds | None:
        """Calibrated thresholds, if any (None: the configured ones are in force)."""
        return self.router.thresholds_override

    @thresholds_override.setter
    def thresholds_override(self, value: Thresholds | None) -> None:
        self.router.use_thresholds(value)

    def use_calibration(self, calibration) -> None:
        """Adopt a Calibration's thresholds (``straightline.calibrate`` calls this)."""
        self.calibration = calibration
        self.router.calibration = calibration   # measured cold starts: capacity-aware overflow
        self.router.use_thresholds(calibration.thresholds if calibration is not None else None)

    @property
    def closed(self) -> bool:
        """Whether the deployment was undeployed."""
        return self.router.closed

    @property
    def allowed(self) -> tuple[str, ...]:
        return self.router.allowed

    @property
    def pinned(self) -> str | None:
        return self.router.pinned

    @property
    def idempotent(self) -> bool:
        return self.router.idempotent

    @property
    def capture_output(self) -> bool:
        """Whether a call's prints, warnings and log records come back to this cell."""
        return self.router.capture_output

    @property
    def options(self) -> dict[str, dict]:
        """This deployment's own target options (deploy(options=)), per kind."""
        return {kind: dict(opts) for kind, opts in self.router.options.items()}

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
        return self.router.deployed

    def target_overview(self) -> dict[str, dict]:
        """Each allowed target's state for people: "warm" (deployed, has answered),
        "cold" (deployed, not called yet), "down" (failed or unavailable, with
        the reason), "not deployed" (available, deployed when first chosen)."""
        return self.router.overview()

    def pin(self, kind: str | None) -> None:
        """Send every call to ``kind`` (one of the allowed targets); ``None``
        returns to automatic placement. Takes effect on the next call."""
        self.router.pin(kind)

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
        """The output of the function's target (the last-used one by default).
        After undeploy, each target's last log is kept for this process's lifetime."""
        router = self.router
        deployed = router.deployed
        last = router.last_decision
        kind = target or (last.target if last else None) or next(iter(deployed), None) \
            or next(iter(router.final_logs), None)
        if not kind:
            return ""
        t = deployed.get(kind)
        text = t.logs(tail) if t is not None else router.final_logs.get(kind, "")
        if kind in KEEPS_OUTPUT_HERE:
            kept = router.output_log.tail(kind, tail)
            text = "\n".join(part for part in (text, kept) if part)
            text = "\n".join(text.splitlines()[-tail:])
        return self.spec.secrets.redact(text)

    def undeploy(self) -> None:
        """Tear down every target this deployment started. Idempotent."""
        deployed = self.router.close()
        if deployed is None:
            return
        with self._lock:
            map_pools, self._map_pools = list(self._map_pools.values()), {}
        for executor in (self._executor, self._async_executor, *map_pools):
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
        for kind, target in deployed.items():
            self.router.keep_final_log(kind, target)
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
        where = ", ".join(self.router.deployed) or "nothing deployed yet"
        calls = sum(t["calls"] for t in self.telemetry.totals.values())
        state = "undeployed" if self.closed else where
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
        last = self.router.last_decision
        if last is not None:
            lines.append(f"  placement: {last.target}")
            lines += [f"    {reason}" for reason in last.reasons]
        for kind, st in self.stats().items():
            p50 = f"{st['p50_ms']:.2f} ms" if st["p50_ms"] is not None else "-"
            lines.append(f"  {kind}: {st['calls']} calls, {st['errors']} errors, "
                         f"{st['failures']} target failures, p50 {p50}")
        return "\n".join(lines)

    # -- placement -----------------------------------------------------------

    def features(self) -> Features:
        """The deployment's features: the profile (if any), resources, declared rate."""
        return self.router.features()

    def _static_features(self) -> Features:
        p = self.profile
        r = self.spec.resources
        return Features(
            request_bytes=p.request_bytes if p else 0,
            result_bytes=p.result_bytes if p else 0, runtime_s=p.runtime_s if p else 0.0,
            peak_memory_mb=p.peak_memory_mb if p else 0.0, memory_mb=r.memory_mb, cpus=r.cpus,
            gpus=r.gpus, timeout_s=r.timeout_s, python=sys.version_info[:2],
            package_mb=(len(self.spec.package.payload) + self._dependencies_bytes()) / MB,
            env_bytes=environment_bytes(self.spec.env, self.spec.secrets),
            generator=self.spec.package.is_generator,
            env_names=(*(name for name, _ in self.spec.env), *self.spec.secrets),
        )

    def _dependencies_bytes(self) -> int:
        """The dependency set's unzipped size, for Lambda's 250 MB limit (only when
        Lambda is allowed: capturing the set costs a moment), before any upload."""
        if "lambda" not in self.router_allowed:
            return 0
        cached = getattr(self, "_deps_bytes", None)
        if cached is None or cached[0] != self.spec.package.content_hash:
            from .packaging.dependencies import capture, installed_size_bytes
            try:
                size = installed_size_bytes(capture(None, self.spec.package, self.spec.requirements))
            except Exception as exc:   # the deploy reports it; placement goes on without it
                log.debug("%s: the dependency set's size is unknown: %s", self.name, exc)
                size = 0
            cached = self._deps_bytes = (self.spec.package.content_hash, size)
        return cached[1]

    def plan(self) -> Plan:
        """The placement Plan in force (the policy prepared for this deployment)."""
        return self.router.plan()

    def _code_index(self) -> CodeIndex:
        """Where the code shipped by value came from (built at first need)."""
        if self._code_locations is None:
            self._code_locations = CodeIndex.build(self.fn, self.spec.package.local_modules,
                                                   by_name=code_locations(self.fn))
        return self._code_locations

    def _redact_output(self):
        """What takes a secret's value out of printed output (None: no secrets)."""
        return self.spec.secrets.redact if self.spec.secrets else None

    def _locate_code(self, filename: str, lineno: int, name: str, code: tuple) -> str:
        return self._code_index().locate(filename, lineno, name, code)

    def _rebuild(self, info: dict, target: str) -> BaseException:
        info = translate_frames(info, self._line_map)
        if self.spec.secrets:
            info = _redacted(info, self.spec.secrets)
        return rebuild_exception(info, target, self._code_index())

    def deploy_target(self, kind: str) -> Target:
        """Deploy ``kind`` now if it is not yet; returns the deployed target."""
        return self.router.ensure_deployed(kind)

    def prewarm(self, kinds=None) -> None:
        """Deploy targets now rather than when first chosen (all allowed, available ones by default)."""
        self.router.prewarm(kinds)

    def _profile_first_call(self, args, kwargs, capture: bool = False):
        """Without a sample, the first call runs here, profiled, and places the deployment."""
        with self._lock:
            if self.profile is not None:
                return _NOT_PROFILED
            try:
                with applied(self.spec.env, self.spec.secrets):
                    profile, result = profile_call(self.fn, tuple(args), dict(kwargs))
            except Exception as exc:
                redact_error(exc, self.spec.secrets)   # its message may quote a secret
                if capture:
                    return exc
                raise
            self.set_profile(profile)
            self.deploy_initial()
            return result

    def set_profile(self, profile: Profile) -> None:
        self.profile = profile
        self.router.profile = profile   # sizes the worker pools of targets deployed from now on
        self.router.set_features(self._static_features())

    def deploy_initial(self) -> None:
        """Deploy where the profile says the deployment's typical request belongs."""
        self.router.deploy_initial()


_NOT_PROFILED = object()


def _items_then(items: list, error: BaseException):
    yield from items
    raise error


def redact_error(exc: BaseException, secrets: SecretValues) -> BaseException:
    """The SDK's own error with no secret's value in its text (a target's failure
    may quote the function's output)."""
    if secrets and exc.args:
        text = str(exc)
        clean = secrets.redact(text)
        if clean != text:
            exc.args = (clean,)
    return exc


def _redacted(info: dict, secrets: SecretValues) -> dict:
    """An error_info with no secret's value in it. An exception whose text, args or
    attributes hold one is rebuilt as its class with the redacted text as its only
    argument, without its attributes (they would carry the value); a RemoteError
    stands in only when the class itself holds the value. Its chain too."""
    def leaks(data) -> bool:
        try:
            return data is not None and secrets.redact_bytes(data) != data
        except Exception:
            return True

    message = info.get("message", "")
    clean = secrets.redact(message)
    frames = [(f, n, name, secrets.redact(line or "")) for f, n, name, line in info.get("frames", ())]
    info = {**info, "message": clean, "frames": frames}
    if "args_repr" in info:
        info["args_repr"] = secrets.redact(info["args_repr"] or "")
    if info.get("attribute_reprs"):
        info["attribute_reprs"] = {k: secrets.redact(v) for k, v in info["attribute_reprs"].items()}
    attributes = info.get("attributes") or {}
    if clean != message or leaks(info.get("args")) or any(leaks(v) for v in attributes.values()):
        info["exception"] = None
        if "class" in info:   # the exception in parts (runtime/errors.py): rebuilt from its
            # class and the redacted message only (``except ValueError`` still catches it)
            if leaks(info.get("class")):
                info["class"] = None
            info["args"], info["attributes"] = None, {}
    elif leaks(info.get("exception")):
        info["exception"] = None
    for link in ("cause", "context"):
        if info.get(link):
            info[link] = _redacted(info[link], secrets)
    return info

# -- live deployments ------------------------------------------------------------

_live: dict[str, Deployment] = {}
_live_lock = threading.Lock()


def register(dep: Deployment) -> None:
    with _live_lock:
        _live[dep.name] = dep
        note_live(dep.spec)


def _unregister(dep: Deployment) -> None:
    with _live_lock:
        if _live.get(dep.name) is dep:
            del _live[dep.name]
            note_gone(dep.spec)


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
