"""CircuitBreaker: a closed / open / half-open state machine on an injected clock.

A Notion 4xx is not a failure of Notion (the caller decides what to record). While open, new
work is refused and running work waits.

When it opens. The seeds opened after `failure_threshold` consecutive failures. Under load
that is weak evidence: at 3 requests a second, 10 % scattered 5xx make a run of 3 about once a
minute, and each one idled every upload for `open_duration_s`. So, with a window (`window_s`
> 0), the breaker looks at the outcomes of the last `window_s` seconds and opens only when at
least `failure_rate` of them failed, and either

- the window holds at least `minimum_calls` outcomes (enough to judge a rate) and at least
  `failure_threshold` failures, or
- the current run of consecutive failures has reached `failure_threshold` (the seeds' rule,
  kept as the floor: on a quiet relay a handful of failures in a row is all the evidence an
  outage gives, and a run that is also most of the window's calls is an outage).

So `failure_threshold` stays a floor either way: never fewer failures than that open it (a
relay configured with CB_NOTION_FAILURE_THRESHOLD=1000 to keep it closed still does).

A real outage fails every call, so its run and its share of the window only grow: it opens the
breaker once its failures are the window's majority (under the budget's 3 requests a second,
about window_s / 2 after it starts; on a quiet relay after `failure_threshold` failures, as
before). Scattered failures at 10 % never are: a window of 20 calls with half of them failing
has a probability of about 1e-5 at 10 %, and a run of `failure_threshold` alone is not enough
(it must also be half of the window). `window_s = 0` keeps the seeds' rule (consecutive
failures only).
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.clock import Clock

CLOSED, OPEN, HALF_OPEN = "CLOSED", "OPEN", "HALF_OPEN"
# The window never holds more outcomes than this (a burst of calls beyond the budget's pace
# only makes the rate more certain; memory stays bounded whatever the traffic).
MAX_WINDOW_CALLS = 1000


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
                 half_open_max_calls: int = 1, window_s: float = 0.0, failure_rate: float = 0.5,
                 minimum_calls: int = 20) -> None:
        self.name = name
        self.clock = clock
        self.failure_threshold = failure_threshold
        self.open_duration_s = open_duration_s
        self.half_open_max_calls = half_open_max_calls
        self.window_s = window_s  # 0: consecutive failures only (the seeds' rule)
        self.failure_rate = failure_rate  # a fraction, 0 < rate ≤ 1
        self.minimum_calls = minimum_calls
        self.stats = BreakerStats()
        self._state = CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._probes_in_flight = 0
        self._window: deque[tuple[float, bool]] = deque(maxlen=MAX_WINDOW_CALLS)  # (time, failed)
        self._window_failures = 0
        self.opened_by: str | None = None  # why it last opened: "failure_rate", "consecutive", "probe"
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
        elif self._state == CLOSED:
            self._observe(False)

    def record_failure(self) -> None:
        self.stats.total_calls += 1
        self.stats.failures += 1
        self._consecutive_failures += 1
        if self._state == HALF_OPEN:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)
            self._open("probe")
        elif self._state == CLOSED:
            self._observe(True)
            reason = self._verdict()
            if reason is not None:
                self._open(reason)

    def release(self) -> None:
        """A call that was allowed ended with neither verdict (e.g. cancelled)."""
        if self._state == HALF_OPEN:
            self._probes_in_flight = max(0, self._probes_in_flight - 1)

    # --- the window ----------------------------------------------------------------------------

    def _observe(self, failed: bool) -> None:
        if self.window_s <= 0:
            return
        if len(self._window) == self._window.maxlen and self._window[0][1]:
            self._window_failures -= 1  # the oldest outcome is about to fall out
        self._window.append((self.clock.monotonic(), failed))
        self._window_failures += failed
        self._prune()

    def _prune(self) -> None:
        horizon = self.clock.monotonic() - self.window_s
        while self._window and self._window[0][0] <= horizon:
            _, failed = self._window.popleft()
            self._window_failures -= failed

    def _verdict(self) -> str | None:
        """Why the breaker should open now (None: it should not)."""
        run = self._consecutive_failures
        if self.window_s <= 0:
            return "consecutive" if run >= self.failure_threshold else None
        calls = len(self._window)
        if not calls or self._window_failures < self.failure_rate * calls:
            return None
        if calls >= self.minimum_calls and self._window_failures >= self.failure_threshold:
            return "failure_rate"
        if run >= self.failure_threshold:
            return "consecutive"
        return None

    def window_counts(self) -> tuple[int, int]:
        """(calls, failures) in the window now (both 0 without a window)."""
        if self.window_s > 0:
            self._prune()
        return len(self._window), self._window_failures

    def _clear_window(self) -> None:
        self._window.clear()
        self._window_failures = 0

    # --- transitions ---------------------------------------------------------------------------

    def _open(self, reason: str) -> None:
        self._opened_at = self.clock.monotonic()
        self.stats.times_opened += 1
        self.opened_by = reason
        self._move(OPEN)

    def _move(self, new: str) -> None:
        old, self._state = self._state, new
        if new != HALF_OPEN:
            self._probes_in_flight = 0
        if new != CLOSED:
            # What happened before an opening says nothing about Notion once it is back.
            self._clear_window()
        if new == CLOSED:
            self._consecutive_failures = 0
        if old != new:
            for listener in self._listeners:
                listener(self.name, old, new)

    def snapshot(self) -> dict[str, Any]:
        calls, failures = self.window_counts()
        snap = {
            "name": self.name,
            "state": self.state,
            "success_rate": self.stats.success_rate,
            "total_calls": self.stats.total_calls,
            "failures": self.stats.failures,
            "times_opened": self.stats.times_opened,
            "retry_after": round(self.retry_after_s(), 1),
            "consecutive_failures": self._consecutive_failures,
            "failure_threshold": self.failure_threshold,
            "opened_by": self.opened_by,
        }
        if self.window_s > 0:
            snap["window"] = {
                "seconds": self.window_s,
                "calls": calls,
                "failures": failures,
                "failure_rate_percent": round(100.0 * failures / calls, 1) if calls else 0.0,
                "opens_at_percent": round(100.0 * self.failure_rate, 1),
                "minimum_calls": self.minimum_calls,
            }
        return snap
