"""Looking at a local target's worker process from a test."""

from __future__ import annotations

import psutil


def worker_pid(h) -> int:
    return h.deployed_targets["local"].pid


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
