"""PartAssembler: writes an upload's incoming bytes into one spool file per Notion part.

Bytes go straight from the socket buffer to the page cache; nothing accumulates in Python.
A part file is complete when it holds exactly the plan's length for that part; libcurl then
reads it itself when the part is sent.
"""
from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

from engine.upload.diskwork import RunLater, advise_writeback, in_disk_thread, remove_file
from engine.upload.partplan import PartPlan

_NEVER = 2**62
_SENT_SUFFIX = ".sent-"
_sent_names = itertools.count()


class SpoolWriteError(OSError):
    """A write to the spool failed (typically ENOSPC). Everything past `received` was undone;
    `completed` lists the parts this write still completed before the failure."""

    def __init__(self, cause: OSError, completed: list[int]) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.completed = completed


class PartAssembler:
    def __init__(self, directory: Path, plan: PartPlan, received: int = 0, writeback_bytes: int = 0,
                 run_later: RunLater = in_disk_thread) -> None:
        self.directory = directory
        self.plan = plan
        self.received = received  # bytes on disk, contiguous from offset 0 of the file
        self._fd: int | None = None
        self._fd_part = 0
        self._fd_end = 0  # the file offset where the open part ends
        # Start writing every `writeback_bytes` to disk as they arrive, and remove sent parts
        # out of the loop (0: neither; leave it to the kernel). diskwork.py says why.
        self.writeback_bytes = writeback_bytes
        self.run_later = run_later
        self._flush_at = _NEVER
        self._flushed = 0  # offset in the open part up to which writeback was started

    def part_path(self, number: int) -> Path:
        return self.directory / f"{number:04d}.part"

    def write(self, data: bytes | memoryview) -> list[int] | tuple[()]:
        """Append `data` at `received`; return the part numbers this write completed.

        Exact: after a failed or partial write the part file is cut back to what was counted
        (a later write landing after stale bytes would corrupt the part) and SpoolWriteError
        is raised; `received` only ever counts bytes that are on disk."""
        # Hot path (thousands of calls per GiB): a chunk that stays inside the open part.
        size = len(data)
        if self._fd is not None and self.received + size < self._fd_end:
            try:
                written = os.write(self._fd, data)
            except OSError as exc:
                self._undo_past_received()
                raise SpoolWriteError(exc, []) from None
            if written == size:
                self.received += size
                if self.received >= self._flush_at:
                    self._start_writeback()
                return ()
            self._undo_past_received()  # a short write: the general path below tries again
        return self._write_spanning(data)

    def _write_spanning(self, data: bytes | memoryview) -> list[int]:
        completed: list[int] = []
        view = memoryview(data)
        plan = self.plan
        try:
            while view:
                number = plan.part_at(self.received)
                room = plan.part_end(number) - self.received
                fd = self._fd_for(number)
                chunk = view[:room]
                written = 0
                while written < len(chunk):
                    written += os.write(fd, chunk[written:])
                self.received += len(chunk)
                view = view[len(chunk):]
                if self.received == plan.part_end(number):
                    self._close_fd()
                    completed.append(number)
        except OSError as exc:
            self._undo_past_received()
            raise SpoolWriteError(exc, completed) from None
        return completed

    def _undo_past_received(self) -> None:
        """Cut the open part file back to `received` and close it; reopening seeks there too."""
        fd, number = self._fd, self._fd_part
        self._close_fd()
        if fd is None:
            return
        try:
            os.truncate(self.part_path(number), self.received - self.plan.part_start(number))
        except OSError:
            pass  # _fd_for truncates again before the next byte is written

    def holds_exactly(self, number: int) -> bool:
        """The part file has exactly the plan's length for its part (only then may it be sent)."""
        try:
            return self.part_path(number).stat().st_size == self.plan.part_length(number)
        except OSError:
            return False

    def _fd_for(self, number: int) -> int:
        if self._fd is not None and self._fd_part == number:
            return self._fd
        self._close_fd()
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.part_path(number), os.O_WRONLY | os.O_CREAT, 0o600)
        # Why truncate+seek: a file left by an interrupted request may be longer than what
        # we count as received; the bytes past `received` were never acknowledged.
        offset_in_part = self.received - self.plan.part_start(number)
        # Only when needed: truncating a file (even an empty one, to 0) makes ext4 flush it to
        # disk at close, a millisecond of system CPU per part for a file deleted a second later.
        if os.fstat(fd).st_size != offset_in_part:
            os.ftruncate(fd, offset_in_part)
        os.lseek(fd, offset_in_part, os.SEEK_SET)
        self._fd, self._fd_part = fd, number
        self._fd_end = self.plan.part_end(number)
        self._flushed = offset_in_part
        self._flush_at = self.received + self.writeback_bytes if self.writeback_bytes else _NEVER
        return fd

    def _start_writeback(self) -> None:
        """Why: under a cgroup v1 memory limit the page cache counts against the process, and
        reclaim waits for dirty pages to be written back in whichever allocation hits the
        limit, the event loop's included (health polls of 400-850 ms in bench dyno, with
        25 parts of 20 MiB half-written, 450 MiB dirty). Started early, writeback keeps the
        dirty pages to a few MiB per upload."""
        upto = self.received - self.plan.part_start(self._fd_part)
        self.run_later(advise_writeback, self.part_path(self._fd_part), self._flushed, upto - self._flushed)
        self._flushed = upto
        self._flush_at = self.received + self.writeback_bytes

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def rewind(self, offset: int) -> None:
        """Forget bytes from `offset` on; only parts that were never handed out may be touched."""
        self._close_fd()
        first = self.plan.part_at(offset) if offset < self.plan.size else self.plan.number_of_parts + 1
        last = self.plan.part_at(max(self.received - 1, 0))
        for number in range(first + 1, last + 1):
            self.discard(number)
        if first <= self.plan.number_of_parts and offset > self.plan.part_start(first):
            path = self.part_path(first)
            if path.exists():
                os.truncate(path, offset - self.plan.part_start(first))
        elif first <= last:
            self.discard(first)
        self.received = offset

    def discard(self, number: int) -> None:
        if self._fd is not None and self._fd_part == number:
            self._close_fd()
        path = self.part_path(number)
        try:
            if not self.writeback_bytes:
                path.unlink()
                return
            # Renamed first, so that a part written again under its name is never the one removed.
            gone = path.with_name(f"{path.name}{_SENT_SUFFIX}{next(_sent_names)}")
            path.rename(gone)
        except FileNotFoundError:
            return
        self.run_later(remove_file, gone)

    def close(self) -> None:
        self._close_fd()

    def remove_all(self) -> None:
        self._close_fd()
        shutil.rmtree(self.directory, ignore_errors=True)
