"""A small keep-alive HTTP/1.1 client for the worker protocol (local and Docker
targets).

This is the hot path of every call, so it is a raw socket, not ``requests``:
one ``sendmsg`` of headers and frame segments, one buffered read of the reply,
TCP_NODELAY, and idle connections reused LIFO. ``requests`` costs ~0.5 ms per
call on its own here; this costs a few tens of microseconds.

Each connection opens with the mutual handshake of ``runtime/auth.py``: the
worker proves it holds the deployment's key before any argument is sent, and
every message after it is signed; the key itself never travels.
"""

from __future__ import annotations

import errno
import json
import select
import socket
import threading
import time

from .. import cancel
from ..errors import CallTimeout, TargetFailure, TargetSaturated, TargetUnavailable
from ..runtime import auth, wire
from .base import Reply, Target

HANDSHAKE_TIMEOUT_S = 10.0
_BLOCKING_MAX = 256 * 1024   # a request this small fits the socket buffers: sent without waiting
#: how often a call waiting on a worker asks whether the worker is still alive:
#: often at first (a frozen worker is found fast), then less (a long call costs
#: the engine a look per second, not four)
LIVENESS_INTERVAL_S = 0.25
LIVENESS_INTERVAL_LONG_S = 1.0
LIVENESS_LONG_AFTER_S = 5.0


class PeerNotVerified(TargetFailure):
    """Whoever answers at a worker's address did not prove it holds the
    deployment's key: nothing was sent to it and nothing it said was unpickled."""


class _Connection:
    __slots__ = ("sock", "rfile", "session", "proof_header", "counter", "poller")

    def __init__(self, host: str, port: int, timeout: float | None, key: bytes | None = None):
        connect_timeout = HANDSHAKE_TIMEOUT_S if timeout is None else min(timeout, HANDSHAKE_TIMEOUT_S)
        self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb", buffering=64 * 1024)
        self.session = None
        self.proof_header = b""
        self.counter = 0
        self.poller = None
        if key is not None:
            try:
                self._handshake(host, port, key)
            except BaseException:
                self.close()
                raise

    def _handshake(self, host: str, port: int, key: bytes) -> None:
        """Prove each other's key (runtime/auth.py) before anything else is sent."""
        client_nonce = auth.new_nonce()
        sign = not auth.is_loopback(host)     # off this machine's loopback, sign every message
        sign_line = f"{auth.SIGN_HEADER}: 1\r\n" if sign else ""
        self.sock.settimeout(HANDSHAKE_TIMEOUT_S)
        self.sock.sendall(f"POST {auth.AUTH_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                          f"{auth.NONCE_HEADER}: {client_nonce.hex()}\r\n{sign_line}"
                          f"Content-Length: 0\r\n\r\n".encode())
        response = _read_response(self.rfile, want=(auth.NONCE_HEADER, auth.PROOF_HEADER),
                                  max_body=64 * 1024)
        server_nonce = auth.parse_nonce(response.headers.get(auth.NONCE_HEADER, ""))
        if response.status == 503:
            raise TargetFailure(f"the worker at {host}:{port} has all its connections in use",
                                may_have_run=False)
        if response.status != 200 or server_nonce is None:
            raise PeerNotVerified(
                f"the process answering at {host}:{port} is not a straightline worker of this "
                f"deployment (its handshake answer: HTTP {response.status}); nothing was sent to it",
                may_have_run=False)
        if not auth.same(response.headers.get(auth.PROOF_HEADER, ""),
                         auth.worker_proof(key, client_nonce, server_nonce, sign)):
            raise PeerNotVerified(
                f"the process answering at {host}:{port} did not prove it holds this deployment's "
                f"key; nothing was sent to it (the worker may have died and another program "
                f"taken its address)", may_have_run=False)
        self.session = auth.session_key(key, client_nonce, server_nonce) if sign else None
        self.proof_header = (f"Authorization: {auth.SCHEME} "
                             f"{auth.client_proof(key, client_nonce, server_nonce, sign)}\r\n").encode()

    def stale(self) -> bool:
        # An idle kept-alive socket that is readable has been closed by the server.
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        try:
            self.rfile.close()
            self.sock.close()
        except OSError:
            pass


