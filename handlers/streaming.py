"""Feeding a streamed request body into an upload: shared by tus PATCH/POST and the PUT API.

data_received hands each chunk to the engine's Writer; when the writer returns an awaitable,
Tornado stops reading this socket until it resolves (the back-pressure of invariant 4).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import Awaitable
from typing import Any, cast

from tornado.http1connection import HTTP1Connection

from engine.errors import UploadGone
from engine.upload.intake import Writer
from engine.upload.service import UploadService
from engine.upload.session import EXPIRED, FAILED, TERMINATED, UploadSession
from handlers.base import BaseHandler
from handlers.errors import (
    BAD_ALGORITHM,
    BODY_TOO_LARGE,
    CHECKSUM_NOT_BASE64,
    CHECKSUM_WRONG_LENGTH,
    MISSING_HEADER,
    NOT_A_NUMBER,
)
from handlers.slowclients import BodyWatch

CHECKSUM_ALGORITHMS = {"sha1": hashlib.sha1, "md5": hashlib.md5, "sha256": hashlib.sha256}


def parse_checksum(header: str | None) -> tuple[Any, bytes] | None:
    """`Upload-Checksum: <algorithm> <base64 digest>` → (hasher, digest)."""
    if header is None:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    factory = CHECKSUM_ALGORITHMS.get(algorithm.lower())
    if factory is None:
        raise BAD_ALGORITHM(algorithm=algorithm)
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise CHECKSUM_NOT_BASE64() from None
    hasher = factory()
    if len(digest) != hasher.digest_size:
        raise CHECKSUM_WRONG_LENGTH(algorithm=algorithm)
    return hasher, digest


def parse_offset(value: str | None, name: str) -> int:
    """A header that holds a byte count or offset (Upload-Offset, Upload-Length, Content-Length)."""
    if value is None:
        raise MISSING_HEADER(header=name)
    value = value.strip()
    if not value.isdigit() or len(value) > 19:
        raise NOT_A_NUMBER(header=name)
    return int(value)


class StreamingBodyMixin(BaseHandler):
    service: UploadService
    writer: Writer | None = None
    _checksum: tuple[Any, bytes] | None = None
    _body_done = False
    aborted = False
    bytes_in = 0
    paused = False  # the relay stopped reading (back-pressure): not the client's slowness
    body_watch: BodyWatch | None = None

    def refuse_if_gone(self, session: UploadSession) -> None:
        """An upload that can never go on (expired, terminated, failed for good) answers 410,
        before anything else about the request matters: the client has to start over."""
        self.service.check_expiry(session)
        state = session.record.state
        if state in (EXPIRED, TERMINATED):
            raise UploadGone(session.record.error or "the upload is gone", can_resume=False)
        if state == FAILED and not session.record.can_resume:
            raise self.service.failure_of(session)

    def start_body(self, session: UploadSession, offset: int, checksum_header: str | None) -> None:
        """Validate the body's framing and size, then attach a writer at `offset`."""
        self.refuse_if_gone(session)
        self._checksum = parse_checksum(checksum_header)
        remaining = session.plan.size - min(offset, session.plan.size)
        header = self.request.headers.get("Content-Length")
        if header is not None:
            if not header.strip().isdigit():
                raise NOT_A_NUMBER(header="Content-Length")
            length = int(header)
            if length > max(remaining, 1 if offset == session.plan.size - 1 else 0):
                raise BODY_TOO_LARGE(length=length, remaining=remaining, offset=offset)
        # Tornado's default cap is 100 MB; the real cap is what the upload still needs.
        self.http_connection().set_max_body_size(max(remaining, 1))
        self.writer = self.service.begin_write(session, offset, hold=self._checksum is not None)
        self.writer.on_superseded = self.answer_now
        if self.body_watch is not None:
            self.body_watch.watch(self)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        writer = self.writer
        if writer is None:
            return None
        self.bytes_in += len(chunk)
        if self._checksum is not None:
            self._checksum[0].update(chunk)
        waiting = writer.write(chunk)
        if waiting is None:
            return None
        self.paused = True
        pause = asyncio.ensure_future(waiting)
        pause.add_done_callback(self._resume_reading)
        return pause

    def _resume_reading(self, _: object) -> None:
        self.paused = False

    def extra_failure_headers(self) -> None:
        super().extra_failure_headers()
        if not self._body_done:
            # An answer before the body ends: the connection reads the rest of the body into
            # nothing (bounded; handlers/lingering.py) and then closes; say so.
            self.set_header("Connection", "close")

    def answer_now(self, error: Exception) -> None:
        """Our writer was detached (a newer request, a restart): reply before the body ends;
        the connection drops the rest of the body (bounded) and closes."""
        if not self._finished and not self.aborted:
            self.send_failure(error)

    def drop_slow_client(self) -> None:
        """Called by the BodyWatch: the client sends too slowly; hang up (what it sent is kept)."""
        self.http_connection().stream.close()

    def http_connection(self) -> HTTP1Connection:
        # Why the cast: Tornado types request.connection as the abstract HTTPConnection (or None).
        return cast(HTTP1Connection, self.request.connection)

    async def finish_body(self) -> None:
        self._body_done = True
        if self.body_watch is not None:
            self.body_watch.unwatch(self)
        writer = self.writer
        if writer is None:
            return
        ok = True
        if self._checksum is not None:
            hasher, expected = self._checksum
            ok = hasher.digest() == expected
        await writer.finish(checksum_ok=ok)

    def on_connection_close(self) -> None:
        if self.body_watch is not None:
            self.body_watch.unwatch(self)
        if self._body_done:
            return
        self.aborted = True
        if self.writer is not None:
            self.writer.abort()
        # Why: Tornado's _execute waits on the body future forever when the client leaves
        # mid-body, keeping the handler alive; resolve it so the request ends (with no reply).
        body = getattr(self.request, "_body_future", None)
        if body is not None and not body.done():
            body.set_result(None)

    def end_without_reply(self) -> bool:
        """True (and the request is closed quietly) when the client already left mid-body."""
        if self.aborted:
            self._finished = True
            return True
        return False
