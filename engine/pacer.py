"""IntakePacer: how fast the relay reads from clients while its CPU quota is nearly used up."""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.clock import Clock

MIB = 2**20


class IntakePacer:
    """Paces the bytes the relay reads from clients while its CPU quota is nearly used up.

    Why: on a fifth of a CPU, 25 clients sending at full speed take the whole quota just to be
    read into the spool (measured: health p99 500–600 ms in the dyno run, the loop's every turn
    full of body chunks). The relay cannot forward faster than Notion's budget anyway, so reading
    faster only fills the spool sooner. While the process used more than `high` of its CPU over
    the last window, intake is held to the rate that brings it to `target`; below `low` the pace
    rises toward the target again, and is lifted once far above what clients send. A pause is an
    awaitable returned to `data_received`, i.e. the client's socket is not read meanwhile
    (Tornado's flow control), so nothing piles up in memory.

    The pace never falls below `min_rate`: server.py sets it to what Notion's request budget can
    take (requests/s × part size), so pacing never becomes the relay's bottleneck.

    `take(n)` is the hot path (every body chunk): a few float operations, no I/O. `tick()` runs
    every `window_s` (server.py) and reads only this process's CPU time.
    """

    def __init__(self, clock: Clock, cpu_limit: Callable[[], float],
                 cpu_time: Callable[[], float] = time.process_time, window_s: float = 0.5,
                 target: float = 0.7, high: float = 0.85, low: float = 0.6,
                 min_rate: float = 1 * MIB, burst_bytes: int = 2 * MIB) -> None:
        self.clock = clock
        self.cpu_limit = cpu_limit  # cores the process may use (cgroup quota, TOTAL_CPU_CORES, host)
        self.cpu_time = cpu_time
        self.window_s = window_s
        self.target, self.high, self.low = target, high, low
        self.min_rate = min_rate
        self.burst_bytes = burst_bytes
        self.rate: float | None = None  # bytes/s; None = not paced
        self._tokens = float(burst_bytes)
        self._stamp = clock.monotonic()
        self._taken = 0  # bytes read in the current window
        self._cpu_at = cpu_time()
        self._window_at = clock.monotonic()
        self.cpu_share = 0.0  # of the usable CPU, over the last window
        self.paced_windows = 0

    def take(self, n: int) -> Awaitable[None] | None:
        """Count `n` bytes read from a client; an awaitable when that client must wait first."""
        self._taken += n
        rate = self.rate
        if rate is None:
            return None
        now = self.clock.monotonic()
        self._tokens = min(float(self.burst_bytes), self._tokens + (now - self._stamp) * rate)
        self._stamp = now
        self._tokens -= n
        if self._tokens >= 0:
            return None
        # The debt is shared: each client waits until the bytes taken before its own are paid.
        return self.clock.sleep(-self._tokens / rate)

    def tick(self) -> None:
        now = self.clock.monotonic()
        elapsed = now - self._window_at
        if elapsed <= 0:
            return
        cpu = self.cpu_time()
        # A single-threaded loop cannot use more than one core, whatever the host has.
        usable = max(0.01, min(1.0, self.cpu_limit()))
        share = (cpu - self._cpu_at) / elapsed / usable
        intake = self._taken / elapsed
        self._cpu_at, self._window_at, self._taken = cpu, now, 0
        self.cpu_share = share
        if share >= self.high and intake > 0:
            # Bring the CPU to `target`: intake is what costs it (the sends follow from it).
            wanted = max(self.min_rate, intake * self.target / share)
            if self.rate is None or wanted < self.rate:
                if self.rate is None:
                    self._tokens, self._stamp = float(self.burst_bytes), now
                self.rate = wanted
        elif self.rate is not None and share < self.low:
            # Room again: rise toward the target (at most half as fast again per window), and
            # lift the pace once it is far above what clients send.
            self.rate *= min(1.5, self.target / max(share, 0.01))
            if self.rate > 4 * max(intake, self.min_rate):
                self.rate = None
        if self.rate is not None:
            self.paced_windows += 1

    def snapshot(self) -> dict[str, Any]:
        return {"paced": self.rate is not None,
                "rate_mib_per_s": None if self.rate is None else round(self.rate / MIB, 1),
                "cpu_share": round(self.cpu_share, 2), "paced_windows": self.paced_windows}