class HTTPResponse:
    __slots__ = ("status", "content_type", "body", "headers", "outcomes", "size")

    def __init__(self, status: int, content_type: str, body: bytearray, headers=None):
        self.status = status
        self.content_type = content_type
        self.body = body
        self.headers = headers or {}
        self.outcomes = None    # a chunk answered item by item: its outcomes, decoded
        self.size = len(body)   # bytes of the answer's body (records included)

    def json(self):
        return json.loads(self.body or b"null")


class WorkerClient:
    """Talks to one worker at host:port that proves the deployment's key
    (``token``); ``authenticate=False`` speaks plain HTTP (benchmark floors)."""

    def __init__(self, host: str, port: int, token: str, *, target: str, authenticate: bool = True):
        self.host = host
        self.port = port
        self.target = target
        self._key = token.encode() if authenticate else None
        self._host_header = f"Host: {host}:{port}\r\n".encode()
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    def __repr__(self):  # never shows the token
        return f"<WorkerClient {self.target} {self.host}:{self.port}>"

    def _connect(self, timeout: float | None) -> _Connection:
        """A new connection of its own (a stream holds it until the stream ends),
        verified by the same handshake as every other."""
        try:
            conn = _Connection(self.host, self.port, timeout, self._key)
            conn.sock.settimeout(timeout)
            return conn
        except PeerNotVerified as exc:
            exc.target = self.target
            raise
        except (OSError, ValueError) as exc:
            raise TargetFailure(
                f"cannot connect to the {self.target} worker at {self.host}:{self.port}: "
                f"{getattr(exc, 'strerror', None) or exc}", target=self.target,
                may_have_run=False) from exc

    def _acquire(self, timeout: float | None) -> _Connection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._connect(timeout)
            if conn.stale():
                conn.close()
                continue
            conn.sock.settimeout(timeout)
            return conn

    def request(self, method: str, path: str, segments=(), total: int = 0, *,
                content_type: str = "application/octet-stream", timeout: float | None = None,
                authorize: bool = True, liveness=None, each: bool = False) -> HTTPResponse:
        """One request and its answer. ``liveness()``, if given, is asked every
        LIVENESS_INTERVAL_S while the answer is awaited: a TargetFailure it
        returns (the worker is frozen or gone) ends the wait. ``each``: a map
        chunk, answered item by item (wire.EACH_HEADER); the calls that finished
        before a failure are on the exception's ``completed``."""
        # With a liveness check, the wait for the answer is bounded by _await_answer's
        # own poll; the socket stays blocking for a small request, because Python
        # polls before every send and receive on a socket with a timeout: two more
        # system calls a call (~10 % of a warm local call)
        blocking = liveness is not None and total <= _BLOCKING_MAX
        conn = self._acquire(None if blocking else timeout)
        signed = conn.session is not None and authorize
        head = _request_head(conn, self, method, path, segments, total, content_type=content_type,
                             authorize=authorize, extra=_EACH_LINE if each else b"")
        completed: list = []
        try:
            cancel.watch(conn.sock)
            started = time.monotonic() if each else 0.0
            _send_all(conn.sock, [head, *segments])
            if liveness is not None:
                _await_answer(conn, timeout, liveness)
            response = _read_response(conn.rfile, want=(auth.MAC_HEADER,) if signed else ())
            if signed:
                _verify_answer(conn, response, self)
            if each and response.content_type == wire.ITEMS_CONTENT_TYPE and response.status == 200:
                deadline = None if timeout is None else started + timeout
                response.size = _read_items(conn, completed, self, deadline, liveness)
                response.outcomes = completed
        except TargetFailure as exc:
            conn.close()
            exc.completed = completed
            raise
        except socket.timeout as exc:
            conn.close()
            cancel.check()
            raise CallTimeout(f"the call did not finish within its {timeout:g} s time limit on the "
                              f"{self.target} target (Resources(timeout_s=...) sets it)") from exc
        except (OSError, ValueError) as exc:
            conn.close()
            cancel.check()   # dropped on purpose: an awaiting task was cancelled
            failure = TargetFailure(
                f"the connection to the {self.target} worker broke during the call ({exc}); "
                f"the worker may have crashed or been stopped",
                target=self.target, may_have_run=True)
            failure.completed = completed
            raise failure from exc
        except BaseException:
            conn.close()  # e.g. KeyboardInterrupt: the reply would be left unread on this socket
            raise
        finally:
            cancel.unwatch(conn.sock)
        with self._lock:
            self._idle.append(conn)
        return response

    def get(self, path: str, timeout: float = 5.0, authorize: bool = True) -> HTTPResponse:
        """GET ``path``; the response (``.status``, ``.body``, ``.json()``)."""
        return self.request("GET", path, timeout=timeout, authorize=authorize)

    get_json = get   # the name it had; it returns the response, not JSON

    def read_output(self, stream_id: str, offset: int) -> dict | None:
        """A running call's output so far (the worker's GET /output); None if unreadable."""
        try:
            response = self.get(f"{wire.OUTPUT_PATH}?id={stream_id}&offset={int(offset)}", timeout=5.0)
        except Exception:
            return None
        return response.json() if response.status == 200 else None

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class WorkerPoolClient:
    """Talks to a worker pool: one WorkerClient per process, each call sent to the
    process with the fewest calls in flight (the lowest-numbered among equals, so
    a lone call always finds the same warm process). Same interface as
    WorkerClient; ``host``/``port`` are the first process's."""

    def __init__(self, host: str, ports: list[int], token: str, *, target: str):
        self.members = [WorkerClient(host, port, token, target=target) for port in ports]
        self.host, self.port, self.ports, self.target = host, ports[0], list(ports), target
        self._in_flight = [0] * len(self.members)
        self._lock = threading.Lock()

    def __repr__(self):
        return f"<WorkerPoolClient {self.target} {self.host}:{','.join(map(str, self.ports))}>"

    def request(self, method: str, path: str, segments=(), total: int = 0, **kwargs) -> HTTPResponse:
        in_flight = self._in_flight
        with self._lock:
            index = in_flight.index(min(in_flight))
            in_flight[index] += 1
        try:
            return self.members[index].request(method, path, segments, total, **kwargs)
        finally:
            with self._lock:
                in_flight[index] -= 1

    def get(self, path: str, timeout: float = 5.0, authorize: bool = True) -> HTTPResponse:
        """A GET to the first process (worker_health asks every process)."""
        return self.members[0].get(path, timeout=timeout, authorize=authorize)

    get_json = get

    def least_busy(self) -> WorkerClient:
        """The process a long request (a stream) goes to: the one with the fewest calls."""
        with self._lock:
            return self.members[self._in_flight.index(min(self._in_flight))]

    def read_output(self, stream_id: str, offset: int) -> dict | None:
        """A running call's output so far: the call runs in one of the processes,
        so each is asked until one knows it."""
        for member in self.members:
            answer = member.read_output(stream_id, offset)
            if answer and (answer.get("chunks") or answer.get("running")):
                return answer
        return None

    def close(self) -> None:
        for member in self.members:
            member.close()


