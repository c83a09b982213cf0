"""The cloudpickle payload of a function (its calls' frames: protocol.py).

Functions defined in a notebook or ``__main__`` travel by value (cloudpickle's
default). Functions and modules from the user's own local files (not installed
packages, not the standard library) are registered to travel by value too, so a
container or a Lambda that cannot import them still runs them; their source
thereby enters the content hash, and editing them redeploys.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import sys
import sysconfig
import types
import warnings
from dataclasses import dataclass, field

import cloudpickle

from ..errors import PackagingError
from . import identity, wrappers

_INSTALLED_ROOTS = tuple(
    os.path.realpath(p) for p in {
        sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")
    } if p
)
_SDK_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


@dataclass(frozen=True)
class FunctionPackage:
    """A function ready to ship: its payload and what identifies it."""

    name: str
    payload: bytes
    content_hash: str
    local_modules: tuple[str, ...] = ()
    module_names: frozenset = field(default_factory=frozenset)  # top-level modules it refers to
    meaning_hash: str = ""      # what the code does, not where its lines sit (identity.py)
    is_generator: bool = False  # calls return an iterator of items (generator functions)
    # the function itself, in this process (never shipped): what dependency capture
    # reads instead of loading a large payload a second time
    function: object = field(default=None, compare=False, repr=False)

    def __repr__(self):
        return f"<FunctionPackage {self.name} {self.content_hash[:12]} {len(self.payload)} B>"


def content_hash(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _is_local_module(module: types.ModuleType) -> bool:
    path = getattr(module, "__file__", None)
    if not path or module.__name__ == "__main__":
        return False
    real = os.path.realpath(path)
    if real.startswith(_SDK_ROOT + os.sep) or real.startswith(_INSTALLED_ROOTS):
        return False
    return real.endswith(".py")


def _code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def referenced_objects(fn) -> dict[str, object]:
    """What the function's code can reach: its globals, closure cells and defaults,
    labelled the way an error message names them."""
    found: dict[str, object] = {}
    code = getattr(fn, "__code__", None)
    if code is None:
        return found
    globs = getattr(fn, "__globals__", {})
    for name in sorted(_code_names(code)):
        if name in globs:
            found[f"global '{name}'"] = globs[name]
    for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
        try:
            found[f"closure variable '{name}'"] = cell.cell_contents
        except ValueError:
            pass
    defaults = fn.__defaults__ or ()
    positional = code.co_varnames[:code.co_argcount]
    for name, value in zip(positional[len(positional) - len(defaults):], defaults):
        found[f"default of argument '{name}'"] = value
    for name, value in (fn.__kwdefaults__ or {}).items():
        found[f"default of keyword '{name}'"] = value
    return found


def referenced_modules(fn) -> set[types.ModuleType]:
    """Modules the function refers to, directly or through the module it came from."""
    modules = set()
    own = sys.modules.get(getattr(fn, "__module__", "") or "")
    if own is not None:
        modules.add(own)
    for value in referenced_objects(fn).values():
        if isinstance(value, types.ModuleType):
            modules.add(value)
        else:
            mod = sys.modules.get(getattr(value, "__module__", "") or "")
            if mod is not None:
                modules.add(mod)
    return modules


def _local_modules_reachable(fn) -> list[types.ModuleType]:
    """The user's local modules reachable from fn, following local modules' own globals."""
    seen: dict[str, types.ModuleType] = {}
    stack = [m for m in referenced_modules(fn) if _is_local_module(m)]
    while stack:
        mod = stack.pop()
        top = mod.__name__.partition(".")[0]
        top_mod = sys.modules.get(top, mod)
        if top in seen:
            continue
        seen[top] = top_mod
        for value in list(vars(mod).values()):
            ref = value if isinstance(value, types.ModuleType) else sys.modules.get(
                getattr(value, "__module__", "") or "")
            if ref is not None and _is_local_module(ref) and ref.__name__.partition(".")[0] not in seen:
                stack.append(ref)
    return list(seen.values())


def _describe_failure(fn, exc: Exception) -> str:
    for label, value in referenced_objects(fn).items():
        try:
            cloudpickle.dumps(value)
        except Exception as inner:
            return (f"cannot serialize function {fn.__qualname__!r}: its {label} "
                    f"(a {type(value).__qualname__}) cannot be pickled: {inner}. "
                    f"Create it inside the function, or pass what it needs as an argument.")
    return f"cannot serialize function {getattr(fn, '__qualname__', fn)!r}: {exc}"


def package_function(fn, name: str) -> FunctionPackage:
    """cloudpickle ``fn`` (user's local modules by value); PackagingError names the culprit."""
    local = _local_modules_reachable(fn)
    for mod in local:
        cloudpickle.register_pickle_by_value(mod)
    try:
        payload = wrappers.dumps(fn, protocol=5)
        meaning = identity.meaning_hash(fn) if len(payload) < _MEANING_BY_PAYLOAD_ABOVE else ""
    except Exception as exc:
        raise PackagingError(_describe_failure(fn, exc)) from exc
    finally:
        for mod in local:
            cloudpickle.unregister_pickle_by_value(mod)
    if len(payload) >= LARGE_CAPTURE_BYTES:
        warn_large_capture(fn, name, len(payload))
    digest = content_hash(payload)
    tops = {m.__name__.partition(".")[0] for m in referenced_modules(fn)}
    return FunctionPackage(
        name=name, payload=payload, content_hash=digest,
        local_modules=tuple(sorted(m.__name__ for m in local)), module_names=frozenset(tops),
        meaning_hash=meaning or content_hash("payload", payload), is_generator=is_generator(fn),
        function=fn,
    )


#: captured state over this is worth a word: it travels with every deploy of every edit
LARGE_CAPTURE_BYTES = 16 * 1024 * 1024
# Over this the meaning is not hashed separately (a second pickling pass of the
# captured data would cost more than it saves): the payload's own hash stands in.
_MEANING_BY_PAYLOAD_ABOVE = 64 * 1024 * 1024
_warned_large: set[tuple[str, str]] = set()


class LargeCaptureWarning(UserWarning):
    """A deployed function carries a lot of captured state in its payload."""


def captured_sizes(fn) -> list[tuple[str, int]]:
    """(label, pickled bytes) of what the function captures, biggest first."""
    inner = fn
    while isinstance(inner, functools.partial):
        inner = inner.func
    sizes = []
    instance = inner.__self__ if isinstance(inner, types.MethodType) else \
        inner if not isinstance(inner, (types.FunctionType, types.BuiltinFunctionType)) else None
    if instance is not None:   # a method's instance, a callable object: its attributes travel
        where = f"of the {type(instance).__qualname__} instance"
        sizes += [(f"attribute '{k}' {where}", identity.pickled_size(v))
                  for k, v in (getattr(instance, "__dict__", None) or {}).items()]
        inner = inner.__func__ if isinstance(inner, types.MethodType) else \
            getattr(type(inner), "__call__", inner)
    sizes += [(label, identity.pickled_size(value)) for label, value in referenced_objects(inner).items()
              if not isinstance(value, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type))]
    if isinstance(fn, functools.partial):
        sizes += [(f"partial argument {i}", identity.pickled_size(v)) for i, v in enumerate(fn.args)]
        sizes += [(f"partial keyword '{k}'", identity.pickled_size(v)) for k, v in fn.keywords.items()]
    return sorted(sizes, key=lambda item: -item[1])


