"""RequestBudget: a token bucket for Notion's per-integration rate (about 180 requests / 60 s).

Bursts up to the bucket's capacity are allowed; a 429 pauses the whole budget for Retry-After,
because Notion's limit is per integration, not per request.
"""
from __future__ import annotations

import math

from engine.clock import Clock


class RequestBudget:
    def __init__(self, clock: Clock, requests: int, window_s: float) -> None:
        self.clock = clock
        # Why a headroom of 5% (at least one request): our clock and Notion's see each request
        # at slightly different moments (a 20 MiB part arrives later than it left), so a bucket
        # exactly as full as Notion's would now and then earn a 429 that our pacing caused.
        # Refilling at the same rate, Notion's bucket then always stays that far ahead of ours.
        headroom = max(1, math.ceil(0.05 * requests)) if requests > 1 else 0
        self.capacity = float(requests - headroom)
        self.rate_per_s = requests / window_s
        self._tokens = self.capacity
        self._stamp = clock.monotonic()
        self._paused_until = 0.0
        self.rate_limited_count = 0

    def _refill(self) -> None:
        now = self.clock.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate_per_s)
        self._stamp = now

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    def wait_s(self) -> float:
        """Seconds until one request may go (0 when it may go now)."""
        self._refill()
        pause = max(0.0, self._paused_until - self.clock.monotonic())
        shortfall = 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate_per_s
        return max(pause, shortfall)

    def try_take(self) -> bool:
        if self.wait_s() > 0:
            return False
        self._tokens -= 1
        return True

    async def take(self) -> None:
        """Wait for a token, then take it."""
        while not self.try_take():
            await self.clock.sleep(self.wait_s())

    def pause(self, seconds: float) -> None:
        """Notion said 429: nobody sends for `seconds`, and the bucket starts empty after."""
        self.rate_limited_count += 1
        self._paused_until = max(self._paused_until, self.clock.monotonic() + seconds)
        self._refill()
        self._tokens = 0.0

    def snapshot(self) -> dict:
        return {
            "capacity": int(self.capacity),
            "per_second": round(self.rate_per_s, 3),
            "tokens": round(self.tokens, 2),
            "paused_for_s": round(max(0.0, self._paused_until - self.clock.monotonic()), 2),
            "rate_limited": self.rate_limited_count,
        }
