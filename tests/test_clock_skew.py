"""A relay whose clock runs 65 minutes ahead (libfaketime) shares Redis with one whose clock is
right. Reading the upload there (HEAD, status) and its sweeps never expire the upload that the
other instance holds: expiry is decided by the holder, from Notion's own `status`."""
from __future__ import annotations

import glob
import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from harness.processes import wait_until
from harness.relay import MIB, make_file, start_relay
from tests.test_durability import SLOW_SENDS, Background, assert_intact

LIBFAKETIME = next(iter(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")), "libfaketime.so.1")
TUS = {"Tus-Resumable": "1.0.0"}
# Only the wall clock moves: timers and timeouts run on the monotonic clock.
SKEW = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": "+65m", "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_NO_CACHE": "1"}


def test_a_clock_65_minutes_ahead_expires_nothing(emulator, redis_server, tmp_path: Path):
    assert os.path.exists(LIBFAKETIME), "libfaketime is missing (run.sh installs Debian's faketime)"
    skewed = subprocess.run([sys.executable, "-c", "import time; print(time.time())"], capture_output=True, text=True,
                            env={**os.environ, **SKEW}, check=True)
    assert float(skewed.stdout) - time.time() > 64 * 60, "libfaketime did not move the clock"
    path = tmp_path / "skew.txt"
    sha = make_file(path, 40 * MIB)
    emulator.set_faults(SLOW_SENDS)
    holder = start_relay(tmp_path / "holder", emulator.url, redis_server.url)
    ahead = start_relay(tmp_path / "ahead", emulator.url, redis_server.url, CLEANUP_INTERVAL="0.3",
                        **SKEW)
    try:
        job = Background(holder.url, path)
        upload_id = job.upload_id
        # Part 1 durable, whatever the part size: the holder has the upload in hand.
        wait_until(lambda: holder.status(upload_id)["durable_offset"] > 0, timeout_s=60, message="a part")
        end = time.monotonic() + 3  # ten sweeps of the instance that is ahead
        while time.monotonic() < end:
            head = requests.head(f"{ahead.url}/files/{upload_id}", headers=TUS, timeout=10)
            assert head.status_code == 200, head.status_code
            seen = ahead.status(upload_id)
            assert seen["status"] not in ("expired", "failed"), seen
            time.sleep(0.2)
        emulator.clear_faults()
        job.join()
        assert_intact(emulator, holder, upload_id, sha)
        assert ahead.status(upload_id)["status"] == "completed"
        assert "UPLOAD_EXPIRED" not in ahead.output() + holder.output()
    finally:
        holder.stop()
        ahead.stop()
