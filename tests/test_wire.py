"""The wire format and the client side of the call protocol, on their own."""

from __future__ import annotations

import struct
import threading

import numpy as np
import pytest

from straightline_sdk import PackagingError, RemoteError
from straightline_sdk.protocol import (RemoteTraceback, code_locations, decode_response,
                                       encode_request, rebuild_exception)
from straightline_sdk.runtime import execute, wire


def _join(segments) -> bytearray:
    return bytearray(b"".join(bytes(s) for s in segments))


def test_a_frame_starts_with_its_magic_and_segment_lengths():
    segments, total = wire.encode({"a": 1})
    frame = _join(segments)
    assert len(frame) == total and frame[:4] == wire.MAGIC
    (n,) = struct.unpack_from("<I", frame, 4)
    assert n == 1   # a small object: the pickle stream only
    assert wire.decode(frame) == {"a": 1}


def test_large_buffers_travel_out_of_band_aligned_and_come_back_as_views():
    array = np.arange(200_000, dtype=np.float64)          # 1.6 MB
    segments, total = wire.encode([((array,), {})])
    frame = _join(segments)
    (n,) = struct.unpack_from("<I", frame, 4)
    assert n == 2
    lengths = struct.unpack_from(f"<{n}Q", frame, 8)
    header = 8 + 8 * n
    offset = header + (-header % wire.ALIGN) + lengths[0]
    offset += -offset % wire.ALIGN
    assert offset % wire.ALIGN == 0 and lengths[1] == array.nbytes
    [((back,), _)] = wire.decode(frame)
    assert np.array_equal(back, array)
    assert back.flags.writeable   # a bytearray frame gives writable arrays
    assert np.shares_memory(back, np.frombuffer(frame, dtype=np.uint8))   # a view, not a copy


def test_small_buffers_stay_in_band():
    segments, _ = wire.encode(np.zeros(100))
    (n,) = struct.unpack_from("<I", _join(segments), 4)
    assert n == 1


def test_something_that_is_not_a_frame_is_refused():
    with pytest.raises(ValueError, match="bad magic"):
        wire.decode(b"GET / HTTP/1.1\r\n")


def test_an_echo_request_runs_nothing_and_answers_the_bytes_asked_for():
    def never(*_):
        raise AssertionError("the echo ran the function")

    segments, total = wire.echo_request(1000, 300)
    assert total >= 1000
    out, _ = execute.handle_frame(never, _join(segments))
    assert len(_join(out)) >= 300


def test_a_request_and_its_response_through_the_runtime():
    segments, _ = encode_request([((2,), {"power": 3}), ((0,), {"power": -1})])
    out, _ = execute.handle_frame(lambda x, power: x ** power, _join(segments))
    (ok1, value), (ok2, info) = decode_response(_join(out))
    assert (ok1, value) == (True, 8)
    assert ok2 is False and info["type"] == "ZeroDivisionError"


def test_an_argument_that_cannot_be_serialized_is_named():
    with pytest.raises(PackagingError, match=r"keyword argument 'lock' of item 1 \(a lock\)"):
        encode_request([((1,), {}), ((2,), {"lock": threading.Lock()})])


def test_a_remote_error_is_rebuilt_as_its_own_type_with_the_remote_traceback():
    def fails(x):
        return {}[x]

    segments, _ = encode_request([(("missing",), {})])
    out, _ = execute.handle_frame(fails, _join(segments))
    [(ok, info)] = decode_response(_join(out))
    exc = rebuild_exception(info, "local", code_locations(fails))
    assert not ok and isinstance(exc, KeyError) and exc.target == "local"
    assert isinstance(exc.__cause__, RemoteTraceback)
    assert "Traceback on the local target" in str(exc.__cause__) and "{}[x]" in str(exc.__cause__)


def test_an_error_that_cannot_travel_becomes_a_remote_error():
    info = {"type": "Weird", "module": "somewhere", "message": "odd", "frames": [],
            "exception": b"not a pickle"}
    exc = rebuild_exception(info, "docker")
    assert isinstance(exc, RemoteError) and "somewhere.Weird: odd" in exc.remote_traceback


def test_endpoint_paths_and_variable_names_are_constants():
    assert (wire.INVOKE_PATH, wire.JSON_PATH, wire.HEALTH_PATH) == ("/invoke", "/json", "/health")
    names = [getattr(wire, n) for n in dir(wire) if n.endswith("_ENV")]
    assert names and all(name.startswith("STRAIGHTLINE_") for name in names)
