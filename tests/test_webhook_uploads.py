"""Webhooks for real uploads, end to end: two relays share Redis and a receiver that verifies
every signature with the spec's algorithm (and the reference library). upload.completed arrives
for each finished upload, never before Notion holds the file attached; with the receiver down for
30 s, the relay holding pending events killed with -9 and a second instance running, every event
arrives at least once and the ids deduplicate to exactly one per upload."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from harness.processes import wait_until
from harness.relay import MIB, make_file
from harness.tusclient import upload
from tests.support.webhook_receiver import Receiver
from tests.test_webhooks import SECRET, relay_env

RECEIVER_DOWN_S = 30.0


@pytest.mark.slow
def test_completed_arrives_once_per_upload_through_a_dead_receiver_and_a_killed_relay(
        relay_factory, emulator, tmp_path: Path):
    early: list[str] = []
    lock = threading.Lock()

    def held_by_notion(event: dict[str, Any]) -> None:
        if event.get("type") != "upload.completed":
            return
        stored = emulator.upload(event["data"]["notion"]["file_upload_id"])
        if stored["status"] != "uploaded" or not stored["attached_to"]:
            with lock:
                early.append(event["data"]["upload_id"])

    receiver = Receiver(SECRET, on_event=held_by_notion).start()
    a = relay_factory("a", **relay_env(receiver))
    relay_factory("b", **relay_env(receiver))  # the second instance, which delivers after a dies
    files = []
    for i in range(6):
        path = tmp_path / f"hook-{i}.txt"
        make_file(path, (3 + 9 * i) * MIB + i, seed=60 + i)
        files.append(path)
    try:
        first = [upload(a.url, p, 8 * MIB, deadline_s=120) for p in files[:3]]
        receiver.wait_for(lambda r: len(set(r.accepted_ids())) == 3, timeout_s=30)

        receiver.stop()  # down: connections refused from here on
        down_since = time.monotonic()
        with ThreadPoolExecutor(max_workers=3) as pool:
            second = list(pool.map(lambda p: upload(a.url, p, 8 * MIB, deadline_s=120), files[3:]))
        wait_until(lambda: a.health()["components"]["webhooks"]["pending"] == 3, timeout_s=30,
                   message="three events pending while the receiver is down")
        a.kill()  # SIGKILL with events pending (and possibly claimed)
        time.sleep(max(0.0, RECEIVER_DOWN_S - (time.monotonic() - down_since)))
        receiver.start()
        receiver.wait_for(lambda r: len(set(r.accepted_ids())) == 6, timeout_s=60)
        time.sleep(1)

        ids = receiver.accepted_ids()
        assert len(set(ids)) == 6, ids  # at least once each, one id per upload
        events = {d.id: d.event for d in receiver.accepted()}
        uploads = {e["data"]["upload_id"] for e in events.values()}
        assert uploads == {r.url.rsplit("/", 1)[-1] for r in first + second}
        assert {e["type"] for e in events.values()} == {"upload.completed"}
        assert all(d.verified and d.reference_verified for d in receiver.deliveries)
        assert early == [], f"announced before Notion held the file: {early}"
        for e in events.values():
            assert e["data"]["filename"].startswith("hook-") and e["data"]["destination"]["kind"] == "page"
    finally:
        receiver.stop()
