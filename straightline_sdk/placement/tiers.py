"""The tiers the StraightLine policy speaks, and which target kinds belong to each.

The paper's algorithm ranks *tiers* (serverless, container, local server; a
cluster beyond the paper), not products. Which kinds implement a tier is the
target registry's business: it declares each kind here when it is imported
(``straightline_sdk.targets``), so a second serverless backend is a new target
package, not an edit of this core. This table is the only state here; it holds
names, and nothing does I/O.
"""

from __future__ import annotations

LOCAL = "local"               # a server on this machine (the paper's local Flask tier)
CONTAINER = "container"       # a container engine (Docker)
SERVERLESS = "serverless"     # a function service (AWS Lambda)
CLUSTER = "cluster"           # a cluster scheduler (Ray), beyond the paper
TIERS = (LOCAL, CONTAINER, SERVERLESS, CLUSTER)

_tier_of_kind: dict[str, str] = {}


def register_kind(kind: str, tier: str) -> None:
    """Declare that target kind ``kind`` implements ``tier``."""
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r} for target kind {kind!r}; tiers are {list(TIERS)}")
    _tier_of_kind[kind] = tier


def forget_kind(kind: str) -> None:
    """Undo ``register_kind`` (a kind registered for a while, e.g. in a test)."""
    _tier_of_kind.pop(kind, None)


def tier_of(kind: str) -> str:
    """The tier of a kind ("" for a kind nobody declared: never chosen unless pinned)."""
    return _tier_of_kind.get(kind) or (kind if kind in TIERS else "")


def kinds_of(tier: str) -> tuple[str, ...]:
    """The declared kinds of ``tier``, in the order they were declared."""
    return tuple(kind for kind, t in _tier_of_kind.items() if t == tier)


def kinds() -> tuple[str, ...]:
    """Every declared kind."""
    return tuple(_tier_of_kind)
