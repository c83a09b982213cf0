"""The worker: serves one deployed function over HTTP.

Started by the local target as ``python -m straightline_sdk.runtime.worker`` and
inside containers as ``python3 -m straightline_runtime.worker``. Configured by
environment (never by arguments, which other users can read in ``ps``):

    STRAIGHTLINE_TOKEN        required; every request must carry it
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
    STRAIGHTLINE_PARENT_PID   exit when this process is gone (local target)

With more than one process the function is loaded once and the processes are
forked from it (runtime/pool.py: a large closure is shared, not copied).
Once listening it prints ``STRAIGHTLINE_WORKER_READY port=N ports=N,M,...``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from . import capture, execute, pool, wire

READY_LINE = "STRAIGHTLINE_WORKER_READY"
_SMALL_RESPONSE = 256 * 1024
_MAX_LINE = 65536      # a request line or header line longer than this is refused
_MAX_HEADERS = 64


class _Headers(dict):
    """A request's headers by lower-case name (HTTP names are case-insensitive)."""

    def get(self, name: str, default=None):
        return dict.get(self, name.lower(), default)


class Worker:
    def __init__(self, fn, token: str, concurrency: int, name: str = "", pool: dict | None = None):
        self.fn = fn
        self.function_hash = ""      # of the payload last sent to POST /function ("" : the one started with)
        self.swap_file = ""          # where a swapped payload is kept for the pool's re-forked processes
        self.token = token.encode()
        self.name = name
        self.concurrency = concurrency
        # this process's place in its pool: {"process": i, "processes": n, "ports": [...]}
        self.pool = pool or {"process": 0, "processes": 1, "ports": []}
        self.slots = threading.BoundedSemaphore(concurrency)
        self.in_flight = 0
        self.calls = 0
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

    def setup(self):
        # Without TCP_NODELAY a small response can stall ~40 ms (Nagle vs delayed ACK).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def log_message(self, format, *args):  # per-request lines would drown the user's output
        pass

    def parse_request(self) -> bool:
        """Read the request line and headers. The stdlib's version parses headers
        with the email package, ~13 µs a request: a tenth of a warm call. The
        worker needs three headers; they are read here line by line, with limits,
        and anything ambiguous is refused rather than guessed."""
        self.command = None
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.1", "HTTP/1.0"):
            self.request_version = "HTTP/1.1"   # so the answer carries a status line
            self.send_error(400, f"bad request line {self.requestline[:100]!r}")
            return False
        self.command, self.path, self.request_version = words
        headers = _Headers()
        while True:
            line = self.rfile.readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE or len(headers) >= _MAX_HEADERS:
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
        length = headers.get("content-length", "0")
        if "transfer-encoding" in headers or not length.isdigit():
            self.send_error(411 if "transfer-encoding" in headers else 400,
                            "send the body with a Content-Length (chunked requests are not supported)")
            return False
        self.headers = headers
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive")
        if headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    # -- helpers -------------------------------------------------------------

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization")
        if not header:
            self._send_json(401, {"error": "missing token: send 'Authorization: Bearer <token>'"})
            return False
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.worker.token):
            self._send_json(403, {"error": "wrong token"})
            return False
        return True

    def _read_body(self) -> bytearray:
        length = int(self.headers.get("Content-Length") or 0)
        body = bytearray(length)
        view = memoryview(body)
        got = 0
        while got < length:
            n = self.rfile.readinto(view[got:])
            if not n:
                raise ConnectionError("client closed the connection mid-request")
            got += n
        return body

    def _send(self, status: int, content_type: str, segments: list, total: int) -> None:
        head = (f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {total}\r\n\r\n").encode()
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

    # -- endpoints -----------------------------------------------------------

    def do_GET(self):
        if not self._authorized():
            return
        if self.path.startswith(wire.OUTPUT_PATH + "?"):
            self._output()
            return
        if self.path != wire.HEALTH_PATH:
            self._send_json(404, {"error": f"no such endpoint: GET {self.path}"})
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
        body = self._read_body()  # read first so the connection stays usable on refusal
        if not self._authorized():
            return
        if self.path == wire.INVOKE_PATH:
            self._invoke(body)
        elif self.path == wire.JSON_PATH:
            self._invoke_json(body)
        elif self.path == wire.STREAM_PATH:
            self._stream(body)
        elif self.path == wire.FUNCTION_PATH:
            self._swap_function(body)
        else:
            self._send_json(404, {"error": f"no such endpoint: POST {self.path}"})

    def _invoke(self, body):
        if not self.worker.enter():
            self._saturated()
            return
        try:
            segments, total = execute.handle_frame(self.worker.fn, body)
        except Exception as exc:  # the request itself could not be read here
            self._send_json(422, {"error": f"the request could not be unpickled on this target "
                                           f"({type(exc).__name__}: {exc}); if a module is missing, "
                                           f"add it with deploy(..., requirements=[...])"})
            return
        finally:
            self.worker.leave()
        self._send(200, wire.FRAME_CONTENT_TYPE, segments, total)

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
                self._send_json(422, {"error": f"the request could not be unpickled on this "
                                               f"target ({type(exc).__name__}: {exc})"})
                return
            self.close_connection = True
            self.wfile.write((f"HTTP/1.1 200 OK\r\nContent-Type: {wire.STREAM_CONTENT_TYPE}\r\n"
                              f"Connection: close\r\n\r\n").encode())
            for segments in records:
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
            result = self.worker.fn(*args, **kwargs)
        except Exception as exc:
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next))
            self._send_json(500, {"error": {"type": type(exc).__qualname__, "message": str(exc),
                                            "traceback": tb}})
            return
        finally:
            self.worker.leave()
        try:
            self._send_json(200, {"result": result})
        except TypeError as exc:
            self._send_json(422, {"error": f"the result is not JSON-serializable: {exc}"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def _watch_parent(parent_pid: int) -> None:
    """Exit when the process that started us is gone, so no worker outlives its
    notebook kernel, even one killed with SIGKILL. Polled, not PR_SET_PDEATHSIG:
    that signal fires when the *thread* that started us exits, and the router
    starts workers from whichever thread first needs one (a map's, an executor's)."""
    def watch():
        while True:
            if os.getppid() != parent_pid:
                os._exit(0)
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
          pool: dict | None = None, swap_file: str = "") -> _Server:
    worker = Worker(fn, token, concurrency, name, pool)
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
    if ready is not None:
        ready(server.server_address[1])
    return server


def main() -> None:
    token = os.environ.get(wire.TOKEN_ENV, "")
    if not token:
        sys.exit("straightline worker: STRAIGHTLINE_TOKEN is not set; refusing to serve without a token")
    parent = os.environ.get(wire.PARENT_PID_ENV)
    if parent:
        _watch_parent(int(parent))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    with open(os.environ[wire.FUNCTION_ENV], "rb") as f:
        fn = execute.load_function(f.read())
    listeners = _listeners()
    ports = [sock.getsockname()[1] for sock in listeners]
    threads = int(os.environ.get(wire.THREADS_ENV) or os.environ.get(wire.CONCURRENCY_ENV) or 4)
    name = os.environ.get(wire.NAME_ENV, "")

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
        server = serve(served, token=token, concurrency=threads, name=name, listener=listeners[index],
                       pool={"process": index, "processes": len(listeners), "ports": ports},
                       swap_file=swap_file)
        server.RequestHandlerClass.worker.function_hash = function_hash
        server.serve_forever()

    print(f"{READY_LINE} port={ports[0]} ports={','.join(map(str, ports))}", flush=True)
    if len(listeners) == 1:
        serve_one(0)   # no fork: the process that loaded the function serves it
    else:
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