def pool_client(host: str, ports: list[int], token: str, *, target: str):
    """A WorkerClient for one process, a WorkerPoolClient for several."""
    if len(ports) == 1:
        return WorkerClient(host, ports[0], token, target=target)
    return WorkerPoolClient(host, ports, token, target=target)


def _await_answer(conn: _Connection, timeout: float | None, liveness) -> None:
    """Wait for the answer's first byte in slices, asking ``liveness()`` between
    them, so a frozen or vanished worker ends the wait instead of hanging it."""
    if conn.poller is None:
        conn.poller = select.poll()
        conn.poller.register(conn.sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    start = now = time.monotonic()
    deadline = None if timeout is None else start + timeout
    wait = LIVENESS_INTERVAL_S
    while True:
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - now))
        if conn.poller.poll(wait * 1000):
            return
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            raise socket.timeout("timed out")
        failure = liveness()
        if failure is not None:
            failure.may_have_run = True
            raise failure
        wait = LIVENESS_INTERVAL_S if now - start < LIVENESS_LONG_AFTER_S else LIVENESS_INTERVAL_LONG_S


_EACH_LINE = f"{wire.EACH_HEADER}: 1\r\n".encode()


def _read_items(conn: _Connection, completed: list, client: WorkerClient,
                deadline: float | None, liveness) -> int:
    """Read a chunk answered item by item (wire.ITEMS_CONTENT_TYPE): each call's
    outcome is appended to ``completed`` as its record arrives, up to the done
    record; returns the bytes read. The socket is read without blocking in
    between, so ``liveness()`` is asked while the next item is awaited, as it is
    for a whole answer; the next request on the connection sets its mode again."""
    conn.sock.setblocking(False)
    liveness = liveness or _no_liveness
    signed = conn.session is not None
    size = index = 0
    while True:
        head = bytes(_read_ready(conn, wire.RECORD_HEAD, deadline, liveness))
        kind, length = wire.read_record_head(head)
        body = _read_ready(conn, length, deadline, liveness)
        size += wire.RECORD_HEAD + length
        if signed:   # each record carries its MAC: nothing altered or injected is unpickled
            index += 1
            given = bytes(_read_ready(conn, wire.RECORD_MAC, deadline, liveness)).decode("latin-1")
            want = auth.mac(conn.session, b"rec", index, b"%d" % conn.counter, (head, body))
            if not auth.same(given, want):
                raise PeerNotVerified(
                    f"an item from the {client.target} worker at {client.host}:{client.port} was "
                    f"not signed with this deployment's key; it was dropped unread",
                    target=client.target, may_have_run=True)
        if kind == wire.STREAM_DONE:
            return size
        if kind != wire.STREAM_ITEM:
            raise ValueError(f"an item record of unknown kind {kind!r}")
        completed.extend(wire.decode(body))


