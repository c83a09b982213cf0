"""The local target: a worker process on this machine (the paper's local
Flask-tier server), serving the function over HTTP on 127.0.0.1.

The worker is a pool: one process per CPU this process may use (affinity and
cgroup quota), fewer when the profile's memory would not fit, each forked after
the function is loaded (runtime/pool.py). It inherits one listening socket per
process (no port race); the client sends each call to the least busy process.
It also inherits the read end of a lifeline pipe whose write end only this
process holds: the pool's supervisor exits when this process is gone (even
after SIGKILL), whichever thread started it, and its processes with it. It runs
in its own session so a notebook interrupt (SIGINT) does not kill it mid-call,
with each process's address space capped at ``Resources(memory_mb=)`` when that
is set. Its output goes to a log file (``h.logs()``).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import ClassVar

from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from ..errors import TargetFailure, TargetUnavailable
from ..placement import Limits
from ..runtime import execute, pool, wire
from .base import Probe
from .options import TargetOptions
from .http import (WorkerClient, WorkerTarget, open_stream, pool_client, send_function,
                   worker_health)


_POOL_EXIT = re.compile(r"straightline worker: process \d+ \(pid \d+\) exited with")


def _pool_pids(pid: int) -> list[int]:
    """The worker's process and, for a pool, the processes it forked (any of them
    stopped leaves calls unanswered or the pool unsupervised)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [pid, *map(int, f.read().split())]
    except (OSError, ValueError):
        return [pid]


def _process_state(pid: int) -> str:
    """The kernel's one-letter state of a process ("R", "S", "T" stopped, "Z"...), "" if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return ""


def _available_memory_mb() -> int | None:
    free = pool.available_memory_mb()
    return int(free) if free is not None else None


def worker_pool_size(options, profile, cpus: float,
                     free_memory_mb: float | None) -> tuple[int, int, str]:
    """(processes, threads each, note) for a worker pool given the CPUs and memory
    it gets: the options (``processes``, ``threads``, ``concurrency``) first, then
    the deployment's profile (runtime/pool.py)."""
    waits = pool.io_bound(profile.runtime_s, getattr(profile, "cpu_s", None),
                          getattr(profile, "cpu_wait_s", 0.0)) if profile else None
    processes, threads = options.processes, options.threads
    if threads is None and options.concurrency:
        wanted = processes or max(1, math.ceil(cpus - 1e-9))
        threads = max(1, math.ceil(options.concurrency / wanted))
    return pool.pool_size(cpus, waits=waits, free_memory_mb=free_memory_mb,
                          peak_memory_mb=profile.peak_memory_mb if profile else 0.0,
                          processes=processes, threads=threads)


@dataclass(frozen=True)
class LocalOptions(TargetOptions):
    """The local target's options (``configure(options={"local": {...}})``,
    ``STRAIGHTLINE_LOCAL_<OPTION>``, ``[tool.straightline.options.local]``)."""

    kind: ClassVar[str] = "local"

    processes: int | None = None       # pool processes; default the CPUs this process may use
    threads: int | None = None         # calls each process runs at once; default from the profile
    concurrency: int | None = None     # calls at once (older option): sets the threads to match
    host: str = "127.0.0.1"            # where the worker listens
    port: int = 0                      # 0: a free port
    start_timeout_s: float = 30.0      # how long the worker may take to answer


Options = LocalOptions


FROZEN_AFTER_S = 0.5   # a worker stopped this long fails the call waiting on it


