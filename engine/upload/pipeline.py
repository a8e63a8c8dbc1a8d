"""PartPipeline: a complete part's way to Notion, then the upload's way to "completed".

    ready part file → scheduler (fair, ≤ 2 per upload) → send → checkpoint → durable
                                                   └── last part durable → finalize:
                                                       complete (multi_part) → attach → completed

This is the part sink intake writes into: `hand_over` returns an awaitable only when the
scheduler has no room for the upload (the back-pressure that pauses the client's socket) —
also once it is full, before the next part is read.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from engine.clock import Clock
from engine.errors import UploadError, UploadFailed, UploadGone
from engine.notion_answers import Failure
from engine.redis import StoreUnavailable
from engine.retry import UNTIL_STORED, RetryPolicy, retrying
from engine.upload.finishing import Finisher
from engine.upload.interfaces import Checkpoints, Emit, Guard, NotionFiles, Spawn
from engine.upload.records import RecordSaver
from engine.upload.scheduler import Attempt, PartScheduler
from engine.upload.session import CREATED, EXPIRED, FINALIZING, RECEIVING, STOPPED_STATES, TERMINATED, UploadSession

log = logging.getLogger("relay.uploads")


class PartPipeline:
    def __init__(self, clock: Clock, notion: NotionFiles, guard: Guard, store: Checkpoints,
                 scheduler: PartScheduler, retry: RetryPolicy, finisher: Finisher, saver: RecordSaver,
                 emit: Emit, spawn: Spawn) -> None:
        self.clock = clock
        self.notion = notion
        self.guard = guard
        self.store = store
        self.scheduler = scheduler
        self.retry = retry
        self.finisher = finisher
        self.saver = saver
        self.emit = emit
        self.spawn = spawn

    # --- the part sink -----------------------------------------------------------------------

    def hand_over(self, s: UploadSession) -> Awaitable[None] | None:
        """Hand complete parts to the scheduler now; an awaitable only when one must wait for
        room (so a request pauses only when there is back-pressure, not at every part)."""
        while s.ready and s.state not in STOPPED_STATES and self.scheduler.has_room(s.id):
            self._dispatch(s, s.ready.popleft())
        if s.state in STOPPED_STATES:
            return None
        if s.ready:
            return self.drain(s)
        if s.assembler.received < s.plan.size and not self.scheduler.has_room(s.id):
            # Read the next part only once a send slot frees: the spool then leads the sends by
            # at most one part, and at the file's last byte at most `per_upload` parts are left
            # to send (not one more, which a fast client would otherwise always leave).
            return self.scheduler.wait_for_room(s.id)
        return None

    async def drain(self, s: UploadSession) -> None:
        """Hand complete parts to the scheduler, waiting for room (this is the back-pressure)."""
        while s.ready and s.state not in STOPPED_STATES:
            if not self.scheduler.has_room(s.id):
                await self.scheduler.wait_for_room(s.id)
                continue
            self._dispatch(s, s.ready.popleft())

    def resume(self, s: UploadSession) -> None:
        """A request for an upload that failed resumably: its failed parts go again."""
        again = s.resume()
        s.ready.extendleft(reversed(again))
        self.emit("UPLOAD_RESUMED", upload_id=s.id, parts=again)
        self.saver.save(s)
        self.spawn(self.drain(s))

    # --- one part ----------------------------------------------------------------------------

    def _dispatch(self, s: UploadSession, number: int) -> None:
        if number in s.durable:
            s.assembler.discard(number)  # re-sent by the client after a restart; Notion has it
            self.maybe_finalize(s)
            return
        s.in_flight.add(number)
        self.scheduler.submit(s.id, self._part_job(s, number))

    def _part_job(self, s: UploadSession, number: int) -> Attempt:
        failures = 0

        async def attempt() -> float | None:
            nonlocal failures
            if s.state in (TERMINATED, EXPIRED) or number not in s.in_flight:
                s.in_flight.discard(number)
                return None
            started = self.clock.monotonic()
            try:
                await self._send(s, number)
            except UploadError as error:  # Notion's state shows that this upload cannot go on
                self._stop(s, number, error)
                return None
            except Failure as f:
                failures += 1
                self.emit("TIMEOUT_EVENT" if f.kind in ("timeout", "connect") else "PART_FAILURE",
                          upload_id=s.id, part=number, reason=f.reason, attempt=failures,
                          duration_s=round(self.clock.monotonic() - started, 3))
                if f.retryable and self.retry.may_retry(failures):
                    return self.retry.delay_s(failures, f.retry_after_s)
                if f.kind == "http" and f.status in (400, 404) and await self.finisher.says_expired(s):
                    self._stop(s, number, UploadGone("expired at Notion"))
                else:
                    self._stop(s, number, UploadFailed(f"part {number} could not be sent to Notion: {f.message}",
                                                       can_resume=f.retryable), reason=f.reason)
                return None
            await self._checkpoint(s, number)
            s.in_flight.discard(number)
            s.durable.add(number)
            s.assembler.discard(number)
            s.last_activity = self.clock.monotonic()
            self.emit("PART_SUCCESS", upload_id=s.id, part=number, size=s.plan.part_length(number),
                      duration_s=round(self.clock.monotonic() - started, 3), attempts=failures + 1)
            self.maybe_finalize(s)
            return None

        return attempt

    async def _send(self, s: UploadSession, number: int) -> None:
        if not s.assembler.holds_exactly(number):
            # Never send a part whose file is not exactly its planned length: Notion would
            # hold wrong bytes, and "completed" would be a lie (invariant 1).
            self.emit("SPOOL_INTEGRITY", upload_id=s.id, part=number)
            raise UploadFailed(f"part {number} was not stored intact on the relay; start the upload again",
                               can_resume=False, integrity_error=True)
        fid = s.record.notion_file_upload_id or ""
        try:
            result = await self.guard.run(lambda: self.notion.send_part(
                fid, path=str(s.assembler.part_path(number)), filename=s.record.filename,
                content_type=s.record.content_type, part_number=number if s.plan.is_multipart else None,
                size=s.plan.part_length(number)))
        except Failure as f:
            if s.plan.is_multipart or f.never_arrived:
                raise  # a part number sent again replaces the earlier bytes (NOTION_API.md, assumed)
            await self._settle_single_part(s, f)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # An unexpected library error must not strand the part: treat it as a broken transfer.
            log.exception("unexpected error sending part %d of %s", number, s.id)
            raise Failure("transfer", f"unexpected {type(exc).__name__}", operation="send") from None
        if not s.plan.is_multipart:
            self.finisher.verify_holds_file(s, result)

    async def _settle_single_part(self, s: UploadSession, f: Failure) -> None:
        """A single_part send is not idempotent: after a failure, Notion's state says whether it
        landed (then it is done) or not (then `f` stands and the send is tried again)."""
        try:
            landed = await self.finisher.sent_whole_file(s)
        except Failure as unknown:
            # Cannot tell yet: retry later, and the next try's outcome is checked the same way.
            raise Failure(unknown.kind if unknown.kind != "http" else "transfer", unknown.message,
                          retry_after_s=unknown.retry_after_s, operation="send") from None
        if landed is None:
            raise f
        self.emit("NOTION_OUTCOME_FOUND", operation="send", upload_id=s.id, reason=f.reason)

    async def _checkpoint(self, s: UploadSession, number: int) -> None:
        """A part is durable only once its checkpoint is stored (invariant 2): retry until it is."""
        await retrying(lambda: self.store.mark_part_done(s.id, number), policy=UNTIL_STORED, clock=self.clock,
                       retry_on=StoreUnavailable,
                       on_failure=lambda exc, n: self.emit("CHECKPOINT_RETRY", upload_id=s.id, part=number))
        self.emit("CHECKPOINT_SAVED", upload_id=s.id, part=number)

    def _stop(self, s: UploadSession, number: int, error: UploadError, reason: str = "notion_state") -> None:
        """A part that cannot go now: the upload fails (resumably or not) or has expired."""
        s.in_flight.discard(number)
        s.failed_parts.add(number)
        if isinstance(error, UploadGone):
            s.expire()
        else:
            s.fail(error.message, can_resume=bool(error.details.get("can_resume", False)))
        self.emit("UPLOAD_FAILED", upload_id=s.id, part=number, reason=reason, can_resume=s.record.can_resume)
        self.saver.save(s)

    # --- the upload's end --------------------------------------------------------------------

    def maybe_finalize(self, s: UploadSession) -> None:
        if (s.finalizing is None and s.state in (RECEIVING, CREATED, FINALIZING)
                and s.assembler.received == s.plan.size and not s.in_flight and not s.ready
                and not s.failed_parts and len(s.durable) == s.plan.number_of_parts):
            s.finalizing = asyncio.ensure_future(self._finalize(s))

    async def _finalize(self, s: UploadSession) -> None:
        s.start_finalizing()
        self.saver.save(s)
        try:
            if s.plan.is_multipart:
                await self.finisher.complete(s)
            s.record.notion_status = "uploaded"
            if s.record.attaches:
                await self.finisher.attach(s)
        except Exception as exc:  # noqa: BLE001 - whatever it was, the waiting request must get an answer
            if isinstance(exc, UploadError):
                s.fail(exc.message, can_resume=bool(exc.details.get("can_resume", False)))
            else:
                log.exception("finishing upload %s failed unexpectedly", s.id)
                s.fail("finishing the upload failed unexpectedly; it is tried again when the upload resumes",
                       can_resume=True)
            self.emit("UPLOAD_FAILED", upload_id=s.id, reason="finalize", can_resume=s.record.can_resume)
            self.saver.save(s)
            return
        s.complete()
        self.saver.save(s)
        self.emit("UPLOAD_COMPLETE", upload_id=s.id, size=s.plan.size, block_id=s.record.block_id,
                  destination_kind=s.record.destination_kind)
