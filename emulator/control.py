"""`/_emulator/*`: inspection and control for tests, benchmarks and demos (no auth, no rate
limit, no faults). Errors here are plain `{"error": "..."}` bodies, not Notion's shape."""
from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import tornado.web

from . import blocks, errors, objects, properties, rules
from .config import PLAN_MAX_FILE_BYTES
from .faults import STATUS_KINDS, FaultConfigError, FaultPlan
from .store import Block, Database, DataSource, PropertyDef, Upload

if TYPE_CHECKING:
    from .state import Emulator

OUTAGE_STATUSES = tuple(int(k) for k in STATUS_KINDS)
FILE_CHUNK_BYTES = 1 << 20


class ControlHandler(tornado.web.RequestHandler):
    def initialize(self, emu: Emulator) -> None:
        self.emu = emu

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.finish(json.dumps({"error": message}))

    def send_json(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(obj))

    def json_body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}")
        except ValueError:
            raise tornado.web.HTTPError(400, "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise tornado.web.HTTPError(400, "the body must be a JSON object")
        return data

    def find_upload(self, raw_id: str) -> Upload:
        upload_id = rules.normalize_uuid(raw_id)
        upload = self.emu.store.get(upload_id) if upload_id else None
        if upload is None:
            raise tornado.web.HTTPError(404, f"no upload {raw_id}")
        return upload

    def describe(self, upload: Upload) -> dict[str, Any]:
        now = self.emu.clock.now()
        single = upload.mode == "single_part"
        return {
            "id": upload.id,
            "status": upload.status(now),
            "mode": upload.mode,
            "filename": upload.filename,
            "content_type": upload.content_type,
            "size": upload.size,
            "sha256": upload.sha256,
            "content_length": upload.content_length,
            "number_of_parts": 1 if single else upload.total_parts,
            "parts": {
                str(n): {"size": p.size, "sends": p.sends, "sha256": p.sha256 or None}
                for n, p in sorted(upload.parts.items())
            },
            "attached_to": list(upload.attached_to),
            "created_time": objects.iso(upload.created_at),
            "expiry_time": objects.iso(upload.expires_at),
            "sends_in_flight": upload.sends_in_flight,
            "max_concurrent_sends": upload.max_sends_in_flight,
            "files_deleted": upload.files_deleted,
        }


class HealthHandler(ControlHandler):
    def get(self) -> None:
        self.send_json({"ok": True})


class UploadsHandler(ControlHandler):
    def get(self) -> None:
        self.send_json({"uploads": [self.describe(u) for u in self.emu.store.newest_first()]})


class UploadHandler(ControlHandler):
    def get(self, raw_id: str) -> None:
        self.send_json(self.describe(self.find_upload(raw_id)))


class FileHandler(ControlHandler):
    """GET the assembled bytes of an uploaded file, by its upload id (for tests)."""

    async def get(self, raw_id: str) -> None:
        await self.send_file(self.find_upload(raw_id))

    async def send_file(self, upload: Upload) -> None:
        if upload.stored_status != "uploaded" or upload.files_deleted:
            raise tornado.web.HTTPError(409, f"upload {upload.id} holds no complete file")
        self.set_header("Content-Type", upload.content_type or "application/octet-stream")
        self.set_header("Content-Length", str(upload.size))
        for chunk in self.emu.store.iter_file(upload, FILE_CHUNK_BYTES):
            self.write(chunk)
            await self.flush()  # one chunk in memory at a time


class BlobHandler(FileHandler):
    """GET the bytes behind a file URL (`/_emulator/blobs/<blob id>/<name>`) of a media block
    or of a `files` property entry: the URL names an opaque id of its own, never the file
    upload's."""

    async def get(self, blob_id: str, _filename: str) -> None:  # type: ignore[override]
        upload_id = self.emu.store.find_blob(blob_id) if blob_id else None
        upload = self.emu.store.get(upload_id) if upload_id else None
        if upload is None:
            raise tornado.web.HTTPError(404, f"no file {blob_id}")
        await self.send_file(upload)


class StatsHandler(ControlHandler):
    def get(self) -> None:
        emu = self.emu
        now = emu.clock.now()
        by_status: dict[str, int] = {}
        for upload in emu.store.uploads.values():
            status = upload.status(now)
            by_status[status] = by_status.get(status, 0) + 1
        out = emu.stats.snapshot()
        out.update(
            {
                "faults_injected": dict(emu.faults.injected),
                "uploads": by_status,
                "outage_remaining_s": round(emu.outage.remaining_s(), 3),
                # bytes complete had to hash before answering (the running digest was behind)
                "digest_bytes_at_complete": emu.store.digest_bytes_at_complete,
                # tokens left per integration, keyed by bot id (never by the token itself)
                "rate_limit_tokens": {
                    objects.bot_id(t): left for t, left in emu.limiter.snapshot().items()
                },
            }
        )
        self.send_json(out)


class StatsResetHandler(ControlHandler):
    def post(self) -> None:
        self.emu.stats.reset()
        self.emu.faults.injected.clear()
        self.send_json({"ok": True})


class FaultsHandler(ControlHandler):
    def get(self) -> None:
        self.send_json(self.emu.faults.describe())

    def post(self) -> None:
        try:
            plan = FaultPlan.parse(self.json_body())
        except FaultConfigError as e:
            raise tornado.web.HTTPError(400, str(e)) from None
        self.emu.faults.set_plan(plan)
        self.send_json(self.emu.faults.describe())


class OutageHandler(ControlHandler):
    def post(self) -> None:
        body = self.json_body()
        seconds = body.get("seconds")
        status = body.get("status", 503)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise tornado.web.HTTPError(400, "seconds must be a number ≥ 0")
        if status not in OUTAGE_STATUSES:
            raise tornado.web.HTTPError(
                400, f"status must be one of {', '.join(map(str, OUTAGE_STATUSES))}"
            )
        self.emu.outage.start(float(seconds), status)
        code = errors.CODE_FOR_STATUS[status]
        self.send_json({"seconds": seconds, "status": status, "code": code})


class ClockHandler(ControlHandler):
    """Move the emulator's wall clock forward (expiry) without waiting."""

    def get(self) -> None:
        self.send_json({"offset_s": self.emu.clock.offset_s, "now": objects.iso(self.emu.clock.now())})

    def post(self) -> None:
        advance = self.json_body().get("advance_s")
        if isinstance(advance, bool) or not isinstance(advance, (int, float)) or advance < 0:
            raise tornado.web.HTTPError(400, "advance_s must be a number ≥ 0")
        self.emu.clock.advance(float(advance))
        self.get()


class PlanHandler(ControlHandler):
    """Change the workspace plan and/or its per-file limit while running."""

    def get(self) -> None:
        self.send_json({"plan": self.emu.plan, "max_file_bytes": self.emu.max_file_bytes})

    def post(self) -> None:
        body = self.json_body()
        plan = body.get("plan", self.emu.plan)
        if plan not in PLAN_MAX_FILE_BYTES:
            raise tornado.web.HTTPError(400, f"plan must be one of {', '.join(PLAN_MAX_FILE_BYTES)}")
        limit = body.get("max_file_bytes")
        if "plan" in body and limit is None:
            limit = PLAN_MAX_FILE_BYTES[plan]
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise tornado.web.HTTPError(400, "max_file_bytes must be an integer ≥ 1")
        self.emu.plan = plan
        if limit is not None:
            self.emu.max_file_bytes = limit
        self.get()


class UnknownControlHandler(ControlHandler):
    def prepare(self) -> None:
        raise tornado.web.HTTPError(404, f"no control endpoint {self.request.path}")


class DatabasesHandler(ControlHandler):
    """Make a database with one data source (Notion's API makes databases too, but a relay
    is given existing ones: this stands for the person who made it in the Notion app)."""

    KEYS = {"title", "parent_page_id", "properties"}

    def get(self) -> None:
        store = self.emu.store
        self.send_json(
            {
                "databases": [
                    {
                        "id": db.id,
                        "data_source_id": db.data_source_ids[0],
                        "title": objects.plain_text(db.title),
                        "parent_page_id": db.parent_page_id,
                        "in_trash": store.database_in_trash(db),
                        "rows": len(store.blocks(db.data_source_ids[0])),
                    }
                    for db in store.databases.values()
                ]
            }
        )

    def post(self) -> None:
        store = self.emu.store
        body = self.json_body()
        unknown = sorted(set(body) - self.KEYS)
        if unknown:
            known = ", ".join(sorted(self.KEYS))
            raise tornado.web.HTTPError(400, f"unknown keys {', '.join(unknown)}; known: {known}")
        title = body.get("title", "Untitled")
        if not isinstance(title, str) or len(title) > blocks.MAX_TEXT_CHARS:
            raise tornado.web.HTTPError(400, f"title must be a string of at most {blocks.MAX_TEXT_CHARS} characters")
        try:
            schema = properties.parse_schema(body.get("properties"))
        except ValueError as e:
            raise tornado.web.HTTPError(400, str(e)) from None
        parent_page_id = body.get("parent_page_id")
        parent_block = None
        if parent_page_id is not None:
            found = rules.normalize_uuid(parent_page_id) if isinstance(parent_page_id, str) else None
            if found is None:
                raise tornado.web.HTTPError(400, "parent_page_id must be a page id (a UUID)")
            parent_page_id = found
            parent_block = store.find_block(found)
            if found in store.databases or found in store.data_sources or (
                parent_block is not None and parent_block.type != "child_page"
            ):
                raise tornado.web.HTTPError(400, f"parent_page_id {found} is not a page")
            if parent_block is not None and parent_block.in_trash:
                raise tornado.web.HTTPError(400, f"page {found} is in the trash")
        now = self.emu.clock.now()
        rich = blocks.rich_text([{"text": {"content": title}}] if title else [], "title")
        creator = objects.workspace_member_id()
        taken: set[str] = set()
        props = []
        for name, kind in schema:
            prop_id = "title" if kind == "title" else properties.new_property_id(taken)
            taken.add(prop_id)
            props.append(PropertyDef(id=prop_id, name=name, type=kind))
        database_id, source_id = str(uuid.uuid4()), str(uuid.uuid4())
        source = DataSource(
            id=source_id, database_id=database_id, title=list(rich), properties=props,
            created_at=now, creator_id=creator,
        )
        database = Database(
            id=database_id, title=list(rich), parent_page_id=parent_page_id, created_at=now,
            creator_id=creator, data_source_ids=[source_id],
        )
        block = None
        if parent_page_id is not None:
            # Under a page, a database is also a child_database block of it (as in Notion).
            block = Block(
                id=database_id, page_id=parent_page_id, type="child_database", upload_id=None,
                created_at=now, creator_bot_id=creator, caption=[], name=None,
                content={"title": list(rich)},
            )
        store.add_database(database, [source], block)
        self.send_json(
            {
                "id": database_id,
                "data_source_id": source_id,
                "properties": {p.name: {"id": p.id, "type": p.type} for p in props},
            }
        )


class DatabaseRowsHandler(ControlHandler):
    """The rows of a database (by its id or its data source's), oldest first, trashed ones
    included, with the upload behind each file (which Notion's API never shows)."""

    def get(self, raw_id: str) -> None:
        store = self.emu.store
        found = rules.normalize_uuid(raw_id)
        database = store.databases.get(found or "")
        source = store.data_sources.get(found or "")
        if database is not None:
            source = store.data_sources[database.data_source_ids[0]]
        if source is None:
            raise tornado.web.HTTPError(404, f"no database or data source {raw_id}")
        rows = []
        for row in store.blocks(source.id):
            if row.type != "child_page":
                continue
            values: dict[str, Any] = {}
            stored = row.content.get("properties", {})
            for prop in source.properties:
                value = row.content.get("title", []) if prop.type == "title" else stored.get(prop.id)
                if prop.type in ("title", "rich_text"):
                    value = objects.plain_text(value or [])
                elif prop.type == "files":
                    value = [
                        {k: v for k, v in entry.items() if k in ("name", "upload_id", "external_url")}
                        for entry in value or []
                    ]
                elif prop.type == "checkbox":
                    value = bool(value)
                values[prop.name] = value
            rows.append(
                {
                    "id": row.id,
                    "created_time": objects.iso(row.created_at),
                    "in_trash": row.in_trash,
                    "properties": values,
                }
            )
        self.send_json({"database_id": source.database_id, "data_source_id": source.id, "rows": rows})
