"""The call protocol, client side: everything this process does to a call's
bytes, in one place.

- ``encode_request``: a list of calls ``[(args, kwargs), ...]`` as a request
  frame (runtime/wire.py defines frames), naming the argument that cannot be
  serialized;
- ``decode_response``: a response frame back into outcomes ``[(True, value) |
  (False, error_info), ...]``;
- ``rebuild_exception``: an error_info (made on the far side by
  runtime/execute.py: type, module, message, frames, the pickled exception, and
  kind "call" or "result") as the user's own exception, its remote traceback
  rendered with this process's source lines (linecache), so frames from a
  notebook cell show the cell's code, and chained as its cause the way
  concurrent.futures shows a process pool's errors;
- ``code_locations``: where code shipped by value came from, so those frames
  point at the user's files again.

The far side's half is runtime/wire.py and runtime/execute.py (stdlib and
cloudpickle only: the runtime ships on its own).
"""

from __future__ import annotations

import linecache
import pickle
import types

import cloudpickle

from .errors import PackagingError, RemoteError
from .runtime import wire

#: a response frame -> [(ok, value or error_info), ...]
decode_response = wire.decode


def encode_request(calls: list) -> tuple[list, int]:
    """Frame a list of (args, kwargs); PackagingError names the argument that fails."""
    try:
        return wire.encode(calls)
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


def _locate(filename: str, lineno: int, name: str, locations: dict | None) -> str:
    if filename != DYNAMIC_CODE or not locations:
        return filename
    for path, first, last in locations.get(name, ()):
        if first <= lineno <= last:
            return path
    return filename


def format_remote_traceback(info: dict, target: str, locations: dict | None = None) -> str:
    """``locations`` (packaging.code_locations) maps shipped code back to its files."""
    lines = [f"\nTraceback on the {target} target (most recent call last):"]
    for filename, lineno, name, line in info.get("frames", ()):
        filename = _locate(filename, lineno, name, locations)
        lines.append(f'  File "{filename}", line {lineno}, in {name}')
        source = linecache.getline(filename, lineno).strip() or line
        if source:
            lines.append(f"    {source}")
    module = info.get("module", "")
    qualified = info.get("type", "Exception") if module in ("", "builtins", "__main__") \
        else f"{module}.{info.get('type')}"
    lines.append(f"{qualified}: {info.get('message', '')}")
    return "\n".join(lines)


def rebuild_exception(info: dict, target: str, locations: dict | None = None) -> BaseException:
    """The exception described by a runtime's error_info, ready to raise."""
    text = format_remote_traceback(info, target, locations)
    if info.get("kind") == "result":
        exc: BaseException = PackagingError(info.get("message", "the result cannot be serialized"))
    else:
        exc = None
        if info.get("exception"):
            try:
                exc = pickle.loads(info["exception"])
            except Exception:
                exc = None
        if not isinstance(exc, BaseException):
            exc = RemoteError(info.get("type", "Exception"), info.get("message", ""), text)
    try:
        exc.remote_traceback = text
        exc.target = getattr(exc, "target", None) or target
    except AttributeError:
        pass  # some built-in exceptions take no attributes; the cause below still shows it
    exc.__cause__ = RemoteTraceback(text)
    return exc


def _referenced_objects(fn):
    from .packaging.payload import referenced_objects   # here: packaging imports this module
    return referenced_objects(fn)
