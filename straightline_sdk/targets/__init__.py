"""Target kinds, one module each, behind the interface in base.py.

Adding a target touches only its own module and one line of REGISTRY. A kind
whose module or optional dependency is missing is reported unavailable with the
reason, so the placement core's fallbacks still work.
"""

from __future__ import annotations

import importlib
import time

from .base import DeploySpec, Probe, Reply, Resources, Target

REGISTRY = {
    "local": "straightline_sdk.targets.local:LocalTarget",
    "docker": "straightline_sdk.targets.docker:DockerTarget",
    "lambda": "straightline_sdk.targets.aws_lambda:LambdaTarget",
    "ray": "straightline_sdk.targets.ray:RayTarget",
}

_PROBE_TTL_S = 30.0
_probes: dict[tuple, tuple[float, Probe]] = {}


def target_class(kind: str) -> type[Target] | None:
    path = REGISTRY.get(kind)
    if path is None:
        return None
    module_name, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None  # the kind is registered but not built in this version
        raise


def probe(kind: str, options: dict, *, fresh: bool = False) -> Probe:
    """Whether ``kind`` is usable here now; cached for 30 s (probes may do I/O)."""
    key = (kind, repr(sorted(options.items())))
    now = time.monotonic()
    cached = _probes.get(key)
    if cached and not fresh and now - cached[0] < _PROBE_TTL_S:
        return cached[1]
    cls = target_class(kind)
    if cls is None:
        result = Probe(False, f"the {kind} target is not part of this version of straightline-sdk")
    else:
        try:
            result = cls.probe(options)
        except Exception as exc:  # a probe must never break placement
            result = Probe(False, f"{kind} probe failed: {exc}")
    _probes[key] = (now, result)
    return result


__all__ = ["REGISTRY", "DeploySpec", "Probe", "Reply", "Resources", "Target", "probe", "target_class"]
