"""RequestBudget: a token bucket for Notion's per-integration rate (about 180 requests / 60 s).

Bursts up to the bucket's capacity are allowed; a 429 pauses the whole budget for Retry-After,
because Notion's limit is per integration, not per request.
"""
from __future__ import annotations

import asyncio
import math
from typing import Any, Protocol

from engine.clock import Clock
from engine.redis import RedisSource, StoreUnavailable, connection_of, keys


class OverBudget(Exception):
    """Waiting for a token would pass the caller's deadline."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"the request budget has no token for {wait_s:.1f} s")
        self.wait_s = wait_s


def _check_deadline(clock: Clock, wait_s: float, deadline: float | None) -> None:
    if deadline is not None and clock.monotonic() + wait_s > deadline:
        raise OverBudget(wait_s)


class Budget(Protocol):
    async def take(self, deadline: float | None = None) -> None: ...

    def pause(self, seconds: float) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...


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

    async def take(self, deadline: float | None = None) -> None:
        """Wait for a token, then take it (OverBudget when that would pass `deadline`)."""
        while not self.try_take():
            wait = self.wait_s()
            _check_deadline(self.clock, wait, deadline)
            await self.clock.sleep(wait)

    def pause(self, seconds: float) -> None:
        """Notion said 429: nobody sends for `seconds`, and the bucket starts empty after."""
        self.rate_limited_count += 1
        self._paused_until = max(self._paused_until, self.clock.monotonic() + seconds)
        self._refill()
        self._tokens = 0.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "capacity": int(self.capacity),
            "per_second": round(self.rate_per_s, 3),
            "tokens": round(self.tokens, 2),
            "paused_for_s": round(max(0.0, self._paused_until - self.clock.monotonic()), 2),
            "rate_limited": self.rate_limited_count,
        }


# KEYS[1] the bucket hash; ARGV capacity, rate/s, and for a pause its seconds (else "").
# Redis's own clock is the one clock every instance shares. The hash lives an hour after its last use.
_SHARED_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cap, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'stamp', 'paused_until')
local tokens = tonumber(b[1]) or cap
local stamp = tonumber(b[2]) or now
local paused = tonumber(b[3]) or 0
tokens = math.min(cap, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if ARGV[3] ~= '' then
  paused = math.max(paused, now + tonumber(ARGV[3]))
  tokens = 0
elseif now < paused then
  wait = paused - now
elseif tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now), 'paused_until', tostring(paused))
redis.call('EXPIRE', KEYS[1], 3600)
return {tostring(wait), tostring(tokens), tostring(math.max(0, paused - now))}
"""


class SharedRequestBudget:
    """The same bucket, kept in Redis so every instance using one Notion token shares it.

    While Redis is away it falls back to a local bucket, so uploads keep moving; Notion's 429s
    are still honoured if the instances together go over.
    """

    def __init__(self, clock: Clock, requests: int, window_s: float, redis: RedisSource,
                 key: str = keys.BUDGET) -> None:
        self.local = RequestBudget(clock, requests, window_s)
        self.clock = clock
        self.capacity = self.local.capacity
        self.rate_per_s = self.local.rate_per_s
        self.connection = connection_of(redis)
        self.key = key
        self._script = self.connection.script(_SHARED_BUCKET)
        self.rate_limited_count = 0
        self._last_tokens = self.capacity
        self._last_pause = 0.0
        self.shared = True

    async def _call(self, pause_s: float | None) -> float:
        try:
            wait, tokens, paused = await self.connection.run(lambda: self._script(
                keys=[self.key], args=[self.capacity, self.rate_per_s, "" if pause_s is None else pause_s]))
        except StoreUnavailable:
            self.shared = False
            raise
        self.shared = True
        self._last_tokens, self._last_pause = float(tokens), float(paused)
        return float(wait)

    async def take(self, deadline: float | None = None) -> None:
        while True:
            try:
                wait = await self._call(None)
            except StoreUnavailable:
                await self.local.take(deadline)
                return
            if wait <= 0:
                return
            _check_deadline(self.clock, wait, deadline)
            await self.clock.sleep(wait)

    def pause(self, seconds: float) -> None:
        self.rate_limited_count += 1
        self.local.pause(seconds)

        async def share() -> None:
            try:
                await self._call(seconds)
            except Exception:
                pass

        asyncio.ensure_future(share())

    @property
    def tokens(self) -> float:
        return self._last_tokens if self.shared else self.local.tokens

    def snapshot(self) -> dict[str, Any]:
        return {
            "capacity": int(self.capacity),
            "per_second": round(self.rate_per_s, 3),
            "tokens": round(self.tokens, 2),
            "paused_for_s": round(self._last_pause if self.shared else self.local.snapshot()["paused_for_s"], 2),
            "rate_limited": self.rate_limited_count,
            "shared": self.shared,
        }
