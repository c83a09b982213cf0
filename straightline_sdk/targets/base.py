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
import threading
from dataclasses import dataclass, field
from typing import ClassVar

from ..environment import SecretValues
from ..packaging import FunctionPackage
from ..placement import Limits
from ..resources import Resources  # noqa: F401  (re-exported: it was defined here)


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
    options: object = field(default_factory=dict)   # the kind's Options (targets/options.py)
    keep: bool = False
    profile: object = None        # the deployment's Profile when it has one: sizes worker pools
    idempotent: bool = True       # a call may run again after a lost node (Ray retries map tasks)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    env: tuple = ()                 # (name, value) pairs: plain settings for the target's environment
    secrets: SecretValues = field(default_factory=SecretValues, repr=False)

    @property
    def name(self) -> str:
        return self.package.name

    def environment(self) -> dict[str, str]:
        """What the target's process environment gets at start: env, then secrets."""
        return {**dict(self.env), **self.secrets}

    def environment_fingerprint(self) -> str:
        """Changes when env or a secret's value does (meaningful in this process
        only: secrets are fingerprinted under a per-process key, never hashed plainly)."""
        if not self.env and not self.secrets:
            return ""
        return repr(self.env) + self.secrets.fingerprint()


@dataclass(slots=True)
class Reply:
    """What one ``invoke`` brings back: the response frame, and facts about that
    call alone. Nothing about a call is left on the target, where a concurrent
    call could read it."""

    body: bytes | bytearray | memoryview
    cold: bool = False       # this call started the deployment (a fresh worker, a Lambda init)
    timings: dict = field(default_factory=dict)   # e.g. {"init_s": 0.4}: what the target measured
    outcomes: list | None = None   # a chunk answered item by item: its outcomes, already decoded
    size: int = 0                  # ... and the bytes its answer took


# The deployments live in this process, as their specs: the handle notes them
# here (a downward call), so a target's inventory can tell its orphans without
# importing the handle.
_live_specs: dict[int, DeploySpec] = {}


def note_live(spec: DeploySpec) -> None:
    _live_specs[id(spec)] = spec


def note_gone(spec: DeploySpec) -> None:
    _live_specs.pop(id(spec), None)


def live_specs() -> list[DeploySpec]:
    """The specs of this process's live deployments."""
    return list(_live_specs.values())


class Target:
    kind: ClassVar[str] = ""
    #: calls it takes at once before it counts as saturated (None: unbounded)
    concurrency: int | None = None

    def __init__(self, spec: DeploySpec, progress=None):
        self.spec = spec
        self.progress = progress
        self.cold = True   # no call has been answered on this deployment yet
        self._answered_lock = threading.Lock()

    def _first_answer(self) -> bool:
        """Note that a call was answered; True for the first one only, whichever
        thread it came on (its Reply is the cold one)."""
        if not self.cold:
            return False
        with self._answered_lock:
            cold, self.cold = self.cold, False
        return cold

    @classmethod
    def probe(cls, options: dict) -> Probe:
        raise NotImplementedError

    def deploy(self) -> None:
        raise NotImplementedError

    def invoke(self, segments: list, total: int, timeout: float | None) -> Reply:
        raise NotImplementedError

    def invoke_chunk(self, segments: list, total: int, timeout: float | None) -> Reply:
        """One chunk of a map. Targets with a better way to fan out many calls
        override it (Ray: tasks across the cluster instead of the warm actor)."""
        return self.invoke(segments, total, timeout)

    def follow_capacity(self) -> None:
        """Update ``concurrency`` when what the target runs on can change while it is
        deployed (a cluster's nodes); called at a map's start. Most targets: nothing."""

    def swap(self, spec: "DeploySpec") -> bool:
        """Run ``spec``'s (edited) function from the next call on, keeping what is
        running: no restart, no image build, no upload beyond the payload. False:
        this kind cannot (the deployment is then redeployed). Only the package
        differs from the spec deployed; the dependencies may not (the target checks)."""
        return False

    def stream(self, segments: list, total: int, timeout: float | None):
        """One call of a generator function: an iterator of its outcomes as they
        are produced. None: this kind cannot stream (the call is sent with
        ``invoke`` and its items come back together)."""
        return None

    def health(self) -> tuple[bool, str]:
        raise NotImplementedError

    def teardown(self) -> None:
        raise NotImplementedError

    def logs(self, tail: int = 100) -> str:
        return ""

    def read_output(self, stream_id: str, offset: int) -> dict | None:
        """What a single call now running wrote after ``offset`` characters:
        ``{"chunks": [(stream, text)...], "offset": n, "running": bool}``, or None
        where the target cannot be read while a call runs (Lambda)."""
        return None

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
