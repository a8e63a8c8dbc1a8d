"""RedisConnection: the relay's one Redis client (redis.asyncio) and what its trouble becomes.

Every Redis user — checkpoints, locks, quotas, grant counts, the request budget, the webhook
outbox — holds this object and runs each operation through `run()`: any RedisError or OSError
becomes StoreUnavailable, and `healthy` / `last_error` say how the last operation went (health and
admission read them). The key names are in engine/redis/keys.py.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.driver_info import DriverInfo
from redis.exceptions import RedisError

from engine.errors import ServiceUnavailable

T = TypeVar("T")

SOCKET_TIMEOUT_S = 2.0
# What a client is told while Redis is away: try again in a few seconds.
AWAY_MESSAGE = "the checkpoint store is unavailable; try again shortly"
AWAY_RETRY_AFTER_S = 5

# Why one DriverInfo for every connection: without it redis-py resolves its own version
# (importlib.metadata, a scan of sys.path) for each new connection, about 0.6 ms of CPU each;
# 25 uploads created at once open 25 connections, 15 ms of a 0.2-CPU dyno's 20 ms quota.
DRIVER_INFO = DriverInfo()


class StoreUnavailable(Exception):
    """Redis could not be reached or answered an error."""


def store_away() -> ServiceUnavailable:
    """The client-visible error for StoreUnavailable (503 with Retry-After)."""
    return ServiceUnavailable(AWAY_MESSAGE, retry_after_s=AWAY_RETRY_AFTER_S)


def text(value: bytes | str | None) -> str | None:
    """A value as Redis answered it (bytes: the client does not decode) as text."""
    return value.decode() if isinstance(value, bytes) else value


class RedisConnection:
    """One redis.asyncio client (a pool of connections) shared by every Redis user."""

    def __init__(self, url: str, socket_timeout_s: float = SOCKET_TIMEOUT_S) -> None:
        self.url = url
        # Why short socket timeouts and a single quick retry: a frozen Redis (paused, failing
        # over, a dropped packet) must fail fast, never hang a request or the event loop's
        # periodic work; the callers decide what to do without Redis (DESIGN.md quirks).
        # The health check re-validates a connection idle for 15 s before using it.
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1),
            health_check_interval=15,
            driver_info=DRIVER_INFO,
        )
        self.healthy = True
        self.last_error: str | None = None  # the exception's class name, while unhealthy

    async def run(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis operation; any Redis trouble becomes StoreUnavailable."""
        try:
            result = await op()
        except (RedisError, OSError) as exc:
            self.healthy = False
            self.last_error = type(exc).__name__
            raise StoreUnavailable(f"checkpoint store unavailable ({type(exc).__name__})") from None
        self.healthy = True
        self.last_error = None
        return result

    def script(self, source: str) -> AsyncScript:
        """A Lua script, sent by its SHA (EVALSHA) once Redis knows it."""
        return self.client.register_script(source)

    async def ping(self) -> bool:
        try:
            await self.run(self.client.ping)
            return True
        except StoreUnavailable:
            return False

    async def close(self) -> None:
        await self.client.aclose()


class HoldsConnection(Protocol):
    """Something built on the connection (the CheckpointStore): users may be handed either."""

    @property
    def connection(self) -> RedisConnection: ...


RedisSource = RedisConnection | HoldsConnection


def connection_of(source: RedisSource) -> RedisConnection:
    """The connection itself, or the one `source` holds."""
    return source if isinstance(source, RedisConnection) else source.connection

