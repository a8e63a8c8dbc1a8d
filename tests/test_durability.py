"""Durable checkpoints and resume anywhere: kill -9, another instance, Redis outage, SIGTERM,
expiry, and three instances sharing one request budget. Real processes throughout."""
from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis as redis_sync
import requests

from engine.embedded_redis import EmbeddedRedis, free_tcp_port
from harness.emulator import start_emulator
from harness.processes import wait_until
from harness.relay import MIB, make_file, start_relay
from harness.tusclient import upload

SLOW_SENDS = {"rate": 1, "kinds": {"slow": 1}, "endpoints": ["send"], "slow_s": 0.4}
# Tests that stop a relay after some parts and need parts left to resume fix the part size,
# so that their files stay as many parts as they count on (the default, 20 MiB, is tested by
# the end-to-end uploads of test_tus_uploads.py and others).
PART = 10 * MIB
TEN_MIB_PARTS = {"PART_SIZE_MB": str(PART // MIB)}


def durable_parts(redis_url: str, upload_id: str) -> set[int]:
    client = redis_sync.Redis.from_url(redis_url)
    try:
        return {int(p) for p in client.smembers(f"relay:upload:{upload_id}:parts")}
    finally:
        client.close()


def port_of(relay) -> str:
    return relay.url.rsplit(":", 1)[-1]


class Background:
    """Runs a persistent tus upload in a thread; remembers the upload URL as soon as it exists."""

    def __init__(self, base, path: Path, chunk: int = 8 * MIB, deadline_s: float = 240) -> None:
        self.created = threading.Event()
        self.url = ""
        self.error: BaseException | None = None
        self.result = None

        def run() -> None:
            try:
                self.result = upload(base, path, chunk, deadline_s=deadline_s, on_created=self._created)
            except BaseException as exc:  # reported by join()
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def _created(self, url: str) -> None:
        self.url = url
        self.created.set()

    @property
    def upload_id(self) -> str:
        assert self.created.wait(60), "the upload was never created"
        return self.url.rsplit("/", 1)[-1]

    def join(self, timeout_s: float = 240) -> None:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the upload did not finish"
        if self.error:
            raise self.error


def assert_intact(emulator, relay, upload_id: str, sha: str) -> dict:
    status = relay.status(upload_id)
    assert status["status"] == "completed", status
    stored = emulator.upload(status["notion"]["file_upload_id"])
    assert stored["sha256"] == sha
    return stored


def test_kill_9_mid_upload_then_restart_resumes_without_resending_durable_parts(emulator, redis_server, tmp_path):
    size = 200 * MIB
    path = tmp_path / "crash.txt"
    sha = make_file(path, size)
    emulator.set_faults(SLOW_SENDS)
    relay = start_relay(tmp_path / "relay", emulator.url, redis_server.url, **TEN_MIB_PARTS)
    port = port_of(relay)
    job = Background(relay.url, path)
    upload_id = job.upload_id
    wait_until(lambda: len(durable_parts(redis_server.url, upload_id)) >= 5, timeout_s=60,
               message="5 durable parts of 20")
    relay.kill()
    before = durable_parts(redis_server.url, upload_id)
    emulator.clear_faults()
    restarted = start_relay(tmp_path / "relay", emulator.url, redis_server.url, PORT=port, **TEN_MIB_PARTS)
    try:
        job.join()
        stored = assert_intact(emulator, restarted, upload_id, sha)
        sent_twice = [n for n in before if stored["parts"][str(n)]["sends"] != 1]
        assert not sent_twice, f"durable parts sent again after the restart: {sent_twice}"
    finally:
        restarted.stop()


def test_embedded_redis_keeps_checkpoints_across_a_crash(emulator, tmp_path):
    size = 45 * MIB
    path = tmp_path / "embedded.txt"
    sha = make_file(path, size)
    emulator.set_faults(SLOW_SENDS)
    # No REDIS_URL: the embedded default.
    relay = start_relay(tmp_path / "relay", emulator.url, None, **TEN_MIB_PARTS)
    port = port_of(relay)
    job = Background(relay.url, path)
    upload_id = job.upload_id
    wait_until(lambda: relay.status(upload_id)["durable_offset"] >= 2 * PART, timeout_s=60, message="2 parts of 5")
    relay.kill()
    emulator.clear_faults()
    restarted = start_relay(tmp_path / "relay", emulator.url, None, PORT=port, **TEN_MIB_PARTS)
    try:
        assert restarted.status(upload_id)["durable_offset"] >= 2 * PART
        job.join()
        assert_intact(emulator, restarted, upload_id, sha)
    finally:
        restarted.stop()


def test_another_instance_takes_over_when_the_first_dies(emulator, redis_server, tmp_path):
    size = 60 * MIB
    path = tmp_path / "moves.txt"
    sha = make_file(path, size)
    emulator.set_faults(SLOW_SENDS)
    a = start_relay(tmp_path / "a", emulator.url, redis_server.url, LOCK_TTL="2", **TEN_MIB_PARTS)
    b = start_relay(tmp_path / "b", emulator.url, redis_server.url, LOCK_TTL="2", **TEN_MIB_PARTS)
    target = {"url": a.url}
    try:
        job = Background(lambda: target["url"], path)
        upload_id = job.upload_id
        wait_until(lambda: a.status(upload_id)["durable_offset"] >= PART, timeout_s=60, message="a part of 6 on A")
        a.kill()
        target["url"] = b.url  # the router now sends the client to B
        emulator.clear_faults()
        job.join()
        assert_intact(emulator, b, upload_id, sha)
        assert "UPLOAD_CLAIMED" in b.output()
    finally:
        a.stop()
        b.stop()


def test_a_redis_outage_pauses_uploads_and_everything_resumes(emulator, tmp_path):
    store = EmbeddedRedis(tmp_path / "redis", tcp_port=free_tcp_port())
    store.start()
    emulator.set_faults(SLOW_SENDS)
    relay = start_relay(tmp_path / "relay", emulator.url, store.url, METRICS_INTERVAL="0.2")
    try:
        files = []
        for i in range(5):
            path = tmp_path / f"outage-{i}.txt"
            files.append((path, make_file(path, 35 * MIB + i, seed=i)))
        jobs = [Background(relay.url, p) for p, _ in files]
        ids = [j.upload_id for j in jobs]
        wait_until(lambda: sum(relay.status(i)["durable_offset"] for i in ids) >= 20 * MIB, timeout_s=60,
                   message="some durable progress")
        store.kill()
        outage_started = time.monotonic()
        wait_until(lambda: relay.health()["components"]["checkpoint_manager"]["status"] == "unhealthy",
                   timeout_s=10, message="health to notice the outage")
        assert relay.health()["status"] == "unhealthy"
        refused = requests.post(f"{relay.url}/files/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "5"},
                                timeout=10)
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
        # The outage lasts 10 s in all; uploads keep their bytes and wait at the checkpoint step.
        time.sleep(max(0.0, 10 - (time.monotonic() - outage_started)))
        store.start()
        emulator.clear_faults()
        for job in jobs:
            job.join()
        for upload_id, (_, sha) in zip(ids, files):
            assert_intact(emulator, relay, upload_id, sha)
        wait_until(lambda: relay.health()["status"] == "healthy", timeout_s=10, message="health to recover")
    finally:
        relay.stop()
        store.stop()


def test_sigterm_exits_cleanly_then_the_upload_resumes(emulator, redis_server, tmp_path):
    size = 80 * MIB
    path = tmp_path / "term.txt"
    sha = make_file(path, size)
    emulator.set_faults(SLOW_SENDS)
    relay = start_relay(tmp_path / "relay", emulator.url, redis_server.url, SHUTDOWN_TIMEOUT="10")
    port = port_of(relay)
    job = Background(relay.url, path)
    upload_id = job.upload_id
    # The default part size (80 MiB: 4 parts); durable_offset > 0 once part 1 is durable.
    wait_until(lambda: relay.status(upload_id)["durable_offset"] > 0, timeout_s=60, message="a part")
    started = time.monotonic()
    relay.signal(signal.SIGTERM)
    assert relay.wait(20) == 0
    assert time.monotonic() - started < 12
    assert "stopped" in relay.output()
    emulator.clear_faults()
    restarted = start_relay(tmp_path / "relay", emulator.url, redis_server.url, PORT=port)
    try:
        job.join()
        assert_intact(emulator, restarted, upload_id, sha)
    finally:
        restarted.stop()


def test_an_idle_upload_past_notions_expiry_is_gone(tmp_path, redis_server):
    emulator = start_emulator(tmp_path / "emulator", "--expiry-s", "3")
    relay = start_relay(tmp_path / "relay", emulator.url, redis_server.url, CLEANUP_INTERVAL="0.3")
    try:
        created = requests.post(f"{relay.url}/files/", headers={
            "Tus-Resumable": "1.0.0", "Upload-Length": str(30 * MIB), "Upload-Metadata": "filename aWRsZS50eHQ="},
            timeout=30)
        url = created.headers["Location"]
        upload_id = url.rsplit("/", 1)[-1]
        r = requests.patch(url, data=b"z" * (12 * MIB), headers={
            "Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"},
            timeout=30)
        assert r.status_code == 204
        spool = tmp_path / "relay" / "data" / "spool" / upload_id
        assert spool.exists()
        wait_until(lambda: requests.head(url, headers={"Tus-Resumable": "1.0.0"}, timeout=10).status_code == 410,
                   timeout_s=15, message="HEAD to answer 410")
        status = requests.get(f"{relay.url}/api/upload/status/{upload_id}", timeout=10).json()
        assert status["status"] == "expired" and status["can_resume"] is False
        wait_until(lambda: not spool.exists(), timeout_s=10, message="spool files removed")
        client = redis_sync.Redis.from_url(redis_server.url)
        wait_until(lambda: not client.exists(f"relay:upload:{upload_id}"), timeout_s=10, message="the record gone")
        assert not client.exists(f"relay:upload:{upload_id}:parts")
        client.close()
        # Gone, and said so: 410 (not 404) for an hour, with the reason.
        late = requests.patch(url, data=b"z", headers={
            "Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(12 * MIB)},
            timeout=30)
        assert late.status_code == 410 and late.json()["error"]
        assert requests.head(url, headers={"Tus-Resumable": "1.0.0"}, timeout=10).status_code == 410
        gone = requests.get(f"{relay.url}/api/upload/status/{upload_id}", timeout=10)
        assert gone.status_code == 410
        assert gone.json()["status"] == "expired" and gone.json()["can_resume"] is False
    finally:
        relay.stop()
        emulator.stop()


def test_three_instances_share_one_budget_and_never_see_a_429(tmp_path, redis_server):
    emulator = start_emulator(tmp_path / "emulator", "--rate-limit", "12/4")
    # 10 MiB parts: each 21 MiB file is create + 3 sends + complete, so 15 files need at least
    # 75 requests from the 12/4 budget (attaches may share appends).
    relays = [start_relay(tmp_path / f"r{i}", emulator.url, redis_server.url, NOTION_RATE_LIMIT="12/4",
                          **TEN_MIB_PARTS) for i in range(3)]
    try:
        files = []
        for i in range(15):
            path = tmp_path / f"shared-{i}.txt"
            files.append((path, make_file(path, 21 * MIB + i, seed=i)))
        with ThreadPoolExecutor(15) as pool:
            results = list(pool.map(lambda i: upload(relays[i % 3].url, files[i][0], 8 * MIB, deadline_s=300),
                                    range(15)))
        for i, result in enumerate(results):
            assert_intact(emulator, relays[i % 3], result.url.rsplit("/", 1)[-1], files[i][1])
        stats = emulator.stats()
        assert stats["rate_limited"] == 0, stats
        assert stats["requests_total"] >= 15 * 5
    finally:
        for relay in relays:
            relay.stop()
        emulator.stop()


def test_a_request_cut_by_a_restart_is_told_so(emulator, redis_server, tmp_path):
    relay = start_relay(tmp_path / "relay", emulator.url, redis_server.url, SHUTDOWN_TIMEOUT="5")
    created = requests.post(f"{relay.url}/files/", headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(30 * MIB), "Upload-Metadata": "filename ci50eHQ="}, timeout=30)
    path = "/files/" + created.headers["Location"].rsplit("/", 1)[-1]
    host, port = relay.url.split("//")[1].split(":")
    import socket

    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall((f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
                   f"Content-Type: application/offset+octet-stream\r\nContent-Length: {4 * MIB}\r\n\r\n").encode()
                  + b"r" * MIB)
        wait_until(lambda: relay.status(path.rsplit("/", 1)[-1])["bytes_uploaded"] >= MIB, timeout_s=10,
                   message="the first MiB to arrive")
        relay.signal(signal.SIGTERM)
        reply = s.recv(4096)  # answered at once, without waiting for the rest of the body
    assert relay.wait(20) == 0
    assert reply.startswith(b"HTTP/1.1 503"), reply[:200]
    assert b"restarting" in reply
