"""Typed target options, and the one parser every source goes through.

Each target kind declares its options as a frozen dataclass (``Options`` in its
module or package): the field's type says how a value is read, its default is
the one place that default lives. ``configure(options=...)``, the
``STRAIGHTLINE_<KIND>_<OPTION>`` variables and the settings files all arrive
here as plain mappings of names to values (strings from the environment and
files, Python values from code), and are read the same way: an unknown name is
refused with the closest valid one, "yes"/"no" mean the same everywhere.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import ClassVar, Mapping

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class OptionError(ValueError):
    """A target option that is unknown or cannot be read."""


def parse_bool(value, what: str = "value") -> bool:
    """True/False from a bool, 0/1, or one of true/false, yes/no, on/off, 1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise OptionError(f"{what}: {value!r} is not a yes/no value (use true/false, yes/no, on/off or 1/0)")


def _read(value, hint, what: str):
    """``value`` as the type ``hint`` names (bool, int, float, str, or X | None)."""
    allowed = (typing.get_args(hint) if isinstance(hint, types.UnionType)
               or typing.get_origin(hint) is typing.Union else (hint,))
    optional = type(None) in allowed
    base = next((t for t in allowed if t is not type(None)), str)
    if value is None or (optional and isinstance(value, str) and not value.strip()):
        if optional:
            return None
        raise OptionError(f"{what} needs a value")
    if base is bool:
        return parse_bool(value, what)
    try:
        if base is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if base is float:
            return float(value)
    except (TypeError, ValueError):
        raise OptionError(f"{what}: {value!r} is not {'a whole number' if base is int else 'a number'}") from None
    return str(value)


@dataclasses.dataclass(frozen=True)
class TargetOptions:
    """Base of each kind's ``Options``."""

    kind: ClassVar[str] = ""

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def parse(cls, values: "Mapping | TargetOptions | None" = None, *, source: str = ""):
        """Options from a mapping of names to values; ``source`` names where they came
        from in errors ("configure()", "STRAIGHTLINE_DOCKER_* variables", a file)."""
        if isinstance(values, cls):
            return values
        if isinstance(values, TargetOptions):
            values = values.given()
        hints = typing.get_type_hints(cls)
        names = cls.names()
        kwargs = {}
        where = f" (from {source})" if source else ""
        for raw_name, value in (values or {}).items():
            name = str(raw_name).strip().lower().replace("-", "_")
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                suggestion = f"did you mean {close[0]!r}? " if close else ""
                raise OptionError(f"unknown {cls.kind} option {raw_name!r}{where}; {suggestion}"
                                  f"the {cls.kind} options are: {', '.join(names)}")
            kwargs[name] = _read(value, hints[name], f"{cls.kind} option {name!r}{where}")
        options = cls(**kwargs)
        options.check()
        return options

    def check(self) -> None:
        """Refuse values out of range (a kind adds its own checks)."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
                raise OptionError(f"{self.kind} option {f.name!r} must not be negative (got {value})")

    def given(self) -> dict:
        """The options that differ from their defaults, by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != f.default}

    def replace(self, **changes):
        return self.parse({**self.given(), **changes})


@dataclasses.dataclass(frozen=True)
class NoOptions(TargetOptions):
    """A kind that takes no options."""


__all__ = ["NoOptions", "OptionError", "TargetOptions", "parse_bool"]
