"""UploadLocks: which instance may write an upload, held in Redis with a TTL.

Two instances never append to one upload at once. The holder refreshes its locks every second;
if it dies, the lock lapses after the TTL and another instance takes over. An instance that
wants an upload another one holds leaves a hand-off request; the holder lets go as soon as
its parts in flight are done.
"""
from __future__ import annotations

from engine.store import CheckpointStore, StoreUnavailable

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
    return [f"relay:lock:{upload_id}", f"relay:handoff:{upload_id}"]


class UploadLocks:
    def __init__(self, store: CheckpointStore, instance_id: str, ttl_s: float) -> None:
        self.store = store
        self.instance_id = instance_id
        self.ttl_ms = max(100, int(ttl_s * 1000))
        redis = store.redis
        self._refresh = redis.register_script(_REFRESH)
        self._release = redis.register_script(_RELEASE)
        self._acquire = redis.register_script(_ACQUIRE)

    async def acquire(self, upload_id: str) -> float | None:
        """None when we hold the lock now; else seconds until the current holder's lock lapses."""
        result = await self.store.run(lambda: self._acquire(keys=_keys(upload_id), args=[self.instance_id, self.ttl_ms]))
        return None if int(result) == -10 else max(0.0, int(result) / 1000)

    async def held_elsewhere(self, upload_id: str) -> bool:
        """Another instance holds the upload now (it alone decides about it)."""
        holder = await self.store.run(lambda: self.store.redis.get(_keys(upload_id)[0]))
        holder = holder.decode() if isinstance(holder, bytes) else holder
        return holder is not None and holder != self.instance_id

    async def request_handoff(self, upload_id: str) -> None:
        key = _keys(upload_id)[1]
        await self.store.run(lambda: self.store.redis.set(key, self.instance_id, px=self.ttl_ms))

    async def refresh(self, upload_ids: list[str]) -> dict[str, int]:
        """Refresh our locks; per id: -1 lost, 1 hand-off requested, 0 fine."""
        if not upload_ids:
            return {}

        async def op():
            async with self.store.redis.pipeline(transaction=False) as pipe:
                for upload_id in upload_ids:
                    await self._refresh(keys=_keys(upload_id), args=[self.instance_id, self.ttl_ms], client=pipe)
                return await pipe.execute()

        results = await self.store.run(op)
        return {upload_id: int(r) for upload_id, r in zip(upload_ids, results)}

    async def release(self, upload_id: str) -> None:
        try:
            await self.store.run(lambda: self._release(keys=_keys(upload_id), args=[self.instance_id]))
        except StoreUnavailable:
            pass  # it lapses by itself after the TTL

