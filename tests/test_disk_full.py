"""The spool's disk fills up mid-upload (a small tmpfs; tests run as root here).

Every PATCH that meets "no space left" is answered 507 with Retry-After and can_resume, and
keeps what was counted; once space is free again every upload finishes byte-identical. Before
the exact spool writes, such uploads ended "completed" with stale bytes inside their parts.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.processes import wait_until
from harness.relay import MIB, make_file
from harness.stacks import unthrottled_stack
from harness.tusclient import upload
from tests.support import tmpfs

DISK_BYTES = 128 * MIB
FREE_AT_FIRST = 20 * MIB
UPLOADS = 3


@pytest.fixture
def small_disk(tmp_path: Path):
    with tmpfs.small_disk(tmp_path, DISK_BYTES) as mount:
        yield mount


def fill(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        block = b"\0" * MIB
        for _ in range(size // MIB):
            f.write(block)


@pytest.mark.slow
def test_a_full_spool_disk_answers_507_and_loses_nothing(tmp_path: Path, small_disk: Path):
    spool = small_disk / "spool"
    # Sends take a second each, so part files pile up on the small disk.
    stack = unthrottled_stack(tmp_path, ["--faults", '{"rate": 1, "kinds": {"slow": 1}, "endpoints": ["send"], '
                                                     '"slow_s": 1}'],
                              SPOOL_DIR=str(spool), SPOOL_MIN_FREE_MB="0")
    ballast = small_disk / "ballast"
    try:
        files = []
        for i in range(UPLOADS):
            path = tmp_path / f"full-{i}.txt"
            files.append((path, make_file(path, 40 * MIB + i, seed=900 + i)))
        # The disk fills once all three uploads exist (a full disk may also refuse new uploads).
        created = threading.Barrier(UPLOADS, action=lambda: fill(ballast, DISK_BYTES - FREE_AT_FIRST))

        def run(item):
            return upload(stack.relay.url, item[0], 8 * MIB, deadline_s=300, on_created=lambda url: created.wait(30))

        with ThreadPoolExecutor(max_workers=UPLOADS + 1) as pool:
            running = [pool.submit(run, f) for f in files]

            wait_until(lambda: any(f.done() for f in running) or "SPOOL_WRITE_FAILED" in stack.relay.output(),
                       timeout_s=120,
                       message="a PATCH meeting a full disk")
            os.unlink(ballast)  # space is free again
            results = [f.result() for f in running]
        refusals = [body for r in results for status, body in r.refusals if status == 507]
        assert refusals, "no PATCH met the full disk"
        for body in refusals:
            assert body["can_resume"] is True and body["retry_after"] >= 1 and body["code"] == "insufficient_storage"
        for (path, sha), result in zip(files, results):
            status = stack.relay.status(result.url.rsplit("/", 1)[-1])
            assert status["status"] == "completed", status
            stored = stack.emulator.upload(status["notion"]["file_upload_id"])
            assert stored["sha256"] == sha and stored["size"] == path.stat().st_size, (path.name, stored)
    finally:
        stack.close()
