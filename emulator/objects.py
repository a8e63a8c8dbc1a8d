"""Notion's wire shapes: file upload, block, list and bot user objects.

Pure functions of a record, the emulator time, the request's base URL and Notion-Version,
so the JSON a client sees is decided in one place.
"""
from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Sequence

from .store import Block, Upload

# Notion-Version 2026-03-11 renamed `archived` to `in_trash`.
IN_TRASH_SINCE = "2026-03-11"

_BOT_NAMESPACE = uuid.UUID("6f0e3f5c-4c1e-4c55-9d1c-6e0a1f7e0b0b")


def iso(ts: float | None) -> str | None:
    """ISO-8601 UTC with milliseconds and a Z, as Notion writes times."""
    if ts is None:
        return None
    moment = dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def bot_id(token: str) -> str:
    """A stable bot user id per integration token (the token itself is never shown)."""
    return str(uuid.uuid5(_BOT_NAMESPACE, token))


def _trash_field(version: str) -> dict[str, bool]:
    return {"in_trash": False} if version >= IN_TRASH_SINCE else {"archived": False}


def file_upload(upload: Upload, now: float, base_url: str, version: str) -> dict[str, Any]:
    status = upload.status(now)
    out: dict[str, Any] = {
        "object": "file_upload",
        "id": upload.id,
        "created_time": iso(upload.created_at),
        "created_by": {"id": bot_id(upload.owner), "type": "bot"},
        "last_edited_time": iso(upload.last_edited_at),
        # null once attached: an attached upload no longer expires.
        "expiry_time": None if upload.attached_to else iso(upload.expires_at),
        "status": status,
        "filename": upload.filename,
        "content_type": upload.content_type,
        "content_length": upload.size if upload.size is not None else upload.content_length,
    }
    if upload.mode != "external_url" and status == "pending":
        out["upload_url"] = f"{base_url}/v1/file_uploads/{upload.id}/send"
    if upload.mode == "multi_part":
        if status == "pending":
            out["complete_url"] = f"{base_url}/v1/file_uploads/{upload.id}/complete"
        out["number_of_parts"] = {"total": upload.total_parts, "sent": len(upload.parts)}
    if upload.mode == "external_url":
        out["file_import_result"] = {
            "imported_time": iso(upload.last_edited_at),
            "type": "error",
            "error": {
                "type": "download_error",
                "code": "emulator_offline",
                "message": "The emulator does not fetch external URLs.",
                "parameter": "external_url",
                "status_code": None,
            },
        }
    out.update(_trash_field(version))
    return out


def block(b: Block, upload: Upload | None, base_url: str, version: str) -> dict[str, Any]:
    # After attaching, Notion shows the block's file as a Notion-hosted `file` with a
    # temporary URL; ours downloads the assembled bytes from the emulator.
    media: dict[str, Any] = {
        "caption": b.caption,
        "type": "file",
        "file": {
            "url": f"{base_url}/_emulator/files/{b.upload_id}",
            "expiry_time": iso(b.created_at + 3600),
        },
    }
    if b.type == "file":
        media["name"] = b.name or (upload.filename if upload else None)
    created = iso(b.created_at)
    out: dict[str, Any] = {
        "object": "block",
        "id": b.id,
        "parent": {"type": "page_id", "page_id": b.page_id},
        "created_time": created,
        "last_edited_time": created,
        "created_by": {"object": "user", "id": b.creator_bot_id},
        "last_edited_by": {"object": "user", "id": b.creator_bot_id},
        "has_children": False,
        "type": b.type,
        b.type: media,
    }
    out.update(_trash_field(version))
    return out


def listing(
    kind: str, results: Sequence[dict[str, Any]], next_cursor: str | None
) -> dict[str, Any]:
    return {
        "object": "list",
        "results": list(results),
        "next_cursor": next_cursor,
        "has_more": next_cursor is not None,
        "type": kind,
        kind: {},
    }


def bot_user(token: str, max_file_bytes: int) -> dict[str, Any]:
    return {
        "object": "user",
        "id": bot_id(token),
        "name": "Notion emulator",
        "avatar_url": None,
        "type": "bot",
        "bot": {
            "owner": {"type": "workspace", "workspace": True},
            "workspace_name": "Emulator workspace",
            "workspace_id": str(uuid.uuid5(_BOT_NAMESPACE, "workspace")),
            "workspace_limits": {"max_file_upload_size_in_bytes": max_file_bytes},
        },
    }
