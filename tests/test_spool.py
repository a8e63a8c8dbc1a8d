"""The spool writes exactly what it counts: a failed or partial write is undone (no stale bytes)."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

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
