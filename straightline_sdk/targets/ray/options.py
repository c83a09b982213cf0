"""The Ray target's options (``configure(options={"ray": {...}})``,
``STRAIGHTLINE_RAY_<OPTION>``, ``[tool.straightline.options.ray]``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..options import TargetOptions


@dataclass(frozen=True)
class RayOptions(TargetOptions):
    kind: ClassVar[str] = "ray"

    address: str | None = None            # the cluster; default RAY_ADDRESS
    start_local: bool = False             # no cluster configured: start one on this machine
    num_cpus: float | None = None         # CPUs of a cluster started here; default all
    concurrency: int | None = None        # calls at once; default the cluster's CPUs / the call's
    start_timeout_s: float = 120.0        # how long the actor may take to start
    ship_dependencies: bool | None = None  # send the dependencies (runtime_env); default: only
                                           # when the cluster has nodes other than this one


Options = RayOptions
