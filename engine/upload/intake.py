"""Intake: a request's bytes going into an upload (a tus PATCH, a POST with body, a PUT).

`Intake.begin` applies tus's offset rules and attaches a Writer; the Writer takes the body's
chunks into the spool and hands complete parts to the part sink (the pipeline), which answers
with an awaitable only when the client must pause. Intake never talks to the service.
"""
from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Callable
from typing import Protocol

from engine.clock import Clock
from engine.errors import (
    ChecksumMismatch,
    InsufficientStorage,
    OffsetMismatch,
    ServiceUnavailable,
    UploadBusy,
    UploadError,
    UploadGone,
    UploadTooLarge,
)
from engine.upload.interfaces import Emit, Spawn
from engine.upload.records import RecordSaver
from engine.upload.session import COMPLETED, EXPIRED, FAILED, TERMINATED, UploadSession
from engine.upload.spool import SpoolWriteError

# How long a client should wait before sending again after the spool's disk was full.
DISK_FULL_RETRY_S = 15


async def _in_turn(*waits: Awaitable[None]) -> None:
    for wait in waits:
        await wait


class PartSink(Protocol):
    """Where complete parts go (engine/upload/pipeline.py)."""

    def hand_over(self, s: UploadSession) -> Awaitable[None] | None: ...

    async def drain(self, s: UploadSession) -> None: ...

    def maybe_finalize(self, s: UploadSession) -> None: ...

    def resume(self, s: UploadSession) -> None: ...


class Intake:
    def __init__(self, clock: Clock, sink: PartSink, saver: RecordSaver, emit: Emit, spawn: Spawn) -> None:
        self.clock = clock
        self.sink = sink
        self.saver = saver
        self.emit = emit
        self.spawn = spawn
        self.bytes_received = 0  # body bytes of requests that ended (Writer._tally)
        # Set by server.py: IntakePacer.take (engine/pacer.py), asked for every body chunk; it
        # pauses reads while the CPU quota is nearly used up, so health and new requests still get
        # their turn on a fifth of a CPU. None: never paced.
        self.pace: Callable[[int], Awaitable[None] | None] | None = None

    def begin(self, s: UploadSession, offset: int, hold: bool = False) -> Writer:
        """A writer for a request starting at `offset`; OffsetMismatch (409) changes nothing."""
        s.last_activity = self.clock.monotonic()
        state = s.state
        if state in (TERMINATED, EXPIRED) or (state == FAILED and not s.record.can_resume):
            raise s.failure()
        if s.writer is not None:
            # A request still attached belongs to a client that has evidently given up on it.
            s.writer.supersede()
            s.writer = None
            s.interrupted = True
        if state == COMPLETED:
            if offset == s.plan.size:
                return Writer(self, s, offset, hold=False)
            raise OffsetMismatch("the upload is already complete", offset=s.plan.size)
        if state == FAILED:
            self.sink.resume(s)
        writer = self._writer_at(s, offset, hold)
        if s.receive():
            self.saver.save(s)
        s.writer = writer
        return writer

    def _writer_at(self, s: UploadSession, offset: int, hold: bool) -> Writer:
        received = s.assembler.received
        if received == s.plan.size:
            if offset == s.plan.size - 1:
                return Writer(self, s, offset, hold, echo=1)
            if offset == s.plan.size:
                return Writer(self, s, offset, hold=False)
        elif offset == received:
            return Writer(self, s, offset, hold)
        elif offset < received and s.interrupted and offset >= s.handed_out_limit():
            # Late writes of an interrupted request moved us past what the client saw in HEAD;
            # bytes not yet handed to Notion can simply be taken again. Otherwise tus's rule
            # holds: a mismatch is a 409 that changes nothing.
            s.assembler.rewind(offset)
            return Writer(self, s, offset, hold)
        raise OffsetMismatch("Upload-Offset does not match", offset=s.client_offset)

    def bytes_received_total(self, live: list[UploadSession]) -> int:
        """Body bytes clients sent: requests that ended, plus what running ones sent so far."""
        running = sum(s.writer.accepted for s in live if s.writer is not None and not s.writer.tallied)
        return self.bytes_received + running


class Writer:
    """One request's bytes going into an upload (a tus PATCH, a POST with body, a PUT)."""

    def __init__(self, intake: Intake, session: UploadSession, start: int, hold: bool,
                 echo: int = 0) -> None:
        self.intake = intake
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
        self.tallied = False  # `accepted` is in the intake's bytes_received

    def write(self, chunk: bytes) -> Awaitable[None] | None:
        """Take a chunk; returns an awaitable only when the caller must pause (back-pressure)."""
        if self.closed or self.error is not None:
            return None
        s = self.session
        if s.record.state in (TERMINATED, EXPIRED):
            self.error = UploadGone("the upload was terminated or has expired")
            return None
        if s.record.state == FAILED:
            self.error = s.failure()
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
        pace = self.intake.pace
        pause = pace(len(chunk)) if pace is not None else None
        if not completed:
            return pause
        if self.hold:
            self.held.extend(completed)
            return pause
        s.ready.extend(completed)
        handed = self.intake.sink.hand_over(s)
        if handed is None or pause is None:
            return handed or pause
        return _in_turn(handed, pause)

    def _spool_error(self, exc: SpoolWriteError) -> UploadError:
        """The bytes counted so far are kept (and sent to Notion); the client sends the rest again."""
        s = self.session
        self.intake.emit("SPOOL_WRITE_FAILED", upload_id=s.id, errno=exc.errno, offset=s.assembler.received)
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
        self.intake.spawn(self.intake.sink.drain(self.session))

    def _tally(self) -> None:
        """Add this request's bytes to the intake's total, once, as the request ends: metrics
        are counted per request, never per chunk (data_received is the hot path)."""
        if not self.tallied:
            self.tallied = True
            self.intake.bytes_received += self.accepted

    def _detach(self) -> None:
        self.session.last_activity = self.intake.clock.monotonic()
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
            await self.intake.sink.drain(s)
        if self.error is not None:
            raise self.error
        if s.record.state == FAILED:
            raise s.failure()
        if s.assembler.received == s.plan.size and self.echo == 0:
            self.intake.sink.maybe_finalize(s)
            await asyncio.shield(s.finished)
