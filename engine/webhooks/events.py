"""The events: their types, ids and JSON bodies (serialized once, sent byte for byte on every attempt)."""
from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.clock import iso8601

UPLOAD_COMPLETED = "upload.completed"
UPLOAD_FAILED = "upload.failed"
UPLOAD_EXPIRED = "upload.expired"
UPLOAD_TERMINATED = "upload.terminated"
EVENT_TYPES = (UPLOAD_COMPLETED, UPLOAD_FAILED, UPLOAD_EXPIRED, UPLOAD_TERMINATED)
# An upload's final state → the event it sends ("failed" only when it can never resume).
STATE_EVENTS = {"completed": UPLOAD_COMPLETED, "failed": UPLOAD_FAILED, "expired": UPLOAD_EXPIRED,
                "terminated": UPLOAD_TERMINATED}


# --- events ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class WebhookEvent:
    id: str
    type: str
    body: str  # the JSON body, serialized once: every attempt sends these bytes
    created_at: float
    upload_id: str | None = None

    @classmethod
    def create(cls, event_type: str, data: Mapping[str, Any], occurred_at: float,
               event_id: str | None = None) -> "WebhookEvent":
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown webhook event type {event_type!r}")
        upload_id = data.get("upload_id")
        if event_id is None:
            event_id = event_id_for(str(upload_id), event_type) if upload_id else "evt_" + _random_hex()
        body = json.dumps({"type": event_type, "timestamp": iso8601(occurred_at), "data": dict(data)},
                          separators=(",", ":"), ensure_ascii=False)
        return cls(event_id, event_type, body, occurred_at, str(upload_id) if upload_id else None)


def _random_hex() -> str:
    return hashlib.sha256(f"{time.time_ns()}-{random.random()}".encode()).hexdigest()[:32]


def event_id_for(upload_id: str, event_type: str) -> str:
    """One id per upload and event type: writing the same transition twice (a retried MULTI, two
    instances deciding the same expiry) adds one event, and receivers see one id."""
    return "evt_" + hashlib.sha256(f"{upload_id}:{event_type}".encode()).hexdigest()[:32]


def upload_event(event_type: str, record: Mapping[str, Any], occurred_at: float,
                 destination: Mapping[str, Any] | None = None) -> WebhookEvent:
    """The event for an upload's record (engine/upload/session.py UploadRecord.to_dict()).
    `destination`: {name, id, kind} once destinations exist (issue 14); by default the
    record's page, the default destination."""
    if destination is None:
        destination = {"name": record.get("destination") or "default",
                       "id": record.get("destination_id") or record.get("page_id"),
                       "kind": record.get("destination_kind") or "page"}
    data = {
        "upload_id": record.get("id"),
        "owner": record.get("owner"),
        "filename": record.get("filename"),
        "size": record.get("size"),
        "content_type": record.get("content_type"),
        "destination": dict(destination),
        "notion": {
            "file_upload_id": record.get("notion_file_upload_id"),
            "page_id": record.get("page_id"),
            "block_id": record.get("block_id"),
            "row_id": record.get("row_id"),
            "data_source_id": record.get("data_source_id"),
        },
        "created_at": iso8601(record["created_at"]) if record.get("created_at") else None,
    }
    if event_type != UPLOAD_COMPLETED:
        data["error"] = record.get("error")
    return WebhookEvent.create(event_type, data, occurred_at)


def state_events(record: Mapping[str, Any], occurred_at: float) -> list[WebhookEvent]:
    """The event an upload's record in this state announces: completed (only once Notion holds
    the file and it is attached: the same rule as the state), failed for good, expired,
    terminated. A resumable failure announces nothing: it is not an end."""
    state = record.get("state")
    if state == "failed" and record.get("can_resume"):
        return []
    event_type = STATE_EVENTS.get(str(state))
    return [upload_event(event_type, record, occurred_at)] if event_type else []
