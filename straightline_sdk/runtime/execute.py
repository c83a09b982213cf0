"""Run calls of the deployed function and capture what they raise.

Shared by every runtime (worker, Lambda handler, Ray), so a function behaves
and fails the same way wherever it runs.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import pickle
import sys
import threading
import time

import cloudpickle

from . import capture, errors, wire


def load_function(payload: bytes):
    return pickle.loads(payload)


def error_info(exc: BaseException, kind: str = "user", skip_frames: int = 0) -> dict:
    """Describe an exception so the client can re-raise it as its own type
    (see ``runtime.errors``). ``frames`` are (filename, lineno, name, line) from
    the user's code on: the client re-reads the lines from its own files (a
    notebook's cells included), which the far side does not have."""
    return errors.describe(exc, kind, skip_frames)


real_exit = os._exit
_in_call = threading.local()


class ProcessExit(SystemExit):
    """``os._exit(code)`` called by the user's function inside a worker: raised
    instead of ending the process that serves other calls."""


def _exit_in_call(code=0):
    if getattr(_in_call, "active", False):
        raise ProcessExit(code)
    real_exit(code)


def trap_process_exit() -> None:
    """In a worker, make the user's ``os._exit(n)`` end their call, not the
    process (which serves other calls and would be re-run elsewhere). Idempotent."""
    if os._exit is not _exit_in_call:
        os._exit = _exit_in_call


def run_calls(fn, calls, options: dict | None = None) -> list:
    """Run each ``(args, kwargs)`` call; one outcome per call, in order.

    An outcome is ``(True, value, meta)`` or ``(False, error_info, meta)``;
    ``meta`` holds the time spent in the function (``function_s``) and, when
    ``options`` asks for it, what the call wrote (``output``, see capture.py).
    """
    return list(each_outcome(fn, calls, options))


def each_outcome(fn, calls, options: dict | None = None):
    """run_calls' outcomes one by one, each as its call returns."""
    options = options or {}
    capture_on = bool(options.get("capture"))
    log_level = options.get("log_level")
    limit = int(options.get("output_limit") or capture.DEFAULT_LIMIT)
    tee_all = options.get("tee", True)
    # a single call may be read while it runs (streaming), by the id the client sent
    stream_id = options.get("stream_id") if len(calls) == 1 else None
    clock = time.perf_counter
    _in_call.active = True
    try:
        for args, kwargs in calls:
            meta: dict = {}
            output = None
            t0 = clock()
            try:
                if capture_on:
                    with capture.capturing(log_level, limit, tee_all, stream_id) as output:
                        value = settle(fn(*args, **kwargs))
                else:
                    value = settle(fn(*args, **kwargs))
                outcome = [True, value, meta]
            except ProcessExit as exc:
                info = error_info(SystemExit(exc.code), kind="exit", skip_frames=1)
                where = error_info(exc, skip_frames=1)
                for key in ("frames", "codes"):
                    if key in where:
                        info[key] = where[key]
                info["message"] = f"the function called os._exit({exc.code!r})"
                outcome = [False, info, meta]
            except (Exception, SystemExit, KeyboardInterrupt) as exc:
                # the user's error (an exit included) travels back; the worker lives on
                info = error_info(exc, skip_frames=1)
                items = getattr(_partial, "items", None)
                if items:   # a generator's items before its error: the caller gets them first
                    info["items_before"] = items
                outcome = [False, info, meta]
            finally:
                _partial.items = None
            meta["function_s"] = clock() - t0
            if output is not None and output.chunks:
                meta["output"] = output.as_list()
                if output.truncated:
                    meta["truncated"] = output.truncated
            yield tuple(outcome)
    finally:
        _in_call.active = False


def format_error(info: dict) -> str:
    """A traceback's text from error_info (the JSON door's answer)."""
    lines = ["Traceback (most recent call last):\n"]
    for filename, lineno, name, line in info.get("frames", ()):
        lines.append(f'  File "{filename}", line {lineno}, in {name}\n')
        if line:
            lines.append(f"    {line}\n")
    lines.append(f"{info.get('type', 'Exception')}: {info.get('message', '')}\n")
    return "".join(lines)


