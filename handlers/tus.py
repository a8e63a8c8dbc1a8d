"""tus 1.0.0 at /files/: core, creation, creation-with-upload, termination, checksum, expiration.

https://tus.io/protocols/resumable-upload — creation-defer-length is not offered: Notion needs
the number of parts when the upload is created (DESIGN.md, "Part plan").
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

import tornado.web

from engine.clock import http_date
from engine.upload.session import COMPLETED, UploadSession
from handlers.base import TUS_VERSION, refuse_while_draining
from handlers.errors import (
    MALFORMED_METADATA,
    METADATA_NOT_BASE64,
    METHOD_NOT_ALLOWED,
    NO_CONCATENATION,
    NO_DEFER_LENGTH,
    OCTET_STREAM,
    REPEATED_METADATA_KEY,
    TUS_VERSION_UNSUPPORTED,
    WRONG_CONTENT_TYPE,
)
from handlers.streaming import CHECKSUM_ALGORITHMS, StreamingBodyMixin, parse_offset

TUS_EXTENSIONS = "creation,creation-with-upload,termination,checksum,expiration"


def parse_metadata(header: str | None) -> dict[str, str]:
    """`Upload-Metadata: key base64value,key2 base64value2` → dict (values decoded as UTF-8)."""
    result: dict[str, str] = {}
    if not header or not header.strip():
        return result
    for pair in header.split(","):
        key, _, encoded = pair.strip().partition(" ")
        if not key or any(c in key for c in " ,"):
            raise MALFORMED_METADATA()
        if key in result:
            raise REPEATED_METADATA_KEY(key=key)
        try:
            result[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8") if encoded.strip() else ""
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise METADATA_NOT_BASE64(key=key) from None
    return result


def first_of(meta: dict[str, str], *names: str) -> str | None:
    for name in names:
        if meta.get(name):
            return meta[name]
    return None


class TusBase(StreamingBodyMixin):
    """Given (server.py): service, access, body_watch."""

    creates = False  # POST /files/ creates: an upload grant must be unexpired there

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
        # A failure here is answered (write_error) before the body is read.
        if self.request.method == "OPTIONS":
            return
        refuse_while_draining(self, self.service)
        self.check_url_length()
        self.upload_owner = self.owner(creating=self.creates)
        if self.request.headers.get("Tus-Resumable") != TUS_VERSION:
            raise TUS_VERSION_UNSUPPORTED(version=TUS_VERSION)
        await self.prepare_tus()

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

    def require_octet_stream(self, request: str) -> None:
        """A tus body comes as application/offset+octet-stream (415 otherwise)."""
        if self.request.headers.get("Content-Type", "").split(";")[0].strip() != OCTET_STREAM:
            raise WRONG_CONTENT_TYPE(request=request)

    def upload_url(self, upload_id: str) -> str:
        return f"{self.own_origin()}/files/{upload_id}"

    async def respond_after_body(self, session: UploadSession, status: int) -> None:
        if self.end_without_reply():
            return
        await self.finish_body()
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
            raise NO_DEFER_LENGTH()
        if self.request.headers.get("Upload-Concat") is not None:
            raise NO_CONCATENATION()
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
            self.require_octet_stream("a creation request with a body")
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
            raise METHOD_NOT_ALLOWED(method=method, target="an upload", allow=self.allowed_methods())
        # Writing needs ownership of the upload (a lock in Redis); reading does not.
        lookup = self.service.claim if method in ("PATCH", "DELETE") else self.service.get
        self.session = await lookup(upload_id, self.upload_owner)
        if method == "PATCH":
            self.require_octet_stream("PATCH")
            offset = parse_offset(self.request.headers.get("Upload-Offset"), "Upload-Offset")
            self.start_body(self.session, offset, self.request.headers.get("Upload-Checksum"))

    def head(self, upload_id: str) -> None:
        session = self.session
        assert session is not None
        self.refuse_if_gone(session)
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
        await self.service.terminate(self.session)
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
