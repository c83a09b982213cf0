"""A fake target for tests: the real runtime in this process, no transport.

``FakeTarget`` moves real frames through ``runtime.execute.handle_frame``, so
everything the router and the handle do (placement, saturation, failover,
telemetry, errors) is exercised for real; only the process, container or cloud
is left out. Inject it under a kind's name instead of patching internals::

    from straightline_sdk.testing import fake_target

    with fake_target("docker", slots=2) as docker:
        h = straightline.deploy(f, targets=["local", "docker"])
        docker.instances[0].fail_next.append(TargetFailure("boom", target="docker"))

The kind keeps its tier (a fake "lambda" is serverless to the placement core)
and takes the ``limits`` given (e.g. ``LAMBDA_LIMITS``). Leaving the block puts
the real kind back.
"""

from __future__ import annotations

import contextlib
import sys
import threading

from . import targets
from .errors import TargetFailure
from .placement import Limits, tiers
from .runtime import execute
from .targets.base import Probe, Reply, Target


class FakeTarget(Target):
    """A target that runs the function in this process. Subclassed per kind by
    ``fake_target``; tests may subclass it further (see ``base=``)."""

    kind = "fake"
    limits = Limits()
    slots = 8
    instances: list = []

    def __init__(self, spec, progress=None):
        super().__init__(spec, progress)
        self.concurrency = self.slots
        self.fn = None
        self.fail_next: list[TargetFailure] = []   # failures to raise, one per call
        self.fail_when = None                      # fn(calls_so_far) -> TargetFailure | None
        self.calls = 0
        self.healthy = True
        self._lock = threading.Lock()
        self.instances.append(self)

    @classmethod
    def probe(cls, options):
        return Probe(True, limits=cls.limits)

    def deploy(self):
        self.fn = execute.load_function(self.spec.package.payload)

    def invoke(self, segments, total, timeout):
        with self._lock:
            self.calls += 1
            failure = self.fail_next.pop(0) if self.fail_next else (
                self.fail_when(self.calls) if self.fail_when else None)
        if failure is not None:
            raise failure
        out, _ = execute.handle_frame(self.fn, b"".join(bytes(s) for s in segments))
        return Reply(b"".join(bytes(s) for s in out), cold=self._first_answer())

    def health(self):
        return (True, "ok") if self.healthy else (False, "stopped")

    def teardown(self):
        self.fn = None


def make_fake(kind: str, *, limits: Limits = Limits(), slots: int = 8,
              base: type[FakeTarget] = FakeTarget) -> type[FakeTarget]:
    """A FakeTarget class for ``kind`` (its instances are listed on ``.instances``)."""
    name = f"Fake_{kind}"
    cls = type(name, (base,), {"kind": kind, "limits": limits, "slots": slots, "instances": [],
                               "__module__": __name__})
    setattr(sys.modules[__name__], name, cls)   # importable by the registry's "module:Class"
    return cls


@contextlib.contextmanager
def fake_target(kind: str, *, limits: Limits = Limits(), slots: int = 8,
                base: type[FakeTarget] = FakeTarget, tier: str | None = None):
    """Register a fake target under ``kind`` for the block; yields its class."""
    cls = make_fake(kind, limits=limits, slots=slots, base=base)
    saved = targets.REGISTRY.get(kind)
    saved_tier = tiers.tier_of(kind)
    targets.register(kind, f"{__name__}:{cls.__name__}",
                     tier=tier or saved_tier or tiers.LOCAL)
    try:
        yield cls
    finally:
        if saved is None:
            targets.REGISTRY.pop(kind, None)
        else:
            targets.REGISTRY[kind] = saved
        if saved_tier:
            tiers.register_kind(kind, saved_tier)
        else:
            tiers.forget_kind(kind)
        targets.clear_probes()


__all__ = ["FakeTarget", "fake_target", "make_fake"]
