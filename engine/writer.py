"""Writer: one request's bytes going into an upload (a tus PATCH, a POST with body, a PUT)."""
from __future__ import annotations

import asyncio
import errno
from typing import TYPE_CHECKING, Awaitable, Callable

from engine.errors import (ChecksumMismatch, InsufficientStorage, ServiceUnavailable, UploadBusy, UploadError,
                           UploadGone, UploadTooLarge)
from engine.session import EXPIRED, FAILED, TERMINATED, UploadSession
from engine.spool import SpoolWriteError

# How long a client should wait before sending again after the spool's disk was full.
DISK_FULL_RETRY_S = 15

if TYPE_CHECKING:
    from engine.uploads import UploadService


class Writer:
    """One request's bytes going into an upload (a tus PATCH, a POST with body, a PUT)."""

    def __init__(self, service: "UploadService", session: UploadSession, start: int, hold: bool,
                 echo: int = 0) -> None:
        self.service = service
        self.session = session
        self.start = start
        self.hold = hold  # a checksummed request: its parts wait until the checksum is verified
        self.held: list[int] = []
        self.echo = echo  # bytes the client re-sends that we already have (the final byte)
        self.superseded = False
        self.closed = False
        self.error: UploadError | None = None
        # Set by the request handler: answer the client at once when the writer is detached,
        # rather than after a body that may go on for gigabytes.
        self.on_superseded: Callable[[UploadError], None] | None = None
        self.accepted = 0
        self.tallied = False  # `accepted` is in the service's bytes_received

    def write(self, chunk: bytes) -> Awaitable[None] | None:
        """Take a chunk; returns an awaitable only when the caller must pause (back-pressure)."""
        if self.closed or self.error is not None:
            return None
        s = self.session
        if s.record.state in (TERMINATED, EXPIRED):
            self.error = UploadGone("the upload was terminated or has expired")
            return None
        if s.record.state == FAILED:
            self.error = self.service.failure_of(s)
            return None
        if self.echo:
            take = min(self.echo, len(chunk))
            self.echo -= take
            self.accepted += take
            if len(chunk) > take:
                self.error = UploadTooLarge("more bytes than the upload's declared length")
            return None
        if s.assembler.received + len(chunk) > s.plan.size:
            self.error = UploadTooLarge(
                f"more bytes than the upload's declared length ({s.plan.size})", offset=s.assembler.received)
            return None
        before = s.assembler.received
        try:
            completed = s.assembler.write(chunk)
            self.accepted += len(chunk)
        except SpoolWriteError as exc:
            completed = exc.completed
            self.accepted += s.assembler.received - before
            self.error = self._spool_error(exc)
        if not completed:
            return None
        if self.hold:
            self.held.extend(completed)
            return None
        s.ready.extend(completed)
        return self.service.hand_over(s)

    def _spool_error(self, exc: SpoolWriteError) -> UploadError:
        """The bytes counted so far are kept (and sent to Notion); the client sends the rest again."""
        s = self.session
        self.service.emit("SPOOL_WRITE_FAILED", upload_id=s.id, errno=exc.errno, offset=s.assembler.received)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return InsufficientStorage("the relay's disk is full; the bytes received so far are kept, "
                                       "send the rest again shortly", retry_after_s=DISK_FULL_RETRY_S,
                                       can_resume=True, offset=s.client_offset)
        return ServiceUnavailable("the relay could not store the bytes; those received so far are kept, "
                                  "send the rest again shortly", retry_after_s=DISK_FULL_RETRY_S,
                                  can_resume=True, offset=s.client_offset)

    def supersede(self, reason: UploadError | None = None) -> None:
        """A newer request for the same upload took over (or `reason`, e.g. a restart): stop
        writing and undo unverified bytes."""
        if self.closed:
            return
        if reason is not None and self.error is None:
            self.error = reason
        if self.on_superseded is not None:
            self.on_superseded(self.error or UploadBusy("a newer request took over this upload", retry_after_s=1))
        self._tally()
        self.superseded = True
        self._rollback_held()
        self.closed = True

    def _rollback_held(self) -> None:
        if self.hold and not self.closed:
            s = self.session
            for n in self.held:
                s.assembler.discard(n)
            self.held.clear()
            if s.assembler.received > self.start:
                s.assembler.rewind(self.start)

    def abort(self) -> None:
        """The client went away mid-body. Verified bytes stay; complete parts still go to Notion."""
        if self.closed:
            return
        self._tally()
        self._rollback_held()
        self.closed = True
        self.session.interrupted = True
        self._detach()
        self.service.spawn(self.service.drain(self.session))

    def _tally(self) -> None:
        """Add this request's bytes to the service's total, once, as the request ends: metrics
        are counted per request, never per chunk (data_received is the hot path)."""
        if not self.tallied:
            self.tallied = True
            self.service.bytes_received += self.accepted

    def _detach(self) -> None:
        self.session.last_activity = self.service.clock.monotonic()
        if self.session.writer is self:
            self.session.writer = None

    async def finish(self, checksum_ok: bool = True) -> None:
        """The body ended. Raises an UploadError when the request cannot be acknowledged.

        Returns once the bytes are ours; for the request that completes the upload, only once
        Notion holds the file (and the block is on the page when one is configured).
        """
        s = self.session
        self._tally()
        if self.superseded:
            raise self.error or UploadBusy("a newer request took over this upload", retry_after_s=1)
        if self.hold and not checksum_ok:
            self._rollback_held()
            self.closed = True
            self._detach()
            raise ChecksumMismatch("the checksum of the request body does not match Upload-Checksum")
        if self.hold:
            s.ready.extend(self.held)
            self.held.clear()
        self.closed = True
        s.interrupted = False
        self._detach()
        if self.error is None:
            await self.service.drain(s)
        if self.error is not None:
            raise self.error
        if s.record.state == FAILED:
            raise self.service.failure_of(s)
        if s.assembler.received == s.plan.size and self.echo == 0:
            self.service.maybe_finalize(s)
            await asyncio.shield(s.finished)
