"""The spool writes exactly what it counts: a failed or partial write is undone (no stale bytes)."""
from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from engine.upload import diskwork
from engine.upload.partplan import plan_parts
from engine.upload.spool import PartAssembler, SpoolWriteError

pytestmark = pytest.mark.inprocess

MIB = 2**20


class FullDisk:
    """os.write that writes `room` more bytes, at most `per_call` at a time (short writes), then
    fails with ENOSPC."""

    def __init__(self, room: int, per_call: int = 1 << 30) -> None:
        self.room = room
        self.per_call = per_call
        self.real = os.write

    def __call__(self, fd: int, data) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        take = min(self.room, len(data), self.per_call)
        self.room -= take
        return self.real(fd, bytes(data[:take]))


def test_a_partial_write_then_enospc_is_undone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    plan = plan_parts(30 * MIB, 10 * MIB)
    spool = PartAssembler(tmp_path, plan)
    assert not spool.write(b"a" * 1000)
    disk = FullDisk(room=500, per_call=300)  # a short write, then a partial one, then ENOSPC
    monkeypatch.setattr(os, "write", disk)
    with pytest.raises(SpoolWriteError) as caught:
        spool.write(b"b" * 5000)
    assert caught.value.errno == errno.ENOSPC and caught.value.completed == []
    assert spool.received == 1000
    assert spool.part_path(1).stat().st_size == 1000, "the bytes written before ENOSPC must be cut off"
    monkeypatch.setattr(os, "write", disk.real)
    spool.write(b"c" * 500)
    assert spool.part_path(1).read_bytes() == b"a" * 1000 + b"c" * 500


def test_a_write_spanning_parts_keeps_the_parts_it_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    plan = plan_parts(30 * MIB, 10 * MIB)
    spool = PartAssembler(tmp_path, plan)
    spool.write(b"x" * (10 * MIB - 10))
    monkeypatch.setattr(os, "write", FullDisk(room=10 + 7))  # the rest of part 1, 7 bytes of part 2
    with pytest.raises(SpoolWriteError) as caught:
        spool.write(b"y" * 100)
    assert caught.value.completed == [1]
    assert spool.received == 10 * MIB and spool.holds_exactly(1)
    assert spool.part_path(2).stat().st_size == 0
    monkeypatch.undo()
    spool.write(b"z" * 5)
    assert spool.part_path(2).read_bytes() == b"z" * 5


def test_only_a_part_of_exactly_its_planned_length_may_be_sent(tmp_path: Path):
    plan = plan_parts(30 * MIB, 10 * MIB)
    spool = PartAssembler(tmp_path, plan)
    spool.write(b"q" * (10 * MIB))
    assert spool.holds_exactly(1)
    with open(spool.part_path(1), "ab") as f:
        f.write(b"stale")
    assert not spool.holds_exactly(1)
    assert not spool.holds_exactly(2)


def test_with_writeback_each_part_goes_to_disk_as_it_arrives(tmp_path: Path):
    """Under a memory-limited cgroup (server.py) the spool starts writeback every few MiB, one
    range after the other, so dirty pages never pile up in a half-written part."""
    asked: list[tuple[str, str, int, int]] = []
    plan = plan_parts(20 * MIB, 10 * MIB)
    spool = PartAssembler(tmp_path, plan, writeback_bytes=4 * MIB,
                          run_later=lambda work, path, *rest: asked.append((work.__name__, path.name, *rest)))
    chunk = b"z" * (MIB // 2)
    completed = [n for _ in range(40) for n in spool.write(chunk)]
    assert completed == [1, 2]
    # 4 MiB and 8 MiB into each part; the last 2 MiB of a part are left to the kernel
    assert asked == [("advise_writeback", "0001.part", 0, 4 * MIB), ("advise_writeback", "0001.part", 4 * MIB, 4 * MIB),
                     ("advise_writeback", "0002.part", 0, 4 * MIB), ("advise_writeback", "0002.part", 4 * MIB, 4 * MIB)]
    assert spool.part_path(1).stat().st_size == 10 * MIB


def test_with_writeback_a_sent_part_is_removed_out_of_the_loop_under_another_name(tmp_path: Path):
    later: list[tuple] = []
    spool = PartAssembler(tmp_path, plan_parts(20 * MIB, 10 * MIB), writeback_bytes=4 * MIB,
                          run_later=lambda work, *args: later.append((work, *args)))
    for _ in range(20):
        spool.write(b"z" * (MIB // 2))
    later.clear()
    spool.discard(1)
    assert not spool.part_path(1).exists()
    [(work, gone)] = later
    assert work is diskwork.remove_file and gone.name.startswith("0001.part.sent-") and gone.exists()
    spool.rewind(0)  # the client sends part 1 again: the new file is not the one being removed
    spool.write(b"y" * MIB)
    work(gone)
    assert not gone.exists() and spool.part_path(1).stat().st_size == MIB
    spool.discard(3)  # never written: nothing to remove
    assert later == [(work, gone)]


def test_the_disk_thread_asks_the_kernel_and_ignores_a_part_already_gone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    asked: list[tuple[int, int, int]] = []
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, offset, length, advice: asked.append((offset, length, advice)))
    part = tmp_path / "0001.part"
    part.write_bytes(b"z" * MIB)
    diskwork.advise_writeback(part, 0, MIB)
    diskwork.advise_writeback(tmp_path / "0002.part", 0, MIB)  # removed after its send: nothing
    assert asked == [(0, MIB, os.POSIX_FADV_DONTNEED)]
    done = threading.Event()
    diskwork.in_disk_thread(lambda path: (diskwork.remove_file(path), done.set()), part)
    assert done.wait(5) and not part.exists()


def test_without_writeback_the_spool_leaves_it_to_the_kernel(tmp_path: Path):
    spool = PartAssembler(tmp_path, plan_parts(20 * MIB, 10 * MIB),
                          run_later=lambda *args: pytest.fail("nothing for the disk thread"))
    for _ in range(40):
        spool.write(b"z" * (MIB // 2))
    assert spool.received == 20 * MIB
    spool.discard(1)
    assert not spool.part_path(1).exists()
