"""A real two-node Ray cluster on this machine: a head and a second node, each its
own ``ray start --block`` process (one CPU each) in its own process group and
temp folder, the second node in a different working directory. Nothing here
runs ``ray stop``, which would stop every Ray process on the machine.

    from tests.support.ray_two_nodes import two_node_cluster  # noqa: F401
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

from tests.conftest import need


@dataclasses.dataclass
class Cluster:
    address: str
    head: subprocess.Popen
    second: subprocess.Popen
    second_cwd: str

    def kill_second_node(self) -> None:
        _kill_group(self.second)


def _this_ip() -> str:
    """The address Ray picks for this machine (its nodes listen there, not on 127.0.0.1)."""
    from ray.util import get_node_ip_address
    return get_node_ip_address()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


# `ray start` gives a new raylet a fixed 30 s to register with the GCS; on a busy
# shared machine (CI, other test suites) that is missed now and then. The CLI is
# run with that one wait made patient (150 s); nothing else about Ray changes.
_PATIENT_RAY_CLI = """
import sys, time
import ray._private.services as services
_get_node = services.get_node
def _patient_get_node(*args, **kwargs):
    deadline = time.monotonic() + 150
    while True:
        try:
            return _get_node(*args, **kwargs)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
services.get_node = _patient_get_node
sys.argv[0] = "ray"
from ray.scripts.scripts import main
main()
"""


def _ray_cli() -> list[str]:
    return [sys.executable, "-c", _PATIENT_RAY_CLI]


def _start_node(args: list[str], env: dict, cwd: str | None, timeout_s: float,
                temp: str, attempts: int = 3) -> subprocess.Popen:
    """``ray start ... --block`` in its own process group; returns once it says the
    node runs. On a busy machine a raylet can miss Ray's fixed 30 s start-up
    window ("The current node timed out during startup"): that is tried again."""
    for attempt in range(attempts):
        try:
            return _start_node_once(args, env, cwd, timeout_s)
        except _NodeDidNotStart as exc:
            _kill_leftovers(temp) if "--head" in args else None
            if attempt + 1 == attempts:
                pytest.fail(f"`ray start` did not start its node ({attempts} tries):\n{exc}")
    raise AssertionError("unreachable")


class _NodeDidNotStart(Exception):
    pass


def _start_node_once(args: list[str], env: dict, cwd: str | None, timeout_s: float) -> subprocess.Popen:
    """One ``ray start``; its output is drained in the background so it never blocks."""
    proc = subprocess.Popen([*_ray_cli(), "start", *args], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    started = threading.Event()
    lines: list[str] = []

    def drain():
        for line in proc.stdout:
            lines.append(line)
            if "Ray runtime started" in line:
                started.set()
        started.set()

    threading.Thread(target=drain, daemon=True).start()
    if not started.wait(timeout_s) or proc.poll() is not None:
        _kill_group(proc)
        raise _NodeDidNotStart("".join(lines[-8:]))
    return proc


def _kill_leftovers(temp: str) -> None:
    """Ray processes of this cluster that left the process groups (found by this
    cluster's own temp folder in their command line, by pid)."""
    import psutil
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(temp in part for part in proc.info["cmdline"] or ()):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


@pytest.fixture(scope="module")
def two_node_cluster():
    need(importlib.util.find_spec("ray") is not None,
         "Ray is not installed: pip install 'straightline-sdk[ray]'")
    port = _free_port()
    address = f"{_this_ip()}:{port}"
    temp = tempfile.mkdtemp(prefix="rp")          # short: Ray's socket paths must fit 107 bytes
    second_cwd = tempfile.mkdtemp(prefix="ray-node2-cwd-")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # the raylet waits for its agents' port files; on a busy machine they start slowly
    env["RAY_agent_register_timeout_ms"] = "180000"
    # Ray 2.5x+: `ray start` turns token auth on when ~/.ray/auth_token exists (any local
    # ray.init() may have written one), but a driver's ray.init(address=...) does not:
    # the driver is then refused ("InvalidAuthToken"). One explicit mode for both sides.
    env.setdefault("RAY_AUTH_MODE", "disabled")
    common = ["--num-cpus=1", "--object-store-memory=150000000", "--disable-usage-stats", "--block"]
    head = second = None
    try:
        head = _start_node(["--head", f"--port={port}", f"--temp-dir={temp}",
                            "--include-dashboard=false", *common], env, None, 240, temp)
        # the second node: its own working directory, and no PYTHONPATH, so what the
        # function needs must come through the cluster
        second_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
        second = _start_node([f"--address={address}", '--resources={"second_node": 1}', *common],
                             second_env, second_cwd, 240, temp)
        yield Cluster(address, head, second, second_cwd)
    finally:
        for proc in (second, head):
            if proc is not None:
                _kill_group(proc)
        _kill_leftovers(temp)
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(second_cwd, ignore_errors=True)
