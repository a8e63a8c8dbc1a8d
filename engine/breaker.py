"""CircuitBreaker: a closed / open / half-open state machine on an injected clock.

It counts consecutive failures of the calls it guards; a Notion 4xx is not a failure of Notion
(the caller decides what to record). While open, new work is refused and running work waits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from engine.clock import Clock

CLOSED, OPEN, HALF_OPEN = "CLOSED", "OPEN", "HALF_OPEN"


@dataclass
class BreakerStats:
    total_calls: int = 0
    successes: int = 0
    failures: int = 0
    times_opened: int = 0

    @property
    def success_rate(self) -> float:
        done = self.successes + self.failures
        return round(100.0 * self.successes / done, 1) if done else 100.0


class CircuitBreaker:
    def __init__(self, name: str, clock: Clock, failure_threshold: int, open_duration_s: float,
                 half_open_max_calls: int = 1) -> None:
        self.name = name
        self.clock = clock
        self.failure_threshold = failure_threshold
        self.open_duration_s = open_duration_s
        self.half_open_max_calls = half_open_max_calls
        self.stats = BreakerStats()
        self._state = CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._probes_in_flight = 0
        self._listeners: list[Callable[[str, str, str], None]] = []

    def on_change(self, listener: Callable[[str, str, str], None]) -> None:
        """listener(name, old_state, new_state) is called on every transition."""
        self._listeners.append(listener)

    @property
    def state(self) -> str:
        if self._state == OPEN and self.clock.monotonic() - self._opened_at >= self.open_duration_s:
            self._move(HALF_OPEN)
        return self._state

    def retry_after_s(self) -> float:
        """Seconds until the breaker lets a probe through (0 when it already would)."""
        if self.state != OPEN:
            return 0.0
        return max(0.0, self.open_duration_s - (self.clock.monotonic() - self._opened_at))

    def allow(self) -> bool:
        """May a guarded call start now? A True in half-open reserves a probe slot."""
        state = self.state
        if state == CLOSED:
            return True
        if state == HALF_OPEN and self._probes_in_flight < self.half_open_max_calls:
            self._probes_in_flight += 1
            return True
        return False

    def would_allow(self) -> bool:
        """Like allow(), without reserving anything (for admission checks)."""
        state = self.state
        return state == CLOSED or (state == HALF_OPEN and self._probes_in_flight < self.half_open_max_calls)

    def record_success(self) -> None:
        self.stats.total_calls += 1
        self.stats.successes += 1
        self._consecutive_failures = 0
        if self._state == HALF_OPEN:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)
            self._move(CLOSED)

    def record_failure(self) -> None:
        self.stats.total_calls += 1
        self.stats.failures += 1
        self._consecutive_failures += 1
        if self._state == HALF_OPEN:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)
            self._open()
        elif self._state == CLOSED and self._consecutive_failures >= self.failure_threshold:
            self._open()

    def release(self) -> None:
        """A call that was allowed ended with neither verdict (e.g. cancelled)."""
        if self._state == HALF_OPEN:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)

    def _open(self) -> None:
        self._opened_at = self.clock.monotonic()
        self.stats.times_opened += 1
        self._move(OPEN)

    def _move(self, new: str) -> None:
        old, self._state = self._state, new
        if new != HALF_OPEN:
            self._probes_in_flight = 0
        if new == CLOSED:
            self._consecutive_failures = 0
        if old != new:
            for listener in self._listeners:
                listener(self.name, old, new)

    def snapshot(self) -> dict:
        return {
            "name": self.name,
            "state": self.state,
            "success_rate": self.stats.success_rate,
            "total_calls": self.stats.total_calls,
            "failures": self.stats.failures,
            "times_opened": self.stats.times_opened,
            "retry_after": round(self.retry_after_s(), 1),
        }
