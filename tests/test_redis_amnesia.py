"""Redis comes back empty (restarted without persistence, a failover to an empty replica) in the
middle of an upload. The instance holding it notices (the store's epoch is new), writes back what
it holds, and says "degraded" meanwhile; within 5 s HEAD and status are right on both instances,
and once the holder is killed the other instance resumes the upload without losing a byte."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import requests

from engine.embedded_redis import EmbeddedRedis, free_tcp_port
from harness.processes import wait_until
from harness.relay import MIB, make_file, start_relay
from tests.test_durability import PART, SLOW_SENDS, TEN_MIB_PARTS, Background, assert_intact, durable_parts

TUS = {"Tus-Resumable": "1.0.0"}


def head_offset(relay, upload_id: str) -> int | None:
    r = requests.head(f"{relay.url}/files/{upload_id}", headers=TUS, timeout=10)
    return int(r.headers["Upload-Offset"]) if r.status_code == 200 else None


def test_redis_restarted_empty_mid_upload(emulator, tmp_path: Path):
    port = free_tcp_port()
    redis = EmbeddedRedis(tmp_path / "redis-1", tcp_port=port)
    redis.start()
    size = 60 * MIB
    path = tmp_path / "amnesia.txt"
    sha = make_file(path, size)
    emulator.set_faults(SLOW_SENDS)
    # 6 parts of 10 MiB: 4 left to resume on B after 2 are durable.
    a = start_relay(tmp_path / "a", emulator.url, redis.url, LOCK_TTL="2", **TEN_MIB_PARTS)
    b = start_relay(tmp_path / "b", emulator.url, redis.url, LOCK_TTL="2", **TEN_MIB_PARTS)
    target = {"url": a.url}
    try:
        job = Background(lambda: target["url"], path)
        upload_id = job.upload_id
        wait_until(lambda: len(durable_parts(redis.url, upload_id)) >= 2, timeout_s=60, message="2 durable parts")

        redis.kill()
        shutil.rmtree(redis.data_dir)
        redis = EmbeddedRedis(tmp_path / "redis-2", tcp_port=port)  # same address, nothing in it
        redis.start()
        forgotten = time.monotonic()

        # Right on both within 5 s: the holder's write-back brings the durable parts back (until
        # then the other instance may see a record that normal writes re-created without them).
        wait_until(lambda: (head_offset(a, upload_id) or 0) >= 2 * PART
                   and (head_offset(b, upload_id) or 0) >= 2 * PART
                   and b.status(upload_id)["durable_offset"] >= 2 * PART,
                   timeout_s=5, message="HEAD and status right on both instances after the amnesia")
        assert time.monotonic() - forgotten <= 5
        wait_until(lambda: "STORE_AMNESIA" in a.output(), timeout_s=5, message="the holder's log says so")

        a.kill()
        target["url"] = b.url
        emulator.clear_faults()
        job.join()
        assert_intact(emulator, b, upload_id, sha)
    finally:
        a.stop()
        b.stop()
        redis.stop()
