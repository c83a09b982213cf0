"""Process-wide settings, and where each comes from.

Five places, each over the ones below it:

    1. ``straightline.configure(...)``                  this process, from code
    2. environment variables ``STRAIGHTLINE_*``         this shell or kernel
    3. ``[tool.straightline]`` in the project's ``pyproject.toml``
       (the nearest one from the working directory up)
    4. the user's ``~/.config/straightline/config.toml`` (``$XDG_CONFIG_HOME``)
    5. the defaults

The variables:

    STRAIGHTLINE_RATE_THRESHOLD   F, requests per second            (default 20)
    STRAIGHTLINE_SIZE_THRESHOLD   D, bytes; "8MB", "512KB" accepted (default 4MB)
    STRAIGHTLINE_TARGETS          allowed targets, comma-separated  (default local,docker)
    STRAIGHTLINE_RATE_WINDOW      seconds of the f_t window         (default 5)
    STRAIGHTLINE_PROGRESS         1/0: force progress display on or off
    STRAIGHTLINE_<KIND>_<OPTION>  a per-target option, e.g. STRAIGHTLINE_DOCKER_BASE_IMAGE

The files hold the same keys as ``configure()`` (settings_files.py shows one).
Every source goes through the same parsers: a misspelt key or option is refused
with the closest valid name, "yes"/"no" mean the same everywhere. The settings
are read when first needed (not at import: a worker started in a project with a
broken file still runs); ``configure(reset=True)`` reads them again.
``straightline config`` prints the settings in force and where each came from.

Lambda and Ray are not allowed by default: they can cost money or start
clusters, so a user opts in with ``targets=`` or STRAIGHTLINE_TARGETS.
"""

from __future__ import annotations

import difflib
import os
import re
import threading
from dataclasses import dataclass, field

from . import settings_files
from . import targets as target_registry
from .placement import DEFAULT_THRESHOLDS, Thresholds
from .targets.options import OptionError, TargetOptions, parse_bool

DEFAULT_TARGETS = ("local", "docker")
_UNITS = {"": 1, "b": 1, "kb": 1024, "k": 1024, "mb": 1024 ** 2, "m": 1024 ** 2,
          "gb": 1024 ** 3, "g": 1024 ** 3}

#: the settings every source may set, and their environment variables
ENV_VARIABLES = {
    "rate_threshold": "STRAIGHTLINE_RATE_THRESHOLD",
    "size_threshold": "STRAIGHTLINE_SIZE_THRESHOLD",
    "targets": "STRAIGHTLINE_TARGETS",
    "rate_window_s": "STRAIGHTLINE_RATE_WINDOW",
    "progress": "STRAIGHTLINE_PROGRESS",
}
KEYS = tuple(ENV_VARIABLES)
DEFAULT = "default"
CONFIGURE = "configure()"


class SettingsError(ValueError):
    """A setting that is unknown or cannot be read; says where it came from."""


def parse_size(value) -> int:
    """Bytes from an int or a string such as "8MB" or "512 KB"."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
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


def _non_negative(name: str):
    def read(value) -> float:
        if isinstance(value, bool):
            raise ValueError(f"not a number: {value!r}")
        number = float(value)
        if number < 0:
            raise ValueError(f"{name} must be >= 0 (got {value!r})")
        return number
    return read


def _positive(name: str):
    def read(value) -> float:
        number = _non_negative(name)(value)
        if number == 0:
            raise ValueError(f"{name} must be > 0")
        return number
    return read


#: one parser per setting, for every source
_PARSERS = {
    "rate_threshold": _non_negative("rate_threshold (F)"),
    "size_threshold": parse_size,
    "targets": _check_targets,
    "rate_window_s": _positive("rate_window_s"),
    "progress": lambda value: None if value is None or value == "" else parse_bool(value, "progress"),
}


def _parse(key: str, value, where: str):
    try:
        return _PARSERS[key](value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"{key} from {where}: {exc}") from None


@dataclass(frozen=True)
class Settings:
    rate_threshold: float = DEFAULT_THRESHOLDS.rate
    size_threshold: int = DEFAULT_THRESHOLDS.size
    targets: tuple[str, ...] = DEFAULT_TARGETS
    options: dict = field(default_factory=dict)     # {kind: {option: value}}
    rate_window_s: float = 5.0
    progress: bool | None = None                     # None: show for long work only
    #: where each setting came from: {"targets": "environment STRAIGHTLINE_TARGETS",
    #: "options.docker.base_image": "<path> [tool.straightline]", ...}
    sources: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def thresholds(self) -> Thresholds:
        if (self.rate_threshold, self.size_threshold) == (DEFAULT_THRESHOLDS.rate, DEFAULT_THRESHOLDS.size):
            return DEFAULT_THRESHOLDS
        return Thresholds(self.rate_threshold, self.size_threshold, calibrated=False,
                          basis="configured")

    def target_options(self, kind: str) -> TargetOptions:
        """``kind``'s options, typed and validated (see targets/<kind>/options.py)."""
        return target_registry.parse_options(kind, self.options.get(kind, {}), source="settings")

    def source(self, key: str) -> str:
        """Where setting ``key`` (or ``options.<kind>.<name>``) came from."""
        return self.sources.get(key, DEFAULT)


