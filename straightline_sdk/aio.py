"""The async face of a deployment: ``await h.aio(x)``, ``await h.amap(xs)``,
``async for r in h.amap_iter(xs)``.

Each call runs on a thread of the deployment's async pool (as many threads as
a map would use: awaited calls are bounded like ``map``'s), so the event loop
(Jupyter's, or ``asyncio.run``'s) never blocks. Cancelling the awaiting task
cancels the call the way Ctrl-C does: a call still queued never starts, one in
flight has its connection dropped and is not run again elsewhere.

A generator function's awaited call returns the list of its items (as ``map``
gives each item's list); ``for y in h(x)`` streams them one by one.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque

from .cancel import CancelScope


async def call(dep, args: tuple, kwargs: dict):
    """One call of ``dep``, awaited."""
    dep.router.check_open()
    scope = CancelScope()

    def run():
        with scope:
            result = dep(*args, **kwargs)
            if dep.spec.package.is_generator:
                # a generator's items, gathered on this thread as they stream in (as
                # map does): iterating them on the event loop would block it
                return list(result)
            return result

    future = dep._async_pool().submit(run)
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        future.cancel()     # still queued: it never starts
        scope.cancel()      # in flight: its connection is dropped
        raise


async def amap(dep, iterables, kwargs: dict | None, return_exceptions: bool) -> list:
    """Every item's result in input order; like ``map``, bounded by the async pool."""
    items = list(zip(*iterables))
    kw = dict(kwargs or {})
    tasks = [asyncio.ensure_future(call(dep, args, kw)) for args in items]
    try:
        return list(await asyncio.gather(*tasks, return_exceptions=return_exceptions))
    except BaseException:
        for task in tasks:   # the first failure, or this amap cancelled: the rest are cancelled
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def amap_iter(dep, iterables, kwargs: dict | None, return_exceptions: bool, ordered: bool):
    """Results as an async iterator: in input order (``ordered``) or as they finish.
    At most twice the pool's size are in flight, so a long (or endless) iterable
    is consumed as results are taken, never all at once."""
    kw = dict(kwargs or {})
    window = max(2, 2 * dep.router.map_concurrency())
    source = iter(zip(*iterables))
    pending: deque = deque()

    def top_up():
        for args in itertools.islice(source, window - len(pending)):
            pending.append(asyncio.ensure_future(call(dep, args, kw)))

    try:
        top_up()
        while pending:
            if ordered:
                task = pending.popleft()
                await asyncio.wait([task])
            else:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                task = next(t for t in pending if t in done)
                pending.remove(task)
            top_up()
            exc = task.exception()
            if exc is not None:
                if not return_exceptions:
                    raise exc
                yield exc
            else:
                yield task.result()
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
