"""The Docker target's options (``configure(options={"docker": {...}})``,
``STRAIGHTLINE_DOCKER_<OPTION>``, ``[tool.straightline.options.docker]``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..options import TargetOptions


@dataclass(frozen=True)
class DockerOptions(TargetOptions):
    kind: ClassVar[str] = "docker"

    docker_host: str | None = None      # the engine; default DOCKER_HOST, else the local socket
    base_image: str | None = None       # default python:<major>.<minor>-slim
    processes: int | None = None        # pool processes; default the container's CPU limit
                                        # (Resources(cpus=)), else the engine's CPUs
    threads: int | None = None          # calls each process runs at once; default from the profile
    concurrency: int | None = None      # calls at once (older option): sets the threads to match
    gpus: int | None = None             # GPUs to offer; default 1 when the engine has the nvidia runtime
    publish_host: str | None = None     # where the port is published; default 127.0.0.1 (0.0.0.0 remote)
    connect_host: str | None = None     # where this process connects; default the engine's host
    direct: bool = True                 # on Linux, talk to the container's bridge address
    start_timeout_s: float = 60.0       # how long a starting container may take to answer
    insecure: bool = False              # allow the worker's port beyond loopback over plain HTTP
    lease_s: float = 30.0               # keep=False: the container exits this long after its process


Options = DockerOptions
