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
import traceback

import cloudpickle

from . import wire


def load_function(payload: bytes):
    return pickle.loads(payload)


def error_info(exc: BaseException, kind: str = "user", skip_frames: int = 0) -> dict:
    """Describe an exception so the client can re-raise it as its own type.

    ``frames`` are (filename, lineno, name, line) from the user's code on: the
    client re-reads the lines from its own files (a notebook's cells included),
    which the far side does not have.
    """
    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None:
            tb = tb.tb_next
    frames = [(f.filename, f.lineno, f.name, f.line or "") for f in traceback.extract_tb(tb)]
    try:
        pickled = cloudpickle.dumps(exc, protocol=5)
        pickle.loads(pickled)  # an exception that pickles but cannot be rebuilt is no use
    except Exception:
        pickled = None
    return {
        "kind": kind,
        "type": type(exc).__qualname__,
        "module": type(exc).__module__,
        "message": str(exc),
        "frames": frames,
        "exception": pickled,
    }


def run_calls(fn, calls) -> list:
    """Run each ``(args, kwargs)`` call; one outcome per call, in order."""
    outcomes = []
    for args, kwargs in calls:
        try:
            outcomes.append((True, settle(fn(*args, **kwargs))))
        except Exception as exc:  # the user's error travels back; the worker lives on
            outcomes.append((False, error_info(exc, skip_frames=1)))
    return outcomes


def settle(value):
    """What a call's result is worth sending: a generator's items (the client
    hands them back as an iterator), an ``async def``'s awaited value."""
    if inspect.isgenerator(value):
        return list(value)
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
    so one that cannot be unpickled raises here, before anything is sent."""
    message = wire.decode(body)
    (args, kwargs), = message
    return _records(fn, args, kwargs)


def _records(fn, args, kwargs):
    items = None
    try:
        result = fn(*args, **kwargs)
        if inspect.isasyncgen(result):
            items = _drive_async(result)
        elif inspect.isgenerator(result):
            items = result
        else:
            items = iter([settle(result)])
        for item in items:
            segments, total = encode_outcomes([(True, item)])
            yield wire.stream_record(wire.STREAM_ITEM, segments, total)
    except Exception as exc:  # the user's error ends the stream; the worker lives on
        segments, total = wire.encode([(False, error_info(exc, skip_frames=1))])
        yield wire.stream_record(wire.STREAM_ERROR, segments, total)
        return
    finally:
        if items is not None and hasattr(items, "close"):
            items.close()   # the client went away: the generator's finally blocks run
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
    for ok, value in outcomes:
        if ok:
            try:
                cloudpickle.dumps(value, protocol=5)
            except Exception as exc:
                err = TypeError(
                    f"the function returned a {type(value).__qualname__} that cannot be "
                    f"serialized to send back: {exc}")
                value, ok = error_info(err, kind="result"), False
        safe.append((ok, value))
    return wire.encode(safe)


def handle_frame(fn, body) -> tuple[list, int]:
    """Request frame in, response frame segments out."""
    message = wire.decode(body)
    if type(message) is tuple and message[0] == wire.ECHO:
        return wire.encode(bytearray(message[2]))  # calibration: transport only
    return encode_outcomes(run_calls(fn, message))


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
