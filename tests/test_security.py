"""Issue 17's security findings, each against a real worker process over real
sockets: an impostor on a dead worker's port, a replayed exchange, hostile
requests (huge lengths, slow or idle connections, bad headers), and the JSON
door for outside programs."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest
import requests

import straightline_sdk as straightline
from straightline_sdk.runtime import auth, wire
from straightline_sdk.targets.http import PeerNotVerified
from tests.conftest import need, wait_until
from tests.support.inprocess import install

HERE = os.path.dirname(os.path.abspath(__file__))


def _local(h):
    return h.deployed_targets["local"]


def _session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


def _start_impostor(host: str, port: int, tmp_path):
    record, marker = tmp_path / "received.bin", tmp_path / "pwned"
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "support", "impostor.py"), host,
                             str(port), str(record), str(marker)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "LISTENING"
    return proc, record, marker


def _kill_worker(h) -> int:
    pid = _local(h).pid
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: _local(h).proc.poll() is not None)
    return pid


# -- finding 1: whoever answers on a dead worker's address gets nothing --------------

def test_an_impostor_on_a_dead_workers_port_gets_neither_key_nor_arguments(tmp_path):
    h = straightline.deploy(lambda s: s.upper(), sample=("a",), name="impostor", targets=["local"])
    assert h("warm") == "WARM"
    client = _local(h).client
    _kill_worker(h)
    impostor, record, marker = _start_impostor(client.host, client.port, tmp_path)
    try:
        # the call fails there and runs on a fresh worker instead
        assert h("secret-argument-7f3a") == "SECRET-ARGUMENT-7F3A"
        assert "did not prove" in [r for r in h.calls if r.outcome == "failed"][-1].detail
        received = record.read_bytes() if record.exists() else b""
        assert received.startswith(b"POST /auth ")        # it only ever saw a handshake
        assert h.spec.token.encode() not in received
        assert b"secret-argument-7f3a" not in received
        assert not marker.exists()                          # nothing it said was unpickled
        assert h.stats()["local"]["failures"] == 1
    finally:
        impostor.kill()
        impostor.wait()


def test_an_impostor_is_a_target_failure_that_fails_over(monkeypatch, tmp_path):
    install(monkeypatch, "docker")
    h = straightline.deploy(lambda s: s.upper(), sample=("a",), name="impostor-failover",
                            targets=["local", "docker"], target=None)
    h.pin("local")
    assert h("warm") == "WARM"
    h.pin(None)
    client = _local(h).client
    _kill_worker(h)
    impostor, record, marker = _start_impostor(client.host, client.port, tmp_path)
    try:
        results = [h(f"x{i}") for i in range(3)]
        assert results == ["X0", "X1", "X2"]
        assert not marker.exists()
        assert b"x0" not in (record.read_bytes() if record.exists() else b"")
        stats = h.stats()
        assert stats["local"]["failures"] == 1 and stats["docker"]["calls"] >= 1   # failed over
    finally:
        impostor.kill()
        impostor.wait()


def test_a_worker_refuses_a_client_that_cannot_prove_the_key():
    h = straightline.deploy(lambda x: x, sample=(1,), name="wrong-key", targets=["local"])
    client = _local(h).client
    from straightline_sdk.targets.http import WorkerClient
    wrong = WorkerClient(client.host, client.port, "not-the-key", target="local")
    with pytest.raises(PeerNotVerified):        # the worker's proof does not match this key
        wrong.request("POST", "/invoke", [b"x"], 1)
    wrong.close()


def _handshake(sock, key: bytes, sign: bool) -> tuple[bytes, bytes, str]:
    """The SDK's handshake by hand; (bytes sent, session key, client proof)."""
    nonce = auth.new_nonce()
    hello = (f"POST /auth HTTP/1.1\r\nHost: x\r\n{auth.NONCE_HEADER}: {nonce.hex()}\r\n"
             + (f"{auth.SIGN_HEADER}: 1\r\n" if sign else "") + "Content-Length: 0\r\n\r\n").encode()
    sock.sendall(hello)
    head = _read_head(sock)
    fields = dict(line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
    server_nonce = bytes.fromhex(fields[auth.NONCE_HEADER])
    assert auth.same(fields[auth.PROOF_HEADER], auth.worker_proof(key, nonce, server_nonce, sign))
    return (hello, auth.session_key(key, nonce, server_nonce),
            auth.client_proof(key, nonce, server_nonce, sign))


def _read_head(sock) -> str:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data.decode("latin-1")


def _signed_invoke(session: bytes | None, proof: str, counter: int, calls) -> bytes:
    segments, total = wire.encode(calls)
    body = b"".join(bytes(s) for s in segments)
    mac = ""
    if session is not None:
        tag = auth.mac(session, b"req", counter, b"POST /invoke", (body[:auth.signed_length(body)],))
        mac = f"{auth.MAC_HEADER}: {tag}\r\n"
    return (f"POST /invoke HTTP/1.1\r\nHost: x\r\nAuthorization: StraightLine {proof}\r\n"
            f"{mac}Content-Length: {total}\r\n\r\n").encode() + body


def _status(sock) -> int:
    head = _read_head(sock)
    length = [int(line.split(":")[1]) for line in head.split("\r\n") if line.lower().startswith("content-length")]
    remaining = length[0] if length else 0
    while remaining:
        remaining -= len(sock.recv(remaining))
    return int(head.split()[1]) if head else 0


def test_a_captured_exchange_cannot_be_replayed(tmp_path):
    log = tmp_path / "ran.txt"

    def note(x):
        with open(log, "a") as f:
            f.write(f"{x}\n")
        return x

    h = straightline.deploy(note, sample=(0,), name="replay", targets=["local"])
    client = _local(h).client
    key = h.spec.token.encode()
    for sign in (False, True):     # loopback connections, and signed ones (off loopback)
        with socket.create_connection((client.host, client.port), timeout=10) as sock:
            hello, session, proof = _handshake(sock, key, sign)
            captured = _signed_invoke(session if sign else None, proof, 1, [((7,), {})])
            sock.sendall(captured)
            assert _status(sock) == 200
            if sign:
                sock.sendall(captured)         # replayed into the same (signed) connection
                assert _status(sock) == 403
        with socket.create_connection((client.host, client.port), timeout=10) as sock:
            sock.sendall(hello)                # a sniffer replays the whole exchange
            _read_head(sock)
            sock.sendall(captured)
            assert _status(sock) == 403
    with socket.create_connection((client.host, client.port), timeout=10) as sock:
        _, session, proof = _handshake(sock, key, True)
        genuine = _signed_invoke(session, proof, 1, [((7,), {})])
        at = genuine.rindex(b"K\x07")         # pickle's BININT1 7
        tampered = genuine[:at] + b"K\x08" + genuine[at + 2:]
        sock.sendall(tampered)                 # a relay changes the arguments in flight
        assert _status(sock) == 403
    assert log.read_text().split() == ["0", "7", "7"]   # the sample, then the genuine calls


# -- finding 2: nothing a stranger sends costs memory, threads or the service --------

def _raw(client, data: bytes, timeout: float = 10.0) -> tuple[int, bool]:
    """Send bytes; (status, whether the worker then closed the connection)."""
    with socket.create_connection((client.host, client.port), timeout=timeout) as sock:
        sock.sendall(data)
        status = _status(sock)
        sock.settimeout(1.0)
        try:
            closed = sock.recv(1) == b""
        except (TimeoutError, ConnectionResetError):
            closed = False
        return status, closed


def test_a_stranger_cannot_make_the_worker_allocate_or_wait():
    h = straightline.deploy(lambda x: x, sample=(1,), name="stranger", targets=["local"])
    client = _local(h).client
    worker = psutil.Process(_local(h).pid)
    rss = worker.memory_info().rss
    for _ in range(3):   # tokenless, 2 GB announced, no body: refused at once, nothing read
        assert _raw(client, b"POST /json HTTP/1.1\r\nContent-Length: 2000000000\r\n\r\n") == (401, True)
    expect = b"POST /json HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2000000000\r\n\r\n"
    assert _raw(client, expect) == (401, True)          # no "100 Continue" for a stranger
    assert worker.memory_info().rss < rss + 100 * 1024 * 1024
    assert h(3) == 3


@pytest.mark.parametrize("length, status", [
    ("\xb2", 400), ("\u0663", 400), ("1e3", 400), ("0x10", 400), (" ", 400),
    ("100000000000000000000", 400), ("999999999999999999", 413),
])
def test_bad_content_lengths_get_a_status_and_the_worker_serves_on(length, status):
    h = straightline.deploy(lambda x: x, sample=(1,), name="lengths", targets=["local"])
    token = h.endpoint.token
    request = (f"POST /json HTTP/1.1\r\nAuthorization: Bearer {token}\r\n"
               f"Content-Length: {length}\r\n\r\n").encode("utf-8")
    assert _raw(_local(h).client, request) == (status, True)
    assert h(4) == 4


def test_idle_connections_are_bounded_and_timed_out(monkeypatch):
    monkeypatch.setenv("STRAIGHTLINE_MAX_CONNECTIONS", "16")
    monkeypatch.setenv("STRAIGHTLINE_HEAD_TIMEOUT_S", "2")
    straightline.configure(options={"local": {"concurrency": 2}})
    h = straightline.deploy(lambda x: x, sample=(1,), name="idle", targets=["local"])
    client = _local(h).client
    # the process behind client.port: the worker, or the first process of its pool
    # (each pool process runs the hardened server with its own connection cap)
    members = getattr(client, "members", None)
    worker = psutil.Process(members[0].get(wire.HEALTH_PATH).json()["pid"] if members
                            else _local(h).pid)
    threads = worker.num_threads()
    idle = [socket.create_connection((client.host, client.port), timeout=10) for _ in range(60)]
    try:
        assert wait_until(lambda: worker.num_threads() >= threads + 10, timeout=10)
        assert worker.num_threads() <= threads + 16
        refused = 0
        for sock in idle:
            sock.settimeout(0.05)
            try:
                refused += sock.recv(64).startswith(b"HTTP/1.1 503")
            except (TimeoutError, ConnectionResetError):
                pass
        assert refused >= 40
        # a stranger that sends nothing is cut off after the head timeout
        assert wait_until(lambda: worker.num_threads() <= threads + 1, timeout=15)
    finally:
        for sock in idle:
            sock.close()
    assert h(5) == 5


def test_a_slow_request_head_is_cut_off(monkeypatch):
    monkeypatch.setenv("STRAIGHTLINE_HEAD_TIMEOUT_S", "2")
    h = straightline.deploy(lambda x: x, sample=(1,), name="slowloris", targets=["local"])
    client = _local(h).client
    with socket.create_connection((client.host, client.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        cut = False
        for _ in range(40):          # one header byte every 0.25 s, never finishing
            try:
                sock.sendall(b"X")
                time.sleep(0.25)
                sock.setblocking(False)
                try:
                    if sock.recv(1) == b"":
                        cut = True
                        break
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
            except (BrokenPipeError, ConnectionResetError):
                cut = True
                break
        assert cut
    assert h(6) == 6


def test_every_malformed_request_gets_a_status_and_the_worker_serves_on():
    h = straightline.deploy(lambda x: x, sample=(1,), name="malformed", targets=["local"])
    client = _local(h).client
    token = h.endpoint.token
    auth_line = f"Authorization: Bearer {token}\r\n".encode()
    cases = [
        (b"GET /health HTTP/1.1\r\n" + b"X-Big: " + b"y" * 9000 + b"\r\n\r\n", 431),
        (b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"y" * 1000) for i in range(40))
         + b"\r\n", 431),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"BREW /json HTTP/1.1\r\n\r\n", 501),
        (b"POST /json HTTP/1.1\r\n" + auth_line + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"POST /json HTTP/1.1\r\n" + auth_line + b"Content-Length: 2\r\n\r\n{x", 400),
        (b"POST /json HTTP/1.1\r\n" + auth_line + b"Content-Length: 3\r\n\r\n[1]", 400),
    ]
    for request, status in cases:
        assert _raw(client, request)[0] == status, request[:60]
    assert h(7) == 7