def _no_liveness():
    return None


def _read_ready(conn: _Connection, length: int, deadline: float | None, liveness) -> bytearray:
    """``length`` bytes from a connection whose socket does not block: when none
    are there, wait for more as _await_answer does (liveness asked meanwhile)."""
    data = bytearray(length)
    view = memoryview(data)
    got = 0
    while got < length:
        n = conn.rfile.readinto(view[got:])
        if n is None:   # nothing buffered and nothing on the socket yet
            _await_answer(conn, None if deadline is None else max(0.0, deadline - time.monotonic()),
                          liveness)
            continue
        if not n:
            raise ConnectionResetError(errno.ECONNRESET, "the worker closed the connection mid-reply")
        got += n
    return data


def _request_head(conn: _Connection, client: WorkerClient, method: str, path: str, segments,
                  total: int, *, content_type: str, authorize: bool = True,
                  extra: bytes = b"") -> bytes:
    """A request's head; on a verified connection it carries the MAC of this
    request's counter over the head line and the body."""
    mac = b""
    if conn.session is not None and authorize:
        conn.counter += 1
        parts = auth.prefix_parts(segments, auth.signed_length_of_segments(segments, total))
        mac = (f"{auth.MAC_HEADER}: "
               f"{auth.mac(conn.session, b'req', conn.counter, f'{method} {path}'.encode(), parts)}"
               f"\r\n").encode()
    return b"".join((
        f"{method} {path} HTTP/1.1\r\n".encode(), client._host_header,
        conn.proof_header if authorize else b"", mac, extra,
        f"Content-Type: {content_type}\r\nContent-Length: {total}\r\n\r\n".encode(),
    ))


