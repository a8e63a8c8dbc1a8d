"""UploadService: the life of an upload, from creation to "stored in Notion".

It joins the pieces: the part plan, the spool (PartAssembler), the scheduler, the Notion client
behind its guard (breaker + budget), the retry policy, and the checkpoint store. Handlers talk
to this service and to UploadSession/Writer only.
"""
from __future__ import annotations

import asyncio
import logging
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from engine.clock import Clock, parse_iso8601
from engine.errors import (InvalidUpload, NotionRejected, OffsetMismatch, ServiceUnavailable, UnsupportedFileType,
                           UploadBusy, UploadError, UploadFailed, UploadGone, UploadNotFound, UploadTooLarge)
from engine.filetypes import clean_filename, content_type_for, extension
from engine.finishing import NOTION_WINDOW_PASSED, Finisher
from engine.guard import NotionGuard
from engine.locks import UploadLocks
from engine.notion import Failure, NotionClient
from engine.once import OnceRunner, Undecided
from engine.partplan import PartPlan, PlanError, plan_parts
from engine.quotas import Quotas
from engine.retry import RetryPolicy
from engine.scheduler import PartScheduler
from engine.session import (COMPLETED, CREATED, EXPIRED, FAILED, FINALIZING, RECEIVING, TERMINATED, UploadRecord,
                            UploadSession)
from engine.spool import PartAssembler
from engine.store import CheckpointStore, StoreUnavailable
from engine.writer import Writer

log = logging.getLogger("relay.uploads")

NOTION_EXPIRY_S = 3600.0
TOMBSTONE_TTL_S = 3600
# How long a request that creates an upload may spend retrying Notion: the PaaS router cuts
# requests at about 30 s, and an answer with Retry-After beats a cut connection.
CREATE_DEADLINE_S = 20.0
# Our clock only tells when to ask Notion whether an upload expired; it may be ahead or behind.
EXPIRY_ASK_EARLY_S = 60.0
LIMIT_LOOKUP_S = 5.0
WORKSPACE_LIMIT_TTL_S = 600.0
CLAIM_TTL_S = 2 * 3600  # longer than Notion's window: a claim outlives every use of its file upload
# A create's answer that was lost is looked for among uploads Notion made this long before we
# asked (our clock and Notion's may disagree by that much).
CREATE_CLOCK_SKEW_S = 300.0
DEFAULT_WORKSPACE_LIMIT = 5 * 2**30


def new_upload_id() -> str:
    """128 random bits, hex: unguessable and URL-safe."""
    return secrets.token_hex(16)


@dataclass
class ServiceParts:
    """What UploadService needs, built by server.py."""
    clock: Clock
    notion: NotionClient
    guard: NotionGuard
    store: CheckpointStore
    scheduler: PartScheduler
    retry: RetryPolicy
    spool_dir: Path
    part_size_bytes: int
    parent_page_id: str | None
    locks: UploadLocks
    quotas: Quotas | None = None  # per-token limits, when uploads have owners
    owner_idle_s: float = 300.0
    # How long Notion may still act on a request after we stopped waiting (its 60 s limit).
    notion_settle_s: float = 60.0
    listeners: list[Callable[[str, dict[str, Any]], None]] = field(default_factory=list)


