"""The outbox in Redis: events added inside a caller's MULTI, claimed with a lease, finished or retried."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio.client import Pipeline

from engine.redis import RedisSource, connection_of, keys
from engine.webhooks.events import WebhookEvent

# The outbox's keys (engine/redis/keys.py), under the names engine.webhooks has always exported.
DUE_KEY = keys.WEBHOOK_DUE
PENDING_KEY = keys.WEBHOOK_PENDING
STATS_KEY = keys.WEBHOOK_STATS
event_key = keys.webhook_event
done_key = keys.webhook_done


# --- the outbox ------------------------------------------------------------------------------

# KEYS: event hash, due, pending, done marker. ARGV: id, body, type, created, ttl, upload id.
_ADD = """
if redis.call('EXISTS', KEYS[4]) == 1 or redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'body', ARGV[2], 'type', ARGV[3], 'created', ARGV[4], 'attempts', 0,
           'upload', ARGV[6])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[1])
return 1
"""

# KEYS: due, pending. ARGV: limit, lease seconds, event key prefix. On Redis's clock, so
# instances with skewed clocks agree on when a lease ends.
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, id in ipairs(ids) do
  local key = ARGV[3] .. id
  local ev = redis.call('HMGET', key, 'body', 'type', 'created', 'upload')
  if not ev[1] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
  else
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), id)
    local attempts = redis.call('HINCRBY', key, 'attempts', 1)
    table.insert(out, {id, ev[1], ev[2], ev[3], ev[4] or '', tostring(attempts)})
  end
end
return {tostring(now), out}
"""

# KEYS: event hash, due, pending, done, stats. ARGV: id, outcome (delivered|gone|expired),
# status, error. The event is finished: removed, marked done, counted.
_FINISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('SET', KEYS[4], ARGV[2], 'EX', tonumber(ARGV[5]))
if existed == 0 then return 0 end
if ARGV[2] == 'delivered' then
  redis.call('HINCRBY', KEYS[5], 'delivered', 1)
  redis.call('HSET', KEYS[5], 'consecutive_failures', 0, 'last_success', tostring(now))
else
  redis.call('HINCRBY', KEYS[5], 'failed', 1)
  if ARGV[2] == 'expired' then
    redis.call('HINCRBY', KEYS[5], 'consecutive_failures', 1)
    redis.call('HSET', KEYS[5], 'last_failure', tostring(now), 'last_error', ARGV[4])
  end
end
return 1
"""

# KEYS: event hash, due, stats. ARGV: id, delay seconds, status, error. Only while the event
# still exists (another instance may have delivered it meanwhile).
_RETRY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'last_status', ARGV[3], 'last_error', ARGV[4])
redis.call('ZADD', KEYS[2], 'XX', now + tonumber(ARGV[2]), ARGV[1])
redis.call('HINCRBY', KEYS[3], 'consecutive_failures', 1)
redis.call('HSET', KEYS[3], 'last_failure', tostring(now), 'last_error', ARGV[4])
return 1
"""

# KEYS: due. ARGV: ids. Claims given back (shutdown): due now.
_RELEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for _, id in ipairs(ARGV) do redis.call('ZADD', KEYS[1], 'XX', now, id) end
return #ARGV
"""


@dataclass(frozen=True)
class ClaimedEvent:
    id: str
    type: str
    body: str
    created_at: float
    upload_id: str | None
    attempt: int  # 1 for the first try


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Outbox:
    """The events waiting to be delivered, in Redis."""

    def __init__(self, redis: RedisSource, max_age_s: float = 86400.0) -> None:
        self.connection = connection_of(redis)
        self.max_age_s = max_age_s
        self.on_added: Callable[[], None] | None = None  # the local dispatcher's kick

    @property
    def event_ttl_s(self) -> int:
        return int(self.max_age_s) + 3600

    def add_to(self, pipe: Pipeline, event: WebhookEvent) -> None:
        """Queue `event` in the caller's pipeline (redis.asyncio Pipeline, transaction=True for a
        MULTI with the caller's own writes): it exists exactly when they do. Adding an event that
        is pending or already finished again is a no-op. Call `kick()` after the pipeline ran to
        have this instance deliver at once rather than at its next poll."""
        pipe.eval(_ADD, 4, event_key(event.id), DUE_KEY, PENDING_KEY, done_key(event.id),
                  event.id, event.body, event.type, repr(event.created_at), self.event_ttl_s,
                  event.upload_id or "")

    async def add(self, event: WebhookEvent) -> bool:
        """Add one event on its own (not tied to another write). True when it was new."""
        async def op() -> list[Any]:
            async with self.connection.client.pipeline(transaction=True) as pipe:
                self.add_to(pipe, event)
                return await pipe.execute()

        added = bool((await self.connection.run(op))[0])
        self.kick()
        return added

    def kick(self) -> None:
        if self.on_added is not None:
            self.on_added()

    async def claim(self, limit: int, lease_s: float) -> tuple[float, list[ClaimedEvent]]:
        """Up to `limit` due events, each leased for `lease_s`; and Redis's clock now."""
        raw_now, rows = await self.connection.run(lambda: self.connection.client.eval(
            _CLAIM, 2, DUE_KEY, PENDING_KEY, limit, lease_s, keys.WEBHOOK_EVENT_PREFIX))
        events = [ClaimedEvent(_text(r[0]), _text(r[2]), _text(r[1]), float(_text(r[3])),
                               _text(r[4]) or None, int(_text(r[5]))) for r in rows]
        return float(_text(raw_now)), events

    async def finish(self, event_id: str, outcome: str, status: int = 0, error: str = "") -> None:
        """`outcome`: delivered (2xx), gone (the receiver answered 410), expired (gave up)."""
        await self.connection.run(lambda: self.connection.client.eval(
            _FINISH, 5, event_key(event_id), DUE_KEY, PENDING_KEY, done_key(event_id), STATS_KEY,
            event_id, outcome, status, error, keys.WEBHOOK_DONE_TTL_S))

    async def retry_later(self, event_id: str, delay_s: float, status: int, error: str) -> None:
        await self.connection.run(lambda: self.connection.client.eval(
            _RETRY, 3, event_key(event_id), DUE_KEY, STATS_KEY, event_id, delay_s, status, error))

    async def release(self, event_ids: list[str]) -> None:
        if event_ids:
            await self.connection.run(lambda: self.connection.client.eval(_RELEASE, 1, DUE_KEY, *event_ids))

    async def snapshot(self) -> dict[str, Any]:
        """Pending count, oldest pending event's time, and the shared delivery stats."""
        async def op() -> list[Any]:
            async with self.connection.client.pipeline(transaction=False) as pipe:
                pipe.zcard(PENDING_KEY)
                pipe.zrange(PENDING_KEY, 0, 0, withscores=True)
                pipe.hgetall(STATS_KEY)
                pipe.time()
                return await pipe.execute()

        pending, oldest, stats, (secs, micros) = await self.connection.run(op)
        stats = {_text(k): _text(v) for k, v in (stats or {}).items()}
        now = secs + micros / 1e6
        return {
            "pending": int(pending),
            "oldest_pending_age_s": round(max(0.0, now - oldest[0][1]), 3) if oldest else 0.0,
            "delivered": int(stats.get("delivered", 0)),
            "failed": int(stats.get("failed", 0)),
            "consecutive_failures": int(stats.get("consecutive_failures", 0)),
            "last_success_age_s": round(now - float(stats["last_success"]), 1) if "last_success" in stats else None,
            "last_failure_age_s": round(now - float(stats["last_failure"]), 1) if "last_failure" in stats else None,
            "last_error": stats.get("last_error") or None,
        }