def _verify_answer(conn: _Connection, response: HTTPResponse, client: WorkerClient) -> None:
    """An answer on a verified connection must carry the MAC of this request's
    counter: nothing altered, replayed or injected is unpickled."""
    body = response.body
    want = auth.mac(conn.session, b"rsp", conn.counter, b"%d" % response.status,
                    (memoryview(body)[:auth.signed_length(body)],))
    if not auth.same(response.headers.get(auth.MAC_HEADER, ""), want):
        raise PeerNotVerified(
            f"an answer from the {client.target} worker at {client.host}:{client.port} was not "
            f"signed with this deployment's key (HTTP {response.status}); it was dropped unread",
            target=client.target, may_have_run=True)


def invoke_worker(client: WorkerClient, segments, total: int, timeout: float | None, *,
                  what: str, dead=lambda: None, liveness=None, each: bool = False) -> Reply:
    """POST one request frame to a worker; a Reply with the response frame. ``what``
    names the worker in errors ("the local worker"); ``dead()`` says why it is gone
    (a TargetFailure) or None, and is asked only when the connection fails;
    ``liveness()`` likewise, every LIVENESS_INTERVAL_S while an answer is awaited.
    ``each``: a map chunk, answered item by item (the Reply's outcomes); a failure
    mid-chunk carries the outcomes that came back (``completed``)."""
    response = post_invoke(client, segments, total, timeout, what=what, dead=dead,
                           liveness=liveness, each=each)
    return Reply(response.body, outcomes=response.outcomes, size=response.size)


def post_invoke(client: WorkerClient, segments, total: int, timeout: float | None, *,
                what: str, dead=lambda: None, liveness=None, each: bool = False) -> HTTPResponse:
    try:
        response = client.request("POST", wire.INVOKE_PATH, segments, total,
                                  content_type=wire.FRAME_CONTENT_TYPE, timeout=timeout,
                                  liveness=liveness, each=each)
    except PeerNotVerified:
        raise
    except TargetFailure as exc:
        failure = dead()
        if failure is not None:
            failure.may_have_run = exc.may_have_run
            failure.completed = exc.completed
            raise failure from exc
        raise
    if response.status == 200:
        return response
    if response.status == 503:
        raise TargetSaturated(f"{what} is saturated", target=client.target)
    raise TargetFailure(f"{what} answered HTTP {response.status}: "
                        f"{bytes(response.body[:500]).decode(errors='replace')}",
                        target=client.target, may_have_run=response.status >= 500)


class WorkerTarget(Target):
    """A target whose calls go to the SDK's worker over HTTP (the local pool, a
    container): one call path, with the target's own checks. A subclass sets
    ``client`` when deployed and says what its worker is called, why it is gone,
    whether it still answers, and how a call past its time limit is stopped."""

    client = None

    def _worker_name(self) -> str:
        raise NotImplementedError

    def _gone(self) -> TargetFailure | None:
        """Why the worker is gone (asked when the connection fails), or None."""
        return None

    def _unresponsive(self) -> TargetFailure | None:
        """Why the worker cannot answer (asked while an answer is awaited), or None."""
        return None

    def _stop_running_call(self, client) -> str:
        """Stop a call that ran past its time limit; says what was done."""
        raise NotImplementedError

    def invoke(self, segments, total, timeout, each: bool = False):
        client = self.client
        if client is None:
            raise TargetFailure(f"{self._worker_name()} is not deployed", target=self.kind)
        try:
            reply = invoke_worker(client, segments, total, timeout, what=self._worker_name(),
                                  dead=self._gone, liveness=self._unresponsive, each=each)
        except CallTimeout as exc:
            raise CallTimeout(f"{exc}; {self._stop_running_call(client)}") from None
        reply.cold = self._first_answer()
        return reply

    def invoke_chunk(self, segments, total, timeout):
        """A map chunk, answered item by item: a worker lost mid-chunk costs a
        re-run of its unfinished items only, not of the whole chunk."""
        return self.invoke(segments, total, timeout, each=True)


