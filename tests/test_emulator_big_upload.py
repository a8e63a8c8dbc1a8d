"""A 1 GiB multi_part upload in 20 MiB parts: the emulator records the right sha256 and its
memory stays flat (peak RSS < 100 MiB), because parts stream from the socket to disk."""
from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from harness.emulator import NotionClient, running_emulator

MIB = 2**20
SIZE = 1024 * MIB
PART = 20 * MIB
RSS_LIMIT = 100 * MIB


def make_file(path: Path, size: int) -> str:
    """Random-looking content, fast: one random MiB, each copy stamped with its index so no
    two MiB (and no two parts) are equal and a misordered part would change the hash."""
    base = os.urandom(MIB)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(size // MIB):
            block = i.to_bytes(8, "big") + base[8:]
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


class PeakRss:
    """Polls a process's RSS from a thread and keeps the maximum."""

    def __init__(self, pid: int, interval_s: float = 0.01) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


@pytest.mark.slow
def test_one_gib_in_20_mib_parts(tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    expected_sha256 = make_file(source, SIZE)
    with running_emulator(tmp_path, "--rate-limit", "1000/60") as emu:
        client = NotionClient(emu)
        parts = -(-SIZE // PART)
        upload_id = client.create_ok(mode="multi_part", filename="big.txt", number_of_parts=parts)["id"]
        baseline = emu.rss_bytes()
        monitor = PeakRss(emu.pid)

        def send(n: int) -> int:
            offset = (n - 1) * PART
            length = min(PART, SIZE - offset)
            # each worker streams its range of the file; nothing is held whole in memory
            return NotionClient(emu).send(upload_id, source, part_number=n, offset=offset, length=length).status_code

        with ThreadPoolExecutor(max_workers=3) as pool:
            statuses = list(pool.map(send, range(1, parts + 1)))
        assert statuses == [200] * parts
        r = client.complete(upload_id)
        peak = monitor.stop()

        assert r.status_code == 200, r.text
        assert r.json()["status"] == "uploaded" and r.json()["content_length"] == SIZE
        record = emu.upload(upload_id)
        assert record["size"] == SIZE
        assert record["sha256"] == expected_sha256
        assert len(record["parts"]) == parts == 52
        assert emu.stats()["bytes_received"] > SIZE
        print(f"emulator RSS: baseline {baseline / MIB:.1f} MiB, peak {peak / MIB:.1f} MiB")
        assert peak < RSS_LIMIT, f"peak RSS {peak / MIB:.1f} MiB (baseline {baseline / MIB:.1f} MiB)"
