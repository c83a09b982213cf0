"""The worker: serves one deployed function over HTTP.

Started by the local target as ``python -m straightline_sdk.runtime.worker`` and
inside containers as ``python3 -m straightline_runtime.worker``. Configured by
environment (never by arguments, which other users can read in ``ps``):

    STRAIGHTLINE_TOKEN        required: the deployment's key, never sent on the wire
                              (connections prove it, see runtime/auth.py)
    STRAIGHTLINE_FUNCTION     path of the cloudpickled function
    STRAIGHTLINE_HOST/PORT    where to listen (127.0.0.1, a free port)
    STRAIGHTLINE_LISTEN_FD    or: an inherited listening socket (local target;
                              no port race, connections queue until we serve)
    STRAIGHTLINE_LISTEN_FDS   several, comma-separated: one per pool process
    STRAIGHTLINE_PROCESSES    pool processes (default 1); without inherited
                              sockets each listens on PORT, PORT+1, ... (or
                              free ports when PORT is 0)
    STRAIGHTLINE_THREADS      calls each process runs at once; more are
                              answered 503 at once (STRAIGHTLINE_CONCURRENCY,
                              the older name, still works)
    STRAIGHTLINE_LIFELINE_FD  exit when this pipe's far end closes (local target:
                              the starting process is gone, whatever thread started us)
    STRAIGHTLINE_PARENT_PID   or: exit when this process is gone
    STRAIGHTLINE_MAX_BODY     largest request body accepted, bytes (413 past it)
    STRAIGHTLINE_MAX_CONNECTIONS  open connections at once (more are answered 503)
    STRAIGHTLINE_MEMORY_MB    cap the address space (local target's memory_mb), per
                              pool process

With more than one process the function is loaded once and the processes are
forked from it (runtime/pool.py: a large closure is shared, not copied).
Once listening it prints ``STRAIGHTLINE_WORKER_READY port=N ports=N,M,...``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from . import auth, capture, execute, pool, wire

READY_LINE = "STRAIGHTLINE_WORKER_READY"
_SMALL_RESPONSE = 256 * 1024
_MAX_LINE = 8192       # a request line or header line longer than this is refused
_MAX_HEADERS = 64
_MAX_HEADER_BYTES = 32 * 1024
# A stranger's connection is cheap for them and costs us a thread: it must send
# its first request head within _HEAD_S of connecting, later ones within _IDLE_S
# of the last answer (keep-alive), and bodies at no less than _MIN_RATE.
_IDLE_S = float(os.environ.get(wire.IDLE_TIMEOUT_ENV) or 60)
_HEAD_S = float(os.environ.get(wire.HEAD_TIMEOUT_ENV) or 10)
_BODY_S = 30.0
_MIN_RATE = 1024 * 1024          # bytes/s a body (or an answer) must at least move at
_UNAUTHENTICATED_DRAIN = 64 * 1024  # a refused request's body is skipped up to this, else closed
DEFAULT_MAX_BODY = 1024 ** 3
DEFAULT_MAX_CONNECTIONS = 256


class _Headers(dict):
    """A request's headers by lower-case name (HTTP names are case-insensitive)."""

    def get(self, name: str, default=None):
        return dict.get(self, name.lower(), default)


