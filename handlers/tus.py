"""tus 1.0.0 at /files/: core, creation, creation-with-upload, termination, checksum, expiration.

https://tus.io/protocols/resumable-upload — creation-defer-length is not offered: Notion needs
the number of parts when the upload is created (DESIGN.md, "Part plan").
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

import tornado.web

from engine.auth import Access
from engine.clock import http_date
from engine.errors import UploadError
from engine.upload.session import COMPLETED
from engine.upload.service import UploadService
from engine.upload.session import UploadSession
from handlers.base import TUS_VERSION, refuse_while_draining
from handlers.errors import RequestError
from handlers.slowclients import BodyWatch
from handlers.streaming import CHECKSUM_ALGORITHMS, StreamingBodyMixin, parse_offset

TUS_EXTENSIONS = "creation,creation-with-upload,termination,checksum,expiration"
OCTET_STREAM = "application/offset+octet-stream"


def parse_metadata(header: str | None) -> dict[str, str]:
    """`Upload-Metadata: key base64value,key2 base64value2` → dict (values decoded as UTF-8)."""
    result: dict[str, str] = {}
    if not header or not header.strip():
        return result
    for pair in header.split(","):
        key, _, encoded = pair.strip().partition(" ")
        if not key or any(c in key for c in " ,") :
            raise RequestError(400, "Upload-Metadata is malformed")
        if key in result:
            raise RequestError(400, f"Upload-Metadata repeats the key {key!r}")
        try:
            result[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8") if encoded.strip() else ""
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise RequestError(400, f"Upload-Metadata value of {key!r} is not valid base64 UTF-8") from None
    return result


def first_of(meta: dict[str, str], *names: str) -> str | None:
    for name in names:
        if meta.get(name):
            return meta[name]
    return None


class TusBase(StreamingBodyMixin):
    creates = False  # POST /files/ creates: an upload grant must be unexpired there

    def initialize(self, service: UploadService, access: Access | None = None,
                   body_watch: BodyWatch | None = None) -> None:
        self.service = service
        self.body_watch = body_watch
        super().initialize(access)

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Tus-Resumable", TUS_VERSION)

    def extra_failure_headers(self) -> None:
        super().extra_failure_headers()
        self.set_header("Tus-Resumable", TUS_VERSION)
        self.set_header("Tus-Version", TUS_VERSION)  # tells a client with the wrong version what we speak

    def method(self) -> str:
        override = self.request.headers.get("X-HTTP-Method-Override")
        if self.request.method == "POST" and override:
            return override.strip().upper()
        return self.request.method or ""

    async def prepare(self) -> None:
        try:
            if self.request.method == "OPTIONS":
                return
            refuse_while_draining(self, self.service)
            self.check_url_length()
            self.upload_owner = self.owner(creating=self.creates)
            if self.request.headers.get("Tus-Resumable") != TUS_VERSION:
                raise RequestError(412, f"Tus-Resumable: {TUS_VERSION} is required")
            await self.prepare_tus()
        except Exception as exc:  # every failure becomes a clean response, before the body is read
            self.send_failure(exc)

    async def prepare_tus(self) -> None:
        pass

    def options(self, *args: Any) -> None:
        self.set_header("Tus-Version", TUS_VERSION)
        self.set_header("Tus-Extension", TUS_EXTENSIONS)
        self.set_header("Tus-Checksum-Algorithm", ",".join(CHECKSUM_ALGORITHMS))
        super().options(*args)

    def upload_headers(self, session: UploadSession) -> None:
        self.set_header("Upload-Offset", str(session.client_offset))
        self.set_header("Upload-Length", str(session.plan.size))
        self.set_header("Cache-Control", "no-store")
        if session.record.expires_at and session.record.state != COMPLETED:
            self.set_header("Upload-Expires", http_date(session.record.expires_at))
        if session.record.state == COMPLETED:
            self.set_header("Upload-Status", "completed")
            if session.record.notion_file_upload_id:
                self.set_header("Notion-File-Upload-Id", session.record.notion_file_upload_id)

    def upload_url(self, upload_id: str) -> str:
        proto = (self.request.headers.get("X-Forwarded-Proto") or self.request.protocol).split(",")[0].strip()
        host = (self.request.headers.get("X-Forwarded-Host") or self.request.host).split(",")[0].strip()
        return f"{proto}://{host}/files/{upload_id}"

    async def respond_after_body(self, session: UploadSession, status: int) -> None:
        if self.end_without_reply():
            return
        try:
            await self.finish_body()
        except Exception as exc:
            self.send_failure(exc)
            return
        self.upload_headers(session)
        self.set_status(status)
        self.finish()


@tornado.web.stream_request_body
class TusCollectionHandler(TusBase):
    """POST /files/ creates an upload (optionally with its first bytes)."""

    session: UploadSession | None = None
    creates = True

    async def prepare_tus(self) -> None:
        if self.request.method != "POST":
            return
        if self.request.headers.get("Upload-Defer-Length") is not None:
            raise RequestError(400, "Upload-Defer-Length is not supported: Notion needs the length up front")
        if self.request.headers.get("Upload-Concat") is not None:
            raise RequestError(400, "the concatenation extension is not supported")
        size = parse_offset(self.request.headers.get("Upload-Length"), "Upload-Length")
        meta = parse_metadata(self.request.headers.get("Upload-Metadata"))
        filename = first_of(meta, "filename", "name", "fileName")
        content_type = first_of(meta, "filetype", "type", "contentType", "content_type")
        # An upload grant's limits, before Notion or the body is touched.
        release_grant = await self.admit_grant(size=size, filename=filename, content_type=content_type,
                                               destination=meta.get("destination"))
        try:
            session = await self.service.create(
                filename=filename, content_type=content_type, size=size,
                metadata=self.request.headers.get("Upload-Metadata"), owner=self.upload_owner,
                destination=meta.get("destination"), title=meta.get("title"), caption=meta.get("caption"))
        except BaseException:
            await release_grant()
            raise
        self.session = session
        has_body = (self.request.headers.get("Content-Length", "0").strip() not in ("", "0")
                    or "chunked" in self.request.headers.get("Transfer-Encoding", "").lower())
        if has_body:
            if self.request.headers.get("Content-Type", "").split(";")[0].strip() != OCTET_STREAM:
                raise RequestError(415, f"a creation request with a body must use Content-Type: {OCTET_STREAM}")
            self.start_body(session, 0, self.request.headers.get("Upload-Checksum"))

    async def post(self) -> None:
        if self.session is None:
            return
        self.set_header("Location", self.upload_url(self.session.id))
        await self.respond_after_body(self.session, 201)


@tornado.web.stream_request_body
class TusUploadHandler(TusBase):
    """HEAD / PATCH / DELETE /files/{id}."""

    session: UploadSession | None = None

    async def prepare_tus(self) -> None:
        upload_id = self.path_args[0] if self.path_args else ""
        method = self.method()
        if method not in ("HEAD", "PATCH", "DELETE"):
            raise RequestError(405, f"{method} is not allowed on an upload")
        # Writing needs ownership of the upload (a lock in Redis); reading does not.
        lookup = self.service.claim if method in ("PATCH", "DELETE") else self.service.get
        self.session = await lookup(upload_id, self.upload_owner)
        if method == "PATCH":
            content_type = self.request.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type != OCTET_STREAM:
                raise RequestError(415, f"PATCH must use Content-Type: {OCTET_STREAM}")
            offset = parse_offset(self.request.headers.get("Upload-Offset"), "Upload-Offset")
            self.start_body(self.session, offset, self.request.headers.get("Upload-Checksum"))

    def head(self, upload_id: str) -> None:
        session = self.session
        assert session is not None
        try:
            self.refuse_if_gone(session)
        except UploadError as exc:
            self.send_failure(exc)
            return
        self.upload_headers(session)
        if session.record.metadata:
            self.set_header("Upload-Metadata", session.record.metadata)
        self.set_status(200)
        self.finish()

    async def patch(self, upload_id: str) -> None:
        assert self.session is not None
        await self.respond_after_body(self.session, 204)

    async def delete(self, upload_id: str) -> None:
        assert self.session is not None
        try:
            await self.service.terminate(self.session)
        except Exception as exc:
            self.send_failure(exc)
            return
        self.set_status(204)
        self.finish()

    async def post(self, upload_id: str) -> None:
        # X-HTTP-Method-Override for clients that can only send GET and POST.
        method = self.method()
        if method == "PATCH":
            await self.patch(upload_id)
        elif method == "DELETE":
            await self.delete(upload_id)
        elif method == "HEAD":
            self.head(upload_id)
