"""IntakePacer: how fast the relay reads from clients while its CPU quota is nearly used up."""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.clock import Clock

MIB = 2**20


class IntakePacer:
    """Paces the bytes the relay reads from clients (and sends on) while its CPU quota runs out.

    Why: on a fifth of a CPU, 25 clients sending at full speed take the whole quota just to be
    read into the spool; the cgroup then freezes the process for the rest of each 100 ms period,
    and health and new requests wait behind it (measured: health p99 190–240 ms in the dyno run,
    the quota used up in half the periods or more). Reading faster than the CPU allows only fills
    the spool sooner. Two signals, read every `window_s` (server.py runs `tick`):

    - the cgroup's throttled periods (`throttling`): more than `max_throttled` of them and the
      pace (or, unpaced, what was taken) is cut by the factor `backoff` less the throttled
      share, `backoff_floor` at least. One frozen period delays a request by at most its rest
      (80 ms on a 0.2 CPU quota); two or more in a window are what pushed health past 100 ms;
    - the process's CPU share of its limit: at `high` or above, intake is held to the rate that
      brings it to `target`.

    Without either, below `low`, the pace rises toward the target again (by `rise` per window at
    most), and is lifted once far above what clients send for `lift_after` windows in a row.
    A pause is an awaitable returned to `data_received`, i.e. the client's socket is not read
    meanwhile (Tornado's flow control), so nothing piles up in memory. Part sends are not
    capped: libcurl's own cap (CURLOPT_MAX_SEND_SPEED_LARGE) left concurrent sends on the multi
    handle waiting for its connect timeout (30 s) once their body was out (libcurl 8.23, seen
    in bench small's short form), and a cap that hangs sends costs more than the bursts it evens.

    The pace never falls below `min_rate`, so uploads always move. Cuts are gentle and rises
    quick (bench dyno, 2026-12-07): cutting to 0.3–0.6 of the pace and rising 15 % per window
    kept the relay at half its quota (15 MiB/s); cutting to 0.6–0.9 and rising 30 % moved
    21 MiB/s at the same health p99 (63–70 ms).

    `take(n)` is the hot path (every body chunk): a few float operations, no I/O.
    """

    def __init__(self, clock: Clock, cpu_limit: Callable[[], float],
                 cpu_time: Callable[[], float] = time.process_time, window_s: float = 0.5,
                 target: float = 0.7, high: float = 0.85, low: float = 0.6,
                 min_rate: float = 1 * MIB, burst_bytes: int = 2 * MIB,
                 throttling: Callable[[], tuple[int, int] | None] = lambda: None,
                 max_throttled: float = 0.2, backoff: float = 1.3, backoff_floor: float = 0.6,
                 rise: float = 1.3, lift_after: int = 6) -> None:
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
        self.throttling = throttling
        self.max_throttled, self.backoff, self.backoff_floor, self.rise = max_throttled, backoff, backoff_floor, rise
        self._periods_at = throttling()
        self.throttled_share: float | None = None  # of the quota's periods, over the last window
        # Lifted only after `lift_after` quiet windows in a row: a lull between a client's
        # requests is not room, and an unpaced burst after it would freeze the process again.
        self.lift_after = lift_after
        self._quiet = 0

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
        throttled = self.throttled_share = self._throttled_share()
        if share >= self.low or (throttled or 0.0) > self.max_throttled:
            self._quiet = 0
        if throttled is not None and throttled > self.max_throttled and intake > 0:
            # The quota ran out within some periods: cut, whatever the average says, the deeper
            # the more periods it ran out in. From the pace itself while paced: what was taken
            # may be low for other reasons (parts waiting for a send slot).
            cut = max(self.backoff_floor, self.backoff - throttled)
            self._slow_to(max(self.min_rate, (self.rate if self.rate is not None else intake) * cut), now)
        elif share >= self.high and intake > 0:
            # Bring the CPU to `target`: intake is what costs it (the sends follow from it).
            self._slow_to(max(self.min_rate, intake * self.target / share), now)
        elif self.rate is not None and share < self.low and (throttled or 0.0) <= self.max_throttled:
            # Room again: rise toward the target, slowly (a quota that runs out costs every
            # request up to 80 ms, a pace a little low costs a little throughput), and lift the
            # pace once it is far above what clients send.
            self.rate *= min(self.rise, self.target / max(share, 0.01))
            self._quiet += 1
            if self.rate > 4 * max(intake, self.min_rate) and self._quiet >= self.lift_after:
                self.rate = None
        if self.rate is not None:
            self.paced_windows += 1

    def _slow_to(self, wanted: float, now: float) -> None:
        if self.rate is None or wanted < self.rate:
            if self.rate is None:
                self._tokens, self._stamp = float(self.burst_bytes), now
            self.rate = wanted

    def _throttled_share(self) -> float | None:
        counters = self.throttling()
        before, self._periods_at = self._periods_at, counters
        if counters is None or before is None or counters[0] <= before[0]:
            return None
        return (counters[1] - before[1]) / (counters[0] - before[0])

    def snapshot(self) -> dict[str, Any]:
        return {"paced": self.rate is not None,
                "rate_mib_per_s": None if self.rate is None else round(self.rate / MIB, 1),
                "cpu_share": round(self.cpu_share, 2),
                "throttled_share": None if self.throttled_share is None else round(self.throttled_share, 3),
                "paced_windows": self.paced_windows}
