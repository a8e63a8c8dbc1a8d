"""`/_emulator/*`: inspection and control for tests, benchmarks and demos (no auth, no rate
limit, no faults). Errors here are plain `{"error": "..."}` bodies, not Notion's shape."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import tornado.web

from . import errors, objects, rules
from .config import PLAN_MAX_FILE_BYTES
from .faults import FaultConfigError, FaultPlan, STATUS_KINDS
from .store import Upload

if TYPE_CHECKING:
    from .app import Emulator

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
                str(n): {"size": p.size, "sends": p.sends, "sha256": p.sha256}
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
    """GET the bytes behind a media block's file URL (`/_emulator/blobs/<blob id>/<name>`):
    the URL names the block's own opaque id, never the file upload's."""

    async def get(self, blob_id: str, _filename: str) -> None:  # type: ignore[override]
        found = self.emu.store.find_blob(blob_id) if blob_id else None
        upload = self.emu.store.get(found.upload_id) if found and found.upload_id else None
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
