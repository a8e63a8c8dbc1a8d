"""UploadService: the upload wing's one face to the handlers and server.py.

It builds the rooms and passes calls on; the logic lives in them, each importing only downward
along the data path:

    creation ─► registry ─► intake ─► pipeline ─► scheduler ─► Notion (once, finishing)
                                                     └──► checkpoints (records, store)
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.clock import Clock
from engine.destinations import Destinations
from engine.errors import ServiceUnavailable, UploadError
from engine.quotas import Quotas
from engine.redis import StoreUnavailable
from engine.retry import RetryPolicy
from engine.upload.batching import Window
from engine.upload.creation import Creator, NewUpload
from engine.upload.finishing import Finisher
from engine.upload.intake import Intake, Writer
from engine.upload.interfaces import Announce, Checkpoints, Guard, NotionFiles, Ownership
from engine.upload.once import OnceRunner
from engine.upload.pipeline import PartPipeline
from engine.upload.records import RecordSaver
from engine.upload.registry import Registry
from engine.upload.scheduler import PartScheduler
from engine.upload.session import CREATED, FINALIZING, RECEIVING, UploadSession

Listener = Callable[[str, dict[str, Any]], None]


@dataclass
class ServiceParts:
    """What UploadService needs, built by server.py (or by a test, with fakes)."""
    clock: Clock
    notion: NotionFiles
    guard: Guard
    store: Checkpoints
    scheduler: PartScheduler
    retry: RetryPolicy
    spool_dir: Path
    part_size_bytes: int
    parent_page_id: str | None
    locks: Ownership
    quotas: Quotas | None = None  # per-token limits, when uploads have owners
    destinations: Destinations | None = None  # the allowlist (None: every file to parent_page_id)
    owner_idle_s: float = 300.0
    # How long Notion may still act on a request after we stopped waiting (its 60 s limit).
    notion_settle_s: float = 60.0
    # Appends for the same page within this window go as one request (0: each on its own).
    append_window_s: float = 0.0
    # ... up to this long as the request budget empties; budget_fill: its bucket's level, 0..1.
    append_max_window_s: float = 0.0
    budget_fill: Callable[[], float] | None = None
    listeners: list[Listener] = field(default_factory=list)
    announce: Announce | None = None  # webhook events for a record's state (engine/webhooks)
    # Start writing spooled bytes to disk every this many (0: when the kernel likes; spool.py).
    spool_writeback_bytes: int = 0


class UploadService:
    def __init__(self, parts: ServiceParts) -> None:
        self.p = parts
        self.clock = parts.clock
        self._tasks: set[asyncio.Task[Any]] = set()
        once = OnceRunner(parts.clock, parts.guard, parts.retry, self.emit, settle_s=parts.notion_settle_s)
        finisher = Finisher(parts.notion, parts.guard, once, parts.clock,
                            Window(parts.append_window_s, parts.append_max_window_s, parts.budget_fill,
                                   company=self._on_their_way))
        self.saver = RecordSaver(parts.clock, parts.store, self.spawn, parts.announce)
        self.creator = Creator(parts.clock, parts.notion, parts.guard, once, parts.store, parts.retry,
                               parts.part_size_bytes, parts.parent_page_id, parts.quotas, parts.destinations)
        self.pipeline = PartPipeline(parts.clock, parts.notion, parts.guard, parts.store, parts.scheduler,
                                     parts.retry, finisher, self.saver, self.emit, self.spawn)
        self.registry = Registry(parts.clock, parts.store, parts.locks, parts.scheduler, finisher, self.saver,
                                 parts.spool_dir, parts.owner_idle_s, self.emit, parts.spool_writeback_bytes)
        self.intake = Intake(parts.clock, self.pipeline, self.saver, self.emit, self.spawn)
        self.live = self.registry.live
        # Set by server.py: raises ServiceUnavailable when new uploads must wait (breaker, memory).
        self.admission: Callable[[int], None] | None = None
        self.draining = False  # shutting down: no new requests
        self.creating = 0  # uploads between admission and their record: admission counts them

    @property
    def check_owners(self) -> bool:
        return self.registry.check_owners

    @check_owners.setter
    def check_owners(self, value: bool) -> None:
        self.registry.check_owners = value

    # --- events and background work ----------------------------------------------------------

    def emit(self, event: str, **fields: Any) -> None:
        for listener in self.p.listeners:
            listener(event, fields)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def bytes_received_total(self) -> int:
        """Body bytes clients sent (read at scrape time by /metrics)."""
        return self.intake.bytes_received_total(list(self.live.values()))

    def _on_their_way(self, page: str) -> int:
        """Uploads that may still finish and join an append batch for `page`: those still
        receiving or finishing and not yet in a batch (and any being created: their
        destination is not known yet)."""
        holding = self.pipeline.finisher.batcher.holding
        return self.creating + sum(
            1 for s in self.live.values()
            if not s.record.data_source_id and (s.record.page_id or "") == page
            and (s.state in (CREATED, RECEIVING) or (s.state == FINALIZING and s.id not in holding)))

    # --- what the handlers call --------------------------------------------------------------

    async def create(self, *, filename: str | None, size: int, content_type: str | None,
                     metadata: str | None = None, owner: str | None = None, destination: str | None = None,
                     title: str | None = None, caption: str | None = None) -> UploadSession:
        if self.admission is not None:
            self.admission(size)  # counts `creating` too: no await between this check and the increment
        self.creating += 1
        try:
            record, plan = await self.creator.record_for(
                NewUpload(filename, size, content_type, metadata, owner, destination, title, caption))
            session = await self.registry.hold_new(record)
        finally:
            self.creating -= 1
        if owner is not None and self.p.quotas is not None:
            try:
                await self.p.quotas.started(owner, record.id)
            except StoreUnavailable:
                pass  # counted from the records at the next admission anyway
        self.emit("UPLOAD_START", upload_id=record.id, size=size, parts=plan.number_of_parts,
                  mode=plan.mode, filename=record.filename, destination=record.destination,
                  destination_kind=record.destination_kind)
        return session

    async def workspace_limit(self) -> int:
        return await self.creator.workspace_limit()

    async def get(self, upload_id: str, owner: str | None = None) -> UploadSession:
        return await self.registry.get(upload_id, owner)

    async def claim(self, upload_id: str, owner: str | None = None) -> UploadSession:
        return await self.registry.claim(upload_id, owner)

    def begin_write(self, s: UploadSession, offset: int, hold: bool = False) -> Writer:
        return self.intake.begin(s, offset, hold)

    def failure_of(self, s: UploadSession) -> UploadError:
        return s.failure()

    def check_expiry(self, s: UploadSession) -> None:
        """Reading an upload never writes its state: expiry is the holder's sweep's business."""

    async def terminate(self, s: UploadSession) -> None:
        await self.registry.terminate(s)

    # --- what server.py calls ------------------------------------------------------------------

    async def maintain(self) -> None:
        await self.registry.maintain()

    async def sweep(self) -> None:
        await self.registry.sweep()

    def stop_taking_bytes(self) -> None:
        """Shutting down: detach every request from its upload; what they sent so far stays."""
        self.draining = True
        self.registry.stop_taking_bytes(ServiceUnavailable("the server is restarting; retry shortly",
                                                           retry_after_s=2))

    def idle(self) -> bool:
        return self.registry.idle()

    async def flush(self, timeout_s: float) -> None:
        """Wait (up to timeout_s) for record writes still on their way to Redis."""
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)

    async def release_all(self) -> None:
        await self.registry.release_all()
