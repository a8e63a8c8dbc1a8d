"""Notion's wire shapes: file upload, page, block, database, data source, list and user objects.

Pure functions of a record, the emulator time, the request's base URL and Notion-Version,
so the JSON a client sees is decided in one place. Key order follows what Notion sends (see
/work/shared/notion-recordings/recordings.json).
"""
from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from .store import Block, Database, DataSource, PropertyDef, Upload

# Up to Notion-Version 2025-09-03 objects carry both `in_trash` and the deprecated
# `archived` (the live recordings show both); from 2026-03-11 on, only `in_trash`.
IN_TRASH_ONLY_SINCE = "2026-03-11"

# How long a Notion-hosted file URL in a block stays valid (Notion: one hour).
FILE_URL_TTL_S = 3600

# From 2025-09-03 on a database is a container of data sources, which hold the property
# schema and the rows; before it, the database object carried the schema itself.
DATA_SOURCES_SINCE = "2025-09-03"

_BOT_NAMESPACE = uuid.UUID("6f0e3f5c-4c1e-4c55-9d1c-6e0a1f7e0b0b")


def iso(ts: float | None) -> str | None:
    """ISO-8601 UTC with milliseconds and a Z, as Notion writes times."""
    if ts is None:
        return None
    moment = dt.datetime.fromtimestamp(ts, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_offset(ts: float) -> str:
    """ISO-8601 with milliseconds and `+00:00`: how Notion writes `imported_time`."""
    return (iso(ts) or "")[:-1] + "+00:00"


def bot_id(token: str) -> str:
    """A stable bot user id per integration token (the token itself is never shown)."""
    return str(uuid.uuid5(_BOT_NAMESPACE, token))


def workspace_member_id() -> str:
    """The person who made the databases (in the Notion app: they are not the bot's)."""
    return str(uuid.uuid5(_BOT_NAMESPACE, "workspace member"))


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


def has_data_sources(version: str) -> bool:
    return version >= DATA_SOURCES_SINCE


def row_parent(source: DataSource, version: str) -> dict[str, Any]:
    """The parent of a database row: its data source (and database) from 2025-09-03 on,
    its database before."""
    if has_data_sources(version):
        return {"type": "data_source_id", "data_source_id": source.id, "database_id": source.database_id}
    return {"type": "database_id", "database_id": source.database_id}


def page(
    b: Block,
    version: str,
    source: DataSource | None = None,
    base_url: str = "",
    now: float = 0.0,
    file_names: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A page created through the API (kept as a `child_page` block of its parent); a row of
    a data source (`source`) carries every property of its schema."""
    edited = b.last_edited_at or b.created_at
    if source is None:
        parent: dict[str, Any] = {"type": "page_id", "page_id": b.page_id}
        properties = {
            "title": {"id": "title", "type": "title", "title": list(b.content.get("title", []))}
        }
    else:
        parent = row_parent(source, version)
        properties = row_properties(b, source, base_url, now, file_names or {})
    out: dict[str, Any] = {
        "object": "page",
        "id": b.id,
        "created_time": iso(b.created_at),
        "last_edited_time": iso(edited),
        "created_by": _user_ref(b.creator_bot_id),
        "last_edited_by": _user_ref(b.creator_bot_id),
        "cover": b.content.get("cover"),
        "icon": b.content.get("icon"),
        "parent": parent,
        "in_trash": b.in_trash,
        "is_archived": False,
        "is_locked": False,
        "properties": properties,
        "url": page_url(b),
        "public_url": None,
    }
    return _with_trash(out, b.in_trash, version)


def blob_url(base_url: str, blob_id: str, filename: str | None) -> str:
    """A Notion-hosted file's URL (media block, files property): an opaque id of its own,
    never the file upload's."""
    return f"{base_url}/_emulator/blobs/{blob_id}/{quote(filename or 'file', safe='')}"


def row_properties(
    b: Block, source: DataSource, base_url: str, now: float, file_names: dict[str, str]
) -> dict[str, Any]:
    """A row's property values: every property of the schema (empty ones too), by name.

    `file_names`: blob id -> the filename of the upload behind it (the end of its URL)."""
    stored = b.content.get("properties", {})
    out: dict[str, Any] = {}
    for prop in source.properties:
        value = b.content.get("title", []) if prop.type == "title" else stored.get(prop.id)
        out[prop.name] = {
            "id": prop.id,
            "type": prop.type,
            prop.type: _property_value(prop, value, base_url, now, file_names),
        }
    return out


def _property_value(
    prop: PropertyDef, value: Any, base_url: str, now: float, file_names: dict[str, str]
) -> Any:
    if prop.type in ("title", "rich_text"):
        return list(value or [])
    if prop.type == "checkbox":
        return bool(value)
    if prop.type != "files":
        return value
    files = []
    for entry in value or []:
        if "external_url" in entry:
            files.append({"name": entry["name"], "type": "external", "external": {"url": entry["external_url"]}})
            continue
        blob_id = entry["blob_id"]
        # As in Notion: a Notion-hosted file with a temporary URL, never the file_upload id.
        files.append(
            {
                "name": entry["name"],
                "type": "file",
                "file": {
                    "url": blob_url(base_url, blob_id, file_names.get(blob_id, entry["name"])),
                    "expiry_time": iso(now + FILE_URL_TTL_S),
                },
            }
        )
    return files


# --- databases and data sources ------------------------------------------------------------------


def database_url(db: Database) -> str:
    """Notion's app URL of a database (and of its data sources): the compact id only."""
    return f"https://app.notion.com/p/{db.id.replace('-', '')}"


def database_parent(db: Database) -> dict[str, Any]:
    if db.parent_page_id is None:
        return {"type": "workspace", "workspace": True}
    return {"type": "page_id", "page_id": db.parent_page_id}


def property_schema(prop: PropertyDef, version: str) -> dict[str, Any]:
    """A property of a schema: `{id, name, description, type, <type>: {}}` (the live
    recordings at 2025-09-03 carry `description: null`; older versions had none)."""
    out: dict[str, Any] = {"id": prop.id, "name": prop.name}
    if has_data_sources(version):
        out["description"] = None
    out["type"] = prop.type
    out[prop.type] = {}
    return out


def database(db: Database, sources: Sequence[DataSource], in_trash: bool, version: str) -> dict[str, Any]:
    """The database object. From 2025-09-03 on (keys in the order of the live recordings):
    no schema, `data_sources: [{id, name}]`, times written with `+00:00` as recorded. Before
    2025-09-03 the older shape: the schema of its (only) data source as `properties`."""
    edited = db.last_edited_at or db.created_at
    if not has_data_sources(version):
        return {
            "object": "database",
            "id": db.id,
            "cover": None,
            "icon": None,
            "created_time": iso(db.created_at),
            "created_by": _user_ref(db.creator_id),
            "last_edited_by": _user_ref(db.creator_id),
            "last_edited_time": iso(edited),
            "title": list(db.title),
            "description": [],
            "is_inline": False,
            "properties": {p.name: property_schema(p, version) for p in sources[0].properties},
            "parent": database_parent(db),
            "url": database_url(db),
            "public_url": None,
            "archived": in_trash,
            "in_trash": in_trash,
        }
    out: dict[str, Any] = {
        "object": "database",
        "id": db.id,
        "title": list(db.title),
        "description": [],
        "parent": database_parent(db),
        "is_inline": False,
        "in_trash": in_trash,
        "is_locked": False,
        "created_time": iso_offset(db.created_at),
        "last_edited_time": iso_offset(edited),
        "data_sources": [{"id": s.id, "name": plain_text(s.title)} for s in sources],
        "icon": None,
        "cover": None,
        "url": database_url(db),
        "public_url": None,
    }
    return _with_trash(out, in_trash, version)


def data_source(source: DataSource, db: Database, in_trash: bool, version: str) -> dict[str, Any]:
    """The data source object (2025-09-03 on), keys in the order of the live recordings."""
    edited = source.last_edited_at or source.created_at
    out: dict[str, Any] = {
        "object": "data_source",
        "id": source.id,
        "cover": None,
        "icon": None,
        "created_time": iso(source.created_at),
        "created_by": _user_ref(source.creator_id),
        "last_edited_by": _user_ref(source.creator_id),
        "last_edited_time": iso(edited),
        "title": list(source.title),
        "description": [],
        "is_inline": False,
        "properties": {p.name: property_schema(p, version) for p in source.properties},
        "parent": {"type": "database_id", "database_id": db.id},
        "database_parent": database_parent(db),
        "url": database_url(db),
        "public_url": None,
        "in_trash": in_trash,
    }
    return _with_trash(out, in_trash, version)


def block(
    b: Block,
    upload: Upload | None,
    base_url: str,
    version: str,
    now: float,
    has_children: bool,
    parent: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A block; `parent` when it is not a page or block (a database row's data source)."""
    payload: dict[str, Any]
    if b.type == "paragraph":
        payload = {
            "rich_text": list(b.content.get("rich_text", [])),
            "icon": None,
            "color": b.content.get("color", "default"),
        }
    elif b.type in ("child_page", "child_database"):
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
    if parent is None:
        parent_key = "block_id" if b.parent_type == "block_id" else "page_id"
        parent = {"type": parent_key, parent_key: b.page_id}
    out: dict[str, Any] = {
        "object": "block",
        "id": b.id,
        "parent": parent,
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
