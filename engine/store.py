"""CheckpointStore: upload records, durable parts, tombstones, Notion claims and the epoch, in Redis.

Per upload: its JSON record and the set of part numbers Notion accepted (the per-part
checkpoints), both expiring CHECKPOINT_EXPIRATION_HOURS after the last write; after it expires or
is terminated, a small marker for the 410. Per Notion file upload: which upload owns it, so a
create whose answer was lost is adopted by exactly one upload. Once: the epoch, a random token
whose loss or change says Redis lost its data (restarted without persistence, failed over to an
empty replica). Key names and TTLs: engine/redis/keys.py. The connection, its short timeouts and
the mapping of Redis trouble to StoreUnavailable: engine/redis/connection.py.
"""
from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from engine.clock import Clock
from engine.redis import keys
from engine.redis.connection import RedisConnection, StoreUnavailable, text

__all__ = ["CheckpointStore", "StoreUnavailable"]  # StoreUnavailable: engine/upload imports it from here


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class CheckpointStore:
    def __init__(self, connection: RedisConnection | str, clock: Clock, ttl_s: float) -> None:
        """`connection`: the relay's RedisConnection, or a URL for a connection of its own (tests)."""
        self.connection = connection if isinstance(connection, RedisConnection) else RedisConnection(connection)
        self.clock = clock
        self.ttl_s = max(1, int(ttl_s))
        self.epoch: str | None = None  # the store's epoch as we last saw it
        self.restoring = False  # writing back what this instance holds after Redis lost it
        self.outbox: Any = None  # webhooks' Outbox (engine/webhooks), set by server.py when WEBHOOK_URL is set
        self.amnesia_count = 0

    @property
    def redis(self) -> aioredis.Redis:
        """The raw client (tests look into Redis through it)."""
        return self.connection.client

    @property
    def url(self) -> str:
        return self.connection.url

    @property
    def healthy(self) -> bool:
        """How the last Redis operation went, anyone's (health and admission read it)."""
        return self.connection.healthy

    @property
    def last_error(self) -> str | None:
        return self.connection.last_error

    async def close(self) -> None:
        await self.connection.close()

    async def ping(self) -> bool:
        return await self.connection.ping()

    async def _transaction(self, write: Callable[[Pipeline], None]) -> list[Any]:
        """Run `write(pipe)` in one MULTI/EXEC."""
        async def op() -> list[Any]:
            async with self.redis.pipeline(transaction=True) as pipe:
                write(pipe)
                return await pipe.execute()

        return await self.connection.run(op)

    async def save_record(self, record: dict[str, Any], events: Sequence[Any] = ()) -> None:
        """Write the record; `events` (webhooks announcing its new state) go in the same MULTI, so
        they exist exactly when the state does."""
        upload_id = record["id"]

        def write(pipe: Pipeline) -> None:
            pipe.set(keys.record(upload_id), _compact(record), ex=self.ttl_s)
            pipe.expire(keys.parts(upload_id), self.ttl_s)
            self._announce(pipe, events)

        await self._transaction(write)
        self._kick(events)

    def _announce(self, pipe: Pipeline, events: Sequence[Any]) -> None:
        if self.outbox is not None:
            for event in events:
                self.outbox.add_to(pipe, event)

    def _kick(self, events: Sequence[Any]) -> None:
        if events and self.outbox is not None:
            self.outbox.kick()

    async def load(self, upload_id: str) -> tuple[dict[str, Any], set[int]] | None:
        """The record and its durable parts, or None when unknown (or expired)."""

        async def op() -> list[Any]:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(keys.record(upload_id))
                pipe.smembers(keys.parts(upload_id))
                return await pipe.execute()

        raw, parts = await self.connection.run(op)
        if raw is None:
            return None
        return json.loads(raw), {int(p) for p in parts}

    async def mark_part_done(self, upload_id: str, part_number: int) -> None:
        def write(pipe: Pipeline) -> None:
            pipe.sadd(keys.parts(upload_id), part_number)
            pipe.expire(keys.parts(upload_id), self.ttl_s)
            pipe.expire(keys.record(upload_id), self.ttl_s)

        await self._transaction(write)

    async def tombstone(self, upload_id: str, owner: str | None, ttl_s: int, state: str = "expired",
                        events: Sequence[Any] = ()) -> None:
        """The upload's record and checkpoints go; a small marker stays for `ttl_s` so clients
        are told 410 (gone) rather than 404 (never was)."""
        marker = _compact({"state": state, "owner": owner})

        def write(pipe: Pipeline) -> None:
            pipe.set(keys.gone(upload_id), marker, ex=ttl_s)
            pipe.delete(keys.record(upload_id), keys.parts(upload_id))
            self._announce(pipe, events)

        await self._transaction(write)
        self._kick(events)

    async def claim_notion_upload(self, file_upload_id: str, upload_id: str, ttl_s: int) -> bool:
        """True when `upload_id` now owns the Notion file upload (or already did)."""
        key = keys.notion_claim(file_upload_id)

        async def op() -> list[Any]:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.set(key, upload_id, nx=True, ex=ttl_s)
                pipe.get(key)
                return await pipe.execute()

        _, owner = await self.connection.run(op)
        return text(owner) == upload_id

    async def forgot_us(self) -> bool:
        """True when Redis lost its data since we last looked (its epoch is new)."""

        def write(pipe: Pipeline) -> None:
            pipe.set(keys.EPOCH, secrets.token_hex(8), nx=True)
            pipe.get(keys.EPOCH)

        _, raw = await self._transaction(write)
        epoch = text(raw)
        seen, self.epoch = self.epoch, epoch
        return seen is not None and seen != epoch

    async def restore(self, record: dict[str, Any], durable: set[int]) -> None:
        """Write back an upload's record, durable parts and Notion claim (after amnesia)."""
        upload_id = record["id"]

        def write(pipe: Pipeline) -> None:
            pipe.set(keys.record(upload_id), _compact(record), ex=self.ttl_s)
            if durable:
                pipe.sadd(keys.parts(upload_id), *sorted(durable))
                pipe.expire(keys.parts(upload_id), self.ttl_s)
            if record.get("notion_file_upload_id"):
                pipe.set(keys.notion_claim(record["notion_file_upload_id"]), upload_id, nx=True,
                         ex=keys.NOTION_CLAIM_TTL_S)

        await self._transaction(write)

    async def gone(self, upload_id: str) -> dict[str, Any] | None:
        """The marker of an upload that expired recently, or None."""
        raw = await self.connection.run(lambda: self.redis.get(keys.gone(upload_id)))
        marker: dict[str, Any] | None = json.loads(raw) if raw else None
        return marker

    async def upload_ids(self) -> AsyncIterator[str]:
        """Every upload id with a record (SCAN: never blocks Redis on a big keyspace)."""
        cursor = 0
        while True:
            cursor, found = await self.connection.run(
                partial(self.redis.scan, cursor, match=keys.UPLOAD_PATTERN, count=500))
            for key in found:
                upload_id = keys.upload_id_of(key)
                if upload_id is not None:
                    yield upload_id
            if not cursor:
                return

    async def delete(self, upload_id: str) -> None:
        await self.connection.run(lambda: self.redis.delete(keys.record(upload_id), keys.parts(upload_id)))
