"""Start real Ray nodes for the tests: each its own ``ray start --block`` process
in its own process group, found again and stopped by pid (never ``ray stop``,
which would stop every Ray process on the machine, other test runs' too).

Why the explicit ports: a raylet starts the dashboard and runtime-env agents
(Python processes) and, when their ports are left to them, waits for them to
write their port files, a fixed 15 s in Ray 2.60, and aborts when they are
late ("Timed out waiting for file .../metrics_agent_port_...", raylet.out; the
driver or ``ray start`` then reports "The current node timed out during
startup"). On a busy machine a Python agent takes longer than that to import.
Given the ports, the raylet does not wait for the agents: it registers with the
GCS at once and the agents join when they are ready. ``ray start`` itself waits
30 s (hard-coded) for the raylet to register; that wait is made patient too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

# `ray start`, with two changes: its fixed 30 s wait for the new raylet to register
# is made patient (150 s); and the raylet is told the dashboard agent's listen port,
# which Ray 2.60 gives the agent but not the raylet (the raylet then waits 15 s for
# the agent's port file and aborts: "Timed out waiting for file
# .../dashboard_agent_listen_port_..."). Nothing else about Ray changes.
_PATIENT_RAY_CLI = """
import re, sys, time
import ray._private.services as services
_start_ray_process = services.start_ray_process
def _start_with_listen_port(command, *args, **kwargs):
    if command and command[0] == services.RAYLET_EXECUTABLE and not any(
            part.startswith("--dashboard_agent_listen_port=") for part in command):
        for part in command:
            found = re.search(r"--listen-port=(\\d+)", part) if part.startswith(
                "--dashboard_agent_command=") else None
            if found and int(found.group(1)):
                command = [*command, "--dashboard_agent_listen_port=" + found.group(1)]
    return _start_ray_process(command, *args, **kwargs)
services.start_ray_process = _start_with_listen_port
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


def this_ip() -> str:
    """The address Ray picks for this machine (its nodes listen there, not on 127.0.0.1)."""
    from ray.util import get_node_ip_address
    return get_node_ip_address()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def node_environment(base: dict | None = None) -> dict:
    env = {k: v for k, v in (base if base is not None else os.environ).items()
           if k != "RAY_ADDRESS"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # the raylet's wait for the runtime-env agent to answer (creating a job's environment)
    env["RAY_agent_register_timeout_ms"] = "180000"
    # Ray 2.5x+: `ray start` turns token auth on when ~/.ray/auth_token exists (any local
    # ray.init() may have written one), but a driver's ray.init(address=...) does not:
    # the driver is then refused ("InvalidAuthToken"). One explicit mode for both sides.
    env.setdefault("RAY_AUTH_MODE", "disabled")
    return env


def agent_ports() -> list[str]:
    """Fixed ports for one node's agents, so its raylet does not wait for them (above)."""
    return [f"--dashboard-agent-grpc-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}"]


def head_args(port: int, temp: str, num_cpus: int) -> list[str]:
    return ["--head", f"--port={port}", f"--temp-dir={temp}", "--include-dashboard=false",
            f"--dashboard-port={free_port()}",
            *common_args(num_cpus)]


def common_args(num_cpus: int) -> list[str]:
    return [f"--num-cpus={num_cpus}", "--object-store-memory=150000000", "--disable-usage-stats"]


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def kill_leftovers(marker: str) -> None:
    """Ray processes of one cluster that left its process groups (workers are started
    by the raylet in groups of their own), found by the cluster's own temp folder or
    GCS address in their command line, and killed by pid."""
    import psutil
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid != os.getpid() and any(marker in part for part in proc.info["cmdline"] or ()):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


class NodeDidNotStart(Exception):
    pass


def start_node(args: list[str], env: dict, cwd: str | None = None, timeout_s: float = 240,
               attempts: int = 3, cleanup_marker: str | None = None) -> subprocess.Popen:
    """``ray start ARGS --block`` in its own process group, with its agents' ports;
    returns once it says the node runs. A failed start is tried again (with fresh
    ports: one may have been taken in the meantime)."""
    last = ""
    for _ in range(attempts):
        try:
            return _start_node_once([*args, *agent_ports(), "--block"], env, cwd, timeout_s)
        except NodeDidNotStart as exc:
            last = str(exc)
            if cleanup_marker:
                kill_leftovers(cleanup_marker)
    pytest.fail(f"`ray start` did not start its node ({attempts} tries):\n{last}")


def _start_node_once(args: list[str], env: dict, cwd: str | None, timeout_s: float) -> subprocess.Popen:
    """One ``ray start``; its output is drained in the background so it never blocks."""
    proc = subprocess.Popen([sys.executable, "-c", _PATIENT_RAY_CLI, "start", *args], env=env,
                            cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
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
        kill_group(proc)
        raise NodeDidNotStart("".join(lines[-12:]))
    return proc
