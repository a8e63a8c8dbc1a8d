"""CheckpointStore: upload records and durable parts in Redis (redis.asyncio).

Keys (all expire CHECKPOINT_EXPIRATION_HOURS after the last write):
  relay:upload:{id}        JSON upload record
  relay:upload:{id}:parts  set of part numbers Notion accepted (the per-part checkpoints)
  relay:gone:{id}          a marker left for an hour by an upload that expired (for the 410)
  relay:epoch              a random token set once: when it is gone or changed, Redis lost its data
                           (restarted without persistence, failed over to an empty replica)
  relay:notion-claim:{fid} which upload owns a Notion file upload (so a create whose answer was
                           lost is adopted by exactly one upload); lives as long as Notion's window
Short socket timeouts: a frozen Redis must fail fast, never hang a request (DESIGN.md quirks).
"""
from __future__ import annotations

import json
import secrets
from typing import Any, Sequence

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.driver_info import DriverInfo
from redis.exceptions import RedisError

from engine.clock import Clock


class StoreUnavailable(Exception):
    """Redis could not be reached or answered an error."""


def _record_key(upload_id: str) -> str:
    return f"relay:upload:{upload_id}"


def _gone_key(upload_id: str) -> str:
    return f"relay:gone:{upload_id}"


def _parts_key(upload_id: str) -> str:
    return f"relay:upload:{upload_id}:parts"


EPOCH_KEY = "relay:epoch"


def _claim_key(file_upload_id: str) -> str:
    return f"relay:notion-claim:{file_upload_id.replace('-', '')}"


# Why one DriverInfo for every connection: without it redis-py resolves its own version
# (importlib.metadata, a scan of sys.path) for each new connection, about 0.6 ms of CPU each;
# 25 uploads created at once open 25 connections, 15 ms of a 0.2-CPU dyno's 20 ms quota.
DRIVER_INFO = DriverInfo()


