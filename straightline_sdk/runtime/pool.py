"""The worker pool: how many processes a worker runs, and the pre-fork that starts them.

Sizing (also used on the client side, for the local target and for placement notes):
- CPUs: what this process may really use, ``os.sched_getaffinity`` (taskset,
  cpusets) and the cgroup's CPU quota (``cpu.max``, a container's ``--cpus``),
  whichever is smaller; not ``os.cpu_count()``, which counts the host's.
- memory: ``MemAvailable`` and the cgroup's ``memory.max`` less its current use
  (cgroup v1: ``memory.limit_in_bytes``, ``memory.usage_in_bytes``).
- threads per process: a function that mostly waits (I/O, sleeps, code that
  releases the GIL) gets many threads per process, a CPU-bound one gets one:
  in one process its calls would only take turns on the GIL.

The pre-fork: the function is loaded once, in the supervisor, and then each
worker process is forked from it, so a large closure (a model, a 300 MB array)
is shared copy-on-write instead of copied per process. ``gc.freeze()`` before
the fork keeps the collector from touching (and so copying) those pages.

Each process serves its own listening socket. A shared socket would balance
*connections*, and the client keeps its connections alive, so two calls could
queue on one process while another idles; with one address per process the
client sends each call to its least busy process (targets/http.py,
``WorkerPoolClient``): exact balance, and no extra hop on the warm path.

Standard library only: this runs in containers as ``straightline_runtime.pool``.
"""

from __future__ import annotations

import gc
import math
import os
import signal
import sys
import time

#: the calls at once of a pool for a function that mostly waits, shared out over
#: its processes as threads: a waiting call costs a thread's stack, not a CPU,
#: and a map of 50 ms waits then runs in one wave where a 32-thread pool needs two
IO_SLOTS = 64
#: below this share of its wall time on the CPU, a function counts as waiting
IO_BOUND_CPU_SHARE = 0.5
#: an interpreter with the runtime loaded, before the function's own memory
PROCESS_BASE_MB = 30.0


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _cgroup_dir() -> str:
    """This process's cgroup v2 folder (``/sys/fs/cgroup`` inside a container)."""
    text = _read("/proc/self/cgroup") or ""
    for line in text.splitlines():
        if line.startswith("0::"):
            path = os.path.join("/sys/fs/cgroup", line[3:].lstrip("/"))
            if os.path.isdir(path):
                return path
    return "/sys/fs/cgroup"


def cgroup_cpu_quota() -> float | None:
    """CPUs the cgroup's quota allows (``--cpus``), or None without a quota."""
    text = _read(os.path.join(_cgroup_dir(), "cpu.max")) or _read("/sys/fs/cgroup/cpu.max")
    if text:
        quota, _, period = text.partition(" ")
        if quota != "max" and quota.isdigit() and period.isdigit() and int(period):
            return int(quota) / int(period)
        return None
    quota = _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")      # cgroup v1
    period = _read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
    if quota and period and quota.lstrip("-").isdigit() and int(quota) > 0 and int(period):
        return int(quota) / int(period)
    return None


def usable_cpus() -> float:
    """CPUs this process may really use: its affinity, capped by the cgroup quota."""
    try:
        cpus = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cpus = float(os.cpu_count() or 1)
    quota = cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, quota)
    return max(cpus, 0.01)


def available_memory_mb() -> float | None:
    """Memory this process can still get: MemAvailable, capped by the cgroup's limit."""
    free = None
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemAvailable:"):
            free = int(line.split()[1]) / 1024
            break
    folder = _cgroup_dir()
    limit, used = _read(os.path.join(folder, "memory.max")), _read(os.path.join(folder, "memory.current"))
    if limit is None:   # cgroup v1 (a huge number when there is no limit)
        limit = _read("/sys/fs/cgroup/memory/memory.limit_in_bytes")
        used = _read("/sys/fs/cgroup/memory/memory.usage_in_bytes")
    if limit and limit.isdigit() and int(limit) < 1 << 60 and used and used.isdigit():
        room = (int(limit) - int(used)) / 2 ** 20
        free = room if free is None else min(free, room)
    return free


