"""The upload record (what is persisted), its states, and UploadSession (the live progress).

States: created → receiving → finalizing → completed, or failed / expired / terminated.
"""
from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from engine.partplan import PartPlan
from engine.spool import PartAssembler

if TYPE_CHECKING:
    from engine.writer import Writer

CREATED, RECEIVING, FINALIZING, COMPLETED = "created", "receiving", "finalizing", "completed"
FAILED, EXPIRED, TERMINATED = "failed", "expired", "terminated"
FINAL_STATES = frozenset({COMPLETED, EXPIRED, TERMINATED})


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
    state: str = CREATED
    notion_file_upload_id: str | None = None
    notion_status: str | None = None
    expires_at: float | None = None
    page_id: str | None = None
    block_id: str | None = None
    metadata: str | None = None
    error: str | None = None
    can_resume: bool = True
    owner: str | None = None
    updated_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "UploadRecord":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class UploadSession:
    """An upload this process is working on: its record plus live, in-memory progress."""

    def __init__(self, record: UploadRecord, plan: PartPlan, durable: set[int], assembler: PartAssembler) -> None:
        self.record = record
        self.plan = plan
        self.durable = durable
        self.assembler = assembler
        self.ready: deque[int] = deque()  # complete part files waiting for room in the scheduler
        self.in_flight: set[int] = set()  # handed to the scheduler, not yet durable
        self.failed_parts: set[int] = set()  # sends that ran out of attempts; re-sent on resume
        self.writer: Writer | None = None
        # The last request ended mid-body: bytes it delivered after the client gave up may have
        # moved us past the offset the client saw, so its next request may rewind (see begin_write).
        self.interrupted = False
        self.last_activity = 0.0  # monotonic time of the last byte, part or request
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.finalizing: asyncio.Task[None] | None = None
        self._saving = False
        self._dirty = False
        self.gone = False  # its record was replaced by a tombstone: never written again

    @property
    def id(self) -> str:
        return self.record.id

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
