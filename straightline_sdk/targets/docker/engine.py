"""The Docker engine: where it is, talking to it (the docker SDK; its socket
directly for a quick probe), and what it offers."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import socket
import threading
from urllib.parse import urlsplit

from ...errors import TargetUnavailable
from ...placement import MB
from .options import DockerOptions

KIND = "docker"
INSTALL_HINT = "pip install 'straightline-sdk[docker]'"

PROBE_TIMEOUT_S = 5
API_TIMEOUT_S = 600           # image builds stream their output; a step may be quiet that long
_LOCAL_HOSTS = ("", "localhost", "127.0.0.1", "::1")
_START_ENGINE_HINT = ("start Docker (Docker Desktop, or `sudo systemctl start docker`; on these "
                      "machines `bash scripts/setup-docker.sh`), or point DOCKER_HOST at an engine "
                      "(ssh://user@host or tcp://host:2376)")
_clients: dict = {}
_clients_lock = threading.Lock()


def docker_sdk():
    try:
        import docker
    except ImportError:
        return None
    return docker


def engine_address(options: DockerOptions) -> str:
    return options.docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def remote_host(options: DockerOptions) -> str | None:
    """The engine's host name when it is on another machine, else None."""
    url = urlsplit(engine_address(options))
    if url.scheme in ("tcp", "ssh", "http", "https") and (url.hostname or "") not in _LOCAL_HOSTS:
        return url.hostname
    return None


def sdk_version() -> str:
    from ... import __version__
    return __version__


def client(options: DockerOptions, timeout: int = API_TIMEOUT_S):
    """A docker SDK client for the engine the options name (cached per address)."""
    docker = docker_sdk()
    if docker is None:
        raise TargetUnavailable("the docker Python SDK is not installed", target=KIND,
                                hint=INSTALL_HINT)
    address = options.docker_host
    key = (address, os.environ.get("DOCKER_HOST"), timeout)
    with _clients_lock:
        client = _clients.get(key)
    if client is not None:
        return client
    # ssh:// goes through the system's ssh unless paramiko is installed
    kwargs = {"timeout": timeout, "use_ssh_client": importlib.util.find_spec("paramiko") is None}
    try:
        client = (docker.DockerClient(base_url=address, **kwargs) if address
                  else docker.from_env(**kwargs))
        client.ping()
    except Exception as exc:
        raise TargetUnavailable(
            f"no Docker engine answers at {engine_address(options)}: {short(exc)}", target=KIND,
            hint=_START_ENGINE_HINT) from None
    with _clients_lock:
        _clients[key] = client
    return client


def unix_socket_path(options: DockerOptions) -> str | None:
    url = urlsplit(engine_address(options))
    return url.path if url.scheme == "unix" and url.path else None


def engine_info(options: DockerOptions, timeout: float = PROBE_TIMEOUT_S) -> dict:
    """The engine's ``docker info``. A local engine is asked over its socket
    directly: a probe then costs milliseconds, where importing and connecting
    the docker SDK costs ~0.2 s (on every deploy after a kernel restart)."""
    path = unix_socket_path(options)
    if path is None:
        return client(options, timeout=int(timeout)).info()
    conn = http.client.HTTPConnection("localhost", timeout=timeout)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        conn.sock = sock
        try:
            sock.connect(path)
            conn.request("GET", "/info")
            response = conn.getresponse()
            body = response.read()
        except OSError as exc:
            raise TargetUnavailable(
                f"no Docker engine answers at {engine_address(options)}: {short(exc)}", target=KIND,
                hint=_START_ENGINE_HINT) from None
        if response.status != 200:
            raise TargetUnavailable(f"the Docker engine at {engine_address(options)} answered "
                                    f"HTTP {response.status} to `docker info`", target=KIND)
        return json.loads(body)
    finally:
        conn.close()


def short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:300] if text else type(exc).__name__


def platform_of(info: dict) -> str:
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(info.get("Architecture", ""),
                                                          info.get("Architecture", "x86_64"))
    return f"{(info.get('OSType') or 'linux').lower()}/{machine}"


def gpu_runtime(info: dict) -> bool:
    return "nvidia" in (info.get("Runtimes") or {})


def capacity(info: dict, options: DockerOptions) -> dict:
    gpus = options.gpus if options.gpus is not None else (1 if gpu_runtime(info) else 0)
    return {"memory_mb": int(info.get("MemTotal", 0)) // MB or None,
            "cpus": float(info.get("NCPU") or 0) or None, "gpus": gpus}
