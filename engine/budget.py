"""RequestBudget: a token bucket for Notion's per-integration rate (about 180 requests / 60 s).

Bursts up to the bucket's capacity are allowed; a 429 pauses the whole budget for Retry-After,
because Notion's limit is per integration, not per request.

Why requests in flight lower the bucket's ceiling: we take a token when a request leaves, but
Notion counts it at some moment before it answers (for a 20 MiB part, maybe only once the
body has arrived). While Notion's bucket is full it earns nothing, so every request it has not
yet counted may cost it the refill we already credited ourselves. Holding our bucket at most
`capacity - in flight` makes that exact: whatever moments Notion picks, it has a token for
each request when it counts it (tests/test_budget.py plays such choices against its bucket).
A request that ended without Notion's answer (timeout, broken connection) stays in flight a
while longer, because whatever was between us and Notion may still deliver it.
"""
from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Awaitable
from typing import Any, Protocol

from engine.clock import Clock
from engine.redis import RedisSource, StoreUnavailable, connection_of, keys


class OverBudget(Exception):
    """Waiting for a token would pass the caller's deadline."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"the request budget has no token for {wait_s:.1f} s")
        self.wait_s = wait_s


# How long a request that ended without Notion's answer still counts as in flight: a proxy
# holding its bytes could still hand it on after we gave up.
UNANSWERED_GRACE_S = 5.0


def capacity_for(requests: int) -> float:
    """Our bucket's size for Notion's `requests` per window. Why one below Notion's: Notion may
    refill in steps (a token every 1/rate s) where we refill smoothly, so we can be ahead by up
    to one token."""
    return float(requests - 1 if requests > 1 else requests)


# Refilled float tokens may end a hair below 1 where exact ones would be 1.
_ROUNDING = 1e-9


def _check_deadline(clock: Clock, wait_s: float, deadline: float | None) -> None:
    if deadline is not None and clock.monotonic() + wait_s > deadline:
        raise OverBudget(wait_s)


class Ticket:
    """One taken token: the request it paid for counts as in flight until it is settled."""

    __slots__ = ("id", "shared")

    def __init__(self, ticket_id: str, shared: bool = False) -> None:
        self.id = ticket_id
        self.shared = shared


class Budget(Protocol):
    async def take(self, deadline: float | None = None) -> Ticket: ...

    def settle(self, ticket: Ticket, answered: bool) -> None: ...

    def pause(self, seconds: float) -> None: ...

    def snapshot(self) -> dict[str, Any]: ...


class RequestBudget:
    def __init__(self, clock: Clock, requests: int, window_s: float) -> None:
        self.clock = clock
        self.capacity = capacity_for(requests)
        self.rate_per_s = requests / window_s
        self._tokens = self.capacity
        self._stamp = clock.monotonic()
        self._paused_until = 0.0
        # ticket id → when it stops counting (inf until settled)
        self._in_flight: dict[str, float] = {}
        self._issued = 0
        self.rate_limited_count = 0

    def _refill(self) -> None:
        now = self.clock.monotonic()
        ceiling = self.capacity - len(self._in_flight)
        self._tokens = min(ceiling, self._tokens + (now - self._stamp) * self.rate_per_s)
        self._stamp = now
        for ticket_id, until in list(self._in_flight.items()):
            if until <= now:
                del self._in_flight[ticket_id]

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    @property
    def in_flight(self) -> int:
        self._refill()
        return len(self._in_flight)

    def wait_s(self) -> float:
        """Seconds until one request may go (0 when it may go now)."""
        self._refill()
        pause = max(0.0, self._paused_until - self.clock.monotonic())
        if self._tokens >= 1 - _ROUNDING:
            return pause
        # With the whole bucket in flight only settling frees room; look again in a token's time.
        room = self.capacity - len(self._in_flight)
        shortfall = (1 - self._tokens) / self.rate_per_s if room >= 1 else 1 / self.rate_per_s
        return max(pause, shortfall)

    def try_take(self) -> Ticket | None:
        if self.wait_s() > 0:
            return None
        self._tokens = max(0.0, self._tokens - 1)
        self._issued += 1
        ticket = Ticket(str(self._issued))
        self._in_flight[ticket.id] = math.inf
        return ticket

    async def take(self, deadline: float | None = None) -> Ticket:
        """Wait for a token, then take it (OverBudget when that would pass `deadline`)."""
        while (ticket := self.try_take()) is None:
            wait = self.wait_s()
            _check_deadline(self.clock, wait, deadline)
            await self.clock.sleep(wait)
        return ticket

    def settle(self, ticket: Ticket, answered: bool) -> None:
        """The ticket's request ended: answered by Notion, or not (it stays in flight a grace)."""
        self._refill()
        if ticket.id not in self._in_flight:
            return
        if answered:
            del self._in_flight[ticket.id]
        else:
            self._in_flight[ticket.id] = self.clock.monotonic() + UNANSWERED_GRACE_S

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
            "in_flight": len(self._in_flight),
            "paused_for_s": round(max(0.0, self._paused_until - self.clock.monotonic()), 2),
            "rate_limited": self.rate_limited_count,
        }


