"""What the placement core knows about a request and about a target.

Plain frozen records: the core takes them in and gives a Decision back, with no
I/O of its own. The targets measure their side (``TargetState``); the handle
measures the request's (``Features``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Features:
    """One request (or the deployment's profile), as the policy sees it."""

    rate: float = 0.0               # f_t: requests per second now (see placement.rate)
    request_bytes: int = 0          # r_d: size of the serialized request (per item, for a batch)
    result_bytes: int = 0           # expected serialized result size (from the profile)
    runtime_s: float = 0.0          # profiled wall time of one call
    peak_memory_mb: float = 0.0     # profiled peak Python allocation of one call
    memory_mb: int | None = None    # memory asked for (Resources), else derived from the profile
    cpus: float | None = None
    gpus: int = 0
    timeout_s: float | None = None
    python: tuple[int, int] = (3, 11)
    batch: int = 1                  # items sent together (a map's chunk)
    package_mb: float = 0.0         # unzipped size of the function's bundle (Lambda's limit)
    env_bytes: int = 0              # size of the environment handed to the target (env + secrets)
    generator: bool = False         # a generator function: its items stream back
    env_names: tuple[str, ...] = () # names of the environment variables handed over (env + secrets)


@dataclass(frozen=True, slots=True)
class Limits:
    """What one target kind can take. ``None`` means no limit known."""

    max_request_bytes: int | None = None
    max_result_bytes: int | None = None
    max_timeout_s: float | None = None
    min_memory_mb: int | None = None
    max_memory_mb: int | None = None
    cpus: float | None = None
    gpus: int = 0
    pythons: frozenset | None = None    # (major, minor) pairs the target can run
    max_package_mb: float | None = None
    max_env_bytes: int | None = None    # the environment variables it can be given
    reserved_env: frozenset = frozenset()   # environment variable names it sets itself
    env_name_pattern: str | None = None     # what a variable's name must look like there
    streams: bool = True                # can send a call's items back as they are produced
    sources: tuple[str, ...] = ()       # where these numbers come from
    notes: tuple[str, ...] = ()         # how the kind will run calls, for the reasons (e.g. insecure)


@dataclass(slots=True)
class TargetState:
    """A target as the policy sees it. The router owns one per target and
    updates ``available``, ``reason`` and ``in_flight`` in place as calls start
    and end; the policy only reads them."""

    kind: str
    available: bool
    reason: str = ""                 # why it is not available, in words
    limits: Limits = field(default_factory=Limits)
    in_flight: int = 0
    concurrency: int | None = None   # calls it takes at once; None: unbounded (or not deployed)
    tier: str = ""                   # "" : the tier the kind was declared with (placement.tiers)
    waiting: int = 0                 # requests queued here for a slot
    note: str = ""                   # what the deployed target says about its size (a pool shrunk for memory)

    @property
    def saturated(self) -> bool:
        return self.concurrency is not None and self.in_flight >= self.concurrency


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The paper's F (requests/s) and D (bytes)."""

    rate: float
    size: int
    calibrated: bool = False
    basis: str = ""                  # how they were obtained, in words


def human_bytes(n: float) -> str:
    if n >= 1 << 40:
        return "∞"
    for unit, size in (("GB", 1024 ** 3), ("MB", MB), ("KB", 1024)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value >= 10 or value == int(value) else f"{value:.1f} {unit}"
    return f"{int(n)} B"


def human_rate(r: float) -> str:
    return f"{r:.0f} req/s" if r >= 10 else f"{r:.2g} req/s"