def send_function(client: WorkerClient, payload: bytes, *, what: str) -> None:
    """Swap the worker's function for ``payload`` (POST /function): no restart, no
    image build. TargetUnavailable says why it could not (the caller redeploys).
    A pool's processes each hold their own copy: every one gets it."""
    for member in getattr(client, "members", None) or [client]:
        try:
            response = member.request("POST", wire.FUNCTION_PATH, [payload], len(payload),
                                      timeout=120.0)
        except TargetFailure as exc:
            raise TargetUnavailable(f"{what} did not take the edited function: {exc}",
                                    target=client.target) from exc
        if response.status != 200:
            raise TargetUnavailable(f"{what} did not take the edited function (HTTP "
                                    f"{response.status}): "
                                    f"{bytes(response.body[:500]).decode(errors='replace')}",
                                    target=client.target)


def open_stream(client: WorkerClient, segments, total: int, timeout: float | None, *,
                what: str, dead=lambda: None):
    """POST one call to the worker's stream endpoint; an iterator of its outcomes
    as the worker produces them. Opening (sending, reading the status) happens
    now, so a worker that cannot take the call raises TargetFailure before any
    item: the router may then send the call elsewhere. A pool's stream is one
    request to one process (the least busy)."""
    if isinstance(client, WorkerPoolClient):
        client = client.least_busy()
    conn = client._connect(timeout)
    signed = conn.session is not None
    head = _request_head(conn, client, "POST", wire.STREAM_PATH, segments, total,
                         content_type=wire.FRAME_CONTENT_TYPE)
    try:
        cancel.watch(conn.sock)
        _send_all(conn.sock, [head, *segments])
        status, length, tag = _read_head(conn.rfile)
        body = _read_exact(conn.rfile, length) if status != 200 else bytearray()
        if signed:   # the answer's head (and an error's body) signed for this request
            _verify_answer(conn, HTTPResponse(status, "", body, {auth.MAC_HEADER: tag}), client)
    except TargetFailure:
        conn.close()
        raise
    except socket.timeout as exc:
        conn.close()
        raise CallTimeout(f"the call did not start within its {timeout:g} s time limit on the "
                          f"{client.target} target") from exc
    except (OSError, ValueError) as exc:
        conn.close()
        cancel.check()
        failure = dead()
        if failure is not None:
            raise failure from exc
        raise TargetFailure(f"the connection to {what} broke before the stream started ({exc})",
                            target=client.target, may_have_run=True) from exc
    except BaseException:
        conn.close()
        raise
    if status != 200:
        conn.close()
        text = bytes(body[:500]).decode(errors="replace")
        raise TargetFailure(f"{what} answered HTTP {status} to a stream: {text}",
                            target=client.target, may_have_run=status >= 500 and status != 503)
    return _stream_outcomes(conn, client.target, what, timeout)


def _stream_outcomes(conn: _Connection, target: str, what: str, timeout: float | None):
    index = 0
    try:
        while True:
            head = bytes(_read_exact(conn.rfile, wire.RECORD_HEAD))
            kind, length = wire.read_record_head(head)
            body = _read_exact(conn.rfile, length)
            if conn.session is not None:
                # each record carries its MAC: nothing altered or injected is unpickled
                index += 1
                given = bytes(_read_exact(conn.rfile, wire.RECORD_MAC)).decode("latin-1")
                want = auth.mac(conn.session, b"rec", index, b"%d" % conn.counter, (head, body))
                if not auth.same(given, want):
                    raise PeerNotVerified(
                        f"a streamed item from {what} was not signed with this deployment's key; "
                        f"it was dropped unread", target=target, may_have_run=True)
            if kind == wire.STREAM_DONE:
                if length:   # what the generator wrote after its last item: no item
                    yield (None, None, *wire.decode(body)[0][2:])
                return
            outcome = wire.decode(body)[0]
            yield outcome
            if kind == wire.STREAM_ERROR:
                return
    except socket.timeout as exc:
        raise CallTimeout(f"no item came within the {timeout:g} s time limit on the {target} "
                          f"target (Resources(timeout_s=...) sets it)") from exc
    except (OSError, ValueError) as exc:
        cancel.check()
        raise TargetFailure(f"the stream from {what} broke ({exc}); the worker may have crashed "
                            f"or been stopped", target=target, may_have_run=True) from exc
    finally:
        cancel.unwatch(conn.sock)
        conn.close()   # also when the caller leaves the loop early: the worker stops the generator