_partial = threading.local()   # a generator's items so far, when it raised (run_calls)


def settle(value):
    """What a call's result is worth sending: a generator's items (the client
    hands them back as an iterator), an ``async def``'s awaited value."""
    if inspect.isgenerator(value):
        items: list = []
        _partial.items = items
        items.extend(value)
        _partial.items = None
        return items
    if inspect.iscoroutine(value):
        return asyncio.run(value)
    if inspect.isasyncgen(value):
        async def drain():
            return [item async for item in value]
        return asyncio.run(drain())
    return value


def stream_call(fn, body):
    """The records of one call's stream (wire.stream_record): an item record per
    item as the generator produces it, then done, or an error record. Lazy: the
    generator runs only as fast as the records are sent (the socket's back
    pressure keeps memory bounded for a long stream). The request is read now,
    so one that cannot be unpickled raises here, before anything is sent. The
    request's options (output capture) are those of a call (``run_calls``): what
    the generator writes before each item travels with that item (meta), what it
    writes after the last one with the done record."""
    message = wire.decode(body)
    options: dict = {}
    if type(message) is tuple and message[0] == wire.CALLS:
        options, message = dict(message[2] or {}), message[1]
    (args, kwargs), = message
    return _records(fn, args, kwargs, options)


class _StreamOutput:
    """What a streamed generator writes, captured around each step of it (the
    generator runs in the caller's context, so a step's prints are the step's)."""

    def __init__(self, options: dict):
        self.on = bool(options.get("capture"))
        self.log_level = options.get("log_level")
        self.limit = int(options.get("output_limit") or capture.DEFAULT_LIMIT)
        self.tee = options.get("tee", True)
        self.chunks: list = []
        self.truncated = 0
        self._capturing = None
        self._output = None

    def __enter__(self):
        if self.on:
            self._capturing = capture.capturing(self.log_level, self.limit, self.tee)
            self._output = self._capturing.__enter__()
        return self

    def __exit__(self, *exc):
        if self._capturing is not None:
            self._capturing.__exit__(*exc)
            self.chunks += self._output.as_list()
            self.truncated += self._output.truncated
            self._capturing = self._output = None
        return False

    def take(self) -> dict:
        """The output since the last take, as an outcome's meta."""
        meta: dict = {}
        if self.chunks:
            meta["output"] = self.chunks
        if self.truncated:
            meta["truncated"] = self.truncated
        self.chunks, self.truncated = [], 0
        return meta


def _records(fn, args, kwargs, options: dict | None = None):
    items = None
    output = _StreamOutput(options or {})
    _in_call.active = True      # os._exit in the generator ends the stream, not the worker
    try:
        with output:
            result = fn(*args, **kwargs)
        if inspect.isasyncgen(result):
            items = _drive_async(result)
        elif inspect.isgenerator(result):
            items = result
        else:
            with output:
                items = iter([settle(result)])
        while True:
            with output:
                try:
                    item = next(items)
                except StopIteration:
                    break
            segments, total = encode_outcomes([(True, item, output.take())])
            yield wire.stream_record(wire.STREAM_ITEM, segments, total)
    except (Exception, SystemExit, KeyboardInterrupt) as exc:
        # the user's error (an exit included) ends the stream; the worker lives on
        segments, total = wire.encode([(False, error_info(exc, skip_frames=1), output.take())])
        yield wire.stream_record(wire.STREAM_ERROR, segments, total)
        return
    finally:
        _in_call.active = False
        if items is not None and hasattr(items, "close"):
            items.close()   # the client went away: the generator's finally blocks run
    meta = output.take()
    if meta:   # written after the last item: the done record carries it
        segments, total = wire.encode([(True, None, meta)])
        yield wire.stream_record(wire.STREAM_DONE, segments, total)
    else:
        yield wire.stream_record(wire.STREAM_DONE)


