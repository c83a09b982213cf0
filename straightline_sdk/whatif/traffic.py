"""Traffic for the simulator: arrival times and request sizes.

Sources: a deployment's own history (``h.calls``), a trace file (a CSV with a
timestamp and a size per row, like bench/traces/azure-llm-2023/*.csv), or a
pattern: ``poisson(rate)``, ``bursts(...)``, ``daily(...)``.
"""

from __future__ import annotations

import csv
import datetime
import math
import os
import random
from dataclasses import dataclass, field

MB = 1024 * 1024


@dataclass(frozen=True)
class Traffic:
    """Requests as (arrival seconds from the start, request bytes), in arrival order."""

    times: tuple
    sizes: tuple
    name: str = "traffic"
    source: str = ""                 # where it came from, in words
    spec: dict = field(default_factory=dict, compare=False)   # how to make it again

    def __post_init__(self):
        if len(self.times) != len(self.sizes):
            raise ValueError("traffic needs one size per arrival time")
        if any(b < a for a, b in zip(self.times, self.times[1:])):
            raise ValueError("traffic arrival times must be in increasing order")

    def __len__(self) -> int:
        return len(self.times)

    @property
    def duration_s(self) -> float:
        return self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0

    @property
    def mean_rate(self) -> float:
        return (len(self) - 1) / self.duration_s if self.duration_s > 0 else 0.0

    def scaled(self, factor: float) -> "Traffic":
        """The same requests at ``factor`` times the rate (the gaps divided by it)."""
        if factor <= 0:
            raise ValueError("the rate factor must be positive")
        return Traffic(tuple(t / factor for t in self.times), self.sizes,
                       f"{self.name} x{factor:g}", f"{self.source}, rate x{factor:g}",
                       {**self.spec, "scale": self.spec.get("scale", 1.0) * factor})

    def window(self, start_s: float, length_s: float) -> "Traffic":
        """The requests of [start, start + length), re-based to start at 0."""
        pairs = [(t - start_s, s) for t, s in zip(self.times, self.sizes) if start_s <= t < start_s + length_s]
        return Traffic(tuple(t for t, _ in pairs), tuple(s for _, s in pairs),
                       f"{self.name}[{start_s:g}s+{length_s:g}s]", self.source, self.spec)

    def __repr__(self) -> str:
        if not len(self):
            return f"<Traffic {self.name!r}: empty>"
        sizes = sorted(self.sizes)
        return (f"<Traffic {self.name!r}: {len(self)} requests over {self.duration_s:.4g} s, "
                f"{self.mean_rate:.3g} req/s, median {sizes[len(sizes) // 2] / MB:.3g} MB>")