class LocalTarget(WorkerTarget):
    kind = "local"

    def __init__(self, spec, progress=None):
        super().__init__(spec, progress)
        self.options = LocalOptions.parse(spec.options)
        self.processes, self.threads, self.pool_note = worker_pool_size(
            self.options, spec.profile, pool.usable_cpus(), pool.available_memory_mb())
        # the older `concurrency` option is a number of calls at once: held to exactly
        self.concurrency = min(self.processes * self.threads, self.options.concurrency or 1 << 30)
        self.proc: subprocess.Popen | None = None
        self._last_pool_exit = ""   # the pool death last reported (see _dead_worker)
        self.client: WorkerClient | None = None
        self._dir: str | None = None
        self._lifeline: int | None = None   # write end of the worker's lifeline pipe
        self._stopped_since: float | None = None
        self._replace_lock = threading.Lock()

    @classmethod
    def probe(cls, options: dict) -> Probe:
        memory = _available_memory_mb()
        cpus = pool.usable_cpus()
        return Probe(True, limits=Limits(
            max_memory_mb=memory, cpus=cpus, gpus=0,
            pythons=frozenset({sys.version_info[:2]}),
            sources=("this machine: MemAvailable in /proc/meminfo and the cgroup's memory limit; "
                     "CPUs from os.sched_getaffinity and the cgroup's CPU quota",),
        ), capacity={"memory_mb": memory, "cpus": cpus, "gpus": 0})

    @property
    def log_path(self) -> str:
        return os.path.join(self._dir, "worker.log") if self._dir else ""

    def deploy(self) -> None:
        self._dir = tempfile.mkdtemp(prefix=f"straightline-{os.getpid()}-")
        function_path = os.path.join(self._dir, "function.pkl")
        fd = os.open(function_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.spec.package.payload)
        host = self.options.host
        listeners = []
        for i in range(self.processes):   # one address per pool process (runtime/pool.py)
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, self.options.port + i if self.options.port else 0))
            listener.listen(128)
            listeners.append(listener)
        ports = [listener.getsockname()[1] for listener in listeners]
        fds = [listener.fileno() for listener in listeners]
        lifeline_read, self._lifeline = os.pipe()   # neither end inheritable by default
        env = dict(os.environ)
        memory_mb = self.spec.resources.memory_mb
        if memory_mb:
            env[wire.MEMORY_MB_ENV] = str(int(memory_mb))
        env.update(self.spec.environment())
        env.update({
            wire.TOKEN_ENV: self.spec.token,
            wire.FUNCTION_ENV: function_path,
            wire.NAME_ENV: self.spec.name,
            wire.LISTEN_FDS_ENV: ",".join(map(str, fds)),
            wire.THREADS_ENV: str(self.threads),
            wire.LIFELINE_FD_ENV: str(lifeline_read),
            wire.CLEANUP_DIR_ENV: self._dir,
            wire.MAX_BODY_ENV: str(self._max_body()),
            # the worker resolves modules as this process does
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            "PYTHONUNBUFFERED": "1",
        })
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "straightline_sdk.runtime.worker"],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(*fds, lifeline_read), start_new_session=True, cwd=os.getcwd(),
            )
        for listener in listeners:
            listener.close()  # the worker holds its own copies
        os.close(lifeline_read)
        self.client = pool_client(host if host != "0.0.0.0" else "127.0.0.1", ports,
                                  self.spec.token, target=self.kind)
        self._wait_ready(self.options.start_timeout_s)

    def _max_body(self) -> int:
        """The largest request the worker reads: the call's memory limit, or half
        of the memory available now (at least 64 MiB)."""
        memory_mb = self.spec.resources.memory_mb or (_available_memory_mb() or 4096) // 2
        return max(64, int(memory_mb)) * 1024 * 1024

    def _wait_ready(self, timeout_s: float) -> None:
        @retry(stop=stop_after_delay(timeout_s), wait=wait_exponential(0.01, max=0.5),
               retry=retry_if_exception_type(TargetFailure), reraise=True)
        def ready():
            if self.proc.poll() is not None:
                raise TargetUnavailable(
                    f"the local worker for {self.spec.name!r} exited during start-up "
                    f"(exit code {self.proc.returncode}). Its last output:\n{self.logs(20)}",
                    target=self.kind)
            ok, detail = self.health()
            if not ok:
                raise TargetFailure(detail, target=self.kind)

        try:
            ready()
        except TargetFailure as exc:
            self.teardown()
            raise TargetUnavailable(
                f"the local worker for {self.spec.name!r} did not become ready in {timeout_s:.0f} s: "
                f"{exc}. Its last output:\n{self.logs(20)}", target=self.kind) from None

    def _dead_worker(self, grace_s: float = 0.0, pool_exits: bool = True) -> TargetFailure | None:
        """Why the worker is gone, or None. ``grace_s``: after a failed connection,
        give a worker that was just killed a moment to be reaped before deciding.
        ``pool_exits``: explain a lost connection by a pool process's death; not
        while an answer is awaited, because a death logged before the call began
        (its process already replaced) says nothing about this call, and a pool
        process that dies mid-call closes the call's connection anyway."""
        if self.proc is not None and grace_s:
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None and self.proc.poll() is not None:
            return TargetFailure(
                f"the local worker for {self.spec.name!r} has exited (exit code "
                f"{self.proc.returncode}). Its last output:\n{self.logs(20)}",
                target=self.kind, hint="redeploy, or let the router fail over")
        if pool_exits and self.proc is not None and self.processes > 1:
            # a pool's process that died is forked again by the supervisor, which lives
            # on: its note in the log says so, once per death (the pid tells them apart)
            tail = self.logs(20)
            exits = [line for line in tail.splitlines() if _POOL_EXIT.search(line)]
            if exits and exits[-1] != self._last_pool_exit:
                self._last_pool_exit = exits[-1]
                return TargetFailure(
                    f"a process of the local worker pool for {self.spec.name!r} exited during "
                    f"the call (another was started). Its last output:\n{tail}",
                    target=self.kind, hint="the function ended its process (os._exit, a crash)")
        return self._frozen()

    def _frozen(self) -> TargetFailure | None:
        """The worker stopped (SIGSTOP, a debugger) for over half a second: a call
        waiting on it would wait forever."""
        proc = self.proc
        stopped = None if proc is None else next(
            (pid for pid in _pool_pids(proc.pid) if _process_state(pid) in ("T", "t")), None)
        if stopped is None:
            self._stopped_since = None
            return None
        now = time.monotonic()
        if self._stopped_since is None:
            self._stopped_since = now
        if now - self._stopped_since < FROZEN_AFTER_S:
            return None
        return TargetFailure(
            f"the local worker for {self.spec.name!r} (pid {stopped}) is stopped (SIGSTOP or a "
            f"debugger) and cannot answer", target=self.kind,
            hint="resume it (kill -CONT), or let the router fail over; it is replaced")

    def _worker_name(self) -> str:
        return "the local worker"

    def _gone(self) -> TargetFailure | None:
        return self._dead_worker(grace_s=0.2)

    def _unresponsive(self) -> TargetFailure | None:
        return self._dead_worker(pool_exits=False)

    def _stop_running_call(self, client) -> str:
        self._replace_worker(client)
        return "the local worker was replaced to stop the call"

    def swap(self, spec) -> bool:
        client = self.client
        if client is None or self._dir is None:
            return False
        send_function(client, spec.package.payload, what="the local worker")
        # a worker started again later (after a time-out) starts with the new one
        path = os.path.join(self._dir, "function.pkl")
        fd = os.open(f"{path}.new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(spec.package.payload)
        os.replace(f"{path}.new", path)
        self.spec = spec
        return True

    def stream(self, segments, total, timeout):
        client = self.client
        if client is None:
            raise TargetFailure("the local worker is not deployed", target=self.kind)
        return open_stream(client, segments, total, timeout, what="the local worker",
                           dead=lambda: self._dead_worker(grace_s=0.2))

    def _replace_worker(self, client: WorkerClient) -> None:
        """Stop a call that ran past its time limit. A running Python function
        cannot be interrupted from outside, so the worker process is killed and a
        fresh one started; other calls in flight on it fail and, when idempotent,
        are run again by the router."""
        with self._replace_lock:
            if self.client is not client:
                return   # another call's timeout already replaced it
            self.teardown(grace_s=0.5)
            self.deploy()

    def health(self) -> tuple[bool, str]:
        return worker_health(self.client, self._dead_worker)

    def teardown(self, grace_s: float = 5.0) -> None:
        if self.client is not None:
            self.client.close()
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None and _process_state(proc.pid) in ("T", "t"):
            grace_s = 0.0   # a stopped worker cannot act on SIGTERM
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                proc.terminate()
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:   # busy in C code that holds the GIL
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    proc.kill()
                proc.wait(timeout=5)
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        if self._dir:
            # keep the log readable after teardown only in memory: remove the files
            self._last_log = self.logs(200)
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def logs(self, tail: int = 100) -> str:
        if self._dir:
            return b"\n".join(execute.last_lines(self.log_path, tail)).decode(errors="replace")
        return getattr(self, "_last_log", "")

    def read_output(self, stream_id: str, offset: int) -> dict | None:
        client = self.client
        return client.read_output(stream_id, offset) if client is not None else None

    def door_address(self) -> tuple[str, int] | None:
        """Where outside programs reach this worker's JSON door."""
        return (self.client.host, self.client.port) if self.client else None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def describe(self) -> dict:
        return {"address": f"{self.client.host}:{self.client.port}" if self.client else None,
                "pid": self.pid, "concurrency": self.concurrency, "processes": self.processes,
                "threads": self.threads, **({"note": self.pool_note} if self.pool_note else {})}
