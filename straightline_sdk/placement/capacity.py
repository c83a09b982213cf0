"""Capacity and queueing: whether a request should wait for a busy warm target or
go to another one (pure; the router feeds it what it measured).

The paper sends a request on when the local server is *unavailable*; a pool that
is merely busy for a few milliseconds is not unavailable. A request waits for a
slot when the expected wait is shorter than what going elsewhere costs: the
other target's cold start if it is not deployed (a target that is not deployed
has no capacity until it is), its own queue, and the transfer. A map adds a
target only when the work left is long enough to pay for its cold start.
"""

from __future__ import annotations

import math

from .tiers import CLUSTER, CONTAINER, LOCAL, SERVERLESS, tier_of

#: cold start (deploy + first answer) by tier, until calibration measured one:
#: the figures of docs/benchmarks.md (deploy.py) on a 2-core machine, rounded up
DEFAULT_COLD_START_S = {LOCAL: 0.2, CONTAINER: 2.0, SERVERLESS: 2.0, CLUSTER: 1.5}


def default_cold_start_s(kind: str) -> float:
    """A kind's cold start before any was measured (its tier's figure)."""
    return DEFAULT_COLD_START_S.get(tier_of(kind), 2.0)


def expected_wait_s(in_flight: int, waiting: int, capacity: int | None, service_s: float) -> float:
    """How long a new request waits for a slot on a target with ``capacity`` slots,
    ``in_flight`` busy and ``waiting`` queued before it, each taking ``service_s``."""
    if capacity is None:
        return 0.0            # unbounded (a cluster's task queue is Ray's)
    if capacity <= 0:
        return math.inf       # not deployed: no capacity until it is
    ahead = in_flight + waiting - capacity + 1
    if ahead <= 0:
        return 0.0
    return math.ceil(ahead / capacity) * service_s


def finish_s(*, deployed: bool, cold_start_s: float, wait_s: float, service_s: float,
             transfer_s: float = 0.0) -> float:
    """When a request sent to a target now would be done."""
    return (0.0 if deployed else cold_start_s) + wait_s + transfer_s + service_s


def worth_adding(work_left_s: float, cold_start_s: float) -> bool:
    """Whether a map's remaining work on its warm targets (seconds, at their
    capacity) is long enough that a cold target started now would still take a
    real share of it: more than twice its cold start."""
    return work_left_s > 2.0 * cold_start_s


#: a map's chunks near its end are cut down, but not below this much work: under
#: it a request's own cost (a round trip and a wake-up, ~1 ms) outweighs the balance won
MIN_CHUNK_WORK_S = 0.005


def chunk_sizes(items: int, senders: int, item_s: float | None) -> list[int]:
    """How a map of ``items`` is cut into requests for ``senders`` at once.

    The first chunks are a quarter of a sender's share (as multiprocessing.Pool.map's,
    at most 256); as the end nears they shrink to half a sender's share of what is
    left (guided self-scheduling), never under MIN_CHUNK_WORK_S of work at
    ``item_s`` a call, so the senders finish together instead of one waiting for
    another's last long chunk. Without ``item_s`` (no profile) the sizes stay fixed.
    """
    senders = max(1, senders)
    first = max(1, min(256, items // (senders * 4) or 1))
    smallest = first if not item_s or item_s <= 0 else \
        max(1, min(first, math.ceil(MIN_CHUNK_WORK_S / item_s)))
    sizes, left = [], items
    while left > 0:
        size = min(first, left, max(smallest, math.ceil(left / (senders * 2))))
        sizes.append(size)
        left -= size
    return sizes
