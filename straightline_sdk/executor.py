"""``straightline.Executor``: a concurrent.futures.Executor whose calls StraightLine places.

    with straightline.Executor(targets=["local", "docker"]) as ex:
        future = ex.submit(train, params)          # any callable: lambdas, closures too
        results = list(ex.map(score, models, timeout=60))

Each distinct function (by content: the same lambda re-created in a loop is one
function) is deployed the first time it is submitted, as its own deployment,
and every call is a request of that deployment: placed by its size and rate,
failed over, recorded (``ex.deployments``, each with its panel). Shutting the
executor down undeploys what it deployed. The futures are the standard
library's, so ``as_completed``, ``wait``, ``cancel`` and callbacks behave as
they do with a ThreadPoolExecutor.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import threading
import time
import weakref

from .targets.base import Resources

log = logging.getLogger("straightline")

_executor_ids = itertools.count(1)


class Executor(concurrent.futures.Executor):
    """Run calls of any function where the StraightLine policy places them.

    targets       the targets allowed (default: configure(targets=...))
    resources     straightline.Resources(memory_mb=, cpus=, gpus=, timeout_s=) per call
    requirements  extra pip requirements for images and bundles ("pkg==1.2")
    max_workers   calls in flight at once from this executor (default 32); the
                  targets' own capacity is respected besides: beyond it, calls wait
    name          prefix of its deployments' names (default "executor-N")
    """

    def __init__(self, targets=None, resources: Resources | None = None, *, requirements=None,
                 max_workers: int | None = None, name: str | None = None):
        if targets is not None:
            from .config import _check_targets
            targets = _check_targets(targets)
        if resources is not None and not isinstance(resources, Resources):
            raise TypeError(f"resources must be a straightline.Resources, not a "
                            f"{type(resources).__qualname__}")
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        self.targets = targets
        self.resources = resources
        self.requirements = tuple(requirements or ())
        self.name = name or f"executor-{next(_executor_ids)}"
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers or 32, thread_name_prefix=f"straightline-{self.name}")
        self._lock = threading.Lock()
        self._by_function = weakref.WeakKeyDictionary()   # fn -> Deployment (no re-pickling)
        self._by_content: dict[str, object] = {}          # content hash -> Deployment
        self._shutdown = False
        self._ready: set = set()                 # deployments whose first target is up
        self._deploy_locks: dict = {}

    # -- deployments --------------------------------------------------------------

    @property
    def deployments(self) -> list:
        """The deployments this executor made, one per distinct function."""
        with self._lock:
            return list(self._by_content.values())

    def deployment(self, fn):
        """The deployment that runs ``fn`` (deploying it if it was never submitted)."""
        return self._deployment_for(fn)

    def _deployment_for(self, fn, args=(), kwargs=None):
        from .handle import Deployment
        if isinstance(fn, Deployment):
            return fn   # already deployed: its calls go through it as they are (not ours to undeploy)
        with self._lock:
            try:
                dep = self._by_function.get(fn)
            except TypeError:   # not weak-referenceable (a builtin): found by content below
                dep = None
        if dep is not None:
            return dep
        if not callable(fn):
            raise TypeError(f"submit() takes a callable, not a {type(fn).__qualname__}")
        from .api import deploy
        from .packaging import package_function
        from .packaging.third_party import modules_of_values, requirements_of
        from .profile import Unprofiled
        qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
        package = package_function(fn, qualname)   # PackagingError names what cannot be pickled
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            dep = self._by_content.get(package.content_hash)
            if dep is None:
                # what the first call's arguments are made of must unpickle over there
                # too (a DataFrame for a function that never names pandas), as with
                # deploy(sample=...)
                carried = requirements_of(modules_of_values([*args, *(kwargs or {}).values()]))
                # a distinct name per function, content included: two lambdas are both
                # "<lambda>", and a deployment replaces a live one of the same name
                dep = deploy(fn, name=f"{self.name}/{qualname}@{package.content_hash[:8]}",
                             targets=self.targets, resources=self.resources,
                             requirements=carried + self.requirements)
                if dep.profile is None:
                    # no profiling run here: an executor's calls run over there; each
                    # call's size and rate are measured as it is sent
                    dep.set_profile(Unprofiled())
                self._by_content[package.content_hash] = dep
            try:
                self._by_function[fn] = dep
            except TypeError:
                pass
            return dep

    # -- concurrent.futures.Executor ------------------------------------------------

    def submit(self, fn, /, *args, **kwargs) -> concurrent.futures.Future:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        dep = self._deployment_for(fn, args, kwargs)
        return self._pool.submit(self._call, dep, args, kwargs)

    def _call(self, dep, args, kwargs):
        self._ensure_deployed(dep)
        return dep(*args, **kwargs)

    def _ensure_deployed(self, dep) -> None:
        """Deploy where the policy places the function before its first calls go out,
        in the first pool thread that needs it (submit itself does not wait): until
        then the router cannot know the target's capacity, and a burst of first calls
        would overrun it."""
        if dep in self._ready:
            return
        with self._deploy_locks.setdefault(dep, threading.Lock()):
            if dep not in self._ready:
                dep.deploy_initial()
                self._ready.add(dep)

    def map(self, fn, *iterables, timeout: float | None = None, chunksize: int = 1):
        """Like ``concurrent.futures.Executor.map``: results in order, as an iterator;
        ``timeout`` (seconds from this call) raises TimeoutError for a result not
        ready in time. All calls are submitted at once; with ``chunksize`` > 1 each
        chunk of calls travels as one request."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        end = None if timeout is None else time.monotonic() + timeout
        if chunksize == 1:
            futures = [self.submit(fn, *args) for args in zip(*iterables)]
            return _results(futures, end, chunked=False)
        items = list(zip(*iterables))
        dep = self._deployment_for(fn, items[0] if items else ())
        futures = [self._pool.submit(_run_chunk, self, dep, items[i:i + chunksize])
                   for i in range(0, len(items), chunksize)]
        return _results(futures, end, chunked=True)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new calls; ``cancel_futures`` cancels those not started. The deployments
        are undeployed once the calls in flight finish (now, with ``wait=True``)."""
        with self._lock:
            self._shutdown = True
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)
        if wait:
            self._undeploy_all()
        else:
            threading.Thread(target=self._undeploy_when_idle, daemon=True,
                             name=f"straightline-{self.name}-shutdown").start()

    def _undeploy_when_idle(self) -> None:
        self._pool.shutdown(wait=True)
        self._undeploy_all()

    def _undeploy_all(self) -> None:
        with self._lock:
            deployed = list(self._by_content.values())
        for dep in deployed:
            try:
                dep.undeploy()
            except Exception as exc:   # one target's teardown must not keep the others up
                log.warning("%s: undeploying %s failed: %s", self.name, dep.name, exc)

    def stats(self) -> dict[str, dict]:
        """Per deployment: its per-target statistics (see Deployment.stats)."""
        return {dep.name: dep.stats() for dep in self.deployments}

    def __repr__(self):
        state = "shut down" if self._shutdown else "running"
        return (f"<straightline.Executor {self.name!r} {state}; {len(self.deployments)} "
                f"function(s), targets={list(self.targets) if self.targets else 'default'}>")


def _run_chunk(executor: Executor, dep, items: list) -> list:
    executor._ensure_deployed(dep)
    return dep.map(*zip(*items), chunksize=len(items), concurrency=1, progress=False)


def _results(futures: list, end: float | None, chunked: bool):
    # A generator, as the standard library's: the calls are already submitted; an
    # abandoned iterator cancels what has not started.
    try:
        futures.reverse()   # pop() from the end in submission order
        while futures:
            future = futures.pop()
            if end is None:
                result = future.result()
            else:
                result = future.result(end - time.monotonic())
            if chunked:
                yield from result
            else:
                yield result
    finally:
        for future in futures:
            future.cancel()


__all__ = ["Executor"]
