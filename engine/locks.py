"""UploadLocks: which instance may write an upload, held in Redis with a TTL.

Two instances never append to one upload at once. The holder refreshes its locks every second;
if it dies, the lock lapses after the TTL and another instance takes over. An instance that
wants an upload another one holds leaves a hand-off request; the holder lets go as soon as
its parts in flight are done.
"""
from __future__ import annotations

from typing import Any

from engine.redis import RedisSource, StoreUnavailable, connection_of, keys, text

# KEYS[1] lock, KEYS[2] hand-off request; ARGV[1] our id, ARGV[2] ttl ms.
# Returns -1 when another instance holds the lock, else 1 if a hand-off was requested, 0 if not.
_REFRESH = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('EXISTS', KEYS[2])
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1], KEYS[2]) end
return 0
"""
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return redis.call('PTTL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
return -10
"""


def _keys(upload_id: str) -> list[str]:
    return [keys.lock(upload_id), keys.handoff(upload_id)]


class UploadLocks:
    def __init__(self, redis: RedisSource, instance_id: str, ttl_s: float) -> None:
        self.connection = connection_of(redis)
        self.instance_id = instance_id
        self.ttl_ms = max(100, int(ttl_s * 1000))
        self._refresh = self.connection.script(_REFRESH)
        self._release = self.connection.script(_RELEASE)
        self._acquire = self.connection.script(_ACQUIRE)

    async def acquire(self, upload_id: str) -> float | None:
        """None when we hold the lock now; else seconds until the current holder's lock lapses."""
        result = await self.connection.run(
            lambda: self._acquire(keys=_keys(upload_id), args=[self.instance_id, self.ttl_ms]))
        return None if int(result) == -10 else max(0.0, int(result) / 1000)

    async def held_elsewhere(self, upload_id: str) -> bool:
        """Another instance holds the upload now (it alone decides about it)."""
        holder = text(await self.connection.run(lambda: self.connection.client.get(keys.lock(upload_id))))
        return holder is not None and holder != self.instance_id

    async def request_handoff(self, upload_id: str) -> None:
        key = keys.handoff(upload_id)
        await self.connection.run(lambda: self.connection.client.set(key, self.instance_id, px=self.ttl_ms))

    async def refresh(self, upload_ids: list[str]) -> dict[str, int]:
        """Refresh our locks; per id: -1 lost, 1 hand-off requested, 0 fine."""
        if not upload_ids:
            return {}

        async def op() -> list[Any]:
            async with self.connection.client.pipeline(transaction=False) as pipe:
                for upload_id in upload_ids:
                    await self._refresh(keys=_keys(upload_id), args=[self.instance_id, self.ttl_ms], client=pipe)
                return await pipe.execute()

        results = await self.connection.run(op)
        return {upload_id: int(r) for upload_id, r in zip(upload_ids, results, strict=True)}

    async def release(self, upload_id: str) -> None:
        try:
            await self.connection.run(lambda: self._release(keys=_keys(upload_id), args=[self.instance_id]))
        except StoreUnavailable:
            pass  # it lapses by itself after the TTL

