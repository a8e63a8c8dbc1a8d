"""The upload record (what is persisted) and its states.

States: created → receiving → finalizing → completed, or failed / expired / terminated.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

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
