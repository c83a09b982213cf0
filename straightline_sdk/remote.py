"""Re-raising the far side's exceptions here, as the user's own types.

The remote traceback is rendered with this process's source lines (linecache),
so frames from a notebook cell show the cell's code, and is chained as the
exception's cause, the way concurrent.futures shows a process pool's errors.
"""

from __future__ import annotations

import linecache
import pickle

from .errors import PackagingError, RemoteError


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
