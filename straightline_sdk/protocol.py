"""The call protocol, client side: everything this process does to a call's
bytes, in one place.

- ``encode_request``: a list of calls ``[(args, kwargs), ...]`` as a request
  frame (runtime/wire.py defines frames), naming the argument that cannot be
  serialized;
- ``decode_response``: a response frame back into outcomes ``[(True, value, meta) |
  (False, error_info, meta), ...]`` (meta: the call's captured output and its
  time in the function; see output.py);
- ``rebuild_exception``: an error_info, sent in parts by runtime/errors.py (its
  class, ``args``, the attributes of its ``__dict__``, its cause/context chain),
  rebuilt with ``cls.__new__`` without calling ``__init__``, so a class whose
  constructor takes other arguments (``DataQualityError(msg, bad_rows)``) comes
  back as itself, attributes and all; a type that cannot be rebuilt here (its
  module exists only on the far side) becomes a ``RemoteError`` that names it and
  shows its message and attributes. The remote traceback is rendered with this
  process's source lines (linecache) and chained as the cause of the root of the
  rebuilt chain, the way concurrent.futures shows a process pool's errors;
- ``code_locations`` and ``CodeIndex``: where code shipped by value came from (the
  function, a notebook's cells, the user's local modules), so those frames point
  at the user's files again.

The far side's half is runtime/wire.py, runtime/execute.py and runtime/errors.py
(stdlib and cloudpickle only: the runtime ships on its own).
"""

from __future__ import annotations

import linecache
import pickle
import sys
import types

import cloudpickle

from .errors import PackagingError, RemoteError
from .runtime import wire

#: a response frame -> [(ok, value or error_info), ...]
decode_response = wire.decode


def encode_request(calls: list, options: dict | None = None) -> tuple[list, int]:
    """Frame a list of (args, kwargs), with the far side's ``options`` (see
    runtime.wire: output capture, streaming) if any; PackagingError names the
    argument that fails."""
    try:
        return wire.encode(calls if options is None else (wire.CALLS, calls, options))
    except Exception as exc:
        for index, (args, kwargs) in enumerate(calls):
            for label, value in [(f"argument {i}", a) for i, a in enumerate(args)] + \
                                [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]:
                try:
                    cloudpickle.dumps(value, protocol=5)
                except Exception as inner:
                    where = f" of item {index}" if len(calls) > 1 else ""
                    raise PackagingError(
                        f"cannot serialize {label}{where} (a {type(value).__qualname__}): {inner}. "
                        f"Pass data (arrays, lists, dicts) rather than open files, locks, "
                        f"connections or generators.") from exc
        raise PackagingError(f"cannot serialize the call's arguments: {exc}") from exc



def code_locations(fn, depth: int = 3) -> dict[str, list[tuple[str, int, int]]]:
    """Where the code that travels by value came from: {name: [(file, first, last line)]}.

    cloudpickle renames the files of code it ships to "<dynamic-code>"; with
    this map a remote traceback's frames point at the user's files and cells again.
    """
    found: dict[str, list[tuple[str, int, int]]] = {}
    seen: set[int] = set()

    def add_code(code: types.CodeType) -> None:
        if id(code) in seen:
            return
        seen.add(id(code))
        lines = [line for _, _, line in code.co_lines() if line is not None]
        found.setdefault(code.co_name, []).append(
            (code.co_filename, code.co_firstlineno, max(lines, default=code.co_firstlineno)))
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                add_code(const)

    def add(obj, level: int) -> None:
        if isinstance(obj, type):
            for value in vars(obj).values():
                add(getattr(value, "__func__", value), level)
            return
        code = getattr(obj, "__code__", None)
        if not isinstance(code, types.CodeType) or id(code) in seen:
            return
        add_code(code)
        if level < depth:
            for value in _referenced_objects(obj).values():
                if isinstance(value, type) or isinstance(getattr(value, "__code__", None), types.CodeType):
                    add(value, level + 1)

    add(fn, 0)
    return found




