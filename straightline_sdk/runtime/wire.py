"""The wire format shared by the client and every runtime.

A *frame* is a pickle (protocol 5) whose large buffers travel out of band, so a
10 MB numpy array is neither copied into the pickle stream nor out of it:

    b"SLF1" | u32 n | n x u64 segment lengths | segments, each starting 64-byte aligned

Segment 0 is the pickle stream, the others are its out-of-band buffers.

Messages:
- request:  a list of calls, each ``(args, kwargs)``; a single call is a list of one;
  or ``(CALLS, calls, options)``, options a dict: ``capture`` (bring the call's
  output back), ``log_level`` (the caller's root logger level), ``output_limit``.
- response: a list of outcomes in the same order, each ``(True, value, meta)`` or
  ``(False, error_info, meta)`` where error_info is a dict (see ``runtime.errors``)
  and meta holds ``function_s`` and the captured ``output`` (``runtime.capture``).
- echo:     ``(ECHO, padding, response_bytes)`` runs nothing and answers
  ``response_bytes`` zero bytes: calibration measures a target's transport with it.

HTTP (worker): ``POST /invoke`` takes and returns frames; ``POST /json`` takes
``{"args": [...], "kwargs": {...}}`` and returns ``{"result": ...}`` or
``{"error": {...}}``; ``GET /health``. Every request carries
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import pickle
import struct

import cloudpickle

MAGIC = b"SLF1"
ALIGN = 64
# Buffers smaller than this stay in the pickle stream: a segment costs a header
# entry and padding, which only pays off for large buffers.
OUT_OF_BAND_MIN = 64 * 1024
FRAME_CONTENT_TYPE = "application/x-straightline-frame"

# The worker's HTTP endpoints (runtime/worker.py serves them, targets/http.py calls them).
INVOKE_PATH = "/invoke"      # POST a request frame, get a response frame
JSON_PATH = "/json"          # POST {"args": [...], "kwargs": {...}}, get {"result": ...}
HEALTH_PATH = "/health"      # GET: {"ok": true, ...}
OUTPUT_PATH = "/output"      # GET ?id=<stream id>&offset=<n>: a running call's output so far
OPENAPI_PATH = "/openapi.json"   # GET: the JSON door described (OpenAPI 3.1)
FUNCTION_PATH = "/function"  # POST a new payload: the worker runs it from the next call on
STREAM_PATH = "/stream"      # POST a request frame of one call, get its items as they come
STREAM_CONTENT_TYPE = "application/x-straightline-stream"
# A map chunk sent to POST /invoke with this header is answered item by item: a
# record per call as it completes (the records of /stream), then done, and the
# connection stays open. A worker that dies mid-chunk has then sent every
# finished item: the client runs again only the rest (issue 17, finding 9).
EACH_HEADER = "x-straightline-each"
ITEMS_CONTENT_TYPE = "application/x-straightline-items"

# The environment a worker is started with (the local target, the Docker image).
TOKEN_ENV = "STRAIGHTLINE_TOKEN"                  # the deployment's key (never on the wire)
FUNCTION_ENV = "STRAIGHTLINE_FUNCTION"            # path of the cloudpickled function
NAME_ENV = "STRAIGHTLINE_NAME"                    # the deployment's name (for logs)
CONCURRENCY_ENV = "STRAIGHTLINE_CONCURRENCY"      # calls run at once
HOST_ENV = "STRAIGHTLINE_HOST"                    # where to listen ...
PORT_ENV = "STRAIGHTLINE_PORT"                    # ... when no socket is inherited
LISTEN_FD_ENV = "STRAIGHTLINE_LISTEN_FD"          # an inherited listening socket
LISTEN_FDS_ENV = "STRAIGHTLINE_LISTEN_FDS"        # several, one per pool process (comma-separated)
PROCESSES_ENV = "STRAIGHTLINE_PROCESSES"          # pool processes (runtime/pool.py)
THREADS_ENV = "STRAIGHTLINE_THREADS"              # calls each pool process runs at once
PARENT_PID_ENV = "STRAIGHTLINE_PARENT_PID"        # exit when this process is gone
LIFELINE_FD_ENV = "STRAIGHTLINE_LIFELINE_FD"      # exit when this pipe's write end closes
MAX_BODY_ENV = "STRAIGHTLINE_MAX_BODY"            # the largest request body read, bytes
MAX_CONNECTIONS_ENV = "STRAIGHTLINE_MAX_CONNECTIONS"  # connections served at once
MEMORY_MB_ENV = "STRAIGHTLINE_MEMORY_MB"          # local target: cap the address space
IDLE_TIMEOUT_ENV = "STRAIGHTLINE_IDLE_TIMEOUT_S"  # keep-alive idleness allowed, seconds
HEAD_TIMEOUT_ENV = "STRAIGHTLINE_HEAD_TIMEOUT_S"  # a request head must arrive within this
LEASE_ENV = "STRAIGHTLINE_LEASE_S"                # exit when the SDK has not called for this long
CLEANUP_DIR_ENV = "STRAIGHTLINE_CLEANUP_DIR"      # local worker: remove this folder when orphaned
MAX_RESULT_ENV = "STRAIGHTLINE_MAX_RESULT_BYTES"  # Lambda: the largest response frame

ECHO = "straightline-echo"
CALLS = "straightline-calls"

_U32 = struct.Struct("<I")


def _pad(n: int) -> int:
    return -n % ALIGN


def encode(obj) -> tuple[list, int]:
    """Serialize ``obj`` into frame segments; returns (segments, total length).

    The segments are sent one after the other (no join for large buffers).
    Raises whatever cloudpickle raises for an unpicklable object.
    """
    buffers: list[pickle.PickleBuffer] = []

    def keep_out_of_band(buf: pickle.PickleBuffer) -> bool:
        if buf.raw().nbytes < OUT_OF_BAND_MIN:
            return True  # true means: serialize in band
        buffers.append(buf)
        return False

    stream = cloudpickle.dumps(obj, protocol=5, buffer_callback=keep_out_of_band)
    raws = [memoryview(stream)] + [b.raw() for b in buffers]
    n = len(raws)
    header_len = 4 + 4 + 8 * n
    header = bytearray(MAGIC + _U32.pack(n) + struct.pack(f"<{n}Q", *(r.nbytes for r in raws)))
    header += bytes(_pad(header_len))
    segments: list = [header]
    total = len(header)
    for i, raw in enumerate(raws):
        segments.append(raw)
        total += raw.nbytes
        if i + 1 < n:
            pad = _pad(raw.nbytes)
            if pad:
                segments.append(bytes(pad))
                total += pad
    return segments, total


def echo_request(request_bytes: int, response_bytes: int) -> tuple[list, int]:
    """A request frame of about ``request_bytes`` that asks for ``response_bytes`` back."""
    return encode((ECHO, bytearray(request_bytes), response_bytes))


def encode_bytes(obj) -> bytes:
    segments, _ = encode(obj)
    return b"".join(segments)


def decode(data):
    """Rebuild the object from a frame (bytes, bytearray or memoryview).

    Out-of-band buffers are views into ``data``: keep ``data`` alive and, for
    writable arrays, pass a bytearray.
    """
    view = memoryview(data)
    if view[:4] != MAGIC:
        raise ValueError("not a straightline frame (bad magic)")
    (n,) = _U32.unpack_from(view, 4)
    lengths = struct.unpack_from(f"<{n}Q", view, 8)
    offset = 8 + 8 * n
    offset += _pad(offset)
    segments = []
    for length in lengths:
        segments.append(view[offset:offset + length])
        offset += length + _pad(length)
    return pickle.loads(segments[0], buffers=segments[1:])


# -- streams: a generator's items as they are produced (POST /stream) ----------------
#
# The response body is a run of records, then the connection closes:
#   kind (1 byte) | u64 length | a response frame of one outcome
# kind b"I": an item (or, if it could not be serialized, that item's error);
# b"E": the call raised (the frame holds the error); b"D": done (length 0, or the
# frame of (True, None, meta): what the generator wrote after its last item).
# An outcome's meta holds what the generator wrote before it (output capture).

STREAM_ITEM, STREAM_ERROR, STREAM_DONE = b"I", b"E", b"D"
_RECORD = struct.Struct("<cQ")
RECORD_HEAD = _RECORD.size
RECORD_MAC = 32   # on a signed connection each record is followed by its MAC (auth.mac, hex)


def stream_record(kind: bytes, segments: list = (), total: int = 0) -> list:
    """One record's segments: its head, then the frame's segments."""
    return [_RECORD.pack(kind, total), *segments]


def read_record_head(head: bytes) -> tuple[bytes, int]:
    return _RECORD.unpack(head)