class UploadService:
    def __init__(self, parts: ServiceParts) -> None:
        self.p = parts
        self.clock = parts.clock
        self.live: dict[str, UploadSession] = {}
        self.once = OnceRunner(parts.clock, parts.guard, parts.retry, self.emit, settle_s=parts.notion_settle_s)
        self.finisher = Finisher(parts.notion, parts.guard, self.once)
        self._workspace_limit: tuple[float, int] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Set by server.py: raises ServiceUnavailable when new uploads must wait (breaker, memory).
        self.admission: Callable[[], None] | None = None
        self.draining = False  # shutting down: no new requests
        self.check_owners = False  # set by server.py when upload tokens are configured
        self.creating = 0  # uploads between admission and their record: admission counts them
        self._limit_lookup: asyncio.Future[int] | None = None
        self.bytes_received = 0  # body bytes of requests that ended (Writer._tally)

    # --- events for logs and metrics ------------------------------------------------------

    def emit(self, event: str, **fields: Any) -> None:
        for listener in self.p.listeners:
            listener(event, fields)

    def bytes_received_total(self) -> int:
        """Body bytes clients sent: requests that ended, plus what running ones sent so far
        (read at scrape time by /metrics)."""
        running = sum(s.writer.accepted for s in self.live.values() if s.writer is not None and not s.writer.tallied)
        return self.bytes_received + running

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- creation ---------------------------------------------------------------------------

    async def workspace_limit(self) -> int:
        now = self.clock.monotonic()
        if self._workspace_limit and now - self._workspace_limit[0] < WORKSPACE_LIMIT_TTL_S:
            return self._workspace_limit[1]
        # Concurrent creations share one lookup: each users_me call spends request budget.
        if self._limit_lookup is None or self._limit_lookup.done():
            self._limit_lookup = asyncio.ensure_future(self._fetch_workspace_limit())
        return await asyncio.shield(self._limit_lookup)

    async def _workspace_limit_by(self, deadline: float) -> int:
        """The workspace's limit, without letting a slow lookup eat the create's deadline: past a
        few seconds the last known (or default) limit stands; Notion's own checks still apply."""
        budget_s = min(LIMIT_LOOKUP_S, max(0.1, deadline - self.clock.monotonic()))
        try:
            return await asyncio.wait_for(self.workspace_limit(), timeout=budget_s)
        except asyncio.TimeoutError:
            return self._workspace_limit[1] if self._workspace_limit else DEFAULT_WORKSPACE_LIMIT

    async def _fetch_workspace_limit(self) -> int:
        now = self.clock.monotonic()
        try:
            me = await self.p.guard.run(self.p.notion.users_me)
            limit = int(me["bot"]["workspace_limits"]["max_file_upload_size_in_bytes"])
        except (Failure, KeyError, TypeError, ValueError):
            # Unknown for now: Notion's own checks at create/send still apply.
            return self._workspace_limit[1] if self._workspace_limit else DEFAULT_WORKSPACE_LIMIT
        self._workspace_limit = (now, limit)
        return limit

    async def create(self, *, filename: str | None, size: int, content_type: str | None,
                     metadata: str | None = None, owner: str | None = None) -> UploadSession:
        if self.admission is not None:
            self.admission()  # counts `creating` too: no await between this check and the increment
        self.creating += 1
        try:
            return await self._create(filename=filename, size=size, content_type=content_type,
                                      metadata=metadata, owner=owner)
        finally:
            self.creating -= 1

    async def _create(self, *, filename: str | None, size: int, content_type: str | None,
                      metadata: str | None, owner: str | None) -> UploadSession:
        deadline = self.clock.monotonic() + CREATE_DEADLINE_S
        if size <= 0:
            raise InvalidUpload("the upload length must be at least 1 byte (Notion stores no empty files)")
        limit = await self._workspace_limit_by(deadline)
        if size > limit:
            raise UploadTooLarge(f"the file is {size} bytes; this Notion workspace accepts at most {limit} bytes",
                                 limit=limit)
        try:
            plan = plan_parts(size, self.p.part_size_bytes)
        except PlanError as exc:
            raise UploadTooLarge(str(exc)) from None
        name = clean_filename(filename or "upload", content_type)
        ctype = content_type_for(name, content_type)
        if ctype is None:
            kind = f".{extension(name)} files" if extension(name) else "files without an extension"
            raise UnsupportedFileType(f"Notion does not accept {kind}; see the supported file types in the README")
        if owner is not None and self.p.quotas is not None:
            await self.p.quotas.admit(owner, size)
        upload_id = new_upload_id()
        notion_upload = await self._create_in_notion(plan, name, ctype, upload_id, deadline)
        now = self.clock.wall()
        expiry = notion_upload.get("expiry_time")
        record = UploadRecord(
            id=upload_id, filename=name, content_type=ctype, size=size,
            part_size=plan.part_size, number_of_parts=plan.number_of_parts, mode=plan.mode,
            created_at=now, updated_at=now, state=CREATED,
            notion_file_upload_id=notion_upload["id"], notion_status=notion_upload.get("status", "pending"),
            expires_at=parse_iso8601(expiry) if expiry else now + NOTION_EXPIRY_S,
            page_id=self.p.parent_page_id, metadata=metadata, owner=owner,
        )
        try:
            await self.p.store.save_record(record.to_dict())
        except StoreUnavailable:
            raise ServiceUnavailable("the checkpoint store is unavailable; try again shortly", retry_after_s=5) from None
        session = self._make_session(record, set())
        try:
            await self.p.locks.acquire(record.id)
        except StoreUnavailable:
            raise ServiceUnavailable("the checkpoint store is unavailable; try again shortly", retry_after_s=5) from None
        self.live[record.id] = session
        if owner is not None and self.p.quotas is not None:
            try:
                await self.p.quotas.started(owner, record.id)
            except StoreUnavailable:
                pass  # counted from the records at the next admission anyway
        self.emit("UPLOAD_START", upload_id=record.id, size=size, parts=plan.number_of_parts,
                  mode=plan.mode, filename=name)
        return session

    async def _create_in_notion(self, plan: PartPlan, filename: str, content_type: str,
                                upload_id: str, deadline: float) -> dict[str, Any]:
        """Create the Notion file upload, exactly once, by `deadline` (every wait counted)."""
        parts = plan.number_of_parts if plan.is_multipart else None
        asked_at = self.clock.wall()

        async def create() -> dict[str, Any]:
            left = max(1.0, deadline - self.clock.monotonic())
            created = await self.p.notion.create_file_upload(
                mode=plan.mode, filename=filename, content_type=content_type, number_of_parts=parts, total_s=left)
            if not await self.p.store.claim_notion_upload(created["id"], upload_id, CLAIM_TTL_S):
                raise Failure("junk", "Notion answered with a file upload another upload owns", operation="create")
            return created

        async def created_anyway() -> dict[str, Any] | None:
            return await self._find_created(plan, filename, content_type, upload_id, asked_at, deadline)

        try:
            return await self.once.run("create", create, created_anyway, deadline=deadline)
        except StoreUnavailable:
            raise ServiceUnavailable("the checkpoint store is unavailable; try again shortly", retry_after_s=5) from None
        except Undecided as exc:
            raise ServiceUnavailable("Notion is not answering; try again shortly",
                                     retry_after_s=max(1, round(exc.retry_after_s or 5))) from None
        except Failure as f:
            if not f.retryable:
                raise NotionRejected(f"Notion refused the upload: {f.message}", status=f.status) from None
            raise ServiceUnavailable("Notion is not answering; try again shortly",
                                     retry_after_s=max(1, round(self.p.retry.delay_s(1, f.retry_after_s)))) from None

    async def _find_created(self, plan: PartPlan, filename: str, content_type: str, upload_id: str,
                            asked_at: float, deadline: float) -> dict[str, Any] | None:
        """A create whose answer was lost: Notion lists pending uploads newest first; ours has our
        name, type and part count, no byte yet, was made after we asked (give or take clock skew),
        and no other upload has claimed it."""
        listing = await self.p.guard.run(lambda: self.p.notion.list_file_uploads(
            status="pending", total_s=max(1.0, deadline - self.clock.monotonic())), deadline=deadline)
        for candidate in reversed(listing.get("results") or []):  # oldest first: the first one we made
            if not _may_be_our_create(candidate, plan, filename, content_type, asked_at):
                continue
            if await self.p.store.claim_notion_upload(candidate["id"], upload_id, CLAIM_TTL_S):
                return candidate
        return None

    def _make_session(self, record: UploadRecord, durable: set[int]) -> UploadSession:
        plan = PartPlan(size=record.size, part_size=record.part_size, number_of_parts=record.number_of_parts)
        assembler = PartAssembler(self.p.spool_dir / record.id, plan, received=plan.durable_offset(durable))
        session = UploadSession(record, plan, durable, assembler)
        session.last_activity = self.clock.monotonic()
        if record.state == COMPLETED:
            session.finished.set_result(None)
        return session

    # --- lookup and ownership ----------------------------------------------------------------
    # An instance works on an upload only while it holds the upload's lock in Redis; uploads it
    # holds are in `live`. Any other instance answers HEAD and status from the checkpoints.

    async def get(self, upload_id: str, owner: str | None = None) -> UploadSession:
        """The upload as this instance knows it: live if we work on it, else from the store.

        With owners (upload tokens), an upload of another owner does not exist for `owner`."""
        session = self.live.get(upload_id) or await self._load(upload_id, owner)
        if self.check_owners and session.record.owner != owner:
            raise UploadNotFound("no such upload")
        return session

    async def _load(self, upload_id: str, owner: str | None = None) -> UploadSession:
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id):
            raise UploadNotFound("no such upload")
        try:
            loaded = await self.p.store.load(upload_id)
        except StoreUnavailable:
            raise ServiceUnavailable("the checkpoint store is unavailable; try again shortly", retry_after_s=5) from None
        if loaded is None:
            try:
                gone = await self.p.store.gone(upload_id)
            except StoreUnavailable:
                gone = None
            if gone is not None and (not self.check_owners or gone.get("owner") == owner):
                raise UploadGone(NOTION_WINDOW_PASSED, status="expired", can_resume=False)
            raise UploadNotFound("no such upload")
        data, durable = loaded
        return self._make_session(UploadRecord.from_dict(data), durable)

    async def claim(self, upload_id: str, owner: str | None = None) -> UploadSession:
        """The upload, owned by this instance, ready to take bytes; UploadBusy while another has it."""
        session = await self.get(upload_id, owner)  # an owner check before anything is locked
        if session is self.live.get(upload_id):
            return session
        if not re.fullmatch(r"[0-9a-f]{32}", upload_id):
            raise UploadNotFound("no such upload")
        try:
            wait = await self.p.locks.acquire(upload_id)
            if wait is not None:
                await self.p.locks.request_handoff(upload_id)
        except StoreUnavailable:
            raise ServiceUnavailable("the checkpoint store is unavailable; try again shortly", retry_after_s=5) from None
        if wait is not None:
            raise UploadBusy("another instance is working on this upload; it is asked to hand it over",
                             retry_after_s=max(1.0, min(wait, 5.0)))
        session = self.live.get(upload_id)  # another request here may have claimed it meanwhile
        if session is not None:
            return session
        try:
            session = await self._load(upload_id, owner)
        except UploadError:
            await self.p.locks.release(upload_id)
            raise
        session = self.live.setdefault(upload_id, session)
        # Files of parts Notion already holds are useless; the client re-sends from its offset,
        # which may be below what we now know to be durable (another instance went on meanwhile).
        for n in session.durable:
            session.assembler.discard(n)
        session.interrupted = True
        self.emit("UPLOAD_CLAIMED", upload_id=upload_id, durable_offset=session.durable_offset)
        return session

    def busy(self, s: UploadSession) -> bool:
        return bool(s.writer is not None or s.in_flight or s.ready or s.finalizing is not None)

    async def maintain(self) -> None:
        """Every second: notice a Redis that lost its data; refresh our locks; let go of uploads
        that are done, idle or wanted elsewhere."""
        store = self.p.store
        try:
            if await store.forgot_us():
                store.restoring = True  # until ours is back in it; health says "degraded"
                store.amnesia_count += 1
            if store.restoring:
                await self._write_back()
                store.restoring = False
        except StoreUnavailable:
            return
        ids = list(self.live)
        try:
            verdicts = await self.p.locks.refresh(ids)
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
            if self.busy(s):
                continue
            done = s.record.state in (COMPLETED, TERMINATED, EXPIRED)
            if wanted or done or now - s.last_activity > self.p.owner_idle_s:
                await self._release(s, reason="handoff" if wanted else "done" if done else "idle")

    async def _write_back(self) -> None:
        """Redis came back empty: what this instance holds goes back at once, so every other
        instance sees these uploads again and one can resume them if we die (health says
        "degraded" meanwhile)."""
        for s in list(self.live.values()):
            if s.record.state != TERMINATED:
                await self.p.store.restore(s.record.to_dict(), set(s.durable))
        self.emit("STORE_AMNESIA", uploads=len(self.live))

    async def _release(self, s: UploadSession, reason: str) -> None:
        self.live.pop(s.id, None)
        s.assembler.remove_all()
        await self.p.locks.release(s.id)
        self.emit("UPLOAD_RELEASED", upload_id=s.id, reason=reason)

    def stop_taking_bytes(self) -> None:
        """Shutting down: detach every request from its upload; what they sent so far stays."""
        self.draining = True
        restarting = ServiceUnavailable("the server is restarting; retry shortly", retry_after_s=2)
        for s in self.live.values():
            if s.writer is not None:
                s.writer.supersede(restarting)
                s.writer = None

    def idle(self) -> bool:
        """No part waiting or in flight and no upload being completed."""
        return self.p.scheduler.running == 0 and not any(
            s.ready or s.in_flight or s.finalizing is not None for s in self.live.values())

    async def flush(self, timeout_s: float) -> None:
        """Wait (up to timeout_s) for record writes still on their way to Redis."""
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)

    async def release_all(self) -> None:
        for s in list(self.live.values()):
            s.assembler.close()
            await self.p.locks.release(s.id)

    async def sweep(self) -> None:
        """Expire what Notion has expired, and remove spool files no live upload needs."""
        for s in list(self.live.values()):
            if s.record.state not in (EXPIRED, COMPLETED, TERMINATED) and await self._notion_expired(s):
                self._expire(s)
            if s.record.state == EXPIRED and not self.busy(s):
                await self._tombstone(s)
                await self._release(s, reason="expired")
        spool = self.p.spool_dir
        if spool.is_dir():
            for entry in spool.iterdir():
                if entry.name not in self.live:
                    shutil.rmtree(entry, ignore_errors=True)
        # Uploads whose instance died are nobody's: expire those too, so no record outlives
        # Notion's window without saying so. One another instance holds is that one's business.
        try:
            async for upload_id in self.p.store.upload_ids():
                if upload_id in self.live:
                    continue
                loaded = await self.p.store.load(upload_id)
                if loaded is None:
                    continue
                record = UploadRecord.from_dict(loaded[0])
                if record.state in (COMPLETED, TERMINATED, EXPIRED) or await self.p.locks.held_elsewhere(upload_id):
                    continue
                orphan = self._make_session(record, loaded[1])
                if await self._notion_expired(orphan):
                    await self._tombstone(orphan)
        except StoreUnavailable:
            pass

    async def _notion_expired(self, s: UploadSession, ask_now: bool = False) -> bool:
        """Has Notion expired this upload? Our clock only says when to ask (it may be off by
        an hour): Notion's own `status` decides (NOTION_API.md: "expired" once the window passed)."""
        if not ask_now and (s.record.expires_at is None
                            or self.clock.wall() < s.record.expires_at - EXPIRY_ASK_EARLY_S):
            return False
        try:
            current = await self.p.guard.run(lambda: self.p.notion.retrieve(s.record.notion_file_upload_id))
        except Failure as f:
            return f.kind == "http" and f.status == 404  # Notion no longer knows it at all
        return current.get("status") == "expired"

    def _expire(self, s: UploadSession) -> None:
        s.record.state = EXPIRED
        s.record.can_resume = False
        s.record.error = NOTION_WINDOW_PASSED
        self._fail_waiters(s, UploadGone(s.record.error))
        self.save(s)

    async def _tombstone(self, s: UploadSession) -> None:
        """Record and checkpoints go; a marker stays an hour so clients get 410 rather than 404."""
        s.record.state = EXPIRED
        s.record.can_resume = False
        s.record.error = s.record.error or NOTION_WINDOW_PASSED
        s.gone = True
        for _ in range(100):  # a record write already on its way must not land after the tombstone
            if not s._saving:
                break
            await self.clock.sleep(0.02)
        try:
            await self.p.store.tombstone(s.id, s.record.owner, TOMBSTONE_TTL_S)
        except StoreUnavailable:
            return
        self.emit("UPLOAD_EXPIRED", upload_id=s.id)

    def check_expiry(self, s: UploadSession) -> None:
        """Reading an upload never writes its state: expiry is decided by the instance holding
        the upload, from Notion's state (sweep). Kept for the handlers' read paths."""

    # --- writing ----------------------------------------------------------------------------

    def begin_write(self, s: UploadSession, offset: int, hold: bool = False) -> Writer:
        s.last_activity = self.clock.monotonic()
        self.check_expiry(s)
        state = s.record.state
        if state in (TERMINATED, EXPIRED):
            raise UploadGone(s.record.error or "the upload was terminated")
        if state == FAILED and not s.record.can_resume:
            raise self.failure_of(s)
        if s.writer is not None:
            # A request still attached belongs to a client that has evidently given up on it.
            s.writer.supersede()
            s.writer = None
            s.interrupted = True
        if state == COMPLETED:
            if offset == s.plan.size:
                return Writer(self, s, offset, hold=False)
            raise OffsetMismatch("the upload is already complete", offset=s.plan.size)
        if state == FAILED:
            self._resume(s)
        received = s.assembler.received
        if received == s.plan.size:
            if offset == s.plan.size - 1:
                writer = Writer(self, s, offset, hold, echo=1)
            elif offset == s.plan.size:
                writer = Writer(self, s, offset, hold=False)
            else:
                raise OffsetMismatch("Upload-Offset does not match", offset=s.client_offset)
        elif offset == received:
            writer = Writer(self, s, offset, hold)
        elif offset < received and s.interrupted and offset >= s.handed_out_limit():
            # Late writes of an interrupted request moved us past what the client saw in HEAD;
            # bytes not yet handed to Notion can simply be taken again. Otherwise tus's rule
            # holds: a mismatch is a 409 that changes nothing.
            s.assembler.rewind(offset)
            writer = Writer(self, s, offset, hold)
        else:
            raise OffsetMismatch("Upload-Offset does not match", offset=s.client_offset)
        if state == CREATED:
            s.record.state = RECEIVING
            self.save(s)
        s.writer = writer
        return writer

    def hand_over(self, s: UploadSession) -> Awaitable[None] | None:
        """Hand complete parts to the scheduler now; an awaitable only when one must wait for
        room (so a request pauses only when there is back-pressure, not at every part)."""
        scheduler = self.p.scheduler
        while s.ready and s.record.state not in (FAILED, TERMINATED, EXPIRED) and scheduler.has_room(s.id):
            self._dispatch(s, s.ready.popleft())
        if s.ready and s.record.state not in (FAILED, TERMINATED, EXPIRED):
            return self.drain(s)
        return None

    async def drain(self, s: UploadSession) -> None:
        """Hand complete parts to the scheduler, waiting for room (this is the back-pressure)."""
        scheduler = self.p.scheduler
        while s.ready and s.record.state not in (FAILED, TERMINATED, EXPIRED):
            if not scheduler.has_room(s.id):
                await scheduler.wait_for_room(s.id)
                continue
            self._dispatch(s, s.ready.popleft())

    def _dispatch(self, s: UploadSession, number: int) -> None:
        if number in s.durable:
            s.assembler.discard(number)  # re-sent by the client after a restart; Notion has it
            self.maybe_finalize(s)
            return
        s.in_flight.add(number)
        self.p.scheduler.submit(s.id, self._part_job(s, number))

    def _part_job(self, s: UploadSession, number: int):
        failures = 0

        async def attempt() -> float | None:
            nonlocal failures
            if s.record.state in (TERMINATED, EXPIRED) or number not in s.in_flight:
                s.in_flight.discard(number)
                return None
            started = self.clock.monotonic()
            try:
                await self._send(s, number)
            except UploadError as error:  # Notion's state shows that this upload cannot go on
                self._part_failed_for_good(s, number, error)
                return None
            except Failure as f:
                failures += 1
                self.emit("TIMEOUT_EVENT" if f.kind in ("timeout", "connect") else "PART_FAILURE",
                          upload_id=s.id, part=number, reason=f.reason, attempt=failures,
                          duration_s=round(self.clock.monotonic() - started, 3))
                if f.retryable and self.p.retry.may_retry(failures):
                    return self.p.retry.delay_s(failures, f.retry_after_s)
                expired = f.kind == "http" and f.status in (400, 404) and await self._notion_expired(s, ask_now=True)
                self._part_gave_up(s, number, f, expired)
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
        try:
            result = await self.p.guard.run(lambda: self.p.notion.send_part(
                s.record.notion_file_upload_id, path=str(s.assembler.part_path(number)),
                filename=s.record.filename, content_type=s.record.content_type,
                part_number=number if s.plan.is_multipart else None,
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
                          status=None, retry_after_s=unknown.retry_after_s, operation="send") from None
        if landed is None:
            raise f
        self.emit("NOTION_OUTCOME_FOUND", operation="send", upload_id=s.id, reason=f.reason)

    async def _checkpoint(self, s: UploadSession, number: int) -> None:
        """A part is durable only once its checkpoint is stored (invariant 2): retry until it is."""
        delay = 0.1
        while True:
            try:
                await self.p.store.mark_part_done(s.id, number)
                self.emit("CHECKPOINT_SAVED", upload_id=s.id, part=number)
                return
            except StoreUnavailable:
                self.emit("CHECKPOINT_RETRY", upload_id=s.id, part=number)
                await self.clock.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _part_gave_up(self, s: UploadSession, number: int, f: Failure, expired: bool) -> None:
        s.in_flight.discard(number)
        s.failed_parts.add(number)
        if expired:
            s.record.state = EXPIRED
            s.record.can_resume = False
            s.record.error = NOTION_WINDOW_PASSED
            error: UploadError = UploadGone(s.record.error)
        else:
            s.record.state = FAILED
            s.record.can_resume = f.retryable
            s.record.error = f"part {number} could not be sent to Notion: {f.message}"
            error = self.failure_of(s)
        self.emit("UPLOAD_FAILED", upload_id=s.id, part=number, reason=f.reason, can_resume=s.record.can_resume)
        self._fail_waiters(s, error)
        self.save(s)

    def _part_failed_for_good(self, s: UploadSession, number: int, error: UploadError) -> None:
        s.in_flight.discard(number)
        s.failed_parts.add(number)
        s.record.state = EXPIRED if isinstance(error, UploadGone) else FAILED
        s.record.can_resume = bool(error.details.get("can_resume", False))
        s.record.error = error.message
        self.emit("UPLOAD_FAILED", upload_id=s.id, part=number, reason="notion_state", can_resume=s.record.can_resume)
        self._fail_waiters(s, error if isinstance(error, UploadGone) else self.failure_of(s))
        self.save(s)

    def failure_of(self, s: UploadSession) -> UploadError:
        return UploadFailed(s.record.error or "the upload failed", can_resume=s.record.can_resume,
                            retry_after_s=30 if s.record.can_resume else None)

    def _fail_waiters(self, s: UploadSession, error: UploadError) -> None:
        if not s.finished.done():
            s.finished.set_exception(error)
            s.finished.exception()  # mark retrieved: nobody may be waiting right now

    def _resume(self, s: UploadSession) -> None:
        s.record.state = RECEIVING
        s.record.error = None
        if s.finished.done():
            s.finished = asyncio.get_running_loop().create_future()
        failed = sorted(s.failed_parts)
        s.failed_parts.clear()
        s.ready.extendleft(reversed(failed))
        self.emit("UPLOAD_RESUMED", upload_id=s.id, parts=failed)
        self.save(s)
        self.spawn(self.drain(s))

    # --- finishing --------------------------------------------------------------------------

    def maybe_finalize(self, s: UploadSession) -> None:
        if (s.finalizing is None and s.record.state in (RECEIVING, CREATED, FINALIZING)
                and s.assembler.received == s.plan.size and not s.in_flight and not s.ready
                and not s.failed_parts and len(s.durable) == s.plan.number_of_parts):
            s.finalizing = asyncio.ensure_future(self._finalize(s))

    async def _finalize(self, s: UploadSession) -> None:
        s.record.state = FINALIZING
        self.save(s)
        try:
            if s.plan.is_multipart:
                await self.finisher.complete(s)
            s.record.notion_status = "uploaded"
            if s.record.page_id:
                await self.finisher.attach(s)
        except UploadError as error:
            s.record.state = FAILED
            s.record.error = error.message
            s.record.can_resume = bool(error.details.get("can_resume", False))
            s.finalizing = None
            self.emit("UPLOAD_FAILED", upload_id=s.id, reason="finalize", can_resume=s.record.can_resume)
            self._fail_waiters(s, self.failure_of(s))
            self.save(s)
            return
        s.record.state = COMPLETED
        s.record.expires_at = None if s.record.page_id else s.record.expires_at
        s.finalizing = None
        self.save(s)
        self.emit("UPLOAD_COMPLETE", upload_id=s.id, size=s.plan.size, block_id=s.record.block_id)
        if not s.finished.done():
            s.finished.set_result(None)

    # --- termination and persistence --------------------------------------------------------

    async def terminate(self, s: UploadSession) -> None:
        if s.writer is not None:
            s.writer.supersede()
            s.writer = None
        s.record.state = TERMINATED
        s.record.can_resume = False
        s.record.error = "the upload was terminated by the client"
        s.ready.clear()
        s.in_flight.clear()
        self._fail_waiters(s, UploadGone(s.record.error))
        try:
            await self.p.store.delete(s.id)
        except StoreUnavailable:
            raise ServiceUnavailable("the checkpoint store is unavailable; try again shortly", retry_after_s=5) from None
        await self._release(s, reason="terminated")
        self.emit("UPLOAD_TERMINATED", upload_id=s.id)

    def save(self, s: UploadSession) -> None:
        """Persist the record off the request path; writes of one upload never overlap."""
        s.record.updated_at = self.clock.wall()
        if s._saving:
            s._dirty = True
            return
        s._saving = True
        self.spawn(self._save_loop(s))

    async def _save_loop(self, s: UploadSession) -> None:
        delay = 0.1
        try:
            while True:
                s._dirty = False
                try:
                    if s.record.state == TERMINATED or s.gone:
                        return
                    await self.p.store.save_record(s.record.to_dict())
                except StoreUnavailable:
                    s._dirty = True
                    await self.clock.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                if not s._dirty:
                    return
        finally:
            s._saving = False


def _may_be_our_create(candidate: Any, plan: PartPlan, filename: str, content_type: str, asked_at: float) -> bool:
    if not isinstance(candidate, dict) or not isinstance(candidate.get("id"), str):
        return False
    if candidate.get("filename") != filename or candidate.get("content_length") not in (None, 0):
        return False
    if (candidate.get("content_type") or "").split(";")[0].strip().lower() != content_type.lower():
        return False
    parts = candidate.get("number_of_parts")
    total = parts.get("total") if isinstance(parts, dict) else None
    if total != (plan.number_of_parts if plan.is_multipart else None):
        return False
    try:
        created = parse_iso8601(candidate.get("created_time") or "")
    except ValueError:
        return False
    return created >= asked_at - CREATE_CLOCK_SKEW_S