class _Refused(Exception):
    """A request answered with an error status; the connection is closed after it."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Worker:
    def __init__(self, fn, token: str, concurrency: int, name: str = "", pool: dict | None = None,
                 max_body: int = DEFAULT_MAX_BODY):
        self.fn = fn
        self.key = token.encode()
        self.json_token = auth.json_token(self.key)
        self.function_hash = ""      # of the payload last sent to POST /function ("" : the one started with)
        self.swap_file = ""          # where a swapped payload is kept for the pool's re-forked processes
        self.name = name
        self.concurrency = concurrency
        # this process's place in its pool: {"process": i, "processes": n, "ports": [...]}
        self.pool = pool or {"process": 0, "processes": 1, "ports": []}
        self.max_body = max_body
        self.slots = threading.BoundedSemaphore(concurrency)
        self.in_flight = 0
        self.calls = 0
        self.renewed = time.monotonic()   # the last request that proved the key (the lease)
        self._lock = threading.Lock()

    def enter(self) -> bool:
        if not self.slots.acquire(blocking=False):
            return False
        with self._lock:
            self.in_flight += 1
            self.calls += 1
        return True

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1
        self.slots.release()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "straightline-worker"
    worker: Worker  # set on the subclass made by serve()
    timeout = _IDLE_S   # per receive/send; the server's reaper bounds whole phases

    def setup(self):
        super().setup()
        # Without TCP_NODELAY a small response can stall ~40 ms (Nagle vs delayed ACK).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._session = None        # per connection, after the /auth handshake
        self._client_proof = None
        self._counter = 0
        self._sdk = False           # this request proved the key (vs the JSON door's token)
        self._mac_counter = 0
        self._head_deadline = time.monotonic() + _HEAD_S   # the first request's

    def log_message(self, format, *args):  # per-request lines would drown the user's output
        pass

    def handle_one_request(self):
        deadlines = self.server.deadlines
        deadlines[self.request] = self._head_deadline
        self._sdk = False     # until this request proves the key
        try:
            super().handle_one_request()
        except _Refused as exc:
            self.close_connection = True
            self._send_json(exc.status, {"error": str(exc)})
        except (ConnectionError, OSError):
            self.close_connection = True   # the peer went away, or the reaper cut it off
        finally:
            deadlines.pop(self.request, None)
            self._head_deadline = time.monotonic() + _IDLE_S + _HEAD_S   # the next request's

    def send_error(self, code, message=None, explain=None):
        # The stdlib's HTML error page, as JSON, and the connection closed after it.
        self.close_connection = True
        self._send_json(code, {"error": message or self.responses.get(code, ("",))[0]})

    def parse_request(self) -> bool:
        """Read the request line and headers. The stdlib's version parses headers
        with the email package, ~13 µs a request: a tenth of a warm call. The
        worker needs a few headers; they are read here line by line, with limits,
        and anything ambiguous is refused rather than guessed."""
        self.command = None
        self.request_version = self.default_request_version
        self.close_connection = True
        self._sdk = False
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.1", "HTTP/1.0"):
            self.request_version = "HTTP/1.1"   # so the answer carries a status line
            self.send_error(400, f"bad request line {self.requestline[:100]!r}")
            return False
        self.command, self.path, self.request_version = words
        if len(self.raw_requestline) > _MAX_LINE:
            self.send_error(414, "request line too long")
            return False
        headers = _Headers()
        size = 0
        while True:
            line = self.rfile.readline(_MAX_LINE + 1)
            size += len(line)
            if len(line) > _MAX_LINE or len(headers) >= _MAX_HEADERS or size > _MAX_HEADER_BYTES:
                self.send_error(431, "request header fields too large")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            name, colon, value = line.partition(b":")
            name = name.decode("latin-1").lower()
            if not colon or not name or name != name.strip() or name in headers:
                # no colon, whitespace before it, or a repeated header (two lengths): refused
                self.send_error(400, "malformed or repeated header")
                return False
            headers[name] = value.strip().decode("latin-1")
        if "transfer-encoding" in headers and (
                headers["transfer-encoding"].lower() != "chunked" or "content-length" in headers):
            self.send_error(501 if "content-length" not in headers else 400,
                            "only 'Transfer-Encoding: chunked' is supported, without a Content-Length")
            return False
        length = headers.get("content-length", "0")
        if not (length.isascii() and length.isdigit() and len(length) <= 19):
            self.send_error(400, f"bad Content-Length {length[:40]!r}: send a decimal byte count")
            return False
        self.headers = headers
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive")
        return True

    # -- authentication ------------------------------------------------------

    def _credential(self, json_door: bool) -> bool:
        """Check the request's credential before its body is read. The SDK's
        connections prove the key (runtime/auth.py); outside clients may use the
        JSON door's bearer token where ``json_door``. Refusals answer and, for a
        body larger than a small drain, close the connection unread."""
        header = self.headers.get("authorization")
        scheme, _, given = (header or "").partition(" ")
        given = given.strip()
        scheme = scheme.lower()
        if scheme == "straightline":
            if self._client_proof is not None and auth.same(given, self._client_proof):
                self._sdk = True
                self.worker.renewed = time.monotonic()
                return True
            return self._refuse(403, "the connection's proof is wrong or missing: "
                                     "open it with POST /auth first")
        if scheme == "bearer" and given:
            if auth.same(given, self.worker.json_token):
                if json_door:
                    return True
                return self._refuse(403, f"the JSON token opens /json, /health and /openapi.json "
                                         f"only, not {self.command} {self.path}")
            return self._refuse(403, "wrong token")
        return self._refuse(401, "missing token: send 'Authorization: Bearer <token>' "
                                 "(h.endpoint.token)")

    def _refuse(self, status: int, message: str) -> bool:
        length = self._content_length()
        if self.headers.get("expect", "").lower() == "100-continue" or length is None \
                or length > _UNAUTHENTICATED_DRAIN:
            self.close_connection = True      # never read: closing is cheaper than draining
        else:
            self._skip(length)
        self._send_json(status, {"error": message})
        return False

    def _content_length(self) -> int | None:
        if "transfer-encoding" in self.headers:
            return None
        return int(self.headers.get("content-length") or 0)

    def _skip(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                raise ConnectionError("client closed the connection mid-request")
            length -= len(chunk)

    def _auth_handshake(self) -> None:
        client_nonce = auth.parse_nonce(self.headers.get(auth.NONCE_HEADER, ""))
        if client_nonce is None or self._content_length() != 0:
            self._refuse(400, f"POST {auth.AUTH_PATH} takes an {auth.NONCE_HEADER} header of "
                              f"32 hex digits and no body")
            return
        server_nonce = auth.new_nonce()
        key = self.worker.key
        sign = self.headers.get(auth.SIGN_HEADER) == "1"
        self._session = auth.session_key(key, client_nonce, server_nonce) if sign else None
        self._client_proof = auth.client_proof(key, client_nonce, server_nonce, sign)
        self._counter = 0
        head = (f"HTTP/1.1 200 OK\r\n{auth.NONCE_HEADER}: {server_nonce.hex()}\r\n"
                f"{auth.PROOF_HEADER}: {auth.worker_proof(key, client_nonce, server_nonce, sign)}\r\n"
                f"Content-Length: 0\r\n\r\n").encode()
        self.wfile.write(head)

    # -- bodies --------------------------------------------------------------

    def _read_body(self) -> bytearray:
        """The body, once the request is authenticated: capped, time-bounded,
        Content-Length or chunked."""
        length = self._content_length()
        cap = self.worker.max_body
        if length is not None and length > cap:
            raise _Refused(413, f"the request body ({length} bytes) is over this worker's limit "
                                f"of {cap} bytes")
        if self.headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()
        deadlines = self.server.deadlines
        deadlines[self.request] = time.monotonic() + _BODY_S + (length or cap) / _MIN_RATE
        if length is None:
            return self._read_chunked(cap)
        body = bytearray(length)
        self._fill(memoryview(body))
        return body

    def _fill(self, view: memoryview) -> None:
        """Read exactly len(view) bytes of the body into ``view``."""
        got = 0
        while got < len(view):
            n = self.rfile.readinto(view[got:])
            if not n:
                raise ConnectionError("client closed the connection mid-request")
            got += n

    def _read_chunked(self, cap: int) -> bytearray:
        body = bytearray()
        while True:
            line = self.rfile.readline(_MAX_LINE + 1)
            size_text = line.split(b";", 1)[0].strip()
            try:
                if len(line) > _MAX_LINE or not size_text or size_text.startswith((b"-", b"+")):
                    raise ValueError
                size = int(size_text, 16)
            except ValueError:
                raise _Refused(400, "malformed chunk size in a chunked body") from None
            if size == 0:
                break
            if len(body) + size > cap:
                raise _Refused(413, f"the request body is over this worker's limit of {cap} bytes")
            start = len(body)
            body.extend(bytes(size)) if size < 65536 else body.extend(bytearray(size))
            with memoryview(body) as view:   # released before the body grows again
                self._fill(view[start:])
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise _Refused(400, "a chunk is not followed by CRLF")
        for _ in range(_MAX_HEADERS):                 # trailers: skipped
            if self.rfile.readline(_MAX_LINE + 1) in (b"\r\n", b"\n", b""):
                return body
        raise _Refused(431, "too many trailer fields")

    # -- answers -------------------------------------------------------------

    def _send(self, status: int, content_type: str, segments: list, total: int) -> None:
        extra = ""
        if self._sdk and self._session is not None:
            # signed under the connection's session key and the request's counter
            signed = auth.signed_length_of_segments(segments, total)
            tag = auth.mac(self._session, b"rsp", self._mac_counter, b"%d" % status,
                           auth.prefix_parts(segments, signed))
            extra = f"{auth.MAC_HEADER}: {tag}\r\n"
        elif content_type == "application/json":
            extra = "Access-Control-Allow-Origin: *\r\n"   # the JSON door, from a browser too
        if self.close_connection:
            extra += "Connection: close\r\n"
        head = (f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {total}\r\n{extra}\r\n").encode()
        self.server.deadlines[self.request] = time.monotonic() + _BODY_S + total / _MIN_RATE
        if total <= _SMALL_RESPONSE:
            self.wfile.write(b"".join([head, *segments]))  # one write: one packet for small calls
        else:
            self.wfile.write(head)
            for segment in segments:
                self.wfile.write(segment)

    def _send_json(self, status: int, obj) -> None:
        body = json.dumps(obj).encode()
        self._send(status, "application/json", [body], len(body))

    def _saturated(self) -> None:
        self._send_json(503, {"error": "saturated", "concurrency": self.worker.concurrency})

    def _verify_mac(self, body) -> None:
        """An SDK request's MAC, checked before anything in it is unpickled."""
        self._counter += 1
        self._mac_counter = self._counter
        given = self.headers.get(auth.MAC_HEADER, "")
        signed = auth.signed_length(body)
        want = auth.mac(self._session, b"req", self._counter,
                        f"{self.command} {self.path}".encode("latin-1"),
                        (memoryview(body)[:signed],))
        if not auth.same(given, want):
            self._sdk = False     # the answer cannot be signed for a request we did not verify
            raise _Refused(403, "the request's MAC does not verify (replayed, reordered or altered)")

    # -- endpoints -----------------------------------------------------------

    def do_OPTIONS(self):
        """A browser's preflight for a cross-origin fetch of the JSON door."""
        self.wfile.write(b"HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Origin: *\r\n"
                         b"Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
                         b"Access-Control-Allow-Headers: Authorization, Content-Type\r\n"
                         b"Access-Control-Max-Age: 600\r\nContent-Length: 0\r\n\r\n")

    def do_GET(self):
        output = self.path.startswith(wire.OUTPUT_PATH + "?")
        if self.path not in (wire.HEALTH_PATH, wire.OPENAPI_PATH) and not output:
            self._refuse(404, f"no such endpoint: GET {self.path}")
            return
        # a running call's output is the SDK's alone: the JSON door's token does not open it
        if not self._credential(json_door=not output):
            return
        if self._sdk and self._session is not None:
            self._verify_mac(b"")
        if output:
            self._output()
            return
        if self.path == wire.OPENAPI_PATH:
            self._send_json(200, openapi(self.worker.name))
            return
        w = self.worker
        # concurrency: the whole pool's calls at once; threads: this process's
        self._send_json(200, {"ok": True, "function": w.name, "pid": os.getpid(),
                              "function_hash": w.function_hash,
                              "python": execute.python_version(), "in_flight": w.in_flight,
                              "concurrency": w.concurrency * w.pool["processes"],
                              "threads": w.concurrency, "calls": w.calls, **w.pool})

    def _output(self):
        """What a running call has written so far: ``GET /output?id=<id>&offset=<n>``."""
        query = parse_qs(urlsplit(self.path).query)
        try:
            stream_id = query["id"][0]
            offset = int(query.get("offset", ["0"])[0])
        except (KeyError, IndexError, ValueError):
            self._send_json(400, {"error": "send /output?id=<call id>&offset=<characters read>"})
            return
        self._send_json(200, capture.read_stream(stream_id, max(0, offset)))

    def do_POST(self):
        if self.path == auth.AUTH_PATH:
            self._auth_handshake()
            return
        if self.path not in (wire.INVOKE_PATH, wire.JSON_PATH, wire.STREAM_PATH, wire.FUNCTION_PATH):
            self._refuse(404, f"no such endpoint: POST {self.path}")
            return
        if not self._credential(json_door=self.path == wire.JSON_PATH):
            return
        body = self._read_body()
        self.server.deadlines.pop(self.request, None)   # the call itself may take its time
        if self._sdk and self._session is not None:
            self._verify_mac(body)
        if self.path == wire.INVOKE_PATH:
            self._invoke(body)
        elif self.path == wire.STREAM_PATH:
            self._stream(body)
        elif self.path == wire.FUNCTION_PATH:
            self._swap_function(body)
        else:
            self._invoke_json(body)

    def _invoke(self, body):
        if not self.worker.enter():
            self._saturated()
            return
        if self.headers.get(wire.EACH_HEADER) == "1":
            self._invoke_each(body)
            return
        try:
            segments, total = execute.handle_frame(self.worker.fn, body)
        except Exception as exc:  # the request itself could not be read here
            self._unreadable(exc)
            return
        finally:
            self.worker.leave()
        self._send(200, wire.FRAME_CONTENT_TYPE, segments, total)

    def _unreadable(self, exc: Exception) -> None:
        """The request itself could not be read here (a call's, a chunk's or a stream's)."""
        self._send_json(422, {"error": f"the request could not be unpickled on this target "
                                       f"({type(exc).__name__}: {exc}); if a module is missing, "
                                       f"add it with deploy(..., requirements=[...])"})

    def _invoke_each(self, body):
        """A map chunk answered item by item (wire.EACH_HEADER): each call's record
        is written as it completes, so a worker killed mid-chunk has sent every
        finished item. The connection stays open: the done record ends the answer."""
        records = None
        try:
            try:
                records = execute.chunk_records(self.worker.fn, body)
            except Exception as exc:  # the request itself could not be read here
                self._unreadable(exc)
                return
            signed = self._sdk and self._session is not None
            extra = ""
            if signed:   # the head signed for this request; each record then carries its own MAC
                extra = f"{auth.MAC_HEADER}: {auth.mac(self._session, b'rsp', self._mac_counter, b'200', ())}\r\n"
            if self.close_connection:
                extra += "Connection: close\r\n"
            out = [(f"HTTP/1.1 200 OK\r\nContent-Type: {wire.ITEMS_CONTENT_TYPE}\r\n"
                    f"{extra}\r\n").encode()]      # sent with the first group
            index = 0
            for group in records:
                for segments in group:
                    out += segments
                    if signed:
                        index += 1
                        out.append(auth.mac(self._session, b"rec", index, b"%d" % self._mac_counter,
                                            segments).encode())
                if sum(map(len, out)) <= _SMALL_RESPONSE:
                    self.wfile.write(b"".join(out))   # one write: one packet for a small group
                else:
                    for segment in out:
                        self.wfile.write(segment)
                out = []
        except (BrokenPipeError, ConnectionError):
            self.close_connection = True   # the client went away: the rest of the chunk is not run
        finally:
            if records is not None:
                records.close()
            self.worker.leave()

    def _swap_function(self, body):
        """An edited function, swapped in without a restart: calls in flight finish
        with the one they started with, the next call runs the new one."""
        try:
            fn = execute.load_function(bytes(body))
        except Exception as exc:
            self._send_json(422, {"error": f"the new function could not be loaded here "
                                           f"({type(exc).__name__}: {exc})"})
            return
        w = self.worker
        if w.swap_file:   # a process of the pool forked again later starts with this one
            try:
                _write_private(w.swap_file, bytes(body))
            except OSError as exc:
                self._send_json(500, {"error": f"the new function could not be kept ({exc})"})
                return
        w.fn = fn
        w.function_hash = hashlib.sha256(body).hexdigest()
        self._send_json(200, {"ok": True, "function_hash": w.function_hash})

    def _stream(self, body):
        """A generator's items, each sent as it is produced; the connection closes after."""
        if not self.worker.enter():
            self._saturated()
            return
        records = None
        try:
            try:
                records = execute.stream_call(self.worker.fn, body)
            except Exception as exc:  # the request itself could not be read here
                self._unreadable(exc)
                return
            self.close_connection = True
            signed = self._sdk and self._session is not None
            extra = ""
            if signed:   # the head signed for this request; each record then carries its own MAC
                extra = f"{auth.MAC_HEADER}: {auth.mac(self._session, b'rsp', self._mac_counter, b'200', ())}\r\n"
            self.wfile.write((f"HTTP/1.1 200 OK\r\nContent-Type: {wire.STREAM_CONTENT_TYPE}\r\n"
                              f"{extra}Connection: close\r\n\r\n").encode())
            for index, segments in enumerate(records, 1):
                if signed:
                    tag = auth.mac(self._session, b"rec", index, b"%d" % self._mac_counter, segments)
                    segments = [*segments, tag.encode()]
                if sum(map(len, segments)) <= _SMALL_RESPONSE:
                    self.wfile.write(b"".join(segments))   # one write: one packet per small item
                else:
                    for segment in segments:
                        self.wfile.write(segment)
        except (BrokenPipeError, ConnectionError):
            pass   # the client stopped reading (it left the loop): the generator is closed
        finally:
            if records is not None:
                records.close()
            self.worker.leave()

    def _invoke_json(self, body):
        try:
            request = json.loads(body or b"{}")
            args = request.get("args", [])
            kwargs = request.get("kwargs", {})
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise ValueError("'args' must be a list and 'kwargs' an object")
        except (ValueError, AttributeError) as exc:
            self._send_json(400, {"error": f"bad JSON request: {exc}"})
            return
        if not self.worker.enter():
            self._saturated()
            return
        try:
            (ok, value, _), = execute.run_calls(self.worker.fn, [(args, kwargs)])
        finally:
            self.worker.leave()
        if not ok:
            self._send_json(500, {"error": {"type": value["type"], "message": value["message"],
                                            "traceback": execute.format_error(value)}})
            return
        try:
            self._send_json(200, {"result": value})
        except (TypeError, ValueError) as exc:
            self._send_json(422, {"error": f"the result is not JSON-serializable: {exc}"})