def _drive_async(agen):
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(agen.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(agen.aclose())
        loop.close()


def encode_outcomes(outcomes: list) -> tuple[list, int]:
    """Frame the outcomes; a result that cannot be serialized becomes that call's error."""
    try:
        return wire.encode(outcomes)
    except Exception:
        pass
    safe = []
    for ok, value, *meta in outcomes:
        if ok:
            try:
                cloudpickle.dumps(value, protocol=5)
            except Exception as exc:
                err = TypeError(
                    f"the function returned a {type(value).__qualname__} that cannot be "
                    f"serialized to send back: {exc}")
                value, ok = error_info(err, kind="result"), False
        elif isinstance(value, dict) and "items_before" in value:
            try:
                cloudpickle.dumps(value["items_before"], protocol=5)
            except Exception:   # the error still travels, without the items before it
                value = {k: v for k, v in value.items() if k != "items_before"}
        safe.append((ok, value, *meta))
    return wire.encode(safe)


def handle_frame(fn, body, echo_output: bool = True) -> tuple[list, int]:
    """Request frame in, response frame segments out. ``echo_output=False``:
    captured output is not also written to this process's streams (only what
    is over the capture limit is), for runtimes whose streams already reach
    the caller (Ray)."""
    message = wire.decode(body)
    if type(message) is tuple and message[0] == wire.ECHO:
        return wire.encode(bytearray(message[2]))  # calibration: transport only
    if type(message) is tuple and message[0] == wire.CALLS:
        options = dict(message[2] or {})
        options.setdefault("tee", echo_output)
        return encode_outcomes(run_calls(fn, message[1], options))
    return encode_outcomes(run_calls(fn, message))


def chunk_records(fn, body, echo_output: bool = True):
    """A map chunk's outcomes as records (wire.stream_record), in groups to send
    at once: the calls that finished since the last group, as they finish
    (EACH_SEND_S); the last group ends with the done record. The request is read now (raises if it cannot be
    unpickled); the calls run only as the records are taken, so a client that
    went away stops the rest of the chunk."""
    message = wire.decode(body)
    options: dict = {}
    if type(message) is tuple and message[0] == wire.CALLS:
        message, options = message[1], dict(message[2] or {})
    elif type(message) is not list:
        raise ValueError("only a request of calls can be answered item by item")
    options.setdefault("tee", echo_output)
    options.pop("stream_id", None)     # a chunk's calls are not read while they run
    return _chunk_records(fn, message, options)


#: a chunk's finished calls are sent once this long has passed since the last send:
#: a call that ran this long or longer is sent as soon as it returns; quicker ones
#: are sent together (a record, a write and a wake-up of the client per trivial
#: call made a map of x + 1 five times slower). A worker lost mid-chunk costs at
#: most this much of finished work run again, besides the call that was running.
EACH_SEND_S = 0.001


def _chunk_records(fn, calls, options):
    clock = time.perf_counter
    finished: list = []
    last_sent = clock()
    for outcome in each_outcome(fn, calls, options):
        finished.append(outcome)
        now = clock()
        if now - last_sent >= EACH_SEND_S:
            segments, total = encode_outcomes(finished)
            yield [wire.stream_record(wire.STREAM_ITEM, segments, total)]
            finished, last_sent = [], now
    last = [wire.stream_record(wire.STREAM_DONE)]
    if finished:
        segments, total = encode_outcomes(finished)
        last.insert(0, wire.stream_record(wire.STREAM_ITEM, segments, total))
    yield last      # sent in one write: a quick chunk costs one write, as a whole answer does


def last_lines(path: str, count: int) -> list[bytes]:
    """The last ``count`` lines of an output file (from its last 64 KiB); [] if it
    cannot be read. The local worker's log and a Ray actor's output files."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            return f.read().splitlines()[-count:]
    except OSError:
        return []


def python_version() -> str:
    return "%d.%d.%d" % sys.version_info[:3]