class _Layers:
    """Settings merged source by source, each over the ones before it."""

    def __init__(self):
        self.values: dict = {}
        self.options: dict = {}
        self.sources: dict = {}

    def set(self, key: str, value, where: str) -> None:
        self.values[key] = _parse(key, value, where)
        self.sources[key] = where

    def set_options(self, kind: str, options: dict, where: str, names: dict | None = None) -> None:
        """``names``: where each option came from, when more precise than ``where``."""
        try:
            _check_targets([kind])
            merged = {**self.options.get(kind, {}), **options}
            target_registry.parse_options(kind, merged, source=where)   # refuse it here, not later
        except ValueError as exc:
            raise SettingsError(str(exc) if "from " in str(exc) else f"{exc} (from {where})") from None
        self.options[kind] = merged
        for name in options:
            key = str(name).strip().lower().replace("-", "_")
            self.sources[f"options.{kind}.{key}"] = (names or {}).get(name, where)

    def table(self, table: dict, where: str) -> None:
        """A file's table: the keys of configure(), and options.<kind>.<name>."""
        for key, value in table.items():
            if key == "options":
                if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
                    raise SettingsError(f"options in {where} must be a table of tables, e.g. "
                                        f"[options.docker] (in pyproject.toml: "
                                        f"[tool.straightline.options.docker])")
                for kind, options in value.items():
                    self.set_options(kind, options, where)
            elif key in KEYS:
                self.set(key, value, where)
            else:
                close = difflib.get_close_matches(key, (*KEYS, "options"), n=1)
                raise SettingsError(f"unknown setting {key!r} in {where}; "
                                    + (f"did you mean {close[0]!r}? " if close else "")
                                    + f"the settings are: {', '.join((*KEYS, 'options'))}")

    def environment(self, env) -> None:
        for key, variable in ENV_VARIABLES.items():
            if variable in env and (key != "progress" or env[variable] != ""):
                self.set(key, env[variable], f"environment {variable}")
        for kind in target_registry.kinds():
            prefix = f"STRAIGHTLINE_{kind.upper()}_"
            variables = {key[len(prefix):].lower(): key for key in env
                         if key.startswith(prefix) and len(key) > len(prefix)}
            for name, key in variables.items():   # each on its own: an error names its variable
                try:
                    target_registry.parse_options(kind, {name: env[key]}, source=f"environment {key}")
                except ValueError as exc:
                    raise SettingsError(str(exc)) from None
            if variables:
                self.set_options(kind, {name: env[key] for name, key in variables.items()},
                                 f"environment {prefix}*",
                                 {name: f"environment {key}" for name, key in variables.items()})

    def settings(self) -> Settings:
        return Settings(**self.values, options=self.options, sources=dict(self.sources))


def load(env=None, cwd: str | None = None) -> Settings:
    """The settings from the files, the environment and the defaults (no configure())."""
    env = os.environ if env is None else env
    layers = _Layers()
    try:
        path = settings_files.user_file(env)
        if path:
            layers.table(settings_files.read_user(path), path)
        path = settings_files.project_file(cwd)
        if path:
            layers.table(settings_files.read_project(path), f"{path} [tool.straightline]")
    except settings_files.SettingsFileError as exc:
        raise SettingsError(str(exc)) from None
    layers.environment(env)
    return layers.settings()


def from_environment(env=os.environ) -> Settings:
    """The settings without configure() (kept under its old name)."""
    return load(env)


_lock = threading.Lock()
_settings: Settings | None = None


def settings() -> Settings:
    """The settings in force (read from the files and the environment when first needed)."""
    global _settings
    current = _settings
    if current is None:
        with _lock:
            if _settings is None:
                _settings = load()
            current = _settings
    return current


def configure(*, rate_threshold: float | None = None, size_threshold=None, targets=None,
              options: dict | None = None, rate_window_s: float | None = None,
              progress: bool | None = None, reset: bool = False) -> Settings:
    """Change process-wide settings; returns the settings now in force.

    ``options`` merges per target: ``configure(options={"docker": {"base_image": "..."}})``.
    ``reset=True`` goes back to the defaults, the files and the environment first.
    Changed thresholds take effect on every deployment's next call (deployments
    that were calibrated keep their calibrated thresholds). Nothing changes when
    a value is refused.
    """
    global _settings
    current = load() if reset else settings()
    with _lock:
        layers = _Layers()
        layers.values = {key: getattr(current, key) for key in KEYS}
        layers.options = {kind: dict(opts) for kind, opts in current.options.items()}
        layers.sources = dict(current.sources)
        given = {"rate_threshold": rate_threshold, "size_threshold": size_threshold,
                 "targets": targets, "rate_window_s": rate_window_s, "progress": progress}
        for key, value in given.items():
            if value is not None:
                layers.set(key, value, CONFIGURE)
        for kind, opts in (options or {}).items():
            if isinstance(opts, TargetOptions):
                opts = opts.given()
            layers.set_options(kind, dict(opts), CONFIGURE)
        _settings = layers.settings()
        return _settings


__all__ = ["CONFIGURE", "DEFAULT", "ENV_VARIABLES", "KEYS", "OptionError", "Settings",
           "SettingsError", "configure", "load", "parse_size", "settings"]