def openapi(name: str) -> dict:
    """The JSON door described for outside tools (OpenAPI 3.1)."""
    bearer = [{"bearer": []}]
    error = {"description": "error", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {}}}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": f"straightline: {name or 'function'}", "version": "1",
                 "description": "Calls the deployed function with JSON arguments. The bearer "
                                "token is h.endpoint.token; it opens these endpoints only."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": bearer,
        "paths": {
            "/json": {"post": {
                "summary": f"call {name or 'the function'}",
                "requestBody": {"required": False, "content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {"args": {"type": "array"}, "kwargs": {"type": "object"}}}}}},
                "responses": {
                    "200": {"description": "the result", "content": {"application/json": {
                        "schema": {"type": "object", "properties": {"result": {}}}}}},
                    "400": error, "401": error, "403": error, "413": error, "422": error,
                    "500": {"description": "the function raised", "content": {"application/json": {
                        "schema": {"type": "object", "properties": {"error": {
                            "type": "object", "properties": {
                                "type": {"type": "string"}, "message": {"type": "string"},
                                "traceback": {"type": "string"}}}}}}}},
                    "503": error}}},
            "/health": {"get": {"summary": "whether the worker serves", "responses": {
                "200": {"description": "ok", "content": {"application/json": {"schema": {
                    "type": "object"}}}}, "401": error, "403": error}}},
        },
    }


