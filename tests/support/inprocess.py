"""A real Target that runs the real runtime in this process, for testing the
router's logic (phases, saturation, failover) without the cost of containers.

It moves real frames through ``runtime.execute.handle_frame``; only the
transport is left out. Tests register it under a kind's name with
``install(monkeypatch, "docker", ...)``; the real kinds are tested with their
real components in their own test modules.
"""

from __future__ import annotations

import threading

from straightline_sdk import targets
from straightline_sdk.errors import TargetFailure
from straightline_sdk.placement import Limits
from straightline_sdk.runtime import execute
from straightline_sdk.targets.base import Probe, Reply, Target


class InProcessTarget(Target):
    kind = "inprocess"
    limits = Limits()
    slots = 8

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
        body = b"".join(bytes(s) for s in segments)
        out, _ = execute.handle_frame(self.fn, body)
        return Reply(b"".join(bytes(s) for s in out), cold=self._first_answer())

    def health(self):
        return (True, "ok") if self.healthy else (False, "stopped")

    def teardown(self):
        self.fn = None


def install(monkeypatch, kind: str, limits: Limits = Limits(), slots: int = 8,
            base: type = InProcessTarget):
    """Register an in-process target class (``base`` or a subclass) under ``kind``;
    returns the class."""
    cls = type(f"InProcess_{kind}", (base,),
               {"kind": kind, "limits": limits, "slots": slots, "instances": []})
    path = f"tests.support.inprocess:{cls.__name__}"
    globals()[cls.__name__] = cls
    monkeypatch.setitem(targets.REGISTRY, kind, path)
    monkeypatch.setattr(targets, "_probes", {})
    return cls
