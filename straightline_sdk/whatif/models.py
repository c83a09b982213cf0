"""Tier models: what the simulator assumes about each place a request can run.

Every parameter is a plain dataclass field with a provenance string in
``sources`` ("measured here ...", "published: <source>", "assumed: ..."), and
every one can be overridden (``model.override(cold_start_s=0.3)``, or
``whatif(..., tiers={"lambda": {"cold_start_s": 0.3}})``); an override records
"set by you" as its provenance.

How a tier serves a request of ``size`` bytes (see engine.py):

    service = transport + runtime
    transport = overhead_s + per_mb_s x size / MB           (the calibrated line)
    runtime   = the function's runtime at that size x speed  (x Lambda's CPU share)

A tier has ``servers()`` parallel executors (a FIFO queue in front of them) and
a router-side ``concurrency()`` (what the router counts as saturated, the
``TargetState.concurrency`` the policy reads). Python runs one thread of a
process at a time (the GIL), so a worker process with several slots still runs
the function on one core: servers = processes, not slots.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field

MB = 1024 * 1024
YOU = "set by you"


class _Model:
    """Common to every model: provenance, overrides, a printable parameter list."""

    #: the tier's name (the placement core's kind)
    kind = ""

    def override(self, **changes):
        """A copy with ``changes``; unknown names are refused with the valid ones."""
        names = [f.name for f in dataclasses.fields(self) if f.name != "sources"]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise TypeError(f"{type(self).__name__} has no parameter {', '.join(unknown)}; "
                            f"its parameters are: {', '.join(names)}")
        sources = dict(self.sources)
        for name in changes:
            sources[name] = YOU
        return dataclasses.replace(self, **changes, sources=sources)

    def params(self) -> dict:
        """{name: (value, provenance)} for every parameter."""
        return {f.name: (getattr(self, f.name), self.sources.get(f.name, "default"))
                for f in dataclasses.fields(self) if f.name != "sources"}

    def describe(self) -> str:
        lines = [f"{self.kind or type(self).__name__}:"]
        for name, (value, source) in self.params().items():
            lines.append(f"  {name} = {value!r}  ({source})")
        return "\n".join(lines)

    # -- how a request is served ----------------------------------------------------

    def transport_s(self, size: int) -> float:
        return self.overhead_s + self.per_mb_s * size / MB

    def runtime_factor(self) -> float:
        return self.speed


@dataclass(frozen=True)
class FunctionModel(_Model):
    """The deployment's own function: its runtime, as a line in the request size,
    and how much one call's runtime varies."""

    runtime_s: float = 0.0           # runtime at reference_bytes
    reference_bytes: int = 0
    runtime_per_mb_s: float = 0.0    # added runtime per MB of request beyond reference_bytes
    result_bytes: int = 0
    jitter: object = 0.0             # 0: deterministic; a float: lognormal coefficient of
                                     # variation; "exponential": exponential service (M/M/c)
    sources: dict = field(default_factory=dict, compare=False)

    kind = "function"

    def runtime(self, size: int) -> float:
        return max(0.0, self.runtime_s + self.runtime_per_mb_s * (size - self.reference_bytes) / MB)

    def sampler(self, seed: int):
        """A function multiplying a service time by this model's jitter (mean 1)."""
        if self.jitter in (0, 0.0, None, "none"):
            return None
        # a stream of its own: a traffic pattern drawn with the same seed must not
        # be correlated with the service times
        rng = random.Random(f"whatif-service-{seed}")
        if self.jitter == "exponential":
            return lambda t: t * rng.expovariate(1.0)
        cv = float(self.jitter)
        sigma = math.sqrt(math.log(1 + cv * cv))
        mu = -sigma * sigma / 2
        return lambda t: t * rng.lognormvariate(mu, sigma)


@dataclass(frozen=True)
class ClientModel(_Model):
    """The caller's side: threads sending requests, and the limits it gives up at.
    ``None``: unbounded (the default for ``whatif``); bench/paper.py's replay uses
    32 threads, a 2 s start deadline and a 15 s time limit."""

    max_in_flight: int | None = None
    start_deadline_s: float | None = None    # waited longer for a thread: fails as saturation
    timeout_s: float | None = None           # answered later: fails as a timeout
    sources: dict = field(default_factory=dict, compare=False)

    kind = "client"


@dataclass(frozen=True)
class NetworkModel(_Model):
    """The link between the caller and the remote tiers (``remote=True``): requests to
    them cross it one after another at ``uplink_mb_s`` (None: no shared limit; each
    tier's own ``per_mb_s`` is then the whole transfer cost)."""

    uplink_mb_s: float | None = None
    sources: dict = field(default_factory=dict, compare=False)

    kind = "network"


