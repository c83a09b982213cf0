"""A record of every call, kept in a bounded ring buffer, and per-target totals.

Appending costs well under a microsecond; aggregation (``stats``) happens only
when someone reads it. Listeners (the panel) are told after each record and
throttle themselves.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass


@dataclass(slots=True)
class CallRecord:
    time: float              # wall clock, seconds since the epoch
    target: str
    branch: str              # the policy's case: frequent-small, large, moderate, pinned
    fell_back: bool
    items: int               # calls carried by this request (a map's chunk)
    request_bytes: int
    response_bytes: int
    latency_s: float
    cold: bool
    outcome: str             # "ok", "error" (the function raised), "failed" (the target failed)
    detail: str = ""         # the error, briefly


_COUNTERS = ("requests", "calls", "errors", "failures", "cold_starts", "bytes_sent", "bytes_received")


class Telemetry:
    def __init__(self, capacity: int = 2000):
        self.records: deque[CallRecord] = deque(maxlen=capacity)
        self.totals: dict[str, dict[str, int]] = {}
        self._listeners: list = []
        self._lock = threading.Lock()

    def record(self, target: str, *, branch: str, fell_back: bool = False, items: int = 1,
               request_bytes: int = 0, response_bytes: int = 0, latency_s: float = 0.0,
               cold: bool = False, outcome: str = "ok", detail: str = "") -> CallRecord:
        """Record one request to ``target``; the fields are CallRecord's."""
        rec = CallRecord(time.time(), target, branch, fell_back, items, request_bytes,
                         response_bytes, latency_s, cold, outcome, detail)
        with self._lock:
            self.records.append(rec)
            t = self.totals.get(target)
            if t is None:
                t = self.totals[target] = dict.fromkeys(_COUNTERS, 0)
            t["requests"] += 1
            t["calls"] += items
            t["bytes_sent"] += request_bytes
            t["bytes_received"] += response_bytes
            if outcome == "error":
                t["errors"] += 1
            elif outcome == "failed":
                t["failures"] += 1
            if cold:
                t["cold_starts"] += 1
        for listener in self._listeners:
            listener(rec)
        return rec

    def subscribe(self, listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def recent(self, n: int | None = None) -> list[CallRecord]:
        with self._lock:
            records = list(self.records)
        return records if n is None else records[-n:]

    def stats(self) -> dict[str, dict]:
        """Per target: totals since deployment, and p50/p95 latency (ms) of the
        requests still in the ring buffer."""
        with self._lock:
            totals = {k: dict(v) for k, v in self.totals.items()}
            records = list(self.records)
        for target, t in totals.items():
            latencies = sorted(r.latency_s for r in records if r.target == target and r.outcome != "failed")
            t["p50_ms"] = _percentile(latencies, 0.50) * 1000 if latencies else None
            t["p95_ms"] = _percentile(latencies, 0.95) * 1000 if latencies else None
        return totals


def _percentile(sorted_values: list[float], q: float) -> float:
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)