_TOO_MANY_CONNECTIONS = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 33\r\nConnection: close\r\n\r\n"
                         b'{"error": "too many connections"}')


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    max_connections = DEFAULT_MAX_CONNECTIONS

    def _start_guards(self) -> None:
        # socket -> monotonic deadline of the phase it is in (head, body, answer);
        # plain dict operations, atomic under the GIL, on the hot path
        self.deadlines = {}
        self.connection_slots = threading.BoundedSemaphore(self.max_connections)
        threading.Thread(target=self._reap, name="slow-connection-reaper", daemon=True).start()

    def _reap(self) -> None:
        """Cut off connections past their phase's deadline (idle, slow head, slow
        body, an answer nobody reads): a blocked read returns and its thread ends."""
        while True:
            time.sleep(1.0)
            now = time.monotonic()
            for sock, deadline in list(self.deadlines.items()):
                if deadline < now:
                    self.deadlines.pop(sock, None)
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def process_request(self, request, client_address):
        if not self.connection_slots.acquire(blocking=False):
            # over the connection bound: answer at once, without a thread
            try:
                request.settimeout(0)
                request.send(_TOO_MANY_CONNECTIONS)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connection_slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.deadlines.pop(request, None)
            self.connection_slots.release()

    def handle_error(self, request, client_address):
        # one line, not a traceback, for a request that broke its handler
        exc = sys.exc_info()[1]
        print(f"straightline worker: a request failed: {type(exc).__name__}: {exc}",
              file=sys.stderr, flush=True)