@dataclass(frozen=True)
class LocalModel(_Model):
    """The local server: ``workers`` processes of ``slots`` threads on ``cores`` cores."""

    workers: int = 1
    slots: int = 2                   # calls each process takes at once (the router's limit)
    cores: int = 2
    overhead_s: float = 0.0001
    per_mb_s: float = 0.0007
    speed: float = 1.0               # runtime multiplier against where the profile ran
    cold_start_s: float = 0.1
    price_per_hour: float = 0.0
    sources: dict = field(default_factory=dict, compare=False)

    kind = "local"

    def servers(self) -> int:
        return max(1, min(self.workers, self.cores))

    def concurrency(self) -> int:
        return max(1, self.workers * self.slots)


@dataclass(frozen=True)
class DockerModel(_Model):
    """Docker hosts running ``containers`` containers of ``workers`` processes each."""

    hosts: int = 1
    containers: int = 1              # per host
    workers: int = 1                 # worker processes per container
    slots: int = 2                   # calls each container takes at once
    cores_per_host: int = 2
    overhead_s: float = 0.0001
    per_mb_s: float = 0.00125
    speed: float = 1.0
    cold_start_s: float = 1.05
    price_per_hour: float = 0.0      # per host
    remote: bool = False             # reached over the network link (Setup.network)
    sources: dict = field(default_factory=dict, compare=False)

    kind = "docker"

    def servers(self) -> int:
        return max(1, self.hosts * min(self.containers * self.workers, self.cores_per_host))

    def concurrency(self) -> int:
        return max(1, self.hosts * self.containers * self.slots)


@dataclass(frozen=True)
class LambdaModel(_Model):
    """AWS Lambda: an instance per concurrent request, created cold when no idle
    one exists, kept ``keep_alive_s`` after its last call; CPU in proportion to
    memory; billed per request and per GB-second."""

    memory_mb: int = 512
    concurrency_limit: int = 10      # calls the router sends at once (the target's option)
    account_limit: int = 1000        # the account's concurrent executions
    cold_start_s: float = 0.25
    warm_overhead_s: float = 0.03
    per_mb_s: float = 0.08
    keep_alive_s: float = 600.0
    cold_every_invoke: bool = False  # moto: every invoke starts a container
    event_limit_bytes: int | None = None   # moto: events over this fail (argument list)
    start_parallelism: int | None = None   # moto: container starts at once (None: AWS, unbounded)
    oversize_fail_s: float = 0.5     # how long such a failed invoke takes
    full_cpu_memory_mb: int = 1769   # memory at which a function has one full vCPU
    speed: float = 1.0
    price_per_gb_s: float = 0.0000166667
    price_per_request: float = 0.0000002
    billing_step_s: float = 0.001
    bill_init: bool = True           # a cold start's init time is billed too
    remote: bool = False             # reached over the network link (Setup.network)
    sources: dict = field(default_factory=dict, compare=False)

    kind = "lambda"

    @property
    def overhead_s(self) -> float:
        return self.warm_overhead_s

    def servers(self) -> int:
        return max(1, min(self.concurrency_limit, self.account_limit))

    def concurrency(self) -> int:
        return self.servers()

    def runtime_factor(self) -> float:
        return self.speed * max(1.0, self.full_cpu_memory_mb / self.memory_mb)

    def bill(self, billed_s: float) -> float:
        steps = math.ceil(billed_s / self.billing_step_s - 1e-9) if self.billing_step_s else billed_s
        duration = steps * self.billing_step_s if self.billing_step_s else billed_s
        return self.price_per_request + self.price_per_gb_s * self.memory_mb / 1024 * duration


@dataclass(frozen=True)
class RayModel(_Model):
    """A Ray cluster: ``nodes`` x ``cpus_per_node`` task slots, a per-task overhead."""

    nodes: int = 1
    cpus_per_node: int = 2
    overhead_s: float = 0.0007
    per_mb_s: float = 0.0055
    speed: float = 1.0
    cold_start_s: float = 0.3
    price_per_hour: float = 0.0      # per node
    remote: bool = False             # reached over the network link (Setup.network)
    sources: dict = field(default_factory=dict, compare=False)

    kind = "ray"

    def servers(self) -> int:
        return max(1, self.nodes * self.cpus_per_node)

    def concurrency(self) -> int:
        return self.servers()


MODEL_CLASSES = {"local": LocalModel, "docker": DockerModel, "lambda": LambdaModel, "ray": RayModel}