# -- the JSON door ------------------------------------------------------------------

def test_the_json_door_for_outside_programs():
    @straightline.deploy(sample=([1, 2],), targets=["local"], name="door")
    def total(xs, offset=0):
        return sum(xs) + offset

    door = total.endpoint
    assert door.token not in repr(door) and door.token not in str(door)
    assert door.token != total.spec.token
    s = _session()
    # keep-alive: several calls over one connection
    for i in range(3):
        r = s.post(door.url, json={"args": [[1, 2, i]]}, headers=door.headers)
        assert r.status_code == 200 and r.json() == {"result": 3 + i}
    # a chunked body (requests sends a generator that way)
    r = s.post(door.url, data=(part for part in (b'{"args": [[4, 5]], ', b'"kwargs": {"offset": 1}}')),
               headers=door.headers)
    assert r.status_code == 200 and r.json() == {"result": 10}
    spec = s.get(door.openapi_url, headers=door.headers).json()
    assert set(spec["paths"]) == {"/json", "/health"} and spec["openapi"].startswith("3.")
    preflight = s.options(door.url, headers={"Origin": "http://example.org",
                                             "Access-Control-Request-Method": "POST",
                                             "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 204
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    assert s.post(door.url, json={"args": [[1]]}).status_code == 401
    if shutil.which("curl"):
        out = subprocess.run(door.curl([1, 2, 3], offset=4), shell=True, capture_output=True,
                             text=True, timeout=30)
        assert json.loads(out.stdout) == {"result": 10}


def test_the_json_token_cannot_run_pickles():
    h = straightline.deploy(lambda x: x, sample=(1,), name="door-invoke", targets=["local"])
    s = _session()
    base = h.endpoint.base_url
    r = s.post(f"{base}/invoke", data=b"".join(wire.encode([((1,), {})])[0]), headers=h.endpoint.headers)
    assert r.status_code == 403 and "JSON token" in r.json()["error"]


def test_a_running_calls_output_is_read_only_over_a_verified_connection():
    """GET /output shows what a call prints: the JSON door's token does not open it,
    nor does no credential; the SDK's own (verified) connection does."""
    h = straightline.deploy(lambda x: x, sample=(1,), name="door-output", targets=["local"])
    s = _session()
    url = f"{h.endpoint.base_url}{wire.OUTPUT_PATH}?id=someone&offset=0"
    r = s.get(url, headers=h.endpoint.headers)
    assert r.status_code == 403 and "JSON token" in r.json()["error"]
    assert s.get(url).status_code == 401
    client = _local(h).client
    member = getattr(client, "members", [client])[0]   # one process's answer, even if empty
    answer = member.read_output("someone", 0)
    assert answer is not None and not answer.get("chunks") and not answer.get("running")


def test_h_endpoint_works_with_httpx():
    need(importlib.util.find_spec("httpx") is not None, "httpx is not installed: pip install -e '.[test]'")
    import httpx
    h = straightline.deploy(lambda x: x * 2, sample=(1,), name="door-httpx", targets=["local"])
    with httpx.Client(trust_env=False) as c:
        for i in range(2):
            r = c.post(h.endpoint.url, json={"args": [i]}, headers=h.endpoint.headers)
            assert r.json() == {"result": 2 * i}


def test_a_replaced_worker_keeps_the_door_token():
    h = straightline.deploy(lambda x: x, sample=(1,), name="door-stable", targets=["local"])
    token = h.endpoint.token
    _kill_worker(h)
    assert h(2) == 2                       # on a fresh worker
    assert h.endpoint.token == token
    assert _session().post(h.endpoint.url, json={"args": [3]}, headers=h.endpoint.headers).json() == {"result": 3}




def test_stream_and_function_endpoints_take_only_the_sdks_verified_connection():
    """POST /stream and POST /function run pickles: the JSON door's token does not
    open them, nor does no credential; refused before the body is read."""
    h = straightline.deploy(lambda x: x, sample=(1,), name="door-edit", targets=["local"])
    s = _session()
    for path in (wire.STREAM_PATH, wire.FUNCTION_PATH):
        url = f"{h.endpoint.base_url}{path}"
        r = s.post(url, data=b"not a pickle", headers=h.endpoint.headers)
        assert r.status_code == 403 and "JSON token" in r.json()["error"]
        assert s.post(url, data=b"not a pickle").status_code == 401
    assert h(5) == 5          # the worker still serves its function


def _count_up(n):
    for i in range(n):
        yield i


def _count_from_ten(n):
    for i in range(n):
        yield 10 + i


def test_a_stream_and_an_edit_work_on_a_signed_connection(monkeypatch):
    """Off loopback every message is signed: a generator's streamed items (each
    record with its MAC) and an edited function's swap go over the handshake."""
    monkeypatch.setattr(auth, "is_loopback", lambda host: False)   # sign as off loopback
    h = straightline.deploy(_count_up, name="signed-stream", targets=["local"])
    assert list(h(4)) == [0, 1, 2, 3]
    client = _local(h).client
    member = getattr(client, "members", [client])[0]
    from straightline_sdk.targets.http import open_stream, send_function
    segments, total = wire.encode([((3,), {})])
    outcomes = open_stream(member, segments, total, 30.0, what="the local worker")
    assert [value for ok, value, *_ in outcomes] == [0, 1, 2]
    conn = member._connect(5.0)
    assert conn.session is not None    # the test really signed
    conn.close()
    import cloudpickle
    send_function(client, cloudpickle.dumps(_count_from_ten),
                  what="the local worker")
    outcomes = open_stream(member, segments, total, 30.0, what="the local worker")
    assert [value for ok, value, *_ in outcomes] == [10, 11, 12]
