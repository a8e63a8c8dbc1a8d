"""Notion's wire shapes: file upload, page, block, list and user objects.

Pure functions of a record, the emulator time, the request's base URL and Notion-Version,
so the JSON a client sees is decided in one place. Key order follows what Notion sends (see
/work/shared/notion-recordings/recordings.json).
"""
from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any, Sequence
from urllib.parse import quote

from .store import Block, Upload

# Up to Notion-Version 2025-09-03 objects carry both `in_trash` and the deprecated
# `archived` (the live recordings show both); from 2026-03-11 on, only `in_trash`.
IN_TRASH_ONLY_SINCE = "2026-03-11"

# How long a Notion-hosted file URL in a block stays valid (Notion: one hour).
FILE_URL_TTL_S = 3600

_BOT_NAMESPACE = uuid.UUID("6f0e3f5c-4c1e-4c55-9d1c-6e0a1f7e0b0b")


def iso(ts: float | None) -> str | None:
    """ISO-8601 UTC with milliseconds and a Z, as Notion writes times."""
    if ts is None:
        return None
    moment = dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_offset(ts: float) -> str:
    """ISO-8601 with milliseconds and `+00:00`: how Notion writes `imported_time`."""
    return (iso(ts) or "")[:-1] + "+00:00"


def bot_id(token: str) -> str:
    """A stable bot user id per integration token (the token itself is never shown)."""
    return str(uuid.uuid5(_BOT_NAMESPACE, token))


def _with_trash(out: dict[str, Any], in_trash: bool, version: str) -> dict[str, Any]:
    """Append the deprecated `archived` (same value as `in_trash`) for older versions."""
    if version < IN_TRASH_ONLY_SINCE:
        out["archived"] = in_trash
    return out


# --- file uploads ------------------------------------------------------------------------------


def file_upload(upload: Upload, now: float, base_url: str, version: str) -> dict[str, Any]:
    status = upload.status(now)
    expired = status == "expired"
    last_edited = upload.last_edited_at
    if expired:
        # Notion's expiry is an edit: the record changes when it expires.
        last_edited = max(last_edited, upload.expires_at)
    out: dict[str, Any] = {
        "object": "file_upload",
        "id": upload.id,
        "created_time": iso(upload.created_at),
        "created_by": {"id": bot_id(upload.owner), "type": "bot"},
        "last_edited_time": iso(last_edited),
        # null once attached (an attached upload no longer expires), and once expired: the
        # live recordings list expired uploads with `expiry_time: null`.
        "expiry_time": None if upload.attached_to or expired else iso(upload.expires_at),
    }
    if status == "pending":
        # Notion shows it on every pending upload, external_url ones included (recorded).
        out["upload_url"] = f"{base_url}/v1/file_uploads/{upload.id}/send"
        if upload.mode == "multi_part":
            out["complete_url"] = f"{base_url}/v1/file_uploads/{upload.id}/complete"
    out["in_trash"] = False
    out["status"] = status
    out["filename"] = upload.filename
    out["content_type"] = upload.content_type
    # null until the first byte arrived, then the bytes received so far.
    if upload.size is not None:
        out["content_length"] = upload.size
    else:
        out["content_length"] = upload.content_length if upload.parts else None
    if upload.mode == "multi_part":
        out["number_of_parts"] = {"total": upload.total_parts, "sent": len(upload.parts)}
    result = upload.file_import
    if result is not None:
        kind = result["type"]
        out["file_import_result"] = {
            "type": kind,
            kind: result.get("error", {}) if kind == "error" else {},
            "imported_time": iso_offset(result["imported_at"]),
        }
    return _with_trash(out, False, version)


# --- users -------------------------------------------------------------------------------------


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


def _user_ref(user_id: str) -> dict[str, Any]:
    return {"object": "user", "id": user_id}


# --- pages and blocks --------------------------------------------------------------------------


def plain_text(rich_text: Sequence[dict[str, Any]]) -> str:
    return "".join(item.get("plain_text", "") for item in rich_text)


def page_url(b: Block) -> str:
    """Notion's app URL: the title's words joined by dashes, then the id without dashes."""
    slug = re.sub(r"[^0-9A-Za-z]+", "-", plain_text(b.content.get("title", []))).strip("-")
    compact = b.id.replace("-", "")
    return f"https://app.notion.com/p/{slug}-{compact}" if slug else f"https://app.notion.com/p/{compact}"


def page(b: Block, version: str) -> dict[str, Any]:
    """A page created through the API (kept as a `child_page` block of its parent)."""
    edited = b.last_edited_at or b.created_at
    out: dict[str, Any] = {
        "object": "page",
        "id": b.id,
        "created_time": iso(b.created_at),
        "last_edited_time": iso(edited),
        "created_by": _user_ref(b.creator_bot_id),
        "last_edited_by": _user_ref(b.creator_bot_id),
        "cover": b.content.get("cover"),
        "icon": b.content.get("icon"),
        "parent": {"type": "page_id", "page_id": b.page_id},
        "in_trash": b.in_trash,
        "is_archived": False,
        "is_locked": False,
        "properties": {
            "title": {"id": "title", "type": "title", "title": list(b.content.get("title", []))}
        },
        "url": page_url(b),
        "public_url": None,
    }
    return _with_trash(out, b.in_trash, version)


def blob_url(base_url: str, blob_id: str, filename: str | None) -> str:
    """A media block's file URL: an opaque id of its own (never the file upload's id)."""
    return f"{base_url}/_emulator/blobs/{blob_id}/{quote(filename or 'file', safe='')}"


def block(
    b: Block,
    upload: Upload | None,
    base_url: str,
    version: str,
    now: float,
    has_children: bool,
) -> dict[str, Any]:
    payload: dict[str, Any]
    if b.type == "paragraph":
        payload = {
            "rich_text": list(b.content.get("rich_text", [])),
            "icon": None,
            "color": b.content.get("color", "default"),
        }
    elif b.type == "child_page":
        payload = {"title": plain_text(b.content.get("title", []))}
    else:
        # After attaching, Notion shows the block's file as a Notion-hosted `file` with a
        # temporary URL; it never carries the file_upload id. Ours downloads the stored bytes.
        filename = upload.filename if upload else None
        payload = {
            "caption": list(b.caption),
            "type": "file",
            "file": {
                "url": blob_url(base_url, b.blob_id or "", filename),
                "expiry_time": iso(now + FILE_URL_TTL_S),
            },
        }
        if b.type == "file":
            payload["name"] = b.name or filename
    edited = b.last_edited_at or b.created_at
    parent_key = "block_id" if b.parent_type == "block_id" else "page_id"
    out: dict[str, Any] = {
        "object": "block",
        "id": b.id,
        "parent": {"type": parent_key, parent_key: b.page_id},
        "created_time": iso(b.created_at),
        "last_edited_time": iso(edited),
        "created_by": _user_ref(b.creator_bot_id),
        "last_edited_by": _user_ref(b.creator_bot_id),
        "has_children": has_children,
        "in_trash": b.in_trash,
        "type": b.type,
        b.type: payload,
    }
    return _with_trash(out, b.in_trash, version)


# --- lists -------------------------------------------------------------------------------------


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