def io_bound(runtime_s: float | None, cpu_s: float | None, cpu_wait_s: float = 0.0) -> bool | None:
    """Whether a profiled call mostly waited; None when there is no profile. The
    time it queued for a CPU on a busy machine is not waiting on I/O."""
    if not runtime_s or cpu_s is None:
        return None
    active = runtime_s - cpu_wait_s
    return active > 0 and cpu_s / active < IO_BOUND_CPU_SHARE


def pool_size(cpus: float, *, waits: bool | None, peak_memory_mb: float = 0.0,
              free_memory_mb: float | None = None, processes: int | None = None,
              threads: int | None = None) -> tuple[int, int, str]:
    """(processes, threads per process, a note when memory shrank the pool).

    ``processes``/``threads`` given by the user win over the sizing; memory still
    caps the processes, because a pool that swaps is slower than a smaller one.
    """
    wanted = processes or max(1, math.ceil(cpus - 1e-9))
    if threads is None:
        if waits:
            threads = max(2, math.ceil(IO_SLOTS / wanted))
        elif waits is None:
            threads = 2          # unknown: a little overlap of waiting, cheap for CPU work
        else:
            threads = 1
    note = ""
    if free_memory_mb is not None and peak_memory_mb > 0:
        per_process = PROCESS_BASE_MB + peak_memory_mb * threads
        fits = int(free_memory_mb * 0.8 // per_process)
        if fits < wanted:
            shrunk = max(1, fits)
            note = (f"pool shrunk from {wanted} to {shrunk} process(es): each needs "
                    f"~{per_process:.0f} MB ({threads} call(s) of {peak_memory_mb:.0f} MB peak + "
                    f"{PROCESS_BASE_MB:.0f} MB), {free_memory_mb:.0f} MB free")
            wanted = shrunk
    return wanted, threads, note


def prefork(count: int, serve_one, cleanup=None) -> None:
    """Run ``serve_one(index)`` in ``count`` forked processes and supervise them:
    a process that dies is forked again (from this one, which still holds the
    loaded function); SIGTERM stops them all. Does not return."""
    gc.freeze()   # the loaded function's objects stay out of the collector's way: shared pages stay shared
    children: dict[int, int] = {}
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    supervisor = os.getpid()

    def start(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            _die_with_parent()
            if os.getppid() != supervisor:   # it died before the line above took effect
                os._exit(0)
            try:
                serve_one(index)
            finally:
                os._exit(0)
        children[pid] = index

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    oom_kills = _oom_kills()
    for index in range(count):
        start(index)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        index = children.pop(pid, None)
        if index is None or stopping:
            continue
        code = os.waitstatus_to_exitcode(status)
        if code == -signal.SIGKILL and _oom_kills() > oom_kills:
            # the kernel's OOM killer: the pool ends as a one-process worker would, so
            # its owner sees why (a container stops with exit 137 and an "oom" event)
            print(f"straightline worker: process {index} (pid {pid}) was killed for lack of "
                  f"memory; stopping the pool", file=sys.stderr, flush=True)
            stop()
            if cleanup is not None:
                cleanup()
            os._exit(137)
        print(f"straightline worker: process {index} (pid {pid}) exited with {code}; starting "
              f"another", file=sys.stderr, flush=True)
        time.sleep(0.05)   # a process that dies at once must not spin
        start(index)
    if cleanup is not None:
        cleanup()
    os._exit(0)


def _oom_kills() -> int:
    """How many processes the OOM killer has killed in this cgroup, or 0."""
    text = (_read(os.path.join(_cgroup_dir(), "memory.events"))
            or _read("/sys/fs/cgroup/memory/memory.oom_control") or "")   # v2, else v1
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == "oom_kill" and value.isdigit():
            return int(value)
    return 0


def _die_with_parent() -> None:
    """A pool process exits with its supervisor, even one killed with SIGKILL."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except Exception:
            pass
