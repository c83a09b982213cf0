"""The Ray entry points: what runs inside Ray's worker processes.

The Ray target wraps these with ``ray.remote`` on the client side, so this
module needs no Ray import: ``FunctionHost`` is the warm actor for single calls,
``run_frame`` the task for map chunks. Both take the same request frames as
every other runtime and return the response frame as bytes.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from . import capture, execute

# Functions loaded by this worker process, by content hash: a task does not
# unpickle the same function again for every chunk. Bounded, because one Ray
# worker process may serve many deployments over its life.
_LOADED_MAX = 8
_loaded: OrderedDict = OrderedDict()
_loaded_lock = threading.Lock()


def _function(key: str, payload: bytes):
    with _loaded_lock:
        fn = _loaded.get(key)
        if fn is not None:
            _loaded.move_to_end(key)
            return fn
    fn = execute.load_function(payload)
    with _loaded_lock:
        _loaded[key] = fn
        while len(_loaded) > _LOADED_MAX:
            _loaded.popitem(last=False)
    return fn


def _respond(fn, body) -> bytes:
    # in the Ray worker (never the driver, which imports this module too): the user's
    # os._exit(n) ends their call as SystemExit, not the worker; Ray's own os._exit
    # calls, outside a call, pass through
    execute.trap_process_exit()
    # Ray streams a worker's output to the driver itself: captured output, which
    # the handle prints, is not echoed a second time
    segments, _ = execute.handle_frame(fn, body, echo_output=False)
    return b"".join(segments)


class FunctionHost:
    """A warm process holding one deployed function (a Ray actor)."""

    def __init__(self, key: str, payload: bytes):
        self.fn = _function(key, payload)

    def run(self, body) -> bytes:
        return _respond(self.fn, body)

    def output(self, stream_id: str, offset: int) -> dict:
        """What a running call has written so far (see capture.read_stream)."""
        return capture.read_stream(stream_id, offset)

    def swap(self, key: str, payload: bytes) -> None:
        """An edited function: the next call runs it (calls in flight finish with theirs)."""
        self.fn = _function(key, payload)

    def ping(self) -> dict:
        return {"pid": os.getpid(), "python": execute.python_version()}

    def logs(self, tail: int = 100) -> str:
        """The last lines this process printed. Ray points a worker's stdout and
        stderr at files in its session folder (and streams them to the driver);
        they are read back from there, stdout's lines first."""
        lines: list[bytes] = []
        for fd in (1, 2):
            try:
                path = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:   # not Linux: nothing to read back
                continue
            lines += execute.last_lines(path, tail)
        return b"\n".join(lines[-tail:]).decode(errors="replace")


def run_frame(key: str, payload: bytes, body) -> bytes:
    """One map chunk as a stateless Ray task."""
    return _respond(_function(key, payload), body)
