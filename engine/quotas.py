"""Per-token quotas, shared by every instance through Redis: uploads in progress, and bytes
per hour (counted when an upload is created, by its declared length, so a quota can never be
overrun by uploads already accepted)."""
from __future__ import annotations

import json
import math

from engine.clock import Clock
from engine.errors import QuotaExceeded, ServiceUnavailable
from engine.store import CheckpointStore, StoreUnavailable

FINISHED_STATES = ("completed", "expired", "terminated")
HOUR_S = 3600


class Quotas:
    def __init__(self, store: CheckpointStore, clock: Clock, concurrent_uploads: int, bytes_per_hour: int) -> None:
        self.store = store
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
            raise ServiceUnavailable("the checkpoint store is unavailable; try again shortly", retry_after_s=5) from None

    async def started(self, owner: str, upload_id: str) -> None:
        key = self._active_key(owner)
        await self.store.run(lambda: self.store.redis.sadd(key, upload_id))

    async def _active(self, owner: str) -> list[str]:
        """Uploads of `owner` still in progress; finished or vanished ones are dropped as we go."""
        key = self._active_key(owner)
        ids = [i.decode() if isinstance(i, bytes) else i for i in await self.store.run(lambda: self.store.redis.smembers(key))]
        if not ids:
            return []
        records = await self.store.run(lambda: self.store.redis.mget([f"relay:upload:{i}" for i in ids]))
        active, gone = [], []
        for upload_id, raw in zip(ids, records):
            state = json.loads(raw).get("state") if raw else None
            failed_for_good = raw is not None and state == "failed" and not json.loads(raw).get("can_resume", True)
            (gone if state is None or state in FINISHED_STATES or failed_for_good else active).append(upload_id)
        if gone:
            await self.store.run(lambda: self.store.redis.srem(key, *gone))
        return active

    async def _reserve_bytes(self, owner: str, size: int) -> None:
        now = self.clock.wall()
        window = int(now // HOUR_S)
        key = f"relay:quota:{owner}:bytes:{window}"

        async def reserve():
            async with self.store.redis.pipeline(transaction=True) as pipe:
                pipe.incrby(key, size)
                pipe.expire(key, 2 * HOUR_S)
                return await pipe.execute()

        used = (await self.store.run(reserve))[0]
        if used > self.bytes_per_hour:
            await self.store.run(lambda: self.store.redis.decrby(key, size))
            retry_after = math.ceil((window + 1) * HOUR_S - now)
            raise QuotaExceeded(
                f"this upload would take your bytes this hour to {used} of {self.bytes_per_hour}; "
                f"try again in {retry_after} s", retry_after_s=retry_after, reason="bytes_per_hour",
                limit=self.bytes_per_hour)

    @staticmethod
    def _active_key(owner: str) -> str:
        return f"relay:quota:{owner}:active"
