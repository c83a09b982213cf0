"""What identifies a deployed function across edits and kernel restarts.

- ``default_name``: a deployment's name when none is given. Stable across
  processes: a ``functools.partial`` is named after the function it wraps, a
  callable object after its class; never anything with a memory address.
- ``distinct_name``: the default name, with a short meaning hash where a bare
  name would make two live functions share one deployment (lambdas; the same
  code with other data: partials, closures made in a loop, methods or callable
  objects of other instances).
- ``meaning_hash``: a hash of what the function does, not of where its lines
  sit: code objects are hashed by their bytecode, constants, names and
  arguments (recursively), never by line numbers, file names or column
  positions. A comment or blank line above the ``def`` (or inside it) leaves
  it unchanged, so re-running the cell redeploys nothing.
- ``line_map``: when the deployed code and the edited code mean the same but
  sit on different lines, where each deployed line is now; remote tracebacks
  are translated with it, so they point at the lines the user sees.
- ``captured_sizes``: the pickled size of each global, closure variable and
  default the function carries, measured without keeping a copy.
"""

from __future__ import annotations

import functools
import hashlib
import pickle
import types
import weakref

import cloudpickle

from .wrappers import PayloadPickler

CODE_MEANING_VERSION = b"meaning-1"


def default_name(fn) -> str:
    """The deployment name a user would expect, the same in every process."""
    inner, wrappers = fn, 0
    while isinstance(inner, (functools.partial, functools.partialmethod)) and wrappers < 16:
        inner, wrappers = inner.func, wrappers + 1
    qualname = getattr(inner, "__qualname__", None)
    if not isinstance(qualname, str) or not qualname:
        # a callable object: named after its class (its repr may hold an address)
        qualname = type(inner).__qualname__
    return f"{qualname}-partial" if wrappers else qualname


def _unwrapped(fn):
    while isinstance(fn, (functools.partial, functools.partialmethod)):
        fn = fn.func
    return fn


def _carries_data(fn) -> bool:
    """Whether ``fn`` is code plus data of its own: a partial, a closure, a bound
    method, a callable object (a plain function is its code and its globals)."""
    return not isinstance(fn, types.FunctionType) or bool(fn.__closure__)


def _code_key(fn) -> str:
    """A hash of the code alone that ``fn`` runs, without its data (bound
    arguments, closure values, the instance): equal for two variants."""
    fn = _unwrapped(fn)
    if isinstance(fn, types.MethodType):
        fn = fn.__func__
    elif not isinstance(fn, types.FunctionType):
        fn = getattr(type(fn), "__call__", fn)
    code = getattr(fn, "__code__", None)
    if not isinstance(code, types.CodeType):   # a builtin: its name is its code
        return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', '')}"
    sink = _HashingSink()
    _MeaningPickler(sink, protocol=5).dump(code)
    return sink.digest.hexdigest()


def _is_variant(deployed, fn) -> bool:
    """Whether ``fn`` is a second variant of the deployed function rather than an
    edit of it: the same code with other data (a partial of the same function
    with other arguments, a closure made by the same factory in a loop, the same
    method of another instance, another instance of the same callable class).
    Compared by meaning, not identity, so it holds after the cell runs again;
    an edit changes the code, and takes the deployment's place."""
    if deployed is None or not (_carries_data(fn) and _carries_data(deployed)):
        return False
    try:
        return _code_key(fn) == _code_key(deployed)
    except Exception:   # cannot tell: treated as an edit, as before
        return False


def distinct_name(name: str, fn, meaning: str, deployed=None, deployed_meaning: str = "") -> str:
    """The default name, made distinct where one name would otherwise serve two
    functions that live side by side: every lambda (``<lambda>`` says nothing
    about which) and a variant of the function deployed under ``name``
    (``deployed``: see ``_is_variant``) get a short hash of their meaning, the
    same in every process. Deploying one of them again finds it by that name."""
    if "<lambda>" in name or (meaning != deployed_meaning and _is_variant(deployed, fn)):
        return f"{name}-{meaning[:8]}"
    return name


class _HashingSink:
    """A file-like object that hashes what is written and keeps nothing."""

    def __init__(self):
        self.digest = hashlib.sha256(CODE_MEANING_VERSION)
        self.size = 0

    def write(self, data) -> int:
        self.digest.update(data)
        n = memoryview(data).nbytes
        self.size += n
        return n


def _code_meaning(code: types.CodeType) -> tuple:
    """Everything about a code object that changes what it does; no line numbers."""
    return (code.co_code, code.co_consts, code.co_names, code.co_varnames, code.co_freevars,
            code.co_cellvars, code.co_argcount, code.co_posonlyargcount,
            code.co_kwonlyargcount, code.co_flags, code.co_name,
            getattr(code, "co_qualname", code.co_name),
            getattr(code, "co_exceptiontable", b""))


