"""Two ready-made sets of tier models, each parameter with its source.

- ``this-machine``: everything as measured on this machine (docs/benchmarks.md,
  2026-11-29 and 2026-12-01, a 2-core VM), including moto's Lambda, which starts
  a container on every invoke and refuses events over ~128 KiB. A deployment's
  own ``calibrate()`` measurements replace the transport figures when it has them.
- ``cloud``: a 4-core laptop as the local server, a Docker host in the cloud
  billed by the hour, AWS Lambda with published figures and prices, a small
  Ray cluster. What the paper's set-up looks like with real capacity behind
  each tier.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, field, replace

from .models import ClientModel, DockerModel, LambdaModel, LocalModel, NetworkModel, RayModel

MEASURED = "measured here (docs/benchmarks.md, 2026-11-29, 2-core VM)"
SDK = "the SDK's own setting"
LAMBDA_PRICING = ("published: AWS Lambda pricing, https://aws.amazon.com/lambda/pricing/ "
                  "(x86, us-east-1: $0.20 per million requests, $0.0000166667 per GB-second, "
                  "billed per 1 ms)")
LAMBDA_QUOTAS = "published: AWS Lambda quotas, https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"
LAMBDA_MEMORY = ("published: AWS Lambda, memory and computing power, "
                 "https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html "
                 "(1,769 MB = one vCPU; CPU in proportion below)")
LAMBDA_INIT_BILLED = ("published: AWS, 'AWS Lambda standardizes billing for INIT phase' (from "
                      "2025-08-01 the init of on-demand functions is billed)")
EC2_PRICE = ("published: Amazon EC2 on-demand pricing, https://aws.amazon.com/ec2/pricing/on-demand/ "
             "(c7i.2xlarge, 8 vCPU, Linux, us-east-1: $0.357 per hour)")
UPLINK = "assumed: a 100 Mbit/s uplink from the laptop to the cloud region (12.5 MB/s)"
RTT = "assumed: 20 ms round trip from the laptop to the cloud region"


@dataclass(frozen=True)
class Setup:
    """A simulated world: the tiers, the client, and what they stand for."""

    name: str
    tiers: dict                     # tier name -> model
    client: ClientModel = field(default_factory=ClientModel)
    description: str = ""
    network: NetworkModel = field(default_factory=NetworkModel)

    def only(self, names) -> "Setup":
        missing = [n for n in names if n not in self.tiers]
        if missing:
            raise ValueError(f"the {self.name} preset has no tier {', '.join(missing)} "
                             f"(it has {', '.join(self.tiers)})")
        return replace(self, tiers={n: self.tiers[n] for n in names})

    def override(self, tier: str, **changes) -> "Setup":
        if tier == "client":
            return replace(self, client=self.client.override(**changes))
        if tier == "network":
            return replace(self, network=self.network.override(**changes))
        if tier not in self.tiers:
            raise ValueError(f"the {self.name} preset has no tier {tier!r} (it has {', '.join(self.tiers)})")
        return replace(self, tiers={**self.tiers, tier: self.tiers[tier].override(**changes)})

    def describe(self) -> str:
        lines = [f"preset {self.name}: {self.description}"]
        for model in (*self.tiers.values(), self.client, self.network):
            lines.append(model.describe())
        return "\n".join(lines)


def this_machine(h=None) -> Setup:
    cores = os.cpu_count() or 2
    slots = max(2, cores)
    local = LocalModel(
        workers=1, slots=slots, cores=cores, overhead_s=0.00011, per_mb_s=0.00063,
        speed=1.0, cold_start_s=0.118, price_per_hour=0.0,
        sources={"workers": f"{SDK}: the local target runs one worker process",
                 "slots": f"{SDK}: max(2, CPUs) calls at once", "cores": "os.cpu_count() here",
                 "overhead_s": MEASURED + ": calibrate(), warm echo", "per_mb_s":
                 MEASURED + ": overhead.py, 1 MB call 0.71 ms - 0.08 ms", "speed": "the profile ran here",
                 "cold_start_s": MEASURED + ": deploy.py, cold local 0.118 s",
                 "price_per_hour": "this machine: no bill"})
    docker = DockerModel(
        hosts=1, containers=1, workers=1, slots=slots, cores_per_host=cores, overhead_s=0.00011,
        per_mb_s=0.00119, speed=0.77, cold_start_s=1.05, price_per_hour=0.0,
        sources={"hosts": "this machine's Docker engine", "containers": f"{SDK}: one container",
                 "workers": f"{SDK}: one worker process in it", "slots": f"{SDK}: max(2, CPUs)",
                 "cores_per_host": "the same cores as the local worker (os.cpu_count())",
                 "overhead_s": MEASURED + ": calibrate(), warm echo",
                 "per_mb_s": MEASURED + ": overhead.py, 1 MB call 1.25 ms - 0.06 ms",
                 "speed": MEASURED + ": the container's Debian python3 runs plain Python ~30 % "
                          "faster than this machine's pyenv build (1/1.3)",
                 "cold_start_s": MEASURED + ": deploy.py, cold Docker 1.05 s",
                 "price_per_hour": "this machine: no bill"})
    lam = LambdaModel(
        memory_mb=512, concurrency_limit=10, account_limit=10, cold_start_s=0.625,
        warm_overhead_s=0.0, per_mb_s=0.052, keep_alive_s=0.0, cold_every_invoke=True,
        event_limit_bytes=96 * 1024, start_parallelism=1, oversize_fail_s=0.625,
        full_cpu_memory_mb=512, speed=0.77, price_per_gb_s=0.0, price_per_request=0.0,
        sources={"memory_mb": f"{SDK}: 512 MB default", "concurrency_limit": f"{SDK}: 10 calls at once",
                 "account_limit": "moto has no account limit: the router's 10 binds",
                 "cold_start_s": MEASURED + ": calibrate() against moto, 625 ms a call (every invoke "
                                 "starts a container)",
                 "warm_overhead_s": "moto never has a warm instance", "per_mb_s": MEASURED + ": calibrate()",
                 "keep_alive_s": "moto: no instance is kept", "cold_every_invoke": "moto: a container per invoke",
                 "event_limit_bytes": MEASURED + ": moto passes the event as one process argument; "
                                      "frames over ~96 KB fail (argument list too long)",
                 "oversize_fail_s": "measured here: moto starts the container, then the exec fails "
                                    "(a cold start's time)",
                 "start_parallelism": "measured here (bench/simulate.py --validate): moto's container "
                                      "starts go through one Docker engine on two shared cores; "
                                      "concurrent invokes take turns rather than adding capacity", "full_cpu_memory_mb":
                 "moto's container is not CPU-limited by memory", "speed": "the container's python3 (as Docker)",
                 "price_per_gb_s": "moto: no bill", "price_per_request": "moto: no bill"})
    ray = RayModel(
        nodes=1, cpus_per_node=cores, overhead_s=0.00066, per_mb_s=0.0054, speed=1.0, cold_start_s=0.3,
        sources={"nodes": "a local Ray cluster", "cpus_per_node": "os.cpu_count() here",
                 "overhead_s": MEASURED + ": overhead.py, SDK ray call 0.66 ms",
                 "per_mb_s": MEASURED + ": overhead.py, 1 MB 6.05 ms - 0.66 ms",
                 "cold_start_s": MEASURED + ": deploy.py, cold Ray actor 0.30 s"})
    tiers = {"local": local, "docker": docker, "lambda": lam, "ray": ray}
    cal = getattr(h, "calibration", None)
    if cal is not None:
        when = datetime.datetime.fromtimestamp(cal.measured_at).strftime("%Y-%m-%d %H:%M")
        from .placement_adapter import TIER
        for kind, curve in cal.curves.items():
            name = TIER.get(kind)
            if name not in tiers:
                continue
            model = tiers[name]
            field_name = "cold_start_s" if name == "lambda" else "overhead_s"
            changes = {field_name: curve.overhead_s, "per_mb_s": curve.per_mb_s}
            if curve.cold_start_s is not None and name != "lambda":
                changes["cold_start_s"] = curve.cold_start_s
            sources = dict(model.sources)
            for k in changes:
                sources[k] = f"measured here by calibrate() on {when}"
            tiers[name] = replace(model, **changes, sources=sources)
    return Setup("this-machine", tiers, ClientModel(sources={"max_in_flight": "unbounded"}),
                 "every tier on this machine's cores, Lambda emulated by moto",
                 NetworkModel(sources={"uplink_mb_s": "loopback: each tier's per_mb_s is its transfer"}))


def cloud() -> Setup:
    local = LocalModel(
        workers=4, slots=2, cores=4, overhead_s=0.00011, per_mb_s=0.00063, speed=1.0,
        cold_start_s=0.118, price_per_hour=0.0,
        sources={"workers": "assumed: a 4-core laptop, one worker process per core (the local "
                            "target's process pool)",
                 "slots": f"{SDK}: 2 calls at once per process", "cores": "assumed: a 4-core laptop",
                 "overhead_s": MEASURED + ": calibrate(), warm echo over loopback",
                 "per_mb_s": MEASURED + ": overhead.py, loopback", "speed": "the profile ran on the laptop",
                 "cold_start_s": MEASURED, "price_per_hour": "assumed: the laptop is already paid for"})
    docker = DockerModel(
        hosts=1, containers=1, workers=8, slots=16, cores_per_host=8, overhead_s=0.02,
        per_mb_s=0.0, speed=1.0, cold_start_s=1.05, price_per_hour=0.357, remote=True,
        sources={"hosts": "assumed: one Docker host in the cloud region", "containers": f"{SDK}: one container",
                 "workers": "assumed: one worker process per vCPU in the container",
                 "slots": "assumed: 2 calls at once per worker process", "cores_per_host": EC2_PRICE,
                 "overhead_s": RTT, "per_mb_s": "the transfer is the network's (uplink)",
                 "remote": "in the cloud region", "speed": "assumed: a cloud vCPU as fast as a laptop core",
                 "cold_start_s": MEASURED + ": a container start with the image cached",
                 "price_per_hour": EC2_PRICE})
    lam = LambdaModel(
        memory_mb=1769, concurrency_limit=1000, account_limit=1000, cold_start_s=0.25,
        warm_overhead_s=0.03, per_mb_s=0.0, keep_alive_s=600.0, cold_every_invoke=False,
        event_limit_bytes=None, full_cpu_memory_mb=1769, speed=1.0, remote=True,
        sources={"memory_mb": "assumed: Resources(memory_mb=1769), one full vCPU; " + LAMBDA_MEMORY,
                 "concurrency_limit": "assumed: the lambda target's concurrency option raised to the "
                                      "account limit (configure(options={'lambda': {'concurrency': 1000}}))",
                 "account_limit": LAMBDA_QUOTAS + " (1,000 concurrent executions by default)",
                 "cold_start_s": "published measurements of small Python zip functions: init ~150-300 ms "
                                 "(AWS, 'Operating Lambda: performance optimization'; public benchmarks)",
                 "warm_overhead_s": RTT + ", plus ~10 ms for the Invoke API",
                 "per_mb_s": "the transfer is the network's (uplink)", "remote": "AWS",
                 "keep_alive_s": "not published by AWS; idle instances are observed to live 5-15 "
                                 "minutes: 10 minutes assumed",
                 "full_cpu_memory_mb": LAMBDA_MEMORY, "speed": "assumed: a Lambda vCPU as fast as a laptop core",
                 "price_per_gb_s": LAMBDA_PRICING, "price_per_request": LAMBDA_PRICING,
                 "billing_step_s": LAMBDA_PRICING, "bill_init": LAMBDA_INIT_BILLED})
    ray = RayModel(
        nodes=2, cpus_per_node=8, overhead_s=0.0213, per_mb_s=0.0, speed=1.0, cold_start_s=6.4,
        price_per_hour=0.357, remote=True,
        sources={"nodes": "assumed: a 2-node Ray cluster in the cloud region",
                 "cpus_per_node": EC2_PRICE, "overhead_s": RTT + ", plus a Ray task's 1.3 ms (" + MEASURED + ")",
                 "per_mb_s": "the transfer is the network's (uplink)", "remote": "in the cloud region",
                 "cold_start_s": MEASURED + ": ray.init 6.4 s",
                 "price_per_hour": EC2_PRICE})
    return Setup("cloud", {"local": local, "docker": docker, "lambda": lam, "ray": ray},
                 ClientModel(sources={"max_in_flight": "unbounded"}),
                 "a 4-core laptop, a Docker host and a Ray cluster in the cloud, AWS Lambda",
                 NetworkModel(uplink_mb_s=12.5, sources={"uplink_mb_s": UPLINK + "; requests to the "
                                                         "cloud tiers share it, one transfer at a time"}))


PRESETS = {"this-machine": this_machine, "cloud": lambda h=None: cloud()}


def get(preset, h=None) -> Setup:
    if isinstance(preset, Setup):
        return preset
    try:
        factory = PRESETS[preset]
    except (KeyError, TypeError):
        raise ValueError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}, or a "
                         f"whatif.Setup") from None
    return factory(h)
