"""Capture what one call writes (stdout, stderr, warnings, log records) so it
travels back with the call's outcome and is printed in the caller's cell.

A worker runs calls on several threads at once, so the capture is per call:
``sys.stdout`` and ``sys.stderr`` become proxies that hand each write to the
buffer of the call running in the writing thread (a contextvar), and pass it
on to the real stream as before, so the target's own log (``h.logs()``) keeps
everything. Threads the function starts itself inherit no context: their
output reaches the log only. Writes straight to file descriptor 1 or 2 (C
extensions, subprocesses) bypass Python's streams and reach the log only.

Warnings are written to ``sys.stderr`` by the warnings module, so the proxy
takes them. Log records go through one handler on the root logger, at the
level the caller's root logger has (sent with the request).

Standard library only.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import warnings

#: bytes of output kept per call; the rest reaches only the target's log
DEFAULT_LIMIT = 1024 * 1024

_current: contextvars.ContextVar["CallOutput | None"] = contextvars.ContextVar(
    "straightline_call_output", default=None)
_install_lock = threading.Lock()


class CallOutput:
    """One call's output: ``[(stream, text), ...]`` in order, stream "out" or "err"."""

    __slots__ = ("chunks", "size", "limit", "truncated", "tee_all", "running", "_lock")

    def __init__(self, limit: int = DEFAULT_LIMIT, tee_all: bool = True):
        self.chunks: list[list] = []
        self.size = 0
        self.limit = limit
        self.truncated = 0        # characters not kept
        self.tee_all = tee_all    # False: only what is not kept reaches the real stream
        self.running = True
        self._lock = threading.Lock()   # the call's thread writes, a stream reader reads

    def add(self, stream: str, text: str) -> bool:
        """Keep ``text``; returns False for what is over the limit (not kept)."""
        if not text:
            return True
        room = self.limit - self.size
        if room <= 0:
            self.truncated += len(text)
            return False
        if len(text) > room:
            self.truncated += len(text) - room
            text = text[:room]
        with self._lock:
            self.size += len(text)
            if self.chunks and self.chunks[-1][0] == stream:
                self.chunks[-1][1] += text
            else:
                self.chunks.append([stream, text])
        return self.truncated == 0

    def as_list(self) -> list[tuple[str, str]]:
        return [(stream, text) for stream, text in self.chunks]

    def read(self, offset: int) -> tuple[list[tuple[str, str]], int]:
        """What was written after the first ``offset`` characters, and the new offset."""
        out, seen = [], 0
        with self._lock:
            for stream, text in self.chunks:
                end = seen + len(text)
                if end > offset:
                    out.append((stream, text[max(0, offset - seen):]))
                seen = end
        return out, seen


# Output of calls running now that a client may read while they run (streaming),
# by the id the client sent with the request.
_streams: dict[str, CallOutput] = {}
_streams_lock = threading.Lock()


def read_stream(stream_id: str, offset: int) -> dict:
    """``{"chunks": [(stream, text)...], "offset": n, "running": bool}``; a call
    that is not (or no longer) running reads as nothing, not running."""
    with _streams_lock:
        output = _streams.get(stream_id)
    if output is None:
        return {"chunks": [], "offset": offset, "running": False}
    chunks, end = output.read(offset)
    return {"chunks": chunks, "offset": end, "running": output.running}


class _Stream:
    """Stands in for sys.stdout or sys.stderr: each write goes to the current
    call's buffer (if any) and to the stream it replaced."""

    def __init__(self, name: str, original):
        self._name = name
        self._original = original

    def write(self, text):
        out = _current.get()
        if out is not None and isinstance(text, str):
            kept = out.add(self._name, text)
            if kept and not out.tee_all:
                return len(text)
        return self._original.write(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        return self._original.flush()

    def __getattr__(self, name):  # encoding, fileno, isatty, buffer, ...
        return getattr(self._original, name)


class _RecordHandler(logging.Handler):
    """Formats a record into the current call's buffer, at the caller's level."""

    def __init__(self):
        super().__init__(logging.NOTSET)
        self.setFormatter(logging.Formatter("%(levelname)s:%(name)s: %(message)s"))

    def emit(self, record):
        out = _current.get()
        level = _levels.get()
        if out is None or level is None:
            # not inside a captured call: behave like logging's last resort
            if record.levelno >= logging.WARNING and not _other_root_handlers():
                logging.lastResort.handle(record)
            return
        if record.levelno < level:
            return
        try:
            text = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        kept = out.add("err", text)
        if not kept or out.tee_all:
            try:
                sys.stderr._original.write(text) if isinstance(sys.stderr, _Stream) \
                    else sys.stderr.write(text)
            except Exception:
                pass


_levels: contextvars.ContextVar["int | None"] = contextvars.ContextVar(
    "straightline_log_level", default=None)
_handler: _RecordHandler | None = None


DYNAMIC_CODE = "<dynamic-code>"   # the file name cloudpickle gives code shipped by value
_plain_formatwarning = warnings.formatwarning


def _formatwarning(message, category, filename, lineno, line=None):
    """A warning from code shipped by value names its code (qualified name, first
    line) instead of "<dynamic-code>", so the client can name the real file."""
    if filename == DYNAMIC_CODE and _current.get() is not None:
        frame = sys._getframe(1)
        while frame is not None:
            code = frame.f_code
            if code.co_filename == DYNAMIC_CODE and frame.f_lineno == lineno:
                filename = (f"<dynamic-code:{getattr(code, 'co_qualname', code.co_name)}:"
                            f"{code.co_firstlineno}>")
                break
            frame = frame.f_back
    return _plain_formatwarning(message, category, filename, lineno, line)


def _other_root_handlers() -> bool:
    return any(h is not _handler for h in logging.getLogger().handlers)


def install() -> None:
    """Put the stream proxies and the log handler in place. Checked at every
    call: something may have replaced sys.stdout since (the proxy then wraps
    the new stream)."""
    global _handler
    if isinstance(sys.stdout, _Stream) and isinstance(sys.stderr, _Stream) and _handler is not None:
        return
    with _install_lock:
        if not isinstance(sys.stdout, _Stream):
            sys.stdout = _Stream("out", sys.stdout)
        if not isinstance(sys.stderr, _Stream):
            sys.stderr = _Stream("err", sys.stderr)
        if _handler is None:
            _handler = _RecordHandler()
            logging.getLogger().addHandler(_handler)
            if warnings.formatwarning is _plain_formatwarning:   # not the user's own
                warnings.formatwarning = _formatwarning


class capturing:
    """``with capturing(level, limit) as out:`` around one call."""

    def __init__(self, log_level: int | None, limit: int = DEFAULT_LIMIT, tee_all: bool = True,
                 stream_id: str | None = None):
        install()
        self.output = CallOutput(limit, tee_all)
        self.log_level = log_level
        self.stream_id = stream_id

    def __enter__(self) -> CallOutput:
        if self.log_level is not None:
            root = logging.getLogger()
            if root.level > self.log_level:
                root.setLevel(self.log_level)   # records below the root's level never reach a handler
        self._tokens = (_current.set(self.output), _levels.set(self.log_level))
        if self.stream_id:
            with _streams_lock:
                _streams[self.stream_id] = self.output
        return self.output

    def __exit__(self, *exc):
        _current.reset(self._tokens[0])
        _levels.reset(self._tokens[1])
        self.output.running = False
        if self.stream_id:
            with _streams_lock:
                _streams.pop(self.stream_id, None)
