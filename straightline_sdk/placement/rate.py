"""The request rate f_t, estimated over a sliding window.

Definition: with n arrivals held in the last ``window`` seconds, the oldest
``span`` seconds ago,

    f_t = n / window              when the arrivals cover the whole window
    f_t = (n - 1) / span          while they cover less (a burst reads as the
                                  burst it is; span is at least ``min_span``)
    f_t = prior                   with a single arrival or none: the
                                  deployment's declared ``rate``

Cost: one deque append and, amortized, one popleft per call: O(1), well under a
microsecond. The window holds at most ``max_events`` timestamps; beyond that the
oldest are dropped and the rate is computed over the span still held.
"""

from __future__ import annotations

import threading
from collections import deque
from time import monotonic


class RateEstimator:
    __slots__ = ("window", "min_span", "prior", "_times", "_lock")

    def __init__(self, window: float = 5.0, prior: float = 0.0, max_events: int = 100_000,
                 min_span: float = 0.001):
        self.window = window
        self.min_span = min_span
        self.prior = prior
        self._times: deque = deque(maxlen=max_events)
        self._lock = threading.Lock()

    def observe(self, now: float | None = None, count: int = 1) -> float:
        """Record ``count`` arrivals at ``now`` and return the rate including them."""
        if now is None:
            now = monotonic()
        with self._lock:
            if count == 1:
                self._times.append(now)
            else:
                self._times.extend([now] * min(count, self._times.maxlen))
            return self._rate(now)

    def rate(self, now: float | None = None) -> float:
        with self._lock:
            return self._rate(monotonic() if now is None else now)

    def _rate(self, now: float) -> float:
        times = self._times
        horizon = now - self.window
        while times and times[0] < horizon:
            times.popleft()
        n = len(times)
        if n < 2:
            return self.prior
        span = now - times[0]
        if n == times.maxlen or span < self.window * 0.999:
            return (n - 1) / max(span, self.min_span)
        return n / self.window
