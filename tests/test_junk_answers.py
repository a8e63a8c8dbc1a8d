"""A proxy between relay and emulator answers 2xx with junk (an HTML page, a cut JSON body, an
object without its fields) on 30 % of creates, sends, completes, appends and retrieves, without
passing them on. A 2xx counts only with the object Notion documents, so each of these is an
unknown outcome decided from Notion's state: every upload ends completed byte-identical with
exactly one block, or failed with can_resume — never "completed" over wrong or missing data —
and the client never sees a 500."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine.embedded_redis import EmbeddedRedis, free_tcp_port
from harness.emulator import NotionClient, start_emulator
from harness.processes import PYTHON, ManagedProcess
from harness.relay import MIB, PAGE_ID, make_file, start_relay
from harness.tusclient import upload
from tests.support import junkproxy
from tests.test_exactly_once import page_blocks

SIZES = [10, 26 * MIB + 1, 3 * MIB, 20_000_001, 70_000, 31 * MIB]
UPLOADS = 12


@pytest.mark.slow
def test_junk_2xx_never_counts_as_success(tmp_path: Path):
    emulator = start_emulator(tmp_path / "emulator", "--rate-limit", "100000/60")
    redis = EmbeddedRedis(tmp_path / "redis", tcp_port=free_tcp_port())
    redis.start()
    proxy = ManagedProcess([PYTHON, "-m", "tests.support.junkproxy", "--upstream", emulator.url, "--rate", "0.3",
                            "--seed", "3"], r"junk proxy listening on (http://\S+)", tmp_path / "proxy.log")
    assert proxy.match is not None
    proxy_url = proxy.match.group(1)
    relay = start_relay(tmp_path / "relay", proxy_url, redis.url, NOTION_RATE_LIMIT="100000/60",
                        MAX_RETRIES="8", INITIAL_RETRY_DELAY="0.1", MAX_RETRY_DELAY="0.5",
                        CB_NOTION_FAILURE_THRESHOLD="1000", CB_UPLOAD_FAILURE_THRESHOLD="1000")
    try:
        files = []
        for i in range(UPLOADS):
            path = tmp_path / f"junk-{i:02d}.txt"
            size = SIZES[i % len(SIZES)]
            files.append((path, size, make_file(path, size, seed=700 + i)))
        with ThreadPoolExecutor(max_workers=UPLOADS) as pool:
            results = list(pool.map(lambda f: upload(relay.url, f[0], 8 * MIB, deadline_s=300), files))
        seen = junkproxy.stats(proxy_url)
        junk = seen["junk"]
        print("junk answers:", seen, "emulator:", emulator.stats()["requests"],
              [(u["filename"], u["mode"], u["size"], u["status"]) for u in emulator.uploads()])
        completed = []
        for (path, size, sha), result in zip(files, results):
            assert not [e for e in result.errors if " 500" in e], result.errors
            status = relay.status(result.url.rsplit("/", 1)[-1])
            if status["status"] == "failed":
                assert status["can_resume"] is True, status
                continue
            assert status["status"] == "completed", status
            stored = emulator.upload(status["notion"]["file_upload_id"])
            assert stored["sha256"] == sha and stored["size"] == size, (path.name, stored)
            assert len(stored["attached_to"]) == 1, stored
            completed.append(status["notion"]["block_id"])
        blocks = page_blocks(NotionClient(emulator), PAGE_ID)
        assert len(blocks) == len(completed) and sorted(b["id"] for b in blocks) == sorted(completed)
        assert len(completed) == UPLOADS  # a patient client (ours) finishes them all
        assert set(junk) == {"create", "send", "complete", "attach", "retrieve"}, junk
    finally:
        relay.stop()
        proxy.stop()
        redis.stop()
        emulator.stop()
