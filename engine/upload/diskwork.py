"""Spool file work the event loop must not wait for, done in one thread of its own.

Inside a memory-limited cgroup the spool's page cache is under pressure, and two calls on it
can wait for the disk: asking for writeback of a range (67 ms seen in bench dyno, waiting for
the disk's queue) and removing a sent part whose pages are still being written (50 ms). Each
is a few hundred calls per GiB, so handing them to a thread costs nothing measurable.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

_thread: ThreadPoolExecutor | None = None

RunLater = Callable[..., None]


def in_disk_thread(work: Callable[..., Any], *args: Any) -> None:
    """Run `work(*args)` in the disk thread, in the order asked, without waiting for it."""
    global _thread
    if _thread is None:
        _thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-disk")
    _thread.submit(work, *args)


def advise_writeback(path: Path, offset: int, length: int) -> None:
    """Start writing a range of a part file to disk. By path, not fd: the loop may have closed
    the fd by then."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # sent and removed already
    try:
        # DONTNEED starts writeback of the dirty pages without waiting for it to finish.
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_file(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass  # the spool sweep (Registry) removes what is left
