"""Profiling one call locally: wall time, peak memory, request and result sizes.

Peak memory is what tracemalloc sees (Python allocations, numpy's included),
which slows pure-Python code while it runs: the wall time is measured in the
same run and is therefore an upper bound.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .protocol import encode_request
from .runtime import wire

#: a generator's sample run consumes at most this many items (its stream may be endless)
PROFILE_ITEMS = 3


@dataclass(frozen=True)
class Profile:
    runtime_s: float
    peak_memory_mb: float
    request_bytes: int
    result_bytes: int
    # CPU time of the call's thread: far below runtime_s means it mostly waited
    # (I/O, sleep, code that releases the GIL), and the worker pool gives it threads
    cpu_s: float | None = None
    # time the thread was ready but waited for a CPU (a busy machine): not waiting
    # on I/O, so it is left out of that comparison (Linux; 0 elsewhere)
    cpu_wait_s: float = 0.0

    def __str__(self):
        from .placement import human_bytes
        return (f"{self.runtime_s * 1000:.1f} ms, peak {self.peak_memory_mb:.1f} MB, "
                f"request {human_bytes(self.request_bytes)}, result {human_bytes(self.result_bytes)}")


def _run_queue_wait() -> float:
    """Seconds this thread has spent runnable but not running (schedstat), or 0."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def _run_coroutine(coro):
    """An ``async def`` function's call run to its end here: on this thread when no
    event loop runs on it, else on a thread of its own (a notebook's kernel runs one)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1, thread_name_prefix="straightline-sample") as pool:
        return pool.submit(asyncio.run, coro).result()


def _async_items(agen):
    """An async generator's items as a plain iterator, driven on a loop of its own thread."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="straightline-sample")
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield pool.submit(loop.run_until_complete, agen.__anext__()).result()
            except StopAsyncIteration:
                return
    finally:
        try:
            pool.submit(loop.run_until_complete, agen.aclose()).result()
        finally:
            pool.submit(loop.close).result()
            pool.shutdown()


def profile_call(fn, args: tuple, kwargs: dict):
    """Run ``fn(*args, **kwargs)`` here once; returns (Profile, result).

    A generator is run for its first few items only (PROFILE_ITEMS); its
    result is then an iterator over all of them. The function's own exception propagates: a sample that fails is the user's
    to see before anything is deployed.
    """
    _, request_bytes = encode_request([(args, kwargs)])
    started_tracing = not tracemalloc.is_tracing()
    if started_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    q0 = _run_queue_wait()
    c0 = time.thread_time()
    t0 = time.perf_counter()
    items = None
    try:
        result = fn(*args, **kwargs)
        if inspect.iscoroutine(result):      # an async def function: awaited, as the far side does
            result = _run_coroutine(result)
        elif inspect.isasyncgen(result):     # an async generator: its items, as the far side gives
            result = _async_items(result)
        if inspect.isgenerator(result):
            items = list(itertools.islice(result, PROFILE_ITEMS))
        runtime = time.perf_counter() - t0
        cpu = time.thread_time() - c0
        cpu_wait = max(0.0, _run_queue_wait() - q0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if started_tracing:
            tracemalloc.stop()
    try:
        _, result_bytes = wire.encode([(True, result if items is None else items[:1])])
    except Exception:
        result_bytes = 0  # reported when a real call tries to send it back
    if items is not None:   # the caller gets every item: those consumed, then the rest, here
        result = itertools.chain(items, result)
    return Profile(runtime, max(0, peak - base) / 2 ** 20, request_bytes, result_bytes, cpu,
                   min(cpu_wait, runtime)), result


@dataclass(frozen=True)
class Unprofiled(Profile):
    """The profile of a deployment whose calls are never run here (an Executor's, a
    joblib session's): nothing measured ahead; each request's size and the rate are
    measured as it is sent, which is all the policy's rule reads."""

    runtime_s: float = 0.0
    peak_memory_mb: float = 0.0
    request_bytes: int = 0
    result_bytes: int = 0

    def __str__(self):
        return "none: calls are not run here first; each request is measured as it is sent"
