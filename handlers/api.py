"""The seeds' JSON API: create-session, a streamed PUT of the whole file, and status."""
from __future__ import annotations

from typing import Any

import tornado.web

from engine.clock import iso8601
from engine.upload.service import UploadService
from engine.upload.session import COMPLETED, UploadSession
from handlers.base import BaseHandler, refuse_while_draining
from handlers.errors import BAD_DESTINATION, BODY_INCOMPLETE, MISSING_FILE_SIZE, MISSING_FILENAME, NOT_A_STRING
from handlers.streaming import StreamingBodyMixin, parse_offset
from handlers.system import SystemView

# The seeds' status names, from our states.
PUBLIC_STATUS = {
    "created": "created", "receiving": "uploading", "finalizing": "finalizing", "completed": "completed",
    "failed": "failed", "expired": "expired", "terminated": "terminated",
}


def upload_view(session: UploadSession, system: SystemView) -> dict[str, Any]:
    r = session.record
    size = session.plan.size
    received = min(session.committed_offset, size)
    durable = session.durable_offset
    view: dict[str, Any] = {
        "upload_id": r.id,
        "status": PUBLIC_STATUS.get(r.state, r.state),
        "filename": r.filename,
        "content_type": r.content_type,
        "file_size": size,
        "bytes_uploaded": received,
        "bytes_confirmed": session.confirmed_bytes if r.state != COMPLETED else size,
        "offset": session.client_offset,
        "durable_offset": durable if r.state != COMPLETED else size,
        "progress_percent": round(100.0 * received / size, 1),
        "confirmed_percent": round(100.0 * (session.confirmed_bytes if r.state != COMPLETED else size) / size, 1),
        "is_multipart": session.plan.is_multipart,
        "part_size": session.plan.part_size,
        "total_parts": session.plan.number_of_parts,
        "parts_confirmed": len(session.durable),
        "created_at": r.created_at,
        "expires_at": iso8601(r.expires_at) if r.expires_at and r.state != COMPLETED else None,
        "upload_url": f"/files/{r.id}",
        "notion": {
            "file_upload_id": r.notion_file_upload_id,
            "status": r.notion_status,
            "block_id": r.block_id,
            "page_id": r.page_id,
            "row_id": r.row_id,
            "data_source_id": r.data_source_id,
            "destination": {"name": r.destination, "kind": r.destination_kind, "id": r.destination_id},
        },
        "system_resources": system.resources_brief(),
        "circuit_breaker": system.breaker_brief(),
    }
    if r.error:
        view["error"] = r.error
        view["can_resume"] = r.can_resume
        view["checkpoint_key"] = f"relay:upload:{r.id}"
    return view


class UploadsHandler(BaseHandler):
    """What the JSON API's handlers are given (server.py): the upload service, the system's view
    and access."""

    service: UploadService
    system: SystemView


class CreateSessionHandler(UploadsHandler):
    async def post(self) -> None:
        refuse_while_draining(self, self.service)
        owner = self.owner(creating=True)
        data = self.json_body()
        filename = data.get("filename")
        size = data.get("fileSize", data.get("file_size"))
        content_type = data.get("contentType", data.get("content_type"))
        if not isinstance(filename, str) or not filename.strip():
            raise MISSING_FILENAME()
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise MISSING_FILE_SIZE()
        if content_type is not None and not isinstance(content_type, str):
            raise NOT_A_STRING(field="contentType")
        destination, title, caption = data.get("destination"), data.get("title"), data.get("caption")
        if destination is not None and not isinstance(destination, str):
            raise BAD_DESTINATION()
        for key, value in (("title", title), ("caption", caption)):
            if value is not None and not isinstance(value, str):
                raise NOT_A_STRING(field=key)
        # An upload grant's limits, before Notion is asked for anything.
        release_grant = await self.admit_grant(size=size, filename=filename, content_type=content_type,
                                               destination=destination)
        try:
            session = await self.service.create(filename=filename, size=size, content_type=content_type,
                                                owner=owner, destination=destination, title=title,
                                                caption=caption)
        except BaseException:
            await release_grant()
            raise
        view = upload_view(session, self.system)
        view["put_url"] = f"/api/upload/{session.id}"
        self.set_header("Location", f"/api/upload/status/{session.id}")
        self.write_json(201, view)


@tornado.web.stream_request_body
class StreamUploadHandler(StreamingBodyMixin, UploadsHandler):
    """PUT /api/upload/{id}: the whole file as one body (Content-Length or chunked).

    `Upload-Offset` may be sent to continue after a dropped PUT (from status's `offset`)."""

    session: UploadSession | None = None

    async def prepare(self) -> None:
        # A failure here is answered (write_error) before the body is read.
        if self.request.method != "PUT":
            return
        refuse_while_draining(self, self.service)
        self.session = await self.service.claim(self.path_args[0], self.owner())
        header = self.request.headers.get("Upload-Offset")
        offset = parse_offset(header, "Upload-Offset") if header is not None else 0
        self.start_body(self.session, offset, self.request.headers.get("Upload-Checksum"))

    async def put(self, upload_id: str) -> None:
        session = self.session
        assert session is not None
        if self.end_without_reply():
            return
        await self.finish_body()
        if session.record.state != COMPLETED:
            raise BODY_INCOMPLETE(got=session.committed_offset, size=session.plan.size,
                                  offset=session.client_offset, can_resume=True)
        self.write_json(200, upload_view(session, self.system))


class StatusHandler(UploadsHandler):
    async def get(self, upload_id: str) -> None:
        self.check_url_length()
        session = await self.service.get(upload_id, self.owner())
        self.service.check_expiry(session)
        self.write_json(200, upload_view(session, self.system))
