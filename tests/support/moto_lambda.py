"""moto in server mode for the Lambda tests and bench, and a recording proxy in
front of it.

``MotoServer`` runs ``python -m moto.server`` on 127.0.0.1 with its Lambda
invocations in the stand-in runtime image that scripts/setup-docker.sh builds.
``RecordingProxy`` forwards every request to moto over real HTTP and records
it (method, path), so a test can see which AWS operations a deploy made; told
to, it answers Invoke requests with Lambda's real throttling error (HTTP 429,
TooManyRequestsException), which moto itself never returns.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PY = "%d.%d" % sys.version_info[:2]
LAMBDA_IMAGE = f"straightline-test/lambda-python{PY}:latest"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def docker_images_present(images=(LAMBDA_IMAGE, "busybox:latest")) -> tuple[bool, str]:
    """Whether the engine answers and has the images moto's Lambda needs."""
    try:
        import docker
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:
        return False, f"no Docker engine ({exc}); run scripts/setup-docker.sh"
    for image in images:
        try:
            client.images.get(image)
        except Exception:
            return False, f"missing image {image}; run scripts/setup-docker.sh"
    return True, ""


def moto_installed() -> bool:
    try:
        import moto.server  # noqa: F401
        return True
    except ImportError:
        return False


class MotoServer:
    def __init__(self, image: str = LAMBDA_IMAGE):
        self.image = image
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = tempfile.NamedTemporaryFile("w+", prefix="moto-server-", suffix=".log")
        self.started_at = 0.0

    def start(self, timeout: float = 30.0) -> "MotoServer":
        env = dict(os.environ, MOTO_DOCKER_LAMBDA_IMAGE=self.image,
                   # moto builds its containers' AWS_ENDPOINT_URL from MOTO_PORT, not from -p
                   MOTO_PORT=str(self.port),
                   # real IAM has AWS's managed policies (AWSLambdaBasicExecutionRole); moto
                   # loads them only when asked
                   MOTO_IAM_LOAD_MANAGED_POLICIES="true")
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with _NO_PROXY.open(self.url + "/moto-api/", timeout=2):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not answer within {timeout:.0f} s:\n{self.tail()}")
                time.sleep(0.1)

    def reset(self) -> None:
        """Forget every resource (functions, roles, buckets)."""
        request = urllib.request.Request(self.url + "/moto-api/reset", method="POST", data=b"")
        with _NO_PROXY.open(request, timeout=30):
            pass

    def tail(self, lines: int = 30) -> str:
        self.log.flush()
        with open(self.log.name) as f:
            return "\n".join(f.read().splitlines()[-lines:])

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self._remove_leftovers()
        self.log.close()

    def _remove_leftovers(self) -> None:
        """Containers of the stand-in image that moto left (it leaks them when stopped
        mid-invoke), started since this server started, and their volumes."""
        try:
            import docker
            client = docker.from_env(timeout=10)
            containers = client.containers.list(all=True, filters={"ancestor": self.image})
        except Exception:
            return
        for container in containers:
            created = container.attrs.get("Created", "")
            try:
                from datetime import datetime
                when = datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00").timestamp()
            except ValueError:
                continue
            if when < self.started_at - 1:
                continue
            volumes = [m["Name"] for m in container.attrs.get("Mounts", []) if m.get("Name")]
            container.remove(force=True)
            for name in volumes:
                try:
                    client.volumes.get(name).remove()
                except Exception:
                    pass


class RecordingProxy:
    """An HTTP proxy in front of moto that records requests and can throttle Invoke."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[tuple[str, str, bytes]] = []   # (method, path, body) of each request
        self.throttle_next = 0           # Invoke requests to answer with 429
        self.throttled = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy.requests.append((self.command, self.path))
                    proxy.bodies.append((self.command, self.path, body))
                    throttle = is_invoke(self.command, self.path) and proxy.throttle_next > 0
                    if throttle:
                        proxy.throttle_next -= 1
                        proxy.throttled += 1
                if throttle:
                    # Lambda's own throttling answer (RequestResponse invoke over concurrency)
                    error = json.dumps({"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
                                        "Type": "User", "message": "Rate Exceeded."}).encode()
                    self.send_response(429)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("x-amzn-ErrorType", "TooManyRequestsException")
                    self.send_header("x-amzn-RequestId", "throttled-by-test-proxy")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=600)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in ("connection", "keep-alive", "proxy-connection")}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    self.send_response(response.status, response.reason)
                    for key, value in response.getheaders():
                        if key.lower() not in ("connection", "keep-alive", "transfer-encoding",
                                               "content-length", "server", "date"):
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.bodies.clear()
            self.throttle_next = 0
            self.throttled = 0

    def operations(self) -> list[str]:
        """The Lambda operations seen, by name (others as METHOD path)."""
        with self._lock:
            return [lambda_operation(m, p) for m, p in self.requests]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def is_invoke(method: str, path: str) -> bool:
    return method == "POST" and path.split("?")[0].endswith("/invocations")


def lambda_operation(method: str, path: str) -> str:
    """Name a Lambda REST request (the API's paths, 2015-03-31)."""
    bare = path.split("?")[0]
    parts = bare.strip("/").split("/")
    if len(parts) >= 2 and parts[0] == "2015-03-31" and parts[1] == "functions":
        tail = parts[3] if len(parts) > 3 else ""
        if len(parts) == 2:
            return {"POST": "CreateFunction", "GET": "ListFunctions"}.get(method, f"{method} {bare}")
        if tail == "":
            return {"GET": "GetFunction", "DELETE": "DeleteFunction"}.get(method, f"{method} {bare}")
        if tail == "code":
            return "UpdateFunctionCode" if method == "PUT" else f"{method} {bare}"
        if tail == "configuration":
            return {"GET": "GetFunctionConfiguration",
                    "PUT": "UpdateFunctionConfiguration"}.get(method, f"{method} {bare}")
        if tail == "invocations":
            return "Invoke"
    return f"{method} {bare}"
