"""Resilience against Notion and load: breaker, exhausted retries, budget, memory admission."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from harness.emulator import start_emulator
from harness.processes import wait_until
from harness.relay import MIB, make_file, start_relay
from harness.tusclient import upload
from tests.test_tus_protocol import TUS, create, patch


def breaker(relay, name: str = "notion_api") -> dict:
    breakers = relay.health()["components"]["circuit_breakers"]["breakers"]
    return next(b for b in breakers if b["name"] == name)


def test_a_20s_outage_opens_the_breaker_new_uploads_wait_and_running_ones_finish(relay_factory, emulator,
                                                                                   tmp_path):
    relay = relay_factory(CB_NOTION_FAILURE_THRESHOLD="2", CB_NOTION_TIMEOUT_DURATION="5",
                          MAX_RETRIES="10", INITIAL_RETRY_DELAY="0.2", MAX_RETRY_DELAY="1")
    files = []
    for i in range(3):
        path = tmp_path / f"waits-{i}.txt"
        files.append((path, make_file(path, 31 * MIB, seed=i)))
    urls = [create(relay.url, 31 * MIB).headers["Location"] for _ in files]
    emulator.outage(20, 503)
    outage_started = time.monotonic()
    outcome: dict[int, requests.Response] = {}

    def run(i: int) -> None:
        with open(files[i][0], "rb") as f:
            outcome[i] = patch(urls[i], 0, f.read())

    workers = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for w in workers:
        w.start()
    wait_until(lambda: breaker(relay)["state"] == "OPEN", timeout_s=10, message="the breaker to open")
    refused = requests.post(f"{relay.url}/api/upload/create-session",
                            json={"filename": "x.txt", "fileSize": 10}, timeout=10)
    assert refused.status_code == 503
    body = refused.json()
    assert body["circuit_breaker_state"] in ("OPEN", "HALF_OPEN") and body["retry_after"] >= 1
    assert int(refused.headers["Retry-After"]) >= 1
    assert relay.health()["status"] == "degraded"
    # Running uploads pause: none of them fails while Notion is away.
    while time.monotonic() - outage_started < 18:
        states = {relay.status(u.rsplit("/", 1)[-1])["status"] for u in urls}
        assert "failed" not in states, states
        time.sleep(0.5)  # sampling the statuses through the outage
    for w in workers:
        w.join(90)
    for i, (path, sha) in enumerate(files):
        assert outcome[i].status_code == 204, outcome[i].text
        status = relay.status(urls[i].rsplit("/", 1)[-1])
        assert status["status"] == "completed"
        assert emulator.upload(status["notion"]["file_upload_id"])["sha256"] == sha
    assert time.monotonic() - outage_started >= 20
    wait_until(lambda: breaker(relay)["state"] == "CLOSED", timeout_s=15, message="the breaker to close")


def test_exhausted_retries_leave_the_upload_resumable(relay_factory, emulator, tmp_path):
    relay = relay_factory(MAX_RETRIES="1", INITIAL_RETRY_DELAY="0.05", CB_NOTION_FAILURE_THRESHOLD="50")
    data = (b"resumable " * 2 * MIB)[: 12 * MIB]
    url = create(relay.url, len(data)).headers["Location"]
    emulator.set_faults({"rate": 1, "kinds": {"503": 1}, "endpoints": ["send"], "count": 2})
    failed = patch(url, 0, data)
    assert failed.status_code == 503, failed.text
    assert failed.json()["can_resume"] is True and int(failed.headers["Retry-After"]) >= 1
    upload_id = url.rsplit("/", 1)[-1]
    status = relay.status(upload_id)
    assert status["status"] == "failed" and status["can_resume"] is True
    head = requests.head(url, headers=TUS, timeout=10)
    offset = int(head.headers["Upload-Offset"])
    assert offset == len(data) - 1  # every byte is kept; only the last one is asked for again
    done = patch(url, offset, data[offset:])
    assert done.status_code == 204 and done.headers["Upload-Status"] == "completed"
    stored = emulator.upload(relay.status(upload_id)["notion"]["file_upload_id"])
    import hashlib
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()


def test_memory_at_the_critical_threshold_refuses_uploads(relay_factory):
    relay = relay_factory(TOTAL_MEMORY_MB="512", MEMORY_LOW_THRESHOLD="1", MEMORY_MEDIUM_THRESHOLD="2",
                          MEMORY_HIGH_THRESHOLD="3", MEMORY_CRITICAL_THRESHOLD="4")
    health = relay.health()
    resources = health["components"]["resource_manager"]
    assert resources["resource_state"] == "CRITICAL" and resources["optimal_workers"] == 1
    r = requests.post(f"{relay.url}/files/", headers={**TUS, "Upload-Length": "10"}, timeout=10)
    assert r.status_code == 503 and int(r.headers["Retry-After"]) == 30
    assert r.json()["error"].startswith("Upload rejected due to resource constraints: Memory would exceed critical limit")


def test_admission_is_bounded_by_max_concurrent_uploads_and_queue(relay_factory, emulator):
    relay = relay_factory(MAX_CONCURRENT_UPLOADS="1", QUEUE_SIZE_LIMIT="1")
    with ThreadPoolExecutor(8) as pool:  # all at once: admission must count uploads being created
        answers = list(pool.map(lambda _: create(relay.url, 100), range(8)))
    assert sorted(a.status_code for a in answers) == [201, 201] + [503] * 6
    refused = next(a for a in answers if a.status_code == 503)
    assert refused.headers["Retry-After"]
    # The concurrent creations shared one lookup of the workspace's size limit.
    assert emulator.stats()["requests"]["users_me"] == {"200": 1}


@pytest.mark.parametrize("counted", ["at-headers", "at-end"])
def test_the_request_budget_keeps_notion_from_ever_saying_429(tmp_path, redis_server, counted):
    """25 uploads against an emulator whose rate limit equals our budget, no injected 429s,
    whether the emulator counts a send when its headers or its last byte arrive."""
    late = ("--count-sends-at-end",) if counted == "at-end" else ()
    emulator = start_emulator(tmp_path / "emulator", "--rate-limit", "20/5", *late)
    relay = start_relay(tmp_path / "relay", emulator.url, redis_server.url, NOTION_RATE_LIMIT="20/5",
                        MAX_CONCURRENT_UPLOADS="30")
    try:
        files = []
        for i in range(25):
            path = tmp_path / f"paced-{i}.txt"
            files.append((path, make_file(path, 6 * MIB + i, seed=i)))
        with ThreadPoolExecutor(25) as pool:
            results = list(pool.map(lambda f: upload(relay.url, f[0], 8 * MIB, deadline_s=120), files))
        for (path, sha), result in zip(files, results):
            status = relay.status(result.url.rsplit("/", 1)[-1])
            assert emulator.upload(status["notion"]["file_upload_id"])["sha256"] == sha
            assert status["notion"]["block_id"]
        stats = emulator.stats()
        assert stats["rate_limited"] == 0
        assert sum(r.get("429", 0) for r in stats["requests"].values()) == 0
        # create and send each, and every file attached (one append may carry several files): the
        # budget was really spent, at the emulator's own pace
        attached = sum(stats["requests"].get("attach", {}).values())
        assert attached >= 1 and stats["requests_total"] >= 25 * 2 + attached
    finally:
        relay.stop()
        emulator.stop()
