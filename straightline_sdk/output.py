"""What a remote call wrote, printed here, in the calling cell.

The far side captures each call's stdout, stderr, warnings and log records
(``runtime.capture``) and returns them inside the call's outcome. The handle
calls ``show`` once per call, on the caller's thread, and its lines are printed
in the order they were written, each prefixed with where it ran: ``[docker]``,
or ``[docker #3]`` for item 3 of a map.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import re
import secrets
import sys
import threading
import time
from collections import deque

from .runtime import capture

#: bytes of output kept per call on the far side; the rest is only in h.logs()
OUTPUT_LIMIT = capture.DEFAULT_LIMIT
#: lines of captured output kept per target here, for h.logs() of targets whose
#: log does not hold it (Ray: its workers' output is streamed to the driver by
#: Ray itself, so the runtime there does not echo captured output a second time)
KEPT_LINES = 2000

#: a single call running longer than this has its output read while it runs
STREAM_AFTER_S = 1.0
#: and then this often
STREAM_EVERY_S = 0.5

_print_lock = threading.Lock()
_ids = itertools.count()
_PROCESS = secrets.token_hex(4)


def new_stream_id() -> str:
    """An id for one call, unique across the processes a worker may serve."""
    return f"{_PROCESS}-{next(_ids)}"


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


def _skip(chunks, count: int) -> list:
    """The chunks without their first ``count`` characters (printed while the call ran)."""
    out, seen = [], 0
    for stream, text in chunks:
        end = seen + len(text)
        if end > count:
            out.append((stream, text[max(0, count - seen):]))
        seen = end
    return out


_SHIPPED_CODE = re.compile(r"<dynamic-code:([^:>]+):(\d+)>:(\d+):")


def _name_files(text: str, locate) -> str:
    """``<dynamic-code:f:3>:5:`` (a warning from code shipped by value) becomes
    ``/home/me/features.py:5:`` where ``locate`` knows the code's file."""
    def real(match):
        qualname, first, lineno = match.group(1), int(match.group(2)), int(match.group(3))
        path = locate("<dynamic-code>", lineno, qualname.rpartition(".")[2], (qualname, first))
        return f"{path}:{lineno}:"
    return _SHIPPED_CODE.sub(real, text)


def show(meta: dict, where: str, index: int | None = None, out=None, err=None,
         locate=None, redact=None) -> None:
    """Print one call's captured output, in order, each line tagged (what was
    already printed while the call ran, ``meta["streamed"]``, is skipped).
    ``locate`` (remote.CodeIndex.locate) names the files of shipped code;
    ``redact`` (SecretValues.redact) takes a secret's value out of what is printed."""
    chunks = meta.get("output")
    if chunks and meta.get("streamed"):
        chunks = _skip(chunks, meta["streamed"])
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
            if locate is not None and "<dynamic-code:" in text:
                text = _name_files(text, locate)
            if redact is not None:
                text = redact(text)
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


# -- streaming: a long call's output while it runs --------------------------------------

class _Watch:
    __slots__ = ("target", "stream_id", "where", "due", "printed", "stopped", "lock", "context",
                 "locate", "redact")

    def __init__(self, target, stream_id: str, where: str, locate=None, redact=None):
        self.locate = locate
        self.redact = redact
        self.target = target
        self.stream_id = stream_id
        self.where = where
        self.due = time.monotonic() + STREAM_AFTER_S
        self.printed = 0           # characters of the call's output printed so far
        self.stopped = False
        self.lock = threading.Lock()
        # printing runs in the caller's context: Jupyter routes it to the caller's cell
        self.context = contextvars.copy_context()


class StreamWatcher:
    """Reads the output of single calls that run past ``STREAM_AFTER_S`` while they
    run, and prints it, every ``STREAM_EVERY_S``. One thread for the process;
    registering a call costs microseconds and a quick call is never read."""

    def __init__(self):
        self._watches: list[_Watch] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, target, stream_id: str, where: str, locate=None, redact=None) -> _Watch:
        w = _Watch(target, stream_id, where, locate, redact)
        with self._lock:
            self._watches.append(w)   # no wake-up: the thread looks every STREAM_EVERY_S
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="straightline-output",
                                                daemon=True)
                self._thread.start()
        return w

    def stop(self, w: _Watch) -> int:
        """Stop reading a call (it has returned); how many characters were printed."""
        with w.lock:       # a read in progress finishes printing first
            w.stopped = True
        with self._lock:
            try:
                self._watches.remove(w)
            except ValueError:
                pass
        return w.printed

    def _run(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                due = [w for w in self._watches if w.due <= now]
                soonest = min((w.due for w in self._watches), default=now + STREAM_EVERY_S)
                for w in due:
                    w.due = now + STREAM_EVERY_S
            if not due:
                time.sleep(min(STREAM_EVERY_S, max(0.01, soonest - now)))
                continue
            for w in due:
                try:
                    self._read(w)
                except Exception as exc:   # streaming is a convenience: the result still carries it all
                    logging.getLogger("straightline").debug("reading a running call's output: %s", exc)

    @staticmethod
    def _read(w: _Watch) -> None:
        with w.lock:
            if w.stopped:
                return
            answer = w.target.read_output(w.stream_id, w.printed)
            if not answer or not answer.get("chunks"):
                return
            chunks = [tuple(c) for c in answer["chunks"]]
            # whole lines only: a line still being written is printed when it ends
            text = "".join(t for _, t in chunks)
            cut = text.rfind("\n") + 1
            if cut <= 0:
                return
            kept, seen = [], 0
            for stream, part in chunks:
                if seen >= cut:
                    break
                kept.append((stream, part[:cut - seen]))
                seen += len(part)
            w.context.run(show, {"output": kept}, w.where, locate=w.locate, redact=w.redact)
            w.printed += cut


streams = StreamWatcher()
