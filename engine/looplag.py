"""LoopLagMonitor: how late the event loop runs a timer — the one number that says "blocked".

A timer asks to run every `interval_s`; the difference between when it asked to run and when it
did is the lag: time the loop spent on something else (a slow callback, a synchronous call, the
GC) while everything else on it waited too. It keeps the samples of the last `window_s` for the
max and p99 that health and /metrics show. Costs one loop callback per interval.
"""
from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

DEFAULT_INTERVAL_S = 0.25
DEFAULT_WINDOW_S = 60.0
# Above this p99 health calls the loop "lagging": a request then waits this long before any
# of its code runs. (It does not make the relay unhealthy: the loop still turns.)
LAGGING_P99_S = 0.25


@dataclass(frozen=True)
class LagStats:
    last_s: float
    max_s: float
    p99_s: float
    samples: int


class LoopLagMonitor:
    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S, window_s: float = DEFAULT_WINDOW_S) -> None:
        self.interval_s = interval_s
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()  # (loop time, lag seconds)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self.last_s = 0.0
        self.max_ever_s = 0.0

    def start(self) -> None:
        if self._handle is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    @property
    def running(self) -> bool:
        return self._handle is not None

    def _schedule(self) -> None:
        assert self._loop is not None
        self._due = self._loop.time() + self.interval_s
        self._handle = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        self.record(now, max(0.0, now - self._due))
        self._schedule()

    def record(self, now: float, lag_s: float) -> None:
        """One observation (the timer, or a test) at loop time `now`."""
        self.last_s = lag_s
        self.max_ever_s = max(self.max_ever_s, lag_s)
        self._samples.append((now, lag_s))
        horizon = now - self.window_s
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()

    def stats(self) -> LagStats:
        """last, max and p99 over the window (p99 by nearest rank; a few hundred samples)."""
        lags = sorted(lag for _, lag in self._samples)
        if not lags:
            return LagStats(self.last_s, 0.0, 0.0, 0)
        rank = max(0, math.ceil(0.99 * len(lags)) - 1)
        return LagStats(self.last_s, lags[-1], lags[rank], len(lags))

    def snapshot(self) -> dict[str, Any]:
        """The health document's `components.event_loop`."""
        s = self.stats()
        return {
            "status": "healthy" if s.p99_s < LAGGING_P99_S else "lagging",
            "lag_ms": round(s.last_s * 1000, 1),
            "max_lag_ms": round(s.max_s * 1000, 1),
            "p99_lag_ms": round(s.p99_s * 1000, 1),
            "window_s": self.window_s,
            "interval_ms": round(self.interval_s * 1000, 1),
            "samples": s.samples,
            "monitoring": self.running,
        }