def warn_large_capture(fn, name: str, payload_bytes: int) -> None:
    """Once per deployment name and biggest culprit: name what makes the payload big."""
    biggest = [(label, size) for label, size in captured_sizes(fn) if size >= 1024 * 1024][:3]
    key = (name, biggest[0][0] if biggest else "")
    if key in _warned_large:
        return
    _warned_large.add(key)
    mb = 1024 * 1024
    named = ", ".join(f"{label} ({size / mb:.0f} MB)" for label, size in biggest) or \
        "data reached through the function's globals"
    warnings.warn(
        f"{name!r} carries {payload_bytes / mb:.0f} MB of captured state: {named}. It is "
        f"serialized and shipped with every deploy of every edit. Pass it as an argument, "
        f"or load it inside the function (from a file or URL the target can read).",
        LargeCaptureWarning, stacklevel=4)


def is_generator(fn) -> bool:
    """Whether calling fn gives a generator (sync or async): such a call's items
    are what the user wants back, not the generator object."""
    inner = fn
    while isinstance(inner, functools.partial):
        inner = inner.func
    inner = getattr(inner, "__wrapped__", inner) if not inspect.isgeneratorfunction(inner) else inner
    return inspect.isgeneratorfunction(inner) or inspect.isasyncgenfunction(inner)


def __getattr__(name):
    # encode_request and code_locations live in protocol.py (the call protocol's
    # home); still importable from here for code written before the move.
    if name in ("encode_request", "code_locations"):
        from .. import protocol
        return getattr(protocol, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
