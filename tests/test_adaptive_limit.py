"""Memory readings crossing the seeds' thresholds move the number of part sends Notion sees at
once, 3 → 2 → 1 and back. The relay runs in a thread of this test so the readings can be
injected; everything else is real (emulator, Redis, libcurl, tus over HTTP)."""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import requests

from engine.limiter import Sample
from harness.processes import wait_until
from harness.relay import MIB, PAGE_ID, make_file
from harness.tusclient import upload
from server import Relay
from settings import Settings


class InjectedSampler:
    """What the limiter reads every METRICS_INTERVAL: the memory in use is set by the test."""

    def __init__(self) -> None:
        self.used_mb = 100.0

    def sample(self) -> Sample:
        used = int(self.used_mb * MIB)
        return Sample(used, 0, used, 512 * MIB, 0.0, 2.0)


class ThreadedRelay:
    def __init__(self, settings: Settings, sampler: InjectedSampler) -> None:
        self.relay = Relay(settings, sampler)
        self.loop: asyncio.AbstractEventLoop | None = None
        ready = threading.Event()

        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            serving = asyncio.ensure_future(self.relay.serve())
            while not self.relay.port and not serving.done():
                await asyncio.sleep(0.01)
            ready.set()
            await serving

        self.thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
        self.thread.start()
        assert ready.wait(30), "the relay did not start"
        self.url = f"http://127.0.0.1:{self.relay.port}"

    def stop(self) -> None:
        if self.loop is not None:
            asyncio.run_coroutine_threadsafe(self.relay.shutdown(), self.loop).result(30)
        self.thread.join(30)


def test_memory_readings_move_the_concurrent_sends_and_back(emulator, redis_server, tmp_path):
    settings = Settings.from_env({
        "HOST": "127.0.0.1", "PORT": "0", "NOTION_TOKEN": "emulator-token", "NOTION_API_BASE": emulator.url,
        "NOTION_PARENT_PAGE_ID": PAGE_ID, "REDIS_URL": redis_server.url, "DATA_DIR": str(tmp_path / "data"),
        "METRICS_INTERVAL": "0.1", "TOTAL_MEMORY_MB": "512",  # the seeds' thresholds as they are
    })
    sampler = InjectedSampler()
    relay = ThreadedRelay(settings, sampler)
    files = []
    for i in range(3):
        path = tmp_path / f"limit-{i}.txt"
        make_file(path, 25 * MIB, seed=i)
        files.append(path)
    # Each send takes a while, so the sends allowed at once really overlap at the emulator.
    emulator.set_faults({"rate": 1, "kinds": {"slow": 1}, "endpoints": ["send"], "slow_s": 0.5})
    seen = []
    try:
        for used_mb, workers in [(100, 3), (400, 2), (470, 1), (100, 3)]:
            sampler.used_mb = used_mb
            wait_until(lambda: requests.get(f"{relay.url}/api/system/health", timeout=5).json()
                       ["components"]["resource_manager"]["optimal_workers"] == workers,
                       timeout_s=10, message=f"{workers} workers at {used_mb} MB")
            emulator.reset_stats()
            with ThreadPoolExecutor(len(files)) as pool:
                results = list(pool.map(lambda p: upload(relay.url, p, 8 * MIB, deadline_s=120), files))
            assert all(r.completed_at for r in results)
            seen.append(emulator.stats()["max_in_flight_by_endpoint"]["send"])
    finally:
        emulator.clear_faults()
        relay.stop()
    assert seen == [3, 2, 1, 3]
