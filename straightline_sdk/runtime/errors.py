"""Describe an exception raised on the far side so the client can rebuild it.

Pickling an exception replays ``cls(*args)``, which fails for a class whose
constructor takes other arguments than it passes to ``Exception.__init__``
(``DataQualityError(msg, bad_rows)``). So the parts travel separately: the
class, ``args``, each attribute of ``__dict__`` (one that cannot be pickled
travels as its repr), and the ``__cause__``/``__context__`` chain; the client
rebuilds with ``cls.__new__`` and never calls ``__init__``.

Standard library and cloudpickle only: this runs in every runtime.
"""

from __future__ import annotations

import traceback

import cloudpickle

#: how many exceptions of a __cause__/__context__ chain travel
CHAIN_DEPTH = 8
_REPR_MAX = 500


def _dumps(obj) -> bytes | None:
    try:
        return cloudpickle.dumps(obj, protocol=5)
    except Exception:
        return None


def _short_repr(value) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a repr that raises still names the type
        text = f"<{type(value).__qualname__} (repr failed: {type(exc).__name__})>"
    return text if len(text) <= _REPR_MAX else text[:_REPR_MAX] + "…"


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return _short_repr(exc.args)


def frames_of(tb) -> tuple[list, list]:
    """(filename, lineno, name, line) per frame, and (qualified name, first line)
    of each frame's code: code shipped by value is named "<dynamic-code>" here,
    and the client finds its real file by the code's name and first line."""
    frames, codes = [], []
    for summary, (frame, _) in zip(traceback.extract_tb(tb), traceback.walk_tb(tb)):
        frames.append((summary.filename, summary.lineno, summary.name, summary.line or ""))
        code = frame.f_code
        codes.append((getattr(code, "co_qualname", code.co_name), code.co_firstlineno))
    return frames, codes


def describe(exc: BaseException, kind: str = "user", skip_frames: int = 0,
             _depth: int = 0, _seen: set | None = None) -> dict:
    """The exception, its frames and its chain, as plain data and pickles."""
    seen = _seen if _seen is not None else set()
    seen.add(id(exc))
    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None:
            tb = tb.tb_next
    frames, codes = frames_of(tb)
    cls = type(exc)
    attributes, reprs = {}, {}
    for name, value in list(getattr(exc, "__dict__", {}).items()):
        if name.startswith("__"):
            continue
        reprs[name] = _short_repr(value)
        pickled = _dumps(value)
        if pickled is not None:
            attributes[name] = pickled
    info = {
        "kind": kind,
        "type": cls.__qualname__,
        "module": cls.__module__,
        "message": _message(exc),
        "frames": frames,
        "codes": codes,
        "class": _dumps(cls),
        "args": _dumps(exc.args),
        "args_repr": _short_repr(exc.args),
        "attributes": attributes,
        "attribute_reprs": reprs,
        "suppress_context": bool(exc.__suppress_context__),
        "cause": None,
        "context": None,
    }
    if _depth < CHAIN_DEPTH:
        for link in ("cause", "context"):
            other = getattr(exc, f"__{link}__")
            if other is not None and id(other) not in seen:
                info[link] = describe(other, kind, 0, _depth + 1, seen)
    return info
