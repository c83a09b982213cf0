"""The public fake target (straightline_sdk.testing) registered the way the
router tests need it: under a real kind's name for one test.

It moves real frames through ``runtime.execute.handle_frame``; only the
transport is left out. The real kinds are tested with their real components in
their own test modules.
"""

from __future__ import annotations

from straightline_sdk import targets
from straightline_sdk.placement import Limits
from straightline_sdk.testing import FakeTarget, make_fake

InProcessTarget = FakeTarget   # the name these tests knew it by


def install(monkeypatch, kind: str, limits: Limits = Limits(), slots: int = 8,
            base: type = FakeTarget):
    """Register a fake target class (``base`` or a subclass) under ``kind`` for
    the test; returns the class. The kind keeps its tier."""
    cls = make_fake(kind, limits=limits, slots=slots, base=base)
    monkeypatch.setitem(targets.REGISTRY, kind,
                        targets.Kind(targets.tier_of(kind), f"{cls.__module__}:{cls.__name__}"))
    return cls
