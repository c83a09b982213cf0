"""A joblib backend: scikit-learn's (and any joblib user's) parallel work placed by StraightLine.

    import joblib
    import straightline_sdk as straightline

    straightline.register_joblib()
    with joblib.parallel_config("straightline", targets=["local", "docker"]):
        GridSearchCV(model, grid, n_jobs=-1).fit(X, y)

How it maps onto the SDK: a backend session (one ``parallel_config`` /
``parallel_backend`` block, i.e. one backend instance) deploys ONE function, a
generic "run this joblib batch", under the session's ``name`` (default
"joblib"). Every batch joblib dispatches (a ``BatchedCalls``: a few of the
user's calls, picklable) becomes one request of that deployment through its
public ``submit``: its serialized size and the arrival rate feed the placement
policy, a target that fails fails over, each batch leaves a call record, and
the deployment's panel shows the work. No second router: the deployment's is
the only one.

``n_jobs=-1`` is the warm capacity of the allowed targets: the session deploys
them when it starts and adds up the calls each takes at once.

Nested joblib calls inside a batch run on the far side with joblib's own
nested backend (threads one level down, sequential below that), never with
this one: the far side has no SDK to route with, and a batch must not re-enter
the router that sent it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import types
import warnings

from .errors import StraightLineError
from .packaging.payload import _is_local_module
from .packaging.third_party import requirements_of, third_party_top
from .targets.base import Resources

log = logging.getLogger("straightline")

BACKEND_NAME = "straightline"
DEFAULT_SESSION_NAME = "joblib"

try:
    from joblib._parallel_backends import (AutoBatchingMixin, FallbackToBackend,
                                           ParallelBackendBase, SequentialBackend,
                                           ThreadingBackend)
except ImportError:  # joblib is optional: register_joblib() says how to get it
    _JOBLIB = False
    _BASES: tuple = (object,)
else:
    _JOBLIB = True
    _BASES = (AutoBatchingMixin, ParallelBackendBase)


def _need_joblib() -> None:
    if not _JOBLIB:
        raise StraightLineError(
            "the straightline joblib backend needs joblib (scikit-learn installs it): "
            "pip install 'straightline-sdk[joblib]'")


# -- the deployed function -------------------------------------------------------

def run_joblib_batch(batch):
    """What each session deploys: run one joblib batch (a BatchedCalls: the user's
    calls in order) and return its list of results."""
    return batch()


def _batch_runner():
    # A fresh copy of the function, as defined in a notebook would be: cloudpickle ships
    # it by value, since the far side has the runtime, not this package.
    return types.FunctionType(run_joblib_batch.__code__, {}, "run_joblib_batch")


def caller_modules(frame: types.FrameType | None) -> tuple[str, ...]:
    """The third-party packages the batches of the joblib call being started will need
    over there: the modules of the frames from here up to the user's own code
    (scikit-learn for a GridSearchCV), what that code's globals refer to (``np``,
    ``pd``, an imported estimator class), and the categories of the warning filters.
    Known before the first batch exists, which is when the targets are started."""
    tops: set[str] = set()
    while frame is not None:
        globs = frame.f_globals
        name = globs.get("__name__") or ""
        top = third_party_top(name)
        if top:
            tops.add(top)
        module = sys.modules.get(name)
        user_code = name == "__main__" or (module is not None and _is_local_module(module))
        if user_code:
            for value in list(globs.values()):
                if isinstance(value, types.ModuleType):
                    ref = value.__name__
                elif isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType)):
                    ref = getattr(value, "__module__", None)
                else:
                    continue
                top = third_party_top(ref)
                if top:
                    tops.add(top)
            break
        frame = frame.f_back
    # scikit-learn's delayed() carries this process's warning filters into each batch,
    # and with them the modules of their categories (pytest's, under pytest)
    for entry in list(warnings.filters):
        top = third_party_top(getattr(entry[2], "__module__", None))
        if top:
            tops.add(top)
    tops.add("joblib")   # BatchedCalls is joblib's
    return tuple(sorted(tops))


# -- the backend -------------------------------------------------------------------

_OPTIONS = ("targets", "resources", "requirements", "name", "rate", "idempotent")


class StraightLineBackend(*_BASES):
    """joblib's backend interface over one straightline deployment per session.

    Options (``joblib.parallel_config("straightline", **options)``):
      targets       the targets allowed (default: configure(targets=...))
      resources     straightline.Resources for each batch
      requirements  extra pip requirements for the images and bundles
      name          the session's deployment name (default "joblib"); give two
                    sessions that run at the same time different names
      rate          expected batches per second, until measured
      idempotent    may a batch whose target failed mid-call run again elsewhere
                    (default True: scikit-learn's fits are)
    """

    supports_retrieve_callback = True    # futures with done-callbacks; timeouts, generators
    supports_sharedmem = False           # require="sharedmem" falls back to joblib's threads
    uses_threads = False
    supports_inner_max_num_threads = False

    def __init__(self, nesting_level=None, inner_max_num_threads=None, **options):
        _need_joblib()
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise TypeError(f"the straightline joblib backend takes no option(s) {unknown}; "
                            f"it takes {list(_OPTIONS)}")
        super().__init__(nesting_level=nesting_level, inner_max_num_threads=inner_max_num_threads)
        targets = options.get("targets")
        if targets is not None:
            from .config import _check_targets
            targets = _check_targets(targets)
        self.targets = targets
        self.resources = options.get("resources")
        if self.resources is not None and not isinstance(self.resources, Resources):
            raise TypeError(f"resources must be a straightline.Resources, not a "
                            f"{type(self.resources).__qualname__}")
        self.requirements = tuple(options.get("requirements") or ())
        self.name = options.get("name") or DEFAULT_SESSION_NAME
        self.rate = options.get("rate")
        self.idempotent = options.get("idempotent", True)
        self.deployment = None
        self._lock = threading.Lock()
        self._futures: set = set()
        self._futures_lock = threading.Lock()

    # -- the session's deployment --------------------------------------------------

    def _ensure_deployment(self, frame=None):
        from .api import deploy
        from .handle import deployments
        with self._lock:
            dep = self.deployment
            if dep is not None and dep in deployments():
                return dep
            from .profile import Unprofiled
            needs = requirements_of(caller_modules(frame or sys._getframe(1)))
            dep = deploy(_batch_runner(), name=self.name, targets=self.targets,
                         resources=self.resources, requirements=needs + self.requirements,
                         rate=self.rate, idempotent=self.idempotent)
            if dep.profile is None:
                # Nothing is profiled here: a batch is the user's work, run once, over
                # there. Each batch's size and rate are measured as it is sent.
                dep.set_profile(Unprofiled())
            # "n_jobs=-1" is the warm capacity: start every allowed target now
            for kind in dep.allowed:
                try:
                    dep.prewarm([kind])
                except StraightLineError as exc:
                    log.warning("%s: the %s target could not be started (%s); its batches go "
                                "to the other targets", self.name, kind, str(exc).splitlines()[0])
            self.deployment = dep
            return dep

    def capacity(self) -> int:
        """Batches the allowed targets run at once, warm (at least 1)."""
        dep = self._ensure_deployment(sys._getframe(1))
        total = 0
        for info in dep.target_overview().values():
            if info["state"] in ("warm", "cold"):
                total += info.get("concurrency") or os.cpu_count() or 1
        return max(1, total)

    # -- joblib's interface ------------------------------------------------------------

    def effective_n_jobs(self, n_jobs):
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if n_jobs is None or n_jobs == 1:
            return 1
        if n_jobs < 0:   # joblib's convention: -1 all, -2 all but one, ...
            return max(self.capacity() + 1 + n_jobs, 1)
        return n_jobs

    def configure(self, n_jobs=1, parallel=None, prefer=None, require=None, **_joblib_kwargs):
        # _joblib_kwargs: max_nbytes, temp_folder, mmap_mode, verbose, context: loky's
        # memmapping options; each batch travels whole, so they do not apply here.
        self.parallel = parallel
        if n_jobs == 1 or n_jobs is None:
            # one job: joblib runs it here, in order, as it does for every backend
            raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
        self._ensure_deployment(sys._getframe(1))
        return self.effective_n_jobs(n_jobs)

    def submit(self, func, callback=None):
        dep = self.deployment or self._ensure_deployment(sys._getframe(1))
        future = dep.submit(func)
        with self._futures_lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)
        if callback is not None:
            future.add_done_callback(callback)
        return future

    def apply_async(self, func, callback=None):   # the name joblib < 1.5 calls
        return self.submit(func, callback)

    def _forget(self, future) -> None:
        with self._futures_lock:
            self._futures.discard(future)

    def retrieve_result_callback(self, future):
        # the user's exception, rebuilt as its own type with the remote traceback
        return future.result()

    def abort_everything(self, ensure_ready=True):
        """A batch failed: batches not yet sent are dropped; those running finish
        (a running Python call cannot be stopped from outside)."""
        with self._futures_lock:
            pending, self._futures = list(self._futures), set()
        for future in pending:
            future.cancel()
        self.reset_batch_stats()

    def terminate(self):
        # the end of one Parallel call: the deployment stays warm for the next one
        # (GridSearchCV makes several), as loky keeps its workers
        self.reset_batch_stats()

    def get_nested_backend(self):
        """What joblib calls inside a batch use, over there: joblib's threads one level
        down, sequential below (joblib's own default). Never this backend: the batch
        already holds one of the targets' slots, and the far side has no router."""
        level = (self.nesting_level or 0) + 1
        if level > 1:
            return SequentialBackend(nesting_level=level), None
        return ThreadingBackend(nesting_level=level), None

    def __reduce__(self):
        raise TypeError("the straightline joblib backend stays in this process; nested "
                        "joblib calls use get_nested_backend()")

    def __repr__(self):
        return f"<StraightLineBackend {self.name!r} targets={list(self.targets or ())}>"


def register_joblib(name: str = BACKEND_NAME) -> None:
    """Make ``joblib.parallel_config("straightline", targets=[...])`` (and
    ``parallel_backend``) run joblib's batches through straightline. Idempotent."""
    _need_joblib()
    from joblib import register_parallel_backend
    register_parallel_backend(name, StraightLineBackend)


def joblib_deployment(name: str = DEFAULT_SESSION_NAME):
    """The live deployment of the joblib session called ``name`` (its panel, calls,
    stats), or None."""
    from .handle import live
    return live(name)