def _parse_time(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    head, _, frac = text.partition(".")
    when = datetime.datetime.fromisoformat(head.replace("T", " "))
    return when.timestamp() + float("0." + (frac.rstrip("Z") or "0"))


def from_csv(path: str, *, bytes_per_token: int = 1024, time_column: str | None = None,
             size_column: str | None = None) -> Traffic:
    """A trace file: one row per request. The time column (TIMESTAMP, time, timestamp,
    arrival_s: ISO date-times or seconds) gives the arrival; the size is a
    ``bytes``/``request_bytes`` column, or a ``ContextTokens`` column times
    ``bytes_per_token`` (default 1 KiB: one float32 row of 256 values a token,
    as bench/paper.py sends)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no trace file at {path!r}")
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        tcol = time_column or next((c for c in ("TIMESTAMP", "timestamp", "time", "arrival_s")
                                    if c in columns), None)
        scol = size_column or next((c for c in ("request_bytes", "bytes", "size", "ContextTokens")
                                    if c in columns), None)
        if tcol is None or scol is None:
            raise ValueError(f"{path}: needs a time column (TIMESTAMP, time or arrival_s) and a "
                             f"size column (request_bytes, bytes or ContextTokens); it has {columns}")
        per = bytes_per_token if scol == "ContextTokens" else 1
        for n, row in enumerate(reader, 2):
            try:
                rows.append((_parse_time(row[tcol]), int(float(row[scol]) * per)))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{path}, line {n}: {exc}") from None
    rows.sort()
    t0 = rows[0][0] if rows else 0.0
    name = os.path.splitext(os.path.basename(path))[0]
    return Traffic(tuple(t - t0 for t, _ in rows), tuple(s for _, s in rows), name,
                   f"trace {path}", {"kind": "csv", "path": path, "bytes_per_token": bytes_per_token})


def from_calls(records) -> Traffic:
    """A deployment's own history: ``h.calls`` (CallRecord: time, request_bytes, items).
    Failed attempts that were re-sent elsewhere are one request, not two."""
    rows = []
    for r in records:
        if getattr(r, "outcome", "ok") == "failed":
            continue
        items = max(1, getattr(r, "items", 1))
        # a record's time is when it ended: the request arrived one latency earlier
        start = r.time - (r.latency_s or 0.0)
        rows.extend((start, r.request_bytes // items) for _ in range(items))
    if not rows:
        raise ValueError("the deployment has no completed calls to simulate: call it first, or "
                         "pass a trace file or a pattern such as whatif.poisson(rate=10, duration_s=60)")
    rows.sort()
    t0 = rows[0][0]
    return Traffic(tuple(t - t0 for t, _ in rows), tuple(s for _, s in rows), "h.calls",
                   f"the deployment's last {len(rows)} calls", {"kind": "calls"})


def _sizes(size, n: int, rng: random.Random):
    if callable(size):
        return [int(size(rng)) for _ in range(n)]
    if isinstance(size, (list, tuple)):
        return [int(rng.choice(size)) for _ in range(n)]
    return [int(size)] * n


def poisson(rate: float, duration_s: float = 60.0, size=64 * 1024, seed: int = 0) -> Traffic:
    """Poisson arrivals at ``rate`` per second. ``size``: bytes, a list to draw from,
    or a function of a random.Random."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError("poisson() needs a positive rate and duration")
    rng = random.Random(seed)
    times, t = [], rng.expovariate(rate)
    while t < duration_s:
        times.append(t)
        t += rng.expovariate(rate)
    return Traffic(tuple(times), tuple(_sizes(size, len(times), rng)), f"poisson {rate:g}/s",
                   f"Poisson arrivals at {rate:g} req/s for {duration_s:g} s",
                   {"kind": "poisson", "rate": rate, "duration_s": duration_s, "seed": seed})


def _inhomogeneous(rate_at, peak: float, duration_s: float, rng: random.Random) -> list:
    """Arrivals of a Poisson process whose rate varies (thinning, Lewis & Shedler)."""
    times, t = [], 0.0
    while True:
        t += rng.expovariate(peak)
        if t >= duration_s:
            return times
        if rng.random() * peak <= rate_at(t):
            times.append(t)


def bursts(base_rate: float, burst_rate: float, *, every_s: float = 60.0, burst_s: float = 5.0,
           duration_s: float = 300.0, size=64 * 1024, seed: int = 0) -> Traffic:
    """``base_rate`` req/s with a burst of ``burst_rate`` for ``burst_s`` every ``every_s``."""
    rng = random.Random(seed)
    times = _inhomogeneous(lambda t: burst_rate if t % every_s < burst_s else base_rate,
                           max(base_rate, burst_rate), duration_s, rng)
    return Traffic(tuple(times), tuple(_sizes(size, len(times), rng)),
                   f"bursts {base_rate:g}->{burst_rate:g}/s",
                   f"{base_rate:g} req/s with {burst_s:g} s bursts of {burst_rate:g} req/s every {every_s:g} s",
                   {"kind": "bursts", "seed": seed})


def daily(mean_rate: float, *, peak_to_mean: float = 2.0, period_s: float = 86400.0,
          duration_s: float | None = None, size=64 * 1024, seed: int = 0) -> Traffic:
    """A daily cycle: the rate follows a sine around ``mean_rate``, peaking at
    ``peak_to_mean`` times it (compress ``period_s`` to simulate a day quickly)."""
    duration_s = period_s if duration_s is None else duration_s
    amplitude = min(1.0, peak_to_mean - 1.0)
    rng = random.Random(seed)
    times = _inhomogeneous(lambda t: mean_rate * (1 + amplitude * math.sin(2 * math.pi * t / period_s)),
                           mean_rate * (1 + amplitude), duration_s, rng)
    return Traffic(tuple(times), tuple(_sizes(size, len(times), rng)), f"daily {mean_rate:g}/s",
                   f"a daily cycle around {mean_rate:g} req/s (peak x{1 + amplitude:g}), "
                   f"period {period_s:g} s", {"kind": "daily", "seed": seed})


def of(traffic) -> Traffic:
    """Whatever ``whatif`` was given as traffic, as a Traffic."""
    if isinstance(traffic, Traffic):
        return traffic
    if isinstance(traffic, (str, os.PathLike)):
        return from_csv(os.fspath(traffic))
    if hasattr(traffic, "telemetry"):            # a Deployment: its own calls
        return from_calls(traffic.calls)
    if isinstance(traffic, (list, tuple)):
        items = list(traffic)
        if not items:
            raise ValueError("the traffic is empty")
        if hasattr(items[0], "request_bytes"):   # h.calls
            return from_calls(items)
        if isinstance(items[0], (tuple, list)) and len(items[0]) == 2:
            pairs = sorted((float(t), int(s)) for t, s in items)
            t0 = pairs[0][0]
            return Traffic(tuple(t - t0 for t, _ in pairs), tuple(s for _, s in pairs), "pairs",
                           f"{len(pairs)} (time, bytes) pairs", {"kind": "pairs"})
    raise TypeError(
        f"traffic must be h.calls, a trace file path, a list of (seconds, bytes) pairs or a "
        f"pattern (whatif.poisson(rate), whatif.bursts(...), whatif.daily(...)); got "
        f"{type(traffic).__qualname__}")