class _MeaningPickler(PayloadPickler):
    """cloudpickle, except that code objects are written as their meaning only.
    Its output is hashed, never loaded."""

    def reducer_override(self, obj):
        if isinstance(obj, types.CodeType):
            return tuple, (_code_meaning(obj),)
        reduced = super().reducer_override(obj)
        if isinstance(reduced, tuple) and len(reduced) > 1 and isinstance(reduced[1], tuple):
            # a class (or TypeVar) defined in the notebook carries a tracker id that
            # is random per class object: re-running its cell would change the hash
            tracker = _CLASS_TRACKERS.get(obj) if _is_weakrefable(obj) else None
            if tracker is not None and tracker in reduced[1]:
                args = tuple("class" if a == tracker else a for a in reduced[1])
                reduced = (reduced[0], args, *reduced[2:])
        return reduced


_CLASS_TRACKERS = getattr(getattr(cloudpickle, "cloudpickle", None),
                          "_DYNAMIC_CLASS_TRACKER_BY_CLASS", {})


def _is_weakrefable(obj) -> bool:
    try:
        hash(weakref.ref(obj))
    except TypeError:   # no weak references, or unhashable
        return False
    return True


def meaning_hash(fn) -> str:
    """A hash of what ``fn`` does (see the module's docstring). Streams: the
    pickle is hashed as it is written, so a large closure is not copied."""
    sink = _HashingSink()
    _MeaningPickler(sink, protocol=5).dump(fn)
    return sink.digest.hexdigest()


def _codes(fn, depth: int = 3) -> list[types.CodeType]:
    """The code objects of fn (and of what it wraps), outermost first, nested ones
    after, then those of the helper functions it calls from its own module (the
    notebook's), by name, in a fixed order: two functions that mean the same give
    lists that pair up."""
    while isinstance(fn, (functools.partial, functools.partialmethod)):
        fn = fn.func
    fn = getattr(fn, "__func__", fn)
    code = getattr(fn, "__code__", None) or getattr(getattr(fn, "__call__", None), "__code__", None)
    found: list[types.CodeType] = []
    seen: set[int] = set()

    def walk(c):
        found.append(c)
        for const in c.co_consts:
            if isinstance(const, types.CodeType):
                walk(const)

    def visit(function, code, level):
        if id(code) in seen:
            return
        seen.add(id(code))
        walk(code)
        if level >= depth:
            return
        module = getattr(function, "__module__", None)
        names = set()
        stack = [code]
        while stack:
            current = stack.pop()
            names.update(current.co_names)
            stack.extend(k for k in current.co_consts if isinstance(k, types.CodeType))
        globs = getattr(function, "__globals__", {})
        for name in sorted(names):
            helper = globs.get(name)
            helper_code = getattr(helper, "__code__", None)
            if (isinstance(helper, types.FunctionType) and isinstance(helper_code, types.CodeType)
                    and helper.__module__ == module):
                visit(helper, helper_code, level + 1)

    if isinstance(code, types.CodeType):
        visit(fn, code, 0)
    return found


def deployed_codes(fn) -> list[types.CodeType]:
    """The code objects a deployment of ``fn`` runs (its helpers' too), kept at
    deploy time: re-running the cell replaces the helpers in the namespace that
    the deployed function's globals share."""
    return _codes(fn)


def line_map(deployed, current) -> dict[tuple[str, int], int]:
    """{(code name, deployed line): current line} where the two functions'
    code means the same but moved (empty when nothing moved or they differ).
    ``deployed``: a function, or its ``deployed_codes`` kept when it was deployed."""
    mapping: dict[tuple[str, int], int] = {}
    old_codes = deployed if isinstance(deployed, list) else _codes(deployed)
    new_codes = _codes(current)
    if len(old_codes) != len(new_codes):
        return mapping
    for old, new in zip(old_codes, new_codes):
        if old.co_code != new.co_code or old.co_name != new.co_name:
            return {}
        for (start, _, old_line), (_, _, new_line) in zip(old.co_lines(), new.co_lines()):
            if old_line is not None and new_line is not None and old_line != new_line:
                mapping.setdefault((old.co_name, old_line), new_line)
        if old.co_firstlineno != new.co_firstlineno:
            mapping.setdefault((old.co_name, old.co_firstlineno), new.co_firstlineno)
    return mapping


def translate_frames(info: dict, mapping: dict[tuple[str, int], int]) -> dict:
    """A remote error_info whose frames' line numbers follow ``mapping``."""
    if not mapping or not info.get("frames"):
        return info
    frames = [(filename, mapping.get((name, lineno), lineno), name, line)
              for filename, lineno, name, line in info["frames"]]
    return {**info, "frames": frames}


def pickled_size(value) -> int:
    """How many bytes cloudpickle writes for ``value`` (nothing is kept)."""
    sink = _HashingSink()
    try:
        cloudpickle.Pickler(sink, protocol=5).dump(value)
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError, ValueError):
        return 0
    return sink.size