# KEYS[1] the bucket hash, KEYS[2] the zset of requests in flight (ticket → when it stops
# counting). ARGV: capacity, rate/s, op ("take", "answered", "unanswered", "pause"), ticket,
# seconds (a take's lease, an unanswered request's grace, a pause). Redis's own clock is the one
# clock every instance shares. Both keys live an hour after their last use.
_SHARED_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cap, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local op, ticket, seconds = ARGV[3], ARGV[4], tonumber(ARGV[5]) or 0
local b = redis.call('HMGET', KEYS[1], 'tokens', 'stamp', 'paused_until')
local flying = redis.call('ZCARD', KEYS[2])
local tokens = tonumber(b[1]) or (cap - flying)
local stamp = tonumber(b[2]) or now
local paused = tonumber(b[3]) or 0
tokens = math.min(cap - flying, tokens + math.max(0, now - stamp) * rate)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
flying = redis.call('ZCARD', KEYS[2])
local wait = 0
if op == 'take' then
  if now < paused then
    wait = paused - now
  elseif tokens >= 1 - 1e-9 then
    tokens = tokens - 1
    redis.call('ZADD', KEYS[2], now + seconds, ticket)
    flying = flying + 1
  elseif cap - flying >= 1 then
    wait = (1 - tokens) / rate
  else
    wait = 1 / rate
  end
elseif op == 'answered' then
  flying = flying - redis.call('ZREM', KEYS[2], ticket)
elseif op == 'unanswered' then
  redis.call('ZADD', KEYS[2], 'XX', now + seconds, ticket)
elseif op == 'pause' then
  paused = math.max(paused, now + seconds)
  tokens = 0
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now), 'paused_until', tostring(paused))
redis.call('EXPIRE', KEYS[1], 3600)
redis.call('EXPIRE', KEYS[2], 3600)
return {tostring(wait), tostring(tokens), tostring(math.max(0, paused - now)), tostring(flying)}
"""


class SharedRequestBudget:
    """The same bucket, kept in Redis so every instance using one Notion token shares it.

    While Redis is away it falls back to a local bucket, so uploads keep moving; Notion's 429s
    are still honoured if the instances together go over. A ticket taken in Redis counts there
    for at most `lease_s` (a request's longest life), so an instance that dies with requests in
    flight does not shrink the bucket for longer.
    """

    def __init__(self, clock: Clock, requests: int, window_s: float, redis: RedisSource,
                 lease_s: float, key: str = keys.BUDGET, in_flight_key: str = keys.BUDGET_IN_FLIGHT) -> None:
        self.local = RequestBudget(clock, requests, window_s)
        self.clock = clock
        self.capacity = self.local.capacity
        self.rate_per_s = self.local.rate_per_s
        self.lease_s = lease_s
        self.connection = connection_of(redis)
        self.keys = [key, in_flight_key]
        self._script = self.connection.script(_SHARED_BUCKET)
        self._prefix = os.urandom(6).hex()
        self._issued = 0
        self.rate_limited_count = 0
        self._last_tokens = self.capacity
        self._last_pause = 0.0
        self._last_in_flight = 0
        self.shared = True

    async def _call(self, op: str, ticket: str = "", seconds: float = 0.0) -> float:
        try:
            wait, tokens, paused, flying = await self.connection.run(lambda: self._script(
                keys=self.keys, args=[self.capacity, self.rate_per_s, op, ticket, seconds]))
        except StoreUnavailable:
            self.shared = False
            raise
        self.shared = True
        self._last_tokens, self._last_pause = float(tokens), float(paused)
        self._last_in_flight = int(flying)
        return float(wait)

    async def take(self, deadline: float | None = None) -> Ticket:
        while True:
            self._issued += 1
            ticket = Ticket(f"{self._prefix}:{self._issued}", shared=True)
            try:
                wait = await self._call("take", ticket.id, self.lease_s)
            except StoreUnavailable:
                return await self.local.take(deadline)
            if wait <= 0:
                return ticket
            _check_deadline(self.clock, wait, deadline)
            await self.clock.sleep(wait)

    def settle(self, ticket: Ticket, answered: bool) -> None:
        if not ticket.shared:
            self.local.settle(ticket, answered)
            return
        # A settle that cannot reach Redis leaves the ticket to expire with its lease.
        self._later(self._call("answered", ticket.id) if answered
                    else self._call("unanswered", ticket.id, UNANSWERED_GRACE_S))

    def pause(self, seconds: float) -> None:
        self.rate_limited_count += 1
        self.local.pause(seconds)
        self._later(self._call("pause", seconds=seconds))

    @staticmethod
    def _later(call: Awaitable[float]) -> None:
        async def run() -> None:
            try:
                await call
            except Exception:
                pass

        asyncio.ensure_future(run())

    @property
    def tokens(self) -> float:
        return self._last_tokens if self.shared else self.local.tokens

    def snapshot(self) -> dict[str, Any]:
        local = self.local.snapshot()
        return {
            "capacity": int(self.capacity),
            "per_second": round(self.rate_per_s, 3),
            "tokens": round(self.tokens, 2),
            "in_flight": self._last_in_flight if self.shared else local["in_flight"],
            "paused_for_s": round(self._last_pause if self.shared else local["paused_for_s"], 2),
            "rate_limited": self.rate_limited_count,
            "shared": self.shared,
        }
