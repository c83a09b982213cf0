"""What a remote call wrote, printed here, in the calling cell.

The far side captures each call's stdout, stderr, warnings and log records
(``runtime.capture``) and returns them inside the call's outcome. The handle
calls ``show`` once per call, on the caller's thread, and its lines are printed
in the order they were written, each prefixed with where it ran: ``[docker]``,
or ``[docker #3]`` for item 3 of a map.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque

from .runtime import capture

#: bytes of output kept per call on the far side; the rest is only in h.logs()
OUTPUT_LIMIT = capture.DEFAULT_LIMIT
#: lines of captured output kept per target here, for h.logs() of targets whose
#: log does not hold it (Ray: its workers' output is streamed to the driver by
#: Ray itself, so the runtime there does not echo captured output a second time)
KEPT_LINES = 2000

_print_lock = threading.Lock()


def request_options(enabled: bool) -> dict | None:
    """What the far side needs to capture a call: the caller's root logger level
    decides which log records come back, as it decides which are shown here."""
    if not enabled:
        return None
    return {"capture": True, "log_level": logging.getLogger().getEffectiveLevel(),
            "output_limit": OUTPUT_LIMIT}


def split(outcome) -> tuple[bool, object, dict]:
    """(ok, value, meta) of an outcome; a runtime from before meta gives {}."""
    if len(outcome) >= 3:
        return outcome[0], outcome[1], outcome[2] or {}
    return outcome[0], outcome[1], {}


class OutputLog:
    """Captured output of recent calls, per target, bounded (for h.logs())."""

    def __init__(self, max_lines: int = KEPT_LINES):
        self._lines: dict[str, deque] = {}
        self._max = max_lines
        self._lock = threading.Lock()

    def add(self, where: str, meta: dict) -> None:
        chunks = meta.get("output")
        if not chunks:
            return
        text = "".join(text for _, text in chunks)
        with self._lock:
            kept = self._lines.get(where)
            if kept is None:
                kept = self._lines[where] = deque(maxlen=self._max)
            kept.extend(text.splitlines())

    def tail(self, where: str, count: int) -> str:
        with self._lock:
            lines = list(self._lines.get(where, ()))
        return "\n".join(lines[-count:])


def show(meta: dict, where: str, index: int | None = None, out=None, err=None) -> None:
    """Print one call's captured output, in order, each line tagged."""
    chunks = meta.get("output")
    truncated = meta.get("truncated")
    if not chunks and not truncated:
        return
    tag = f"[{where}]" if index is None else f"[{where} #{index}]"
    streams = {"out": out or sys.stdout, "err": err or sys.stderr}
    with _print_lock:   # a map's items do not interleave their lines
        last = None
        for stream_name, text in chunks or ():
            stream = streams.get(stream_name, streams["out"])
            if last is not None and last is not stream:
                last.flush()
            stream.write(_tagged(text, tag))
            last = stream
        if truncated:
            stream = streams["err"]
            if last is not None and last is not stream:
                last.flush()
            stream.write(f"{tag} … {truncated} more characters of output were not brought back "
                         f"(over {OUTPUT_LIMIT // 1024} KB for one call); see h.logs()\n")
            last = stream
        if last is not None:
            last.flush()


def _tagged(text: str, tag: str) -> str:
    lines = text.splitlines(keepends=True)
    out = []
    for line in lines:
        out.append(f"{tag} {line}")
    result = "".join(out)
    if result and not result.endswith("\n"):
        result += "\n"   # the call's last partial line ends here: the next call's tag starts a line
    return result
