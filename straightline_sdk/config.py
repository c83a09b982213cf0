"""Process-wide settings: ``straightline.configure(...)``, or environment variables.

    STRAIGHTLINE_RATE_THRESHOLD   F, requests per second            (default 20)
    STRAIGHTLINE_SIZE_THRESHOLD   D, bytes; "8MB", "512KB" accepted (default 4MB)
    STRAIGHTLINE_TARGETS          allowed targets, comma-separated  (default local,docker)
    STRAIGHTLINE_RATE_WINDOW      seconds of the f_t window         (default 5)
    STRAIGHTLINE_PROGRESS         1/0: force progress display on or off
    STRAIGHTLINE_<KIND>_<OPTION>  a per-target option, e.g. STRAIGHTLINE_DOCKER_BASE_IMAGE

Lambda and Ray are not allowed by default: they can cost money or start
clusters, so a user opts in with ``targets=`` or STRAIGHTLINE_TARGETS.
"""

from __future__ import annotations

import difflib
import os
import re
import threading
from dataclasses import dataclass, field, replace

from . import targets as target_registry
from .placement import DEFAULT_THRESHOLDS, Thresholds
from .targets.options import TargetOptions

DEFAULT_TARGETS = ("local", "docker")
_UNITS = {"": 1, "b": 1, "kb": 1024, "k": 1024, "mb": 1024 ** 2, "m": 1024 ** 2,
          "gb": 1024 ** 3, "g": 1024 ** 3}


def parse_size(value) -> int:
    """Bytes from an int or a string such as "8MB" or "512 KB"."""
    if isinstance(value, (int, float)):
        return int(value)
    match = re.fullmatch(r"\s*([\d.]+)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {value!r} (use bytes, or e.g. '8MB', '512KB')")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def _check_targets(targets) -> tuple[str, ...]:
    if isinstance(targets, str):
        targets = [t for t in re.split(r"[,\s]+", targets) if t]
    targets = tuple(targets)
    kinds = target_registry.kinds()
    unknown = [t for t in targets if t not in kinds]
    if unknown:
        hints = [f"{t!r} (did you mean {close[0]!r}?)" if close else repr(t)
                 for t in unknown for close in [difflib.get_close_matches(t, kinds, n=1)]]
        raise ValueError(f"unknown target(s) {', '.join(hints)}; choose from {list(kinds)}")
    return targets


@dataclass(frozen=True)
class Settings:
    rate_threshold: float = DEFAULT_THRESHOLDS.rate
    size_threshold: int = DEFAULT_THRESHOLDS.size
    targets: tuple[str, ...] = DEFAULT_TARGETS
    options: dict = field(default_factory=dict)     # {kind: {option: value}}
    rate_window_s: float = 5.0
    progress: bool | None = None                     # None: show for long work only

    @property
    def thresholds(self) -> Thresholds:
        if (self.rate_threshold, self.size_threshold) == (DEFAULT_THRESHOLDS.rate, DEFAULT_THRESHOLDS.size):
            return DEFAULT_THRESHOLDS
        return Thresholds(self.rate_threshold, self.size_threshold, calibrated=False,
                          basis="configured")

    def target_options(self, kind: str) -> TargetOptions:
        """``kind``'s options, typed and validated (see targets/<kind>/options.py)."""
        return target_registry.parse_options(kind, self.options.get(kind, {}), source="settings")


def from_environment(env=os.environ) -> Settings:
    s = Settings()
    changes: dict = {}
    if "STRAIGHTLINE_RATE_THRESHOLD" in env:
        changes["rate_threshold"] = float(env["STRAIGHTLINE_RATE_THRESHOLD"])
    if "STRAIGHTLINE_SIZE_THRESHOLD" in env:
        changes["size_threshold"] = parse_size(env["STRAIGHTLINE_SIZE_THRESHOLD"])
    if "STRAIGHTLINE_TARGETS" in env:
        changes["targets"] = _check_targets(env["STRAIGHTLINE_TARGETS"])
    if "STRAIGHTLINE_RATE_WINDOW" in env:
        changes["rate_window_s"] = float(env["STRAIGHTLINE_RATE_WINDOW"])
    if env.get("STRAIGHTLINE_PROGRESS", "") != "":
        changes["progress"] = env["STRAIGHTLINE_PROGRESS"].lower() in ("1", "true", "yes", "on")
    options: dict = {}
    for key, value in env.items():
        for kind in target_registry.kinds():
            prefix = f"STRAIGHTLINE_{kind.upper()}_"
            if key.startswith(prefix) and len(key) > len(prefix):
                options.setdefault(kind, {})[key[len(prefix):].lower()] = value
    if options:
        changes["options"] = options
    return replace(s, **changes)


_lock = threading.Lock()
_settings = from_environment()


def settings() -> Settings:
    return _settings


def configure(*, rate_threshold: float | None = None, size_threshold=None, targets=None,
              options: dict | None = None, rate_window_s: float | None = None,
              progress: bool | None = None, reset: bool = False) -> Settings:
    """Change process-wide settings; returns the settings now in force.

    ``options`` merges per target: ``configure(options={"docker": {"base_image": "..."}})``.
    ``reset=True`` goes back to the defaults and the environment first.
    Changed thresholds take effect on every deployment's next call (deployments
    that were calibrated keep their calibrated thresholds).
    """
    global _settings
    with _lock:
        current = from_environment() if reset else _settings
        changes: dict = {}
        if rate_threshold is not None:
            if rate_threshold < 0:
                raise ValueError("rate_threshold (F) must be >= 0 requests/s")
            changes["rate_threshold"] = float(rate_threshold)
        if size_threshold is not None:
            changes["size_threshold"] = parse_size(size_threshold)
        if targets is not None:
            changes["targets"] = _check_targets(targets)
        if rate_window_s is not None:
            changes["rate_window_s"] = float(rate_window_s)
        if progress is not None:
            changes["progress"] = progress
        if options:
            merged = {k: dict(v) for k, v in current.options.items()}
            for kind, opts in options.items():
                _check_targets([kind])
                if isinstance(opts, TargetOptions):
                    opts = opts.given()
                merged.setdefault(kind, {}).update(opts)
                target_registry.parse_options(kind, merged[kind], source="configure(options=...)")
            changes["options"] = merged
        _settings = replace(current, **changes)
        return _settings
