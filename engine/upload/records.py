"""RecordSaver: an upload's record goes to the checkpoint store off the request path.

Writes of one upload never overlap (a change made while one is on its way is written right
after it), a store that is away is retried with backoff, and a record replaced by a tombstone
is never written again.
"""
from __future__ import annotations

from engine.clock import Clock
from engine.redis import StoreUnavailable
from engine.retry import UNTIL_STORED, retrying
from engine.upload.interfaces import Announce, Checkpoints, Spawn
from engine.upload.session import TERMINATED, UploadSession

# A tombstone (the 410 marker) outlives the record by this long.
TOMBSTONE_TTL_S = 3600


class RecordSaver:
    def __init__(self, clock: Clock, store: Checkpoints, spawn: Spawn, announce: Announce | None = None) -> None:
        self.clock = clock
        self.store = store
        self.spawn = spawn
        # What a record in its state announces (webhooks: engine/webhooks.state_events); the
        # events are written with the record, in the same MULTI.
        self.announce: Announce = announce or (lambda record, at: [])

    def save(self, s: UploadSession) -> None:
        """Persist the record soon; returns at once."""
        s.record.updated_at = self.clock.wall()
        if s.saving:
            s.dirty = True
            return
        s.saving = True
        self.spawn(self._save_loop(s))

    async def _save_loop(self, s: UploadSession) -> None:
        async def write() -> None:
            if s.record.state != TERMINATED and not s.gone:
                record = s.record.to_dict()
                await self.store.save_record(record, self.announce(record, self.clock.wall()))

        try:
            while True:
                s.dirty = False
                await retrying(write, policy=UNTIL_STORED, clock=self.clock, retry_on=StoreUnavailable)
                if not s.dirty:
                    return
        finally:
            s.saving = False

    async def tombstone(self, s: UploadSession) -> bool:
        """Record and checkpoints go; a marker stays an hour so clients get 410 rather than 404
        (expired or terminated, as the record's state says)."""
        s.gone = True
        for _ in range(100):  # a record write already on its way must not land after the tombstone
            if not s.saving:
                break
            await self.clock.sleep(0.02)
        record = s.record.to_dict()
        await self.store.tombstone(s.id, s.record.owner, TOMBSTONE_TTL_S, state=record["state"],
                                   events=self.announce(record, self.clock.wall()))
        return True
