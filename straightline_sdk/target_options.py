"""Per-deployment target options: ``deploy(..., options={"docker": {"base_image": ...}})``.

They are merged over the process's options (``configure(options=...)``,
``STRAIGHTLINE_<KIND>_<NAME>``) for that deployment only. A name no target
reads is an error that names the closest valid one: a misspelt option would
otherwise be ignored in silence. ``validate`` is the one place that knows the
names; each target module's docstring says what each option does.
"""

from __future__ import annotations

import difflib

from .errors import StraightLineError

#: the options each kind reads (see the docstrings of targets/<kind>.py)
KNOWN: dict[str, frozenset] = {
    "local": frozenset({"concurrency", "host", "port", "start_timeout_s"}),
    "docker": frozenset({"base_image", "docker_host", "publish_host", "connect_host", "direct",
                         "concurrency", "start_timeout_s", "gpus"}),
    "lambda": frozenset({"role", "create_role", "region", "architecture", "concurrency", "bucket",
                         "memory_mb", "timeout_s", "max_attempts", "direct_upload_limit_mb"}),
    "ray": frozenset({"address", "start_local", "num_cpus", "concurrency", "name",
                      "ship_dependencies", "start_timeout_s"}),
}


class OptionError(StraightLineError, ValueError):
    """An option name or target kind that no target knows."""


def _closest(name: str, choices) -> str:
    match = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.5)
    return f"; did you mean {match[0]!r}?" if match else ""


def validate(options: dict | None, target: str | None = None) -> dict[str, dict]:
    """``{kind: {name: value}}``, checked. With ``target=`` pinned, the options
    may also be given flat (``options={"base_image": ...}``) for that kind."""
    if not options:
        return {}
    if not isinstance(options, dict):
        raise OptionError(f"options must be a dict such as {{'docker': {{'base_image': '...'}}}}, "
                          f"not a {type(options).__qualname__}")
    if not set(options) <= set(KNOWN):
        if target is not None and target in KNOWN and not any(isinstance(v, dict) for v in options.values()):
            options = {target: options}      # flat, for the pinned target
        else:
            unknown = sorted(set(options) - set(KNOWN))
            every = set().union(*KNOWN.values())
            if target is None and all(name in every for name in unknown):
                raise OptionError(
                    f"say which target the options are for: options={{'<kind>': {{{unknown[0]!r}: ...}}}} "
                    f"with <kind> one of {sorted(KNOWN)} (or pin one with target=)")
            raise OptionError(f"unknown target {unknown[0]!r} in options{_closest(unknown[0], KNOWN)} "
                              f"(targets: {', '.join(sorted(KNOWN))})")
    checked: dict[str, dict] = {}
    for kind, names in options.items():
        if not isinstance(names, dict):
            raise OptionError(f"options[{kind!r}] must be a dict of option names to values, "
                              f"not a {type(names).__qualname__}")
        for name in names:
            if name not in KNOWN[kind]:
                raise OptionError(
                    f"the {kind} target has no option {name!r}{_closest(name, KNOWN[kind])} "
                    f"(its options: {', '.join(sorted(KNOWN[kind]))})")
        checked[kind] = dict(names)
    return checked
