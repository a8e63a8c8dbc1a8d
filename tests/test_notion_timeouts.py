"""Every Notion request has a connect, a stall and a total timeout (real libcurl, real sockets)."""
from __future__ import annotations

import asyncio
import socket
import time

import pytest
from tornado.curl_httpclient import CurlAsyncHTTPClient
from tusclient import client as tus

from engine.notion import Failure, NotionClient, Timeouts
from harness.relay import MIB, make_file


def run_with_client(base_url: str, timeouts: Timeouts, scenario):
    async def main():
        http = CurlAsyncHTTPClient(force_instance=True, max_clients=4)
        try:
            return await scenario(NotionClient(http, base_url, "emulator-token", "2025-09-03", timeouts))
        finally:
            http.close()
    return asyncio.run(main())


def test_a_stalled_send_is_abandoned_after_read_timeout(emulator, tmp_path):
    part = tmp_path / "part.txt"
    make_file(part, 6 * MIB)

    async def scenario(notion: NotionClient):
        created = await notion.create_file_upload(mode="single_part", filename="part.txt",
                                                  content_type="text/plain", number_of_parts=None)
        emulator.set_faults({"rate": 1, "kinds": {"stall": 1}, "endpoints": ["send"], "stall_s": 600, "count": 1})
        started = time.monotonic()
        with pytest.raises(Failure) as info:
            await notion.send_part(created["id"], path=str(part), filename="part.txt", content_type="text/plain",
                                   part_number=None, size=6 * MIB)
        elapsed = time.monotonic() - started
        again = await notion.send_part(created["id"], path=str(part), filename="part.txt",
                                       content_type="text/plain", part_number=None, size=6 * MIB)
        return info.value, elapsed, again

    failure, elapsed, again = run_with_client(emulator.url, Timeouts(connect_s=5, stall_s=2, total_s=60), scenario)
    assert failure.kind == "timeout" and failure.retryable and failure.may_have_applied
    assert 2 <= elapsed < 4  # no byte moved for READ_TIMEOUT: abandoned then, not seconds later
    assert again["status"] == "uploaded"


def test_a_connection_that_never_opens_fails_after_connection_timeout():
    # A listener whose accept queue is full: the kernel drops further SYNs, so connect() hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    try:
        async def scenario(notion: NotionClient):
            started = time.monotonic()
            with pytest.raises(Failure) as info:
                await notion.users_me()
            return info.value, time.monotonic() - started

        failure, elapsed = run_with_client(f"http://127.0.0.1:{port}", Timeouts(connect_s=1, stall_s=30, total_s=60),
                                           scenario)
    finally:
        for s in fillers:
            s.close()
        listener.close()
    assert failure.kind == "connect" and failure.retryable and not failure.may_have_applied
    assert 0.9 <= elapsed < 5


def test_the_relay_retries_a_stalled_part_and_finishes(relay_factory, emulator, tmp_path):
    relay = relay_factory(READ_TIMEOUT="2", INITIAL_RETRY_DELAY="0.1")
    path = tmp_path / "stall.txt"
    sha = make_file(path, 26 * MIB)
    emulator.set_faults({"rate": 1, "kinds": {"stall": 1}, "endpoints": ["send"], "stall_s": 600, "count": 1})
    started = time.monotonic()
    uploader = tus.TusClient(f"{relay.url}/files/").uploader(str(path), chunk_size=8 * MIB,
                                                             metadata={"filename": "stall.txt"})
    uploader.upload()
    assert time.monotonic() - started >= 2
    status = relay.status(uploader.url.rsplit("/", 1)[-1])
    stored = emulator.upload(status["notion"]["file_upload_id"])
    assert stored["sha256"] == sha and status["status"] == "completed"
    assert "TIMEOUT_EVENT" in relay.output()
