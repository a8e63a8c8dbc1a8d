"""An upload's record (what is persisted), its states, and UploadSession (the live progress).

    created → receiving → finalizing → completed
         ↘        ↘            ↘
          failed (can_resume: a later request resumes it) · expired · terminated

Every state change is one method here that sets the state, `can_resume`, `error` and the
`finished` future together, so no caller can leave them disagreeing.
"""
from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from engine.errors import UploadError, UploadFailed, UploadGone
from engine.upload.interfaces import ActiveRequest
from engine.upload.partplan import PartPlan
from engine.upload.spool import PartAssembler

NOTION_WINDOW_PASSED = "Notion's upload window (1 hour from creation) has passed; start the upload again"
TERMINATED_BY_CLIENT = "the upload was terminated by the client"
# A resumable failure tells the client when to come back.
RESUME_AFTER_S = 30


class State(StrEnum):
    CREATED = "created"
    RECEIVING = "receiving"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    TERMINATED = "terminated"


CREATED, RECEIVING, FINALIZING, COMPLETED = State.CREATED, State.RECEIVING, State.FINALIZING, State.COMPLETED
FAILED, EXPIRED, TERMINATED = State.FAILED, State.EXPIRED, State.TERMINATED
FINAL_STATES = frozenset({COMPLETED, EXPIRED, TERMINATED})
# No part of an upload in these states goes to Notion.
STOPPED_STATES = frozenset({FAILED, EXPIRED, TERMINATED})


@dataclass
class UploadRecord:
    id: str
    filename: str
    content_type: str
    size: int
    part_size: int
    number_of_parts: int
    mode: str
    created_at: float
    state: State = CREATED
    notion_file_upload_id: str | None = None
    notion_status: str | None = None
    expires_at: float | None = None
    page_id: str | None = None  # a page destination: the file goes there as a block
    block_id: str | None = None
    # Where the file goes (engine/destinations.py): its name, kind ("page" | "database") and,
    # for a database, the data source its row goes into and the row's property names.
    destination: str | None = None
    destination_kind: str | None = None
    destination_id: str | None = None
    data_source_id: str | None = None
    title_property: str | None = None
    files_property: str | None = None
    caption_property: str | None = None
    title: str | None = None
    caption: str | None = None
    row_id: str | None = None
    metadata: str | None = None
    error: str | None = None
    can_resume: bool = True
    owner: str | None = None
    updated_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def attaches(self) -> bool:
        """The file goes somewhere in Notion (a block on a page, or a database row)."""
        return bool(self.page_id or self.data_source_id)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = self.state.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "UploadRecord":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["state"] = State(known.get("state", CREATED))
        return cls(**known)


class UploadSession:
    """An upload this process knows: its record plus live, in-memory progress."""

    def __init__(self, record: UploadRecord, plan: PartPlan, durable: set[int], assembler: PartAssembler) -> None:
        self.record = record
        self.plan = plan
        self.durable = durable
        self.assembler = assembler
        self.ready: deque[int] = deque()  # complete part files waiting for room in the scheduler
        self.in_flight: set[int] = set()  # handed to the scheduler, not yet durable
        self.failed_parts: set[int] = set()  # sends that ran out of attempts; re-sent on resume
        self.writer: ActiveRequest | None = None
        # The last request ended mid-body: bytes it delivered after the client gave up may have
        # moved us past the offset the client saw, so its next request may rewind (intake).
        self.interrupted = False
        self.last_activity = 0.0  # monotonic time of the last byte, part or request
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if record.state == COMPLETED:
            self.finished.set_result(None)
        self.finalizing: asyncio.Task[None] | None = None
        self.saving = False  # a record write is on its way (records.py)
        self.dirty = False  # the record changed while it was being written
        self.gone = False  # its record was replaced by a tombstone: never written again

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def state(self) -> State:
        return self.record.state

    # --- transitions -------------------------------------------------------------------------

    def receive(self) -> bool:
        """The first bytes arrived; True when that changed the state."""
        if self.record.state != CREATED:
            return False
        self.record.state = RECEIVING
        return True

    def start_finalizing(self) -> None:
        self.record.state = FINALIZING

    def complete(self) -> None:
        """Notion holds the whole file, attached where it belongs: it no longer expires."""
        self.record.state = COMPLETED
        self.record.notion_status = "uploaded"
        if self.record.attaches:
            self.record.expires_at = None
        self.finalizing = None
        if not self.finished.done():
            self.finished.set_result(None)

    def fail(self, message: str, can_resume: bool) -> None:
        self.record.state = FAILED
        self.record.error = message
        self.record.can_resume = can_resume
        self.finalizing = None
        self._reject(self.failure())

    def resume(self) -> list[int]:
        """A new request for a resumable failure: back to receiving; the parts to send again."""
        self.record.state = RECEIVING
        self.record.error = None
        if self.finished.done():
            self.finished = asyncio.get_running_loop().create_future()
        again = sorted(self.failed_parts)
        self.failed_parts.clear()
        return again

    def expire(self) -> None:
        self.record.state = EXPIRED
        self.record.can_resume = False
        self.record.error = NOTION_WINDOW_PASSED
        self._reject(UploadGone(self.record.error))

    def terminate(self) -> None:
        self.record.state = TERMINATED
        self.record.can_resume = False
        self.record.error = TERMINATED_BY_CLIENT
        self.ready.clear()
        self.in_flight.clear()
        self._reject(UploadGone(self.record.error))

    def failure(self) -> UploadError:
        """What a request for this upload is told while it cannot go on."""
        if self.record.state in (EXPIRED, TERMINATED):
            return UploadGone(self.record.error or "the upload is gone")
        return UploadFailed(self.record.error or "the upload failed", can_resume=self.record.can_resume,
                            retry_after_s=RESUME_AFTER_S if self.record.can_resume else None)

    def _reject(self, error: UploadError) -> None:
        if not self.finished.done():
            self.finished.set_exception(error)
            self.finished.exception()  # mark retrieved: nobody may be waiting right now

    # --- offsets -----------------------------------------------------------------------------

    @property
    def durable_offset(self) -> int:
        return self.plan.durable_offset(self.durable)

    @property
    def committed_offset(self) -> int:
        """Bytes we hold and vouch for (a checksummed request counts only once verified)."""
        w = self.writer
        if w is not None and w.hold and not w.closed:
            return w.start
        return self.assembler.received

    @property
    def client_offset(self) -> int:
        """The tus Upload-Offset. Until Notion holds the file, the last byte is never reported
        as received: a client that lost the final response re-sends it and waits for the truth
        (DESIGN.md invariant 1) instead of assuming "done"."""
        if self.record.state == COMPLETED:
            return self.plan.size
        return min(self.committed_offset, self.plan.size - 1)

    @property
    def confirmed_bytes(self) -> int:
        return sum(self.plan.part_length(n) for n in self.durable)

    def handed_out_limit(self) -> int:
        """The lowest offset we may rewind to: parts past it are being read by libcurl."""
        busy = self.in_flight | self.failed_parts | set(self.ready)
        return self.plan.part_end(max(busy)) if busy else 0

    @property
    def working(self) -> bool:
        """A request, a part or finishing is still going on."""
        return bool(self.writer is not None or self.in_flight or self.ready or self.finalizing is not None)

    @property
    def busy(self) -> bool:
        """Working, or a record write is on its way (until it lands the store's copy is stale,
        so the upload must not be let go)."""
        return self.working or self.saving