class CheckpointStore:
    def __init__(self, url: str, clock: Clock, ttl_s: float, socket_timeout_s: float = 2.0) -> None:
        self.url = url
        self.clock = clock
        self.ttl_s = max(1, int(ttl_s))
        self.redis = aioredis.Redis.from_url(
            url,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1),
            health_check_interval=15,
            driver_info=DRIVER_INFO,
        )
        self.healthy = True
        self.last_error: str | None = None
        self.epoch: str | None = None  # the store's epoch as we last saw it
        self.restoring = False  # writing back what this instance holds after Redis lost it
        self.outbox: Any = None  # webhooks' Outbox (engine/webhooks), set by server.py when WEBHOOK_URL is set
        self.amnesia_count = 0

    async def close(self) -> None:
        await self.redis.aclose()

    async def run(self, coro_factory):
        """Run one Redis operation; any Redis trouble becomes StoreUnavailable."""
        try:
            result = await coro_factory()
        except (RedisError, OSError) as exc:
            self.healthy = False
            self.last_error = type(exc).__name__
            raise StoreUnavailable(f"checkpoint store unavailable ({type(exc).__name__})") from None
        self.healthy = True
        self.last_error = None
        return result

    async def ping(self) -> bool:
        try:
            await self.run(self.redis.ping)
            return True
        except StoreUnavailable:
            return False

    async def save_record(self, record: dict[str, Any], events: Sequence[Any] = ()) -> None:
        """Write the record; `events` (webhooks announcing its new state) go in the same MULTI, so
        they exist exactly when the state does."""
        key = _record_key(record["id"])
        data = json.dumps(record, separators=(",", ":"))

        async def op():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(key, data, ex=self.ttl_s)
                pipe.expire(_parts_key(record["id"]), self.ttl_s)
                self._announce(pipe, events)
                return await pipe.execute()

        await self.run(op)
        self._kick(events)

    def _announce(self, pipe: Any, events: Sequence[Any]) -> None:
        if self.outbox is not None:
            for event in events:
                self.outbox.add_to(pipe, event)

    def _kick(self, events: Sequence[Any]) -> None:
        if events and self.outbox is not None:
            self.outbox.kick()

    async def load(self, upload_id: str) -> tuple[dict[str, Any], set[int]] | None:
        """The record and its durable parts, or None when unknown (or expired)."""

        async def op():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(_record_key(upload_id))
                pipe.smembers(_parts_key(upload_id))
                return await pipe.execute()

        raw, parts = await self.run(op)
        if raw is None:
            return None
        return json.loads(raw), {int(p) for p in parts}

    async def mark_part_done(self, upload_id: str, part_number: int) -> None:
        async def op():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.sadd(_parts_key(upload_id), part_number)
                pipe.expire(_parts_key(upload_id), self.ttl_s)
                pipe.expire(_record_key(upload_id), self.ttl_s)
                return await pipe.execute()

        await self.run(op)

    async def tombstone(self, upload_id: str, owner: str | None, ttl_s: int, state: str = "expired",
                        events: Sequence[Any] = ()) -> None:
        """The upload's record and checkpoints go; a small marker stays for `ttl_s` so clients
        are told 410 (gone) rather than 404 (never was)."""
        marker = json.dumps({"state": state, "owner": owner}, separators=(",", ":"))

        async def op():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(_gone_key(upload_id), marker, ex=ttl_s)
                pipe.delete(_record_key(upload_id), _parts_key(upload_id))
                self._announce(pipe, events)
                return await pipe.execute()

        await self.run(op)
        self._kick(events)

    async def claim_notion_upload(self, file_upload_id: str, upload_id: str, ttl_s: int) -> bool:
        """True when `upload_id` now owns the Notion file upload (or already did)."""
        key = _claim_key(file_upload_id)

        async def op():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(key, upload_id, nx=True, ex=ttl_s)
                pipe.get(key)
                return await pipe.execute()

        _, owner = await self.run(op)
        return (owner.decode() if isinstance(owner, bytes) else owner) == upload_id

    async def forgot_us(self) -> bool:
        """True when Redis lost its data since we last looked (its epoch is new)."""

        async def op():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(EPOCH_KEY, secrets.token_hex(8), nx=True)
                pipe.get(EPOCH_KEY)
                return await pipe.execute()

        _, raw = await self.run(op)
        epoch = raw.decode() if isinstance(raw, bytes) else raw
        seen, self.epoch = self.epoch, epoch
        return seen is not None and seen != epoch

    async def restore(self, record: dict[str, Any], durable: set[int]) -> None:
        """Write back an upload's record, durable parts and Notion claim (after amnesia)."""
        upload_id = record["id"]

        async def op():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(_record_key(upload_id), json.dumps(record, separators=(",", ":")), ex=self.ttl_s)
                if durable:
                    pipe.sadd(_parts_key(upload_id), *sorted(durable))
                    pipe.expire(_parts_key(upload_id), self.ttl_s)
                if record.get("notion_file_upload_id"):
                    pipe.set(_claim_key(record["notion_file_upload_id"]), upload_id, nx=True, ex=2 * 3600)
                return await pipe.execute()

        await self.run(op)

    async def gone(self, upload_id: str) -> dict[str, Any] | None:
        """The marker of an upload that expired recently, or None."""
        raw = await self.run(lambda: self.redis.get(_gone_key(upload_id)))
        return json.loads(raw) if raw else None

    async def upload_ids(self):
        """Every upload id with a record (SCAN: never blocks Redis on a big keyspace)."""
        cursor = 0
        while True:
            cursor, keys = await self.run(lambda: self.redis.scan(cursor, match="relay:upload:*", count=500))
            for key in keys:
                name = key.decode() if isinstance(key, bytes) else key
                if not name.endswith(":parts"):
                    yield name.rsplit(":", 1)[-1]
            if not cursor:
                return

    async def delete(self, upload_id: str) -> None:
        await self.run(lambda: self.redis.delete(_record_key(upload_id), _parts_key(upload_id)))
