"""Chaos: 30 concurrent tus uploads while the emulator fails 15% of create/send/complete/attach
with every fault kind. All must finish intact; none may be reported complete early."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from engine.embedded_redis import EmbeddedRedis, free_tcp_port
from harness.emulator import start_emulator
from harness.relay import MIB, PAGE_ID, make_file, start_relay
from harness.tusclient import upload
from tests.test_tus_uploads import assert_parts_obey_notion

SIZES = [1, 1000, 5 * MIB - 1, 5 * MIB, 5 * MIB + 1, 10 * MIB, 20 * MIB - 1, 20 * MIB, 20 * MIB + 1,
         30 * MIB, 40 * MIB + 7, 64 * MIB]
ALL_KINDS = {k: 1 for k in ["500", "502", "503", "504", "409", "429", "529", "reset", "stall", "slow", "ambiguous"]}


@pytest.mark.slow
def test_thirty_uploads_survive_fifteen_percent_faults(tmp_path: Path):
    emulator = start_emulator(tmp_path / "emulator")
    redis = EmbeddedRedis(tmp_path / "redis", tcp_port=free_tcp_port())
    redis.start()
    relay = start_relay(
        tmp_path / "relay", emulator.url, redis.url,
        READ_TIMEOUT="3", CONNECTION_TIMEOUT="2", TOTAL_TIMEOUT="60",
        MAX_RETRIES="6", INITIAL_RETRY_DELAY="0.2", MAX_RETRY_DELAY="2",
        CB_NOTION_FAILURE_THRESHOLD="6", CB_NOTION_TIMEOUT_DURATION="1",
        CB_UPLOAD_FAILURE_THRESHOLD="100", MAX_CONCURRENT_UPLOADS="30", QUEUE_SIZE_LIMIT="10")
    try:
        files = []
        for i in range(30):
            size = SIZES[i % len(SIZES)]
            path = tmp_path / f"chaos-{i:02d}.txt"
            files.append((path, size, make_file(path, size, seed=100 + i)))
        emulator.set_faults({"rate": 0.15, "kinds": ALL_KINDS, "endpoints": ["send", "create", "complete", "attach"],
                             "stall_s": 600, "slow_s": 1, "seed": 15})
        early: list[str] = []
        lock = threading.Lock()

        def check_claim(url: str) -> None:
            # The moment the relay first says "done", Notion must hold the file, attached.
            status = requests.get(f"{relay.url}/api/upload/status/{url.rsplit('/', 1)[-1]}", timeout=30).json()
            stored = emulator.upload(status["notion"]["file_upload_id"])
            if stored["status"] != "uploaded" or not stored["attached_to"]:
                with lock:
                    early.append(url)

        with ThreadPoolExecutor(max_workers=30) as pool:
            results = list(pool.map(lambda f: upload(relay.url, f[0], 8 * MIB, deadline_s=400, on_complete=check_claim),
                                    files))
        emulator.clear_faults()
        assert not early, f"reported complete before Notion held the file: {early}"
        for (path, size, sha), result in zip(files, results):
            status = relay.status(result.url.rsplit("/", 1)[-1])
            assert status["status"] == "completed", status
            stored = emulator.upload(status["notion"]["file_upload_id"])
            assert stored["sha256"] == sha and stored["size"] == size, (path.name, stored)
            assert_parts_obey_notion(stored)
            assert PAGE_ID.replace("-", "") in [p.replace("-", "") for p in stored["attached_to"]]
        # The faults really happened: about 15% of the faulted endpoints' requests did not succeed.
        requests_by_endpoint = emulator.stats()["requests"]
        outcomes: dict[str, int] = {}
        for endpoint in ("create", "send", "complete", "attach"):
            for outcome, count in requests_by_endpoint.get(endpoint, {}).items():
                outcomes[outcome] = outcomes.get(outcome, 0) + count
        total = sum(outcomes.values())
        failed = total - outcomes.get("200", 0)
        print("emulator outcomes:", outcomes)
        assert failed >= 0.05 * total and len([o for o in outcomes if o != "200"]) >= 4, outcomes
    finally:
        relay.stop()
        redis.stop()
        emulator.stop()
