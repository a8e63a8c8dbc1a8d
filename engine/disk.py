"""SpoolDisk: free space on the disk that holds the spool, sampled on the limiter's tick.

Never read per request: `statvfs` is cheap, but admission and health run on every create and
every poll, and a reading a few seconds old is good enough when it is corrected for what the
spool itself wrote since (see `space_for_spool`).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.clock import Clock

MIB = 2**20
HEALTHY, LOW, UNKNOWN = "healthy", "low", "unknown"


@dataclass(frozen=True)
class DiskReading:
    free_bytes: int  # available to an unprivileged writer (f_bavail), like `df`
    total_bytes: int
    spooled_bytes: int  # what the live uploads' part files held at the same moment
    at: float  # monotonic time of the reading

    @property
    def space_for_spool(self) -> int:
        """Free space plus what the spool held when the disk was read: the space the spool may
        fill. Admission subtracts what the spool may hold now, so bytes written (or parts
        removed) since the reading are counted without reading the disk again."""
        return self.free_bytes + self.spooled_bytes


def statvfs_reader(path: Path) -> tuple[int, int]:
    """(free bytes, total bytes) of the filesystem holding `path`."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


class SpoolDisk:
    """The spool's disk as last read. `tick()` reads it (server.py calls it with the limiter's);
    `read` and `spooled` are injectable for tests (a fake disk, a fake spool)."""

    def __init__(self, path: Path, min_free_bytes: int, clock: Clock, spooled: Callable[[], int],
                 read: Callable[[Path], tuple[int, int]] = statvfs_reader) -> None:
        self.path = path
        self.min_free_bytes = min_free_bytes  # SPOOL_MIN_FREE_MB; 0 = the disk never refuses uploads
        self.clock = clock
        self.spooled = spooled
        self.read = read
        self.last: DiskReading | None = None
        self.error: str | None = None

    def tick(self) -> DiskReading | None:
        try:
            free, total = self.read(self.path)
        except OSError as exc:
            # Keep the last good reading (if any): a disk we cannot stat is reported, not guessed.
            self.error = f"{type(exc).__name__}: {exc.strerror or exc}"
            return self.last
        self.error = None
        self.last = DiskReading(free, total, self.spooled(), self.clock.monotonic())
        return self.last
