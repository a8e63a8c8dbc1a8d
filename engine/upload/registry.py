"""Registry: the uploads this instance holds, and who holds which.

An instance works on an upload only while it holds the upload's lock in Redis; the uploads it
holds are in `live`. Any other instance answers HEAD and status from the checkpoints, and takes
an upload over (claim) when a request for it arrives there. Every second `maintain` refreshes
the locks, lets go of uploads that are done, idle or wanted elsewhere, and notices a Redis that
lost its data. `sweep` expires what Notion has expired — decided by the holder, from Notion's
own status, never by a clock alone — and removes spool files nobody needs.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from engine.clock import Clock
from engine.errors import UploadBusy, UploadError, UploadGone, UploadNotFound
from engine.redis import StoreUnavailable, store_away
from engine.upload.finishing import Finisher
from engine.upload.interfaces import Checkpoints, Emit, Ownership
from engine.upload.partplan import PartPlan
from engine.upload.records import RecordSaver
from engine.upload.scheduler import PartScheduler
from engine.upload.session import (
    EXPIRED,
    FINAL_STATES,
    NOTION_WINDOW_PASSED,
    TERMINATED,
    TERMINATED_BY_CLIENT,
    UploadRecord,
    UploadSession,
)
from engine.upload.spool import PartAssembler

UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
# Our clock only tells when to ask Notion whether an upload expired; it may be ahead or behind.
EXPIRY_ASK_EARLY_S = 60.0


class Registry:
    def __init__(self, clock: Clock, store: Checkpoints, locks: Ownership, scheduler: PartScheduler,
                 finisher: Finisher, saver: RecordSaver, spool_dir: Path, owner_idle_s: float, emit: Emit,
                 spool_writeback_bytes: int = 0) -> None:
        self.clock = clock
        self.store = store
        self.locks = locks
        self.scheduler = scheduler
        self.finisher = finisher
        self.saver = saver
        self.spool_dir = spool_dir
        self.spool_writeback_bytes = spool_writeback_bytes
        self.owner_idle_s = owner_idle_s
        self.emit = emit
        self.live: dict[str, UploadSession] = {}
        self.check_owners = False  # set by server.py when upload tokens are configured

    def session_for(self, record: UploadRecord, durable: set[int]) -> UploadSession:
        plan = PartPlan(size=record.size, part_size=record.part_size, number_of_parts=record.number_of_parts)
        assembler = PartAssembler(self.spool_dir / record.id, plan, received=plan.durable_offset(durable),
                                  writeback_bytes=self.spool_writeback_bytes)
        session = UploadSession(record, plan, durable, assembler)
        session.last_activity = self.clock.monotonic()
        return session

    async def hold_new(self, record: UploadRecord) -> UploadSession:
        """A just-created upload: ours from the start."""
        session = self.session_for(record, set())
        try:
            await self.locks.acquire(record.id)
        except StoreUnavailable:
            raise store_away() from None
        self.live[record.id] = session
        return session

    # --- lookup and ownership ----------------------------------------------------------------

    async def get(self, upload_id: str, owner: str | None = None) -> UploadSession:
        """The upload as this instance knows it: live if we hold it, else from the store.
        With owners (upload tokens), an upload of another owner does not exist for `owner`."""
        session = self.live.get(upload_id) or await self._load(upload_id, owner)
        if self.check_owners and session.record.owner != owner:
            raise UploadNotFound("no such upload")
        return session

    async def _load(self, upload_id: str, owner: str | None = None) -> UploadSession:
        if not UPLOAD_ID.fullmatch(upload_id):
            raise UploadNotFound("no such upload")
        try:
            loaded = await self.store.load(upload_id)
        except StoreUnavailable:
            raise store_away() from None
        if loaded is None:
            try:
                gone = await self.store.gone(upload_id)
            except StoreUnavailable:
                gone = None
            if gone is not None and (not self.check_owners or gone.get("owner") == owner):
                state = gone.get("state", "expired")
                reason = TERMINATED_BY_CLIENT if state == "terminated" else NOTION_WINDOW_PASSED
                raise UploadGone(reason, status=state, can_resume=False)
            raise UploadNotFound("no such upload")
        data, durable = loaded
        return self.session_for(UploadRecord.from_dict(data), durable)

    async def claim(self, upload_id: str, owner: str | None = None) -> UploadSession:
        """The upload, held by this instance, ready to take bytes; UploadBusy while another has it."""
        session = await self.get(upload_id, owner)  # an owner check before anything is locked
        if session is self.live.get(upload_id):
            return session
        try:
            wait = await self.locks.acquire(upload_id)
            if wait is not None:
                await self.locks.request_handoff(upload_id)
        except StoreUnavailable:
            raise store_away() from None
        if wait is not None:
            raise UploadBusy("another instance is working on this upload; it is asked to hand it over",
                             retry_after_s=max(1.0, min(wait, 5.0)))
        held = self.live.get(upload_id)  # another request here may have claimed it meanwhile
        if held is not None:
            return held
        try:
            session = await self._load(upload_id, owner)
        except UploadError:
            await self.locks.release(upload_id)
            raise
        session = self.live.setdefault(upload_id, session)
        # Files of parts Notion already holds are useless; the client re-sends from its offset,
        # which may be below what we now know to be durable (another instance went on meanwhile).
        for n in session.durable:
            session.assembler.discard(n)
        session.interrupted = True
        self.emit("UPLOAD_CLAIMED", upload_id=upload_id, durable_offset=session.durable_offset)
        return session

    async def maintain(self) -> None:
        """Every second: notice a Redis that lost its data; refresh our locks; let go of uploads
        that are done, idle or wanted elsewhere."""
        try:
            if await self.store.forgot_us():
                self.store.restoring = True  # until ours is back in it; health says "degraded"
                self.store.amnesia_count += 1
            if self.store.restoring:
                await self._write_back()
                self.store.restoring = False
            verdicts = await self.locks.refresh(list(self.live))
        except StoreUnavailable:
            return  # nobody can take our locks while Redis is away either
        now = self.clock.monotonic()
        for upload_id, verdict in verdicts.items():
            s = self.live.get(upload_id)
            if s is None:
                continue
            if verdict < 0:
                self.emit("LOCK_LOST", upload_id=upload_id)
                if s.writer is not None:
                    s.writer.supersede()
                self.live.pop(upload_id, None)
                continue
            wanted = verdict == 1
            if wanted and s.writer is not None:
                # The client went on elsewhere; the newest request wins, as on one instance.
                s.writer.supersede()
                s.writer = None
            if s.busy:
                continue
            done = s.state in FINAL_STATES
            if wanted or done or now - s.last_activity > self.owner_idle_s:
                await self.release(s, reason="handoff" if wanted else "done" if done else "idle")

    async def _write_back(self) -> None:
        """Redis came back empty: what this instance holds goes back at once, so every other
        instance sees these uploads again and one can resume them if we die."""
        for s in list(self.live.values()):
            if s.state != TERMINATED:
                await self.store.restore(s.record.to_dict(), set(s.durable))
        self.emit("STORE_AMNESIA", uploads=len(self.live))

    async def release(self, s: UploadSession, reason: str) -> None:
        self.live.pop(s.id, None)
        s.assembler.remove_all()
        await self.locks.release(s.id)
        self.emit("UPLOAD_RELEASED", upload_id=s.id, reason=reason)

    async def release_all(self) -> None:
        for s in list(self.live.values()):
            s.assembler.close()
            await self.locks.release(s.id)

    async def terminate(self, s: UploadSession) -> None:
        if s.writer is not None:
            s.writer.supersede()
            s.writer = None
        s.terminate()
        try:
            await self.saver.tombstone(s)  # a terminated upload answers 410 for an hour, then 404
        except StoreUnavailable:
            raise store_away() from None
        await self.release(s, reason="terminated")
        self.emit("UPLOAD_TERMINATED", upload_id=s.id)

    # --- expiry --------------------------------------------------------------------------------

    async def sweep(self) -> None:
        """Expire what Notion has expired, and remove spool files no live upload needs."""
        for s in list(self.live.values()):
            if s.state not in FINAL_STATES and await self._expired_at_notion(s):
                s.expire()
                self.saver.save(s)
            if s.state == EXPIRED and not s.working:  # the tombstone waits for a record write itself
                await self._tombstone(s)
                await self.release(s, reason="expired")
        if self.spool_dir.is_dir():
            for entry in self.spool_dir.iterdir():
                if entry.name not in self.live:
                    shutil.rmtree(entry, ignore_errors=True)
        # Uploads whose instance died are nobody's: expire those too, so no record outlives
        # Notion's window without saying so. One another instance holds is that one's business.
        try:
            async for upload_id in self.store.upload_ids():
                if upload_id in self.live:
                    continue
                loaded = await self.store.load(upload_id)
                if loaded is None:
                    continue
                record = UploadRecord.from_dict(loaded[0])
                if record.state in FINAL_STATES or await self.locks.held_elsewhere(upload_id):
                    continue
                orphan = self.session_for(record, loaded[1])
                if await self._expired_at_notion(orphan):
                    await self._tombstone(orphan)
        except StoreUnavailable:
            pass

    async def _expired_at_notion(self, s: UploadSession) -> bool:
        if s.record.expires_at is None or self.clock.wall() < s.record.expires_at - EXPIRY_ASK_EARLY_S:
            return False
        return await self.finisher.says_expired(s)

    async def _tombstone(self, s: UploadSession) -> None:
        s.expire()
        try:
            await self.saver.tombstone(s)
        except StoreUnavailable:
            return  # the next sweep tries again
        self.emit("UPLOAD_EXPIRED", upload_id=s.id)

    def idle(self) -> bool:
        """No part waiting or in flight and no upload being completed."""
        return self.scheduler.running == 0 and not any(
            s.ready or s.in_flight or s.finalizing is not None for s in self.live.values())

    def stop_taking_bytes(self, reason: UploadError) -> None:
        """Shutting down: detach every request from its upload; what they sent so far stays."""
        for s in self.live.values():
            if s.writer is not None:
                s.writer.supersede(reason)
                s.writer = None