def _read_head(rfile) -> tuple[int, int, str]:
    """(status, Content-Length, the MAC header's value or "") of an answer's head."""
    status_line = rfile.readline(65537)
    if not status_line:
        raise ConnectionResetError(errno.ECONNRESET, "the worker closed the connection")
    status = int(status_line.split(None, 2)[1])
    length = 0
    tag = ""
    for _ in range(200):
        line = rfile.readline(65537)
        if line in (b"\r\n", b"\n", b""):
            return status, length, tag
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == auth.MAC_HEADER.encode():
            tag = value.strip().decode("latin-1")
    raise ValueError("the worker's answer has too many header lines")


def _read_exact(rfile, length: int) -> bytearray:
    body = bytearray(length)
    view = memoryview(body)
    got = 0
    while got < length:
        n = rfile.readinto(view[got:])
        if not n:
            raise ConnectionResetError(errno.ECONNRESET, "the worker closed the connection mid-reply")
        got += n
    return body


def worker_health(client: WorkerClient | None, dead=lambda: None) -> tuple[bool, str]:
    """(healthy, why not) of a worker: its process first (``dead()``), then GET /health."""
    failure = dead()
    if failure is not None:
        return False, str(failure)
    if client is None:
        return False, "not deployed"
    # a pool is healthy when every process answers: calls go to each of them
    members = getattr(client, "members", None) or [client]
    for number, member in enumerate(members):
        which = f"process {number} of the pool ({member.host}:{member.port}): " \
            if len(members) > 1 else ""
        try:
            response = member.get(wire.HEALTH_PATH, timeout=5.0)
        except TargetFailure as exc:
            return False, f"{which}{exc}"
        except CallTimeout:   # the GET's own limit: a process that no longer answers
            return False, f"{which}no answer to a health check within 5 s"
        if response.status != 200:
            return False, f"{which}health check answered HTTP {response.status}"
    return True, "ok"


def _send_all(sock: socket.socket, buffers: list) -> None:
    views = [memoryview(b).cast("B") for b in buffers if len(b)]
    while views:
        try:
            sent = sock.sendmsg(views[:64])
        except InterruptedError:
            continue
        while sent:
            if sent >= views[0].nbytes:
                sent -= views[0].nbytes
                views.pop(0)
            else:
                views[0] = views[0][sent:]
                sent = 0


def _read_response(rfile, want=(), max_body: int | None = None) -> HTTPResponse:
    """Read one answer; ``want``: further header names (lower case) to keep."""
    status_line = rfile.readline(65537)
    if not status_line:
        raise ConnectionResetError(errno.ECONNRESET, "the worker closed the connection")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP answer: {bytes(status_line[:60])!r}")
    status = int(parts[1])
    length = 0
    content_type = ""
    headers = {}
    for _ in range(200):
        line = rfile.readline(65537)
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        lname = name.strip().lower()
        if lname == b"content-length":
            length = int(value)
        elif lname == b"content-type":
            content_type = value.strip().decode("latin-1")
        elif want and lname.decode("latin-1") in want:
            headers[lname.decode("latin-1")] = value.strip().decode("latin-1")
    else:
        raise ValueError("an answer with too many header lines")
    if max_body is not None and length > max_body:
        raise ValueError(f"an answer of {length} bytes where at most {max_body} were expected")
    return HTTPResponse(status, content_type, _read_exact(rfile, length), headers)
