"""Target kinds, each its own module or package, behind the interface in base.py.

The registry below is the one list of kinds: the placement core learns each
kind's tier from it, settings validate kind names and options against it, the
CLI walks it. A kind is found by name, and imported only when first used; a
kind whose module or optional dependency is missing is reported unavailable
with the reason, so the placement core's fallbacks still work.

Adding a kind: its package (the Target class with ``kind`` and ``tier``, its
``Options``), and one ``Kind`` line here (or ``register(...)`` from outside).
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass

from ..placement import tiers
from .base import DeploySpec, Probe, Reply, Resources, Target
from .options import NoOptions, OptionError, TargetOptions


@dataclass(frozen=True)
class Kind:
    """One registered target kind."""

    tier: str          # placement.tiers: local, container, serverless, cluster
    target: str        # "module:Class" of its Target
    options: str = ""  # "module:Class" of its Options ("" : it takes none)


REGISTRY: dict[str, Kind | str] = {
    "local": Kind(tiers.LOCAL, "straightline_sdk.targets.local:LocalTarget",
                  "straightline_sdk.targets.local:LocalOptions"),
    "docker": Kind(tiers.CONTAINER, "straightline_sdk.targets.docker:DockerTarget",
                   "straightline_sdk.targets.docker.options:DockerOptions"),
    "lambda": Kind(tiers.SERVERLESS, "straightline_sdk.targets.aws_lambda:LambdaTarget",
                   "straightline_sdk.targets.aws_lambda.options:LambdaOptions"),
    "ray": Kind(tiers.CLUSTER, "straightline_sdk.targets.ray:RayTarget",
                "straightline_sdk.targets.ray.options:RayOptions"),
}
for _name, _kind in REGISTRY.items():
    tiers.register_kind(_name, _kind.tier)

_PROBE_TTL_S = 30.0
_probes: dict[tuple, tuple[float, Probe]] = {}


def register(kind: str, target: str, *, tier: str, options: str = "") -> None:
    """Add (or replace) a target kind: ``target`` and ``options`` are "module:Class"."""
    REGISTRY[kind] = Kind(tier, target, options)
    tiers.register_kind(kind, tier)
    clear_probes()


def kinds() -> tuple[str, ...]:
    """The registered kinds, in registration order."""
    return tuple(REGISTRY)


def _entry(kind: str) -> Kind | None:
    entry = REGISTRY.get(kind)
    if isinstance(entry, str):   # "module:Class" alone, as older code registered kinds
        return Kind(tiers.tier_of(kind), entry)
    return entry


def _load(path: str):
    module_name, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None  # the kind is registered but not built in this version
        raise


def target_class(kind: str) -> type[Target] | None:
    entry = _entry(kind)
    return _load(entry.target) if entry is not None else None


def options_class(kind: str) -> type[TargetOptions]:
    """The typed options of ``kind``; ValueError with the known kinds for an unknown one."""
    entry = _entry(kind)
    if entry is None:
        raise ValueError(f"unknown target {kind!r}; choose from {list(REGISTRY)}")
    cls = _load(entry.options) if entry.options else None
    if cls is None:   # no options declared: take the target class's own, if any
        cls = getattr(target_class(kind), "Options", None) or NoOptions
    return cls


def parse_options(kind: str, values=None, *, source: str = "") -> TargetOptions:
    """``values`` (a mapping, or Options) read as ``kind``'s typed options."""
    return options_class(kind).parse(values, source=source)


def tier_of(kind: str) -> str:
    entry = _entry(kind)
    return entry.tier if entry is not None else ""


def clear_probes() -> None:
    """Forget cached probe results (the environment changed)."""
    _probes.clear()


def probe(kind: str, options=None, *, fresh: bool = False) -> Probe:
    """Whether ``kind`` is usable here now; cached for 30 s (probes may do I/O)."""
    cls = target_class(kind)
    if cls is None:
        return Probe(False, f"the {kind} target is not part of this version of straightline-sdk")
    try:
        options = parse_options(kind, options)
    except OptionError as exc:
        return Probe(False, str(exc), hint="fix the option's name or value")
    # the registry entry is part of the key: a kind registered anew (a test's fake
    # target, a plugin) never gets the probe result of the one it replaced
    key = (kind, REGISTRY.get(kind), options)
    now = time.monotonic()
    cached = _probes.get(key)
    if cached and not fresh and now - cached[0] < _PROBE_TTL_S:
        return cached[1]
    try:
        result = cls.probe(options)
    except Exception as exc:  # a probe must never break placement
        result = Probe(False, f"{kind} probe failed: {exc}")
    _probes[key] = (now, result)
    return result


__all__ = ["REGISTRY", "DeploySpec", "Kind", "OptionError", "Probe", "Reply", "Resources", "Target",
           "TargetOptions", "clear_probes", "kinds", "options_class", "parse_options", "probe",
           "register", "target_class", "tier_of"]
