"""The worker's HTTP, through a real local worker: the token, the request
parser's refusals and leniencies, the JSON endpoint."""

from __future__ import annotations

import http.client
import json
import socket
import threading

import pytest
import requests

import straightline_sdk as straightline


pytestmark = pytest.mark.local_only   # no failing over to Docker (tests/conftest.py)


# -- the worker: security, JSON endpoint ---------------------------------------------

def test_worker_refuses_requests_without_the_right_token():
    h = straightline.deploy(lambda x: x, sample=(1,), name="guarded")
    client = h.deployed_targets["local"].client
    url = f"http://{client.host}:{client.port}"
    assert client.host == "127.0.0.1"
    s = requests.Session()
    s.trust_env = False
    assert s.get(f"{url}/health").status_code == 401
    assert s.post(f"{url}/json", json={"args": [1]}).status_code == 401
    bad = {"Authorization": "Bearer not-the-token"}
    assert s.get(f"{url}/health", headers=bad).status_code == 403
    assert s.post(f"{url}/invoke", data=b"x", headers=bad).status_code == 403
    key = {"Authorization": f"Bearer {h.spec.token}"}      # the key is never a credential on the wire
    assert s.get(f"{url}/health", headers=key).status_code == 403
    good = h.endpoint.headers
    assert s.get(f"{url}/health", headers=good).json()["ok"] is True
    assert s.post(f"{url}/invoke", data=b"x", headers=good).status_code == 403   # JSON calls only


def _exchange(client, request: bytes) -> tuple[int, bytes, bool]:
    """Send raw bytes to the worker: (status, body, whether it then closed the connection)."""
    with socket.create_connection((client.host, client.port), timeout=10) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()                  # skips a "100 Continue" as clients do
        body = response.read()
        sock.settimeout(0.5)
        try:
            closed = sock.recv(1) == b""
        except (TimeoutError, ConnectionResetError):
            closed = False
        return response.status, body, closed


def _health_request(token: str, *headers: str, version: str = "HTTP/1.1") -> bytes:
    lines = [f"GET /health {version}", "Host: x", f"authorization: Bearer {token}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("request_bytes, status", [
    (b"NONSENSE\r\n\r\n", 400),
    (b"GET /health HTTP/2.0\r\n\r\n", 400),
    (b"POST /invoke HTTP/1.1\r\nContent-Length : 3\r\n\r\nabc", 400),        # space before the colon
    (b"POST /invoke HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc", 400),
    (b"POST /invoke HTTP/1.1\r\nContent-Length: -3\r\n\r\n", 400),
    (b"POST /invoke HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 401),
    (b"POST /json HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(65)) + b"\r\n", 431),
    (b"GET /health HTTP/1.1\r\nX-Long: " + b"y" * 70000 + b"\r\n\r\n", 431),
])
def test_worker_refuses_malformed_requests_with_a_status(request_bytes, status):
    h = straightline.deploy(lambda x: x, sample=(1,), name="strict")
    got, _, closed = _exchange(h.deployed_targets["local"].client, request_bytes)
    assert (got, closed) == (status, True)
    assert h(5) == 5                   # the worker serves on


def test_worker_reads_headers_in_any_case_and_honours_connection_rules():
    h = straightline.deploy(lambda x: x, sample=(1,), name="lenient")
    client, token = h.deployed_targets["local"].client, h.endpoint.token
    status, body, closed = _exchange(client, _health_request(token))
    assert status == 200 and json.loads(body)["ok"] is True and not closed   # kept alive
    assert _exchange(client, _health_request(token, "Connection: close"))[::2] == (200, True)
    assert _exchange(client, _health_request(token, version="HTTP/1.0"))[::2] == (200, True)
    body = json.dumps({"args": [7]}).encode()
    expect = (f"POST /json HTTP/1.1\r\nAUTHORIZATION: Bearer {token}\r\nExpect: 100-continue\r\n"
              f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    status, answer, _ = _exchange(client, expect)
    assert (status, json.loads(answer)) == (200, {"result": 7})


def test_json_endpoint_over_plain_http():
    @straightline.deploy(sample=([1, 2],))
    def total(xs, offset=0):
        return {"sum": sum(xs) + offset}

    client = total.deployed_targets["local"].client
    url = f"http://{client.host}:{client.port}/json"
    headers = total.endpoint.headers
    s = requests.Session()
    s.trust_env = False
    r = s.post(url, json={"args": [[1, 2, 3]], "kwargs": {"offset": 10}}, headers=headers)
    assert r.status_code == 200 and r.json() == {"result": {"sum": 16}}
    r = s.post(url, json={"args": [[1, "a"]]}, headers=headers)
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "TypeError"
    assert "in total" in r.json()["error"]["traceback"]
    r = s.post(url, data=b"{not json", headers=headers)
    assert r.status_code == 400


# -- the request parser on its own: the worker's server in this process -----------------

@pytest.fixture
def inprocess_worker():
    """runtime.worker.serve in a thread: the same handler, no process to start."""
    from straightline_sdk.runtime.worker import serve

    server = serve(lambda x: x * 2, token="t0ken", concurrency=2, name="double")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address
    server.shutdown()
    server.server_close()


def _raw(address, request: bytes) -> tuple[int, bytes, bool]:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        sock.settimeout(0.5)
        try:
            closed = sock.recv(1) == b""
        except (TimeoutError, ConnectionResetError):
            closed = False
        return response.status, body, closed


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /health\r\n\r\n", 400),                                          # no version
    (b"GET /health HTTP/1.1\r\nNo-Colon-Here\r\n\r\n", 400),
    (b"GET /health HTTP/1.1\r\n: empty-name\r\n\r\n", 400),
    (b"POST /invoke HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400),
    (b"POST /invoke HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc", 400),
])
def test_the_parser_refuses_what_it_cannot_read_unambiguously(inprocess_worker, request_bytes, status):
    got, _, closed = _raw(inprocess_worker, request_bytes)
    assert (got, closed) == (status, True)


def test_the_parser_answers_the_endpoints_with_the_token(inprocess_worker):
    from straightline_sdk.runtime import auth
    head = f"Authorization: Bearer {auth.json_token(b't0ken')}\r\n"   # the JSON door's token
    status, body, closed = _raw(inprocess_worker, f"GET /health HTTP/1.1\r\n{head}\r\n".encode())
    assert status == 200 and json.loads(body)["function"] == "double" and not closed
    payload = b'{"args": [21]}'
    request = (f"POST /json HTTP/1.1\r\n{head}Content-Length: {len(payload)}\r\n\r\n").encode() + payload
    assert _raw(inprocess_worker, request)[:2] == (200, b'{"result": 42}')
    assert _raw(inprocess_worker, b"GET /nowhere HTTP/1.1\r\n" + head.encode() + b"\r\n")[0] == 404
    assert _raw(inprocess_worker, b"GET /health HTTP/1.1\r\nAuthorization: Basic x\r\n\r\n")[0] == 401


def test_a_frame_through_the_parser_and_back(inprocess_worker):
    from straightline_sdk.protocol import decode_response, encode_request
    from straightline_sdk.runtime import wire

    from straightline_sdk.targets.http import WorkerClient

    segments, total = encode_request([((5,), {}), (("ab",), {})])
    client = WorkerClient(*inprocess_worker, "t0ken", target="local")   # proves the key
    try:
        response = client.request("POST", wire.INVOKE_PATH, segments, total,
                                  content_type=wire.FRAME_CONTENT_TYPE)
    finally:
        client.close()
    assert response.status == 200
    assert [(ok, value) for ok, value, _ in decode_response(response.body)] == [(True, 10), (True, "abab")]
