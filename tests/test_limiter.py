"""AdaptiveLimiter and cgroup reading, and the NotionGuard's waits, on fakes (no real sleeping)."""
from __future__ import annotations

import asyncio

import pytest

from engine import limiter as resources
from engine.breaker import CircuitBreaker
from engine.budget import RequestBudget
from engine.clock import FakeClock
from engine.guard import NotionGuard
from engine.limiter import CRITICAL, HIGH_LOAD, LOW_LOAD, MEDIUM_LOAD, AdaptiveLimiter, Sample, Thresholds
from engine.notion import Failure

MIB = 2**20
SEEDS = Thresholds(200, 350, 450, 500)


class FakeSampler:
    def __init__(self) -> None:
        self.used_mb = 50.0
        self.total_mb = 512.0
        self.cpu_percent = 5.0
        self.cores = 0.2

    def sample(self) -> Sample:
        used = int(self.used_mb * MIB)
        return Sample(used, 0, used, int(self.total_mb * MIB), self.cpu_percent, self.cores)


@pytest.mark.parametrize("used_mb, state, workers", [
    (50, LOW_LOAD, 3), (199, LOW_LOAD, 3), (200, MEDIUM_LOAD, 3), (349, MEDIUM_LOAD, 3),
    (350, HIGH_LOAD, 2), (449, HIGH_LOAD, 2), (450, HIGH_LOAD, 1), (500, CRITICAL, 1), (700, CRITICAL, 1),
])
def test_the_seeds_thresholds_set_workers_and_admission(used_mb, state, workers):
    sampler = FakeSampler()
    sampler.used_mb = used_mb
    limiter = AdaptiveLimiter(sampler, SEEDS, 1, 3, 2, scale_thresholds=False)
    limiter.tick()
    assert (limiter.state, limiter.workers) == (state, workers)
    assert limiter.admitting is (state != CRITICAL)


def test_thresholds_scale_with_the_detected_memory():
    sampler = FakeSampler()
    sampler.total_mb, sampler.used_mb = 1024, 450  # critical on 512 MB, fine on 1 GB
    limiter = AdaptiveLimiter(sampler, SEEDS, 1, 3, 2, scale_thresholds=True)
    limiter.tick()
    assert limiter.thresholds.critical_mb == 1000 and limiter.state == MEDIUM_LOAD  # 450 of 1000


def test_a_saturated_cpu_takes_one_worker_off():
    sampler = FakeSampler()
    sampler.cpu_percent = 19.5  # 97% of 0.2 CPU
    limiter = AdaptiveLimiter(sampler, SEEDS, 1, 3, 2, scale_thresholds=False)
    limiter.tick()
    assert limiter.workers == 2


def test_cgroup_v1_and_v2_files_are_read(tmp_path, monkeypatch):
    v1_mem, v1_cpu = tmp_path / "memory", tmp_path / "cpu"
    v1_mem.mkdir()
    v1_cpu.mkdir()
    (v1_mem / "memory.limit_in_bytes").write_text(str(512 * MIB))
    (v1_mem / "memory.stat").write_text("cache 999\ntotal_rss 123456\n")
    (v1_cpu / "cpu.cfs_quota_us").write_text("20000")
    (v1_cpu / "cpu.cfs_period_us").write_text("100000")
    monkeypatch.setattr(resources, "_own_cgroup_dirs", lambda: (None, v1_mem, v1_cpu))
    info = resources.read_cgroup()
    assert (info.memory_limit_bytes, info.memory_used_bytes, info.cpu_limit_cores) == (512 * MIB, 123456, 0.2)
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text(str(256 * MIB))
    (v2 / "memory.stat").write_text("anon 4096\nfile 777\n")
    (v2 / "cpu.max").write_text("50000 100000")
    monkeypatch.setattr(resources, "_own_cgroup_dirs", lambda: (v2, None, None))
    info = resources.read_cgroup()
    assert (info.memory_limit_bytes, info.memory_used_bytes, info.cpu_limit_cores) == (256 * MIB, 4096, 0.5)
    (v2 / "memory.max").write_text("max")
    assert resources.read_cgroup().memory_limit_bytes is None


def test_guard_waits_for_an_open_breaker_and_pauses_the_budget_on_429():
    async def scenario():
        clock = FakeClock()
        breaker = CircuitBreaker("notion", clock, failure_threshold=1, open_duration_s=10)
        budget = RequestBudget(clock, requests=100, window_s=1)
        guard = NotionGuard(clock, breaker, budget)
        calls = []

        async def fail_503():
            raise Failure("http", "down", status=503)

        async def fail_429():
            raise Failure("http", "slow down", status=429, retry_after_s=7)

        async def ok():
            calls.append(clock.now)
            return "ok"

        with pytest.raises(Failure):
            await guard.run(fail_503)
        assert breaker.state == "OPEN"
        waiting = asyncio.ensure_future(guard.run(ok))
        await asyncio.sleep(0)
        assert not waiting.done()  # running work waits while the breaker is open
        clock.advance(10)
        for _ in range(5):
            await asyncio.sleep(0)
        assert waiting.result() == "ok" and breaker.state == "CLOSED"
        async def fail_400():
            raise Failure("http", "bad request", status=400)

        for _ in range(3):
            with pytest.raises(Failure):
                await guard.run(fail_400)
        assert breaker.state == "CLOSED"  # a 400 is our fault, not Notion's
        with pytest.raises(Failure):
            await guard.run(fail_429)
        assert breaker.state == "CLOSED"  # a 429 is not Notion failing either
        assert budget.wait_s() == pytest.approx(7)  # but everybody waits
        later = asyncio.ensure_future(guard.run(ok))
        await asyncio.sleep(0)
        clock.advance(6.9)
        await asyncio.sleep(0)
        assert not later.done()
        clock.advance(0.2)
        for _ in range(5):
            await asyncio.sleep(0)
        assert later.done() and calls[-1] >= 1017

    asyncio.run(asyncio.wait_for(scenario(), 5))
