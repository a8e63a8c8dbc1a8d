"""Exactly once, decided from Notion's state (DESIGN.md invariant 8).

The emulator carries out half of the creates, single_part sends, completes and appends and then
answers 503 or 504 (its `ambiguous` fault, seeded). The relay may not repeat what Notion did:
every upload ends `completed`, none `failed`, and the page holds exactly one block per upload,
counted by listing the page's children through Notion's own endpoint.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.emulator import NotionClient
from harness.relay import MIB, PAGE_ID, make_file
from harness.stacks import unthrottled_stack
from harness.tusclient import upload

# Single part up to 20,000,000 bytes, multi_part above (one file just past the single_part cap).
SIZES = [1, 1000, 300_000, 5 * MIB, 20_000_000, 20_000_001, 12 * MIB + 5, 26 * MIB + 3]
UPLOADS = 20


def page_blocks(client: NotionClient, page_id: str) -> list[dict]:
    blocks: list[dict] = []
    cursor = None
    while True:
        query = "?page_size=100" + (f"&start_cursor={cursor}" if cursor else "")
        listing = client.request("GET", f"/v1/blocks/{page_id}/children{query}").json()
        blocks.extend(listing["results"])
        if not listing["has_more"]:
            return blocks
        cursor = listing["next_cursor"]


@pytest.mark.slow
def test_half_of_the_writes_stored_then_answered_5xx(tmp_path: Path):
    stack = unthrottled_stack(tmp_path, MAX_RETRIES="8", INITIAL_RETRY_DELAY="0.1", MAX_RETRY_DELAY="0.5",
                              CB_NOTION_FAILURE_THRESHOLD="1000", CB_UPLOAD_FAILURE_THRESHOLD="1000")
    try:
        files = []
        for i in range(UPLOADS):
            path = tmp_path / (f"once-{i:02d}.png" if i % 2 else f"once-{i:02d}.txt")
            size = SIZES[i % len(SIZES)]
            files.append((path, size, make_file(path, size, seed=500 + i)))
        stack.emulator.set_faults({"rate": 0.5, "kinds": {"ambiguous": 1}, "seed": 10,
                                   "endpoints": ["create", "send", "complete", "attach"]})
        with ThreadPoolExecutor(max_workers=UPLOADS) as pool:
            results = list(pool.map(lambda f: upload(
                stack.relay.url, f[0], 8 * MIB, deadline_s=300,
                filetype="image/png" if f[0].suffix == ".png" else "text/plain"), files))
        stats = stack.emulator.stats()
        print("emulator outcomes:", stats["requests"])
        injected = stats["faults_injected"].get("ambiguous", 0)
        stack.emulator.clear_faults()

        file_upload_ids = []
        block_ids = []
        for (path, size, sha), result in zip(files, results):
            status = stack.relay.status(result.url.rsplit("/", 1)[-1])
            assert status["status"] == "completed", (path.name, status)
            stored = stack.emulator.upload(status["notion"]["file_upload_id"])
            assert stored["sha256"] == sha and stored["size"] == size, (path.name, stored)
            assert stored["mode"] == ("single_part" if size <= 20_000_000 else "multi_part"), (size, stored["mode"])
            file_upload_ids.append(status["notion"]["file_upload_id"])
            block_ids.append(status["notion"]["block_id"])
        assert len(set(file_upload_ids)) == UPLOADS

        blocks = page_blocks(NotionClient(stack.emulator), PAGE_ID)
        assert len(blocks) == UPLOADS, f"{len(blocks)} blocks on the page for {UPLOADS} uploads"
        # Each upload reports its own block, also when it was found again after a lost answer.
        assert sorted(block_ids) == sorted(b["id"] for b in blocks)
        assert {b["type"] for b in blocks} == {"file", "image"}
        for file_upload_id in file_upload_ids:
            assert len(stack.emulator.upload(file_upload_id)["attached_to"]) == 1
        # Nothing created twice either: every pending upload Notion holds was finished.
        orphans = [u for u in stack.emulator.uploads() if u["status"] != "uploaded"]
        assert not orphans, f"an orphan upload at Notion: {orphans}"
        assert injected >= 15, f"only {injected} ambiguous answers were injected"
    finally:
        stack.close()
