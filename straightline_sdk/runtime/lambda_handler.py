"""The AWS Lambda entry point: ``straightline_runtime.lambda_handler.handler``.

The zip holds this folder as the package ``straightline_runtime``, the function
as ``straightline_function.pkl`` beside it, cloudpickle and the function's
dependencies. The function is loaded once per container, at import (Lambda's
init phase runs with a full CPU), and reused by every call the container serves.

Event:    ``{"frame": base64 of a request frame}``
Response: ``{"frame": base64 of the response frame, "cold": bool}``; the user's
          errors travel inside the frame, as on every target. A failure of the
          runtime's own (the function cannot be loaded, the result is over
          Lambda's response limit) answers ``{"error": {"type", "message"}}``.

Environment: STRAIGHTLINE_MAX_RESULT_BYTES, the largest response frame to send
(set by the client from its placement limits, so the limit has one source).
"""

from __future__ import annotations

import base64
import os

from . import execute, wire

PAYLOAD_FILE = "straightline_function.pkl"
MAX_RESULT_ENV = wire.MAX_RESULT_ENV

_function = None
_load_error: dict | None = None
_served = 0   # calls this container has served: 0 means the next one is its first (cold)


def _task_root() -> str:
    return os.environ.get("LAMBDA_TASK_ROOT") or os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))


def _load() -> None:
    global _function, _load_error
    try:
        with open(os.path.join(_task_root(), PAYLOAD_FILE), "rb") as f:
            _function = execute.load_function(f.read())
        _load_error = None
    except Exception as exc:  # reported on each call: the client says what to do
        _load_error = {
            "type": "LoadError",
            "message": f"the function could not be loaded on Lambda: {type(exc).__name__}: {exc}",
            "python": execute.python_version(),
        }


if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):  # inside Lambda, not on the client
    _load()


def handler(event, context=None):
    global _served
    # in the Lambda runtime only (the client imports this module too): the user's
    # os._exit(n) ends their call as SystemExit, not the warm runtime
    execute.trap_process_exit()
    cold = _served == 0
    _served += 1
    if _function is None:
        _load()  # a transient load failure (e.g. a full /tmp) may pass on a later call
        if _function is None:
            return {"error": _load_error, "cold": cold}
    try:
        # a bytearray, so arrays rebuilt from it are writable as they are elsewhere
        body = bytearray(base64.b64decode(event["frame"], validate=True))
    except (KeyError, TypeError, ValueError) as exc:
        return {"error": {"type": "BadEvent",
                          "message": f"the event is not a straightline request ({exc})"},
                "cold": cold}
    segments, total = execute.handle_frame(_function, body)
    limit = int(os.environ.get(MAX_RESULT_ENV) or 0)
    if limit and total > limit:
        return {"error": {"type": "ResultTooLarge", "bytes": total, "limit": limit,
                          "message": f"the result frame is {total} bytes, over the {limit} bytes "
                                     f"Lambda can return"},
                "cold": cold}
    return {"frame": base64.b64encode(b"".join(segments)).decode("ascii"), "cold": cold}
