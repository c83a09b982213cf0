"""The one small interface every target kind implements.

A target is one place where one deployment's function runs: ``deploy`` makes it
ready, ``invoke`` sends one request frame and returns the response frame,
``health`` says whether it still answers, ``teardown`` removes what ``deploy``
made. ``probe`` (a classmethod, cached by callers) says whether the kind can be
used here at all, and with what limits, before anything is deployed.

Targets raise TargetFailure for their own failures (the router may fail over)
and never interpret the response frame: the user's errors travel inside it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import ClassVar

from ..packaging import FunctionPackage
from ..placement import Limits


@dataclass(frozen=True)
class Resources:
    """What one call needs. ``None`` leaves the target's default."""

    memory_mb: int | None = None
    cpus: float | None = None
    gpus: int = 0
    timeout_s: float | None = None


@dataclass(frozen=True)
class Probe:
    """Whether a target kind is usable here, and with what limits."""

    available: bool
    reason: str = ""            # why not, in words
    hint: str = ""              # what to do about it
    limits: Limits = field(default_factory=Limits)
    capacity: dict = field(default_factory=dict)   # e.g. {"memory_mb":..., "cpus":..., "gpus":...}


@dataclass(frozen=True)
class DeploySpec:
    """Everything a target needs to deploy one function."""

    package: FunctionPackage
    resources: Resources = field(default_factory=Resources)
    requirements: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)
    keep: bool = False
    profile: object = None        # the deployment's Profile when it has one: sizes worker pools
    idempotent: bool = True       # a call may run again after a lost node (Ray retries map tasks)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)

    @property
    def name(self) -> str:
        return self.package.name


class Target:
    kind: ClassVar[str] = ""
    #: calls it takes at once before it counts as saturated (None: unbounded)
    concurrency: int | None = None

    def __init__(self, spec: DeploySpec, progress=None):
        self.spec = spec
        self.progress = progress
        self.cold = True   # the next call is the first on a fresh deployment
        # Targets that learn per call whether it started cold (Lambda's Init
        # Duration) set this after each invoke; the router prefers it to ``cold``.
        self.last_call_cold: bool | None = None

    @classmethod
    def probe(cls, options: dict) -> Probe:
        raise NotImplementedError

    def deploy(self) -> None:
        raise NotImplementedError

    def invoke(self, segments: list, total: int, timeout: float | None) -> bytes | bytearray:
        raise NotImplementedError

    def invoke_chunk(self, segments: list, total: int, timeout: float | None) -> bytes | bytearray:
        """One chunk of a map. Targets with a better way to fan out many calls
        override it (Ray: tasks across the cluster instead of the warm actor)."""
        return self.invoke(segments, total, timeout)

    def health(self) -> tuple[bool, str]:
        raise NotImplementedError

    def teardown(self) -> None:
        raise NotImplementedError

    def logs(self, tail: int = 100) -> str:
        return ""

    # -- what the CLI (straightline ls / gc) sees ----------------------------

    @classmethod
    def inventory(cls, options: dict) -> list[dict]:
        """Things of this kind the SDK created and that exist now (containers,
        images, functions), each a dict with at least "kind", "id", "name",
        "owner" and "orphan" (no live deployment owns it)."""
        return []

    @classmethod
    def remove(cls, item: dict, options: dict) -> None:
        """Remove one item that ``inventory`` listed."""
        raise NotImplementedError

    def describe(self) -> dict:
        """What the handle and the panel may show (never the token)."""
        return {}

    def __repr__(self):
        return f"<{type(self).__name__} {self.spec.name}>"