class RemoteTraceback(Exception):
    """Shown as the cause of a re-raised exception: where it happened remotely."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self):
        return self.text


DYNAMIC_CODE = "<dynamic-code>"  # the file name cloudpickle gives code it ships by value
_CAUSE_LINE = "\nThe above exception was the direct cause of the following exception:\n"
_CONTEXT_LINE = "\nDuring handling of the above exception, another exception occurred:\n"


# -- where shipped code came from --------------------------------------------------

class CodeIndex:
    """Maps code shipped by value back to its file: by (qualified name, first
    line), exactly, from the function and every local module shipped with it;
    by name within a line range (``packaging.code_locations``) as a fallback."""

    def __init__(self, by_code: dict | None = None, by_name: dict | None = None):
        self.by_code = by_code or {}
        self.by_name = by_name or {}

    @classmethod
    def build(cls, fn, local_modules=(), by_name: dict | None = None) -> "CodeIndex":
        by_code: dict[tuple[str, int], str] = {}
        seen: set[int] = set()

        def add_code(code: types.CodeType) -> None:
            if id(code) in seen:
                return
            seen.add(id(code))
            by_code.setdefault((getattr(code, "co_qualname", code.co_name), code.co_firstlineno),
                               code.co_filename)
            for const in code.co_consts:
                if isinstance(const, types.CodeType):
                    add_code(const)

        def add(obj, module: str | None, depth: int = 0) -> None:
            obj = getattr(obj, "__func__", obj)
            if isinstance(obj, property):
                for part in (obj.fget, obj.fset, obj.fdel):
                    if part is not None:
                        add(part, module, depth)
                return
            if isinstance(obj, type) and depth < 3:
                if module is None or obj.__module__ == module:
                    for value in list(vars(obj).values()):
                        add(value, module, depth + 1)
                return
            code = getattr(obj, "__code__", None)
            if isinstance(code, types.CodeType) and (
                    module is None or getattr(obj, "__module__", None) == module):
                add_code(code)

        add(fn, None)
        for value in list(getattr(fn, "__globals__", {}).values()):
            if isinstance(value, type) or isinstance(getattr(value, "__code__", None), types.CodeType):
                add(value, getattr(fn, "__module__", None))
        tops = {name.partition(".")[0] for name in local_modules}
        for name, module in list(sys.modules.items()):
            if module is None or name.partition(".")[0] not in tops:
                continue
            for value in list(vars(module).values()):
                add(value, name)
        return cls(by_code, by_name)

    def locate(self, filename: str, lineno: int, name: str, code: tuple | None) -> str:
        if filename != DYNAMIC_CODE:
            return filename
        if code is not None:
            found = self.by_code.get(tuple(code))
            if found:
                return found
        for path, first, last in self.by_name.get(name, ()):
            if first <= lineno <= last:
                return path
        return filename


def _as_index(locations) -> CodeIndex:
    if isinstance(locations, CodeIndex):
        return locations
    return CodeIndex(by_name=locations)


# -- the traceback, for people ---------------------------------------------------------

def _qualified(info: dict) -> str:
    module = info.get("module", "")
    name = info.get("type", "Exception")
    return name if module in ("", "builtins", "__main__") else f"{module}.{name}"


def _format_one(info: dict, target: str, index: CodeIndex) -> list[str]:
    lines = [f"Traceback on the {target} target (most recent call last):"]
    codes = info.get("codes") or ()
    for i, (filename, lineno, name, line) in enumerate(info.get("frames", ())):
        code = codes[i] if i < len(codes) else None
        filename = index.locate(filename, lineno, name, code)
        lines.append(f'  File "{filename}", line {lineno}, in {name}')
        linecache.checkcache(filename)   # a file edited since it was read (a cell's entry stays)
        source = linecache.getline(filename, lineno).strip() or line
        if source:
            lines.append(f"    {source}")
    message = info.get("message", "")
    lines.append(f"{_qualified(info)}: {message}" if message else _qualified(info))
    return lines


def format_remote_traceback(info: dict, target: str, locations=None) -> str:
    """The remote traceback of ``info`` and its chain, oldest first, as Python prints it."""
    index = _as_index(locations)
    blocks: list[str] = []
    current, depth = info, 0
    while current is not None and depth < 16:
        blocks.insert(0, "\n".join(_format_one(current, target, index)))
        cause, context = current.get("cause"), current.get("context")
        if cause is not None:
            blocks.insert(0, _CAUSE_LINE)
            current = cause
        elif context is not None and not current.get("suppress_context"):
            blocks.insert(0, _CONTEXT_LINE)
            current = context
        else:
            current = None
        depth += 1
    return "\n" + "\n".join(blocks)


# -- the exception itself ---------------------------------------------------------------

def _loads(data):
    return pickle.loads(data) if data is not None else None


def _unpickled_attributes(info: dict) -> dict:
    values = {}
    reprs = info.get("attribute_reprs") or {}
    for name, data in (info.get("attributes") or {}).items():
        try:
            values[name] = pickle.loads(data)
        except Exception:
            values[name] = reprs.get(name, "?")
    for name, text in reprs.items():   # an attribute that could not travel: its repr
        values.setdefault(name, text)
    return values


def _remote_error(info: dict, text: str) -> RemoteError:
    return RemoteError(_qualified(info), info.get("message", ""), text,
                       attributes=dict(info.get("attribute_reprs") or {}))


def rebuild_one(info: dict, text: str = "") -> BaseException:
    """The exception ``info`` describes, without its chain; RemoteError if its type
    cannot be rebuilt here. ``__init__`` is never called."""
    if info.get("kind") == "result":
        return PackagingError(info.get("message", "the result cannot be serialized"))
    if "class" not in info:   # a runtime from before the exception travelled in parts
        try:
            exc = pickle.loads(info["exception"]) if info.get("exception") else None
        except Exception:
            exc = None
        return exc if isinstance(exc, BaseException) else _remote_error(info, text)
    try:
        cls = _loads(info["class"])
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(f"{cls!r} is not an exception type")
    except Exception:
        return _remote_error(info, text)
    try:
        args = _loads(info.get("args"))
        args = tuple(args) if isinstance(args, (tuple, list)) else (info.get("message", ""),)
    except Exception:
        args = (info.get("message", ""),)
    try:
        try:
            exc = cls.__new__(cls, *args)
        except Exception:
            exc = cls.__new__(cls)
        exc.args = args
        if isinstance(exc, SystemExit):
            # its code is set by __init__, which a rebuild does not call
            exc.code = None if not args else args[0] if len(args) == 1 else args
    except Exception:
        return _remote_error(info, text)
    attributes = _unpickled_attributes(info)
    for name, value in attributes.items():
        try:
            setattr(exc, name, value)
        except Exception:   # a read-only property or slot: the value is still in the repr
            pass
    return exc


def rebuild_exception(info: dict, target: str, locations=None) -> BaseException:
    """The exception described by a runtime's error_info, with its chain, ready to raise."""
    text = format_remote_traceback(info, target, locations)
    exc = rebuild_one(info, text)
    _annotate(exc, text, target)
    # restore the chain; its root gets the remote traceback as its cause
    current_info, current = info, exc
    for _ in range(16):
        cause_info, context_info = current_info.get("cause"), current_info.get("context")
        if cause_info is not None:
            linked = current.__cause__ = rebuild_one(cause_info)
            next_info = cause_info
        elif context_info is not None and not current_info.get("suppress_context"):
            linked = current.__context__ = rebuild_one(context_info)
            next_info = context_info
        else:
            break
        _annotate(linked, "", target)
        current_info, current = next_info, linked
    current.__cause__ = RemoteTraceback(text)
    return exc


def _annotate(exc: BaseException, text: str, target: str) -> None:
    try:
        if text:
            exc.remote_traceback = text
        if getattr(exc, "target", None) is None:
            exc.target = target
    except AttributeError:
        pass  # some built-in exceptions take no attributes; the cause still shows it


def _referenced_objects(fn):
    from .packaging.payload import referenced_objects   # here: packaging imports this module
    return referenced_objects(fn)