def _watch_lifeline(fd: int, cleanup_dir: str | None = None) -> None:
    """Exit when the process that started us is gone, however it ended (even
    SIGKILL). The lifeline is the read end of a pipe whose write end only that
    process holds; the kernel closes it when the process, not a thread, exits.
    ``cleanup_dir`` (the function's payload and log) is removed first: nobody
    is left to remove it."""

    def watch():
        while True:
            try:
                if not os.read(fd, 1):
                    break
            except InterruptedError:
                continue
            except OSError:
                break
        if cleanup_dir:
            import shutil
            shutil.rmtree(cleanup_dir, ignore_errors=True)
        execute.real_exit(0)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


class _SharedStamp:
    """A monotonic time shared by a pool's processes (an anonymous shared page
    made before the fork): the latest renewal or running call of any of them."""

    def __init__(self):
        import mmap
        self._page = mmap.mmap(-1, 8)
        self.update(time.monotonic())

    def read(self) -> float:
        return struct.unpack_from("d", self._page)[0]

    def update(self, stamp: float) -> float:
        latest = max(stamp, self.read())
        struct.pack_into("d", self._page, 0, latest)
        return latest


def _watch_lease(worker: Worker, lease_s: float, shared: _SharedStamp | None = None) -> None:
    """A container of a deployment that is not kept exits when its SDK process
    has not renewed the lease (any request that proves the key) for ``lease_s``:
    the process was killed, or its machine lost. Calls in flight count as use.
    In a pool, ``shared`` holds the whole pool's latest use, and the supervisor
    is stopped (taking every process with it) when it lapses."""

    def watch():
        while True:
            time.sleep(min(5.0, lease_s / 4))
            now = time.monotonic()
            used = now if worker.in_flight else worker.renewed
            if shared is not None:
                used = shared.update(used)
            if now - used > lease_s:
                print(f"straightline worker: no call or renewal from the SDK for {lease_s:g} s; "
                      f"exiting (the deployment is not kept)", file=sys.stderr, flush=True)
                if shared is not None:
                    try:
                        os.kill(os.getppid(), signal.SIGTERM)   # the pool's supervisor
                    except OSError:
                        pass
                execute.real_exit(0)

    threading.Thread(target=watch, name="lease", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    """Fallback without a lifeline: exit when our parent process is gone. Polled,
    not PR_SET_PDEATHSIG: that signal fires when the *thread* that started us
    exits, and the router starts workers from whichever thread first needs one."""

    def watch():
        while True:
            if os.getppid() != parent_pid:
                execute.real_exit(0)
            time.sleep(0.5)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _write_private(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` whole (a reader sees the old or the new file), owner-only."""
    part = f"{path}.{os.getpid()}.part"
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(part, path)


def serve(fn, *, token: str, host: str = "127.0.0.1", port: int = 0, concurrency: int = 4,
          name: str = "", listen_fd: int | None = None, ready=None, listener: socket.socket | None = None,
          pool: dict | None = None, max_body: int = DEFAULT_MAX_BODY,
          max_connections: int = DEFAULT_MAX_CONNECTIONS, swap_file: str = "") -> _Server:
    worker = Worker(fn, token, concurrency, name, pool, max_body)
    worker.swap_file = swap_file
    handler = type("BoundHandler", (Handler,), {"worker": worker})
    if listener is None and listen_fd is not None:
        listener = socket.socket(fileno=listen_fd)
    if listener is None:
        server = _Server((host, port), handler)
    else:
        server = _Server(("127.0.0.1", 0), handler, bind_and_activate=False)
        server.socket.close()
        server.socket = listener
        server.server_address = server.socket.getsockname()
    server.max_connections = max(max_connections, 2 * concurrency + 8)
    server._start_guards()
    if ready is not None:
        ready(server.server_address[1])
    return server


_THREAD_HEADROOM_MB = 256   # thread stacks and malloc arenas are address space too


def limit_memory(memory_mb: int) -> int:
    """Cap this process's address space at what it uses now plus ``memory_mb``
    (and room for its threads): an allocation past it raises MemoryError in the
    call instead of taking the machine's memory. Returns the limit in bytes."""
    import resource
    baseline = 0
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    baseline = int(line.split()[1]) * 1024
    except OSError:
        pass
    limit = baseline + (memory_mb + _THREAD_HEADROOM_MB) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return limit


def main() -> None:
    token = os.environ.get(wire.TOKEN_ENV, "")
    if not token:
        sys.exit("straightline worker: STRAIGHTLINE_TOKEN is not set; refusing to serve without a token")
    execute.trap_process_exit()
    lifeline = os.environ.get(wire.LIFELINE_FD_ENV)
    parent = os.environ.get(wire.PARENT_PID_ENV)
    if lifeline:
        _watch_lifeline(int(lifeline), os.environ.get(wire.CLEANUP_DIR_ENV))
    elif parent:
        _watch_parent(int(parent))
    signal.signal(signal.SIGTERM, lambda *_: execute.real_exit(0))
    with open(os.environ[wire.FUNCTION_ENV], "rb") as f:
        fn = execute.load_function(f.read())
    listeners = _listeners()
    ports = [sock.getsockname()[1] for sock in listeners]
    threads = int(os.environ.get(wire.THREADS_ENV) or os.environ.get(wire.CONCURRENCY_ENV) or 4)
    name = os.environ.get(wire.NAME_ENV, "")
    max_body = int(os.environ.get(wire.MAX_BODY_ENV) or DEFAULT_MAX_BODY)
    max_connections = int(os.environ.get(wire.MAX_CONNECTIONS_ENV) or DEFAULT_MAX_CONNECTIONS)
    lease_s = float(os.environ[wire.LEASE_ENV]) if os.environ.get(wire.LEASE_ENV) else None
    # one lease for the whole pool: any process's renewal or running call keeps all alive
    lease_stamp = _SharedStamp() if lease_s and len(listeners) > 1 else None

    # an edited function (POST /function) reaches one process at a time: the client
    # sends it to each, and each keeps it here so that a process forked again (after
    # one died) serves the edited function, not the one the supervisor loaded
    swap_file = ""
    if len(listeners) > 1:
        swap_file = os.path.join(tempfile.gettempdir(), f"straightline-swap-{os.getpid()}.pkl")

    def serve_one(index: int) -> None:
        for i, sock in enumerate(listeners):
            if i != index:
                sock.close()   # each process answers on its own address only
        served, function_hash = fn, ""
        if swap_file and os.path.exists(swap_file):
            with open(swap_file, "rb") as f:
                payload = f.read()
            served, function_hash = execute.load_function(payload), hashlib.sha256(payload).hexdigest()
        # every process runs the hardened server: its own connection cap and reaper
        server = serve(served, token=token, concurrency=threads, name=name, listener=listeners[index],
                       pool={"process": index, "processes": len(listeners), "ports": ports},
                       max_body=max_body, max_connections=max_connections, swap_file=swap_file)
        server.RequestHandlerClass.worker.function_hash = function_hash
        if lease_s:
            _watch_lease(server.RequestHandlerClass.worker, lease_s, lease_stamp)
        server.serve_forever()

    # the cap is per process (RLIMIT_AS is inherited by each pool process, not shared)
    if os.environ.get(wire.MEMORY_MB_ENV):
        limit_memory(int(os.environ[wire.MEMORY_MB_ENV]))
    print(f"{READY_LINE} port={ports[0]} ports={','.join(map(str, ports))}", flush=True)
    if len(listeners) == 1:
        serve_one(0)   # no fork: the process that loaded the function serves it
    else:
        # the lifeline/parent watch runs in this supervisor (threads do not survive a
        # fork); its pool processes die with it (pool._die_with_parent)
        pool.prefork(len(listeners), serve_one, cleanup=lambda: _remove(swap_file))


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _listeners() -> list[socket.socket]:
    """The pool's listening sockets: inherited (local target), or bound here on
    consecutive ports from STRAIGHTLINE_PORT (a container), one per process."""
    fds = os.environ.get(wire.LISTEN_FDS_ENV) or os.environ.get(wire.LISTEN_FD_ENV)
    if fds:
        return [socket.socket(fileno=int(fd)) for fd in fds.split(",")]
    host = os.environ.get(wire.HOST_ENV, "127.0.0.1")
    port = int(os.environ.get(wire.PORT_ENV, "0"))
    listeners = []
    for i in range(max(1, int(os.environ.get(wire.PROCESSES_ENV) or 1))):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port + i if port else 0))
        sock.listen(_Server.request_queue_size)
        listeners.append(sock)
    return listeners


if __name__ == "__main__":
    main()
