"""Per-token quotas, shared by every instance through Redis: uploads in progress, and bytes
per hour (counted when an upload is created, by its declared length, so a quota can never be
overrun by uploads already accepted)."""
from __future__ import annotations

import json
import math
from typing import Any

from engine.clock import Clock
from engine.errors import QuotaExceeded
from engine.redis import RedisSource, StoreUnavailable, connection_of, keys, store_away, text

FINISHED_STATES = ("completed", "expired", "terminated")
HOUR_S = keys.HOUR_S


def _finished(raw: bytes | str | None) -> bool:
    """A record that no longer counts: vanished, finished, or failed for good."""
    if not raw:
        return True
    record = json.loads(raw)
    state = record.get("state")
    return state is None or state in FINISHED_STATES or (state == "failed" and not record.get("can_resume", True))


class Quotas:
    def __init__(self, redis: RedisSource, clock: Clock, concurrent_uploads: int, bytes_per_hour: int) -> None:
        self.connection = connection_of(redis)
        self.clock = clock
        self.concurrent_uploads = concurrent_uploads
        self.bytes_per_hour = bytes_per_hour

    async def admit(self, owner: str, size: int) -> None:
        """Raise QuotaExceeded when `owner` may not start an upload of `size` bytes now."""
        try:
            active = await self._active(owner)
            if len(active) >= self.concurrent_uploads:
                raise QuotaExceeded(
                    f"{len(active)} uploads of yours are still in progress; the limit is {self.concurrent_uploads}. "
                    "Finish or cancel one first.", retry_after_s=30, reason="concurrent_uploads",
                    limit=self.concurrent_uploads)
            await self._reserve_bytes(owner, size)
        except StoreUnavailable:
            raise store_away() from None

    async def started(self, owner: str, upload_id: str) -> None:
        key = keys.quota_active(owner)
        await self.connection.run(lambda: self.connection.client.sadd(key, upload_id))

    async def _active(self, owner: str) -> list[str]:
        """Uploads of `owner` still in progress; finished or vanished ones are dropped as we go."""
        client = self.connection.client
        key = keys.quota_active(owner)
        ids = [str(text(i)) for i in await self.connection.run(lambda: client.smembers(key))]
        if not ids:
            return []
        records = await self.connection.run(lambda: client.mget([keys.record(i) for i in ids]))
        active: list[str] = []
        gone: list[str] = []
        for upload_id, raw in zip(ids, records, strict=True):
            (gone if _finished(raw) else active).append(upload_id)
        if gone:
            await self.connection.run(lambda: client.srem(key, *gone))
        return active

    async def _reserve_bytes(self, owner: str, size: int) -> None:
        now = self.clock.wall()
        window = int(now // HOUR_S)
        key = keys.quota_bytes(owner, window)
        client = self.connection.client

        async def reserve() -> list[Any]:
            async with client.pipeline(transaction=True) as pipe:
                pipe.incrby(key, size)
                pipe.expire(key, keys.QUOTA_BYTES_TTL_S)
                return await pipe.execute()

        used = int((await self.connection.run(reserve))[0])
        if used > self.bytes_per_hour:
            await self.connection.run(lambda: client.decrby(key, size))
            retry_after = math.ceil((window + 1) * HOUR_S - now)
            raise QuotaExceeded(
                f"this upload would take your bytes this hour to {used} of {self.bytes_per_hour}; "
                f"try again in {retry_after} s", retry_after_s=retry_after, reason="bytes_per_hour",
                limit=self.bytes_per_hour)
