"""PartScheduler: the per-upload bound (invariant 4) and round-robin fairness (invariant 5)."""
from __future__ import annotations

import asyncio

import pytest

from engine.upload.scheduler import PartScheduler

pytestmark = pytest.mark.inprocess


def run(coro):
    return asyncio.run(coro)


def test_round_robin_across_uploads():
    async def scenario():
        order: list[str] = []
        gate = asyncio.Event()
        sched = PartScheduler(limit=lambda: 1, per_upload=10)

        def job(name):
            async def attempt():
                order.append(name)
                await gate.wait()
                return None
            return attempt

        for i in range(5):
            sched.submit("big", job(f"big{i}"))
        sched.submit("small1", job("small1"))
        sched.submit("small2", job("small2"))
        gate.set()
        while sched.running or sched.queued:
            await asyncio.sleep(0.001)
        return order

    order = run(scenario())
    # The small uploads are served within the first round, not after the big one's five parts.
    assert order.index("small1") <= 2 and order.index("small2") <= 3


def test_at_most_two_parts_per_upload_and_writers_wait_for_room():
    async def scenario():
        release = asyncio.Event()
        sched = PartScheduler(limit=lambda: 8, per_upload=2)

        async def attempt():
            await release.wait()
            return None

        sched.submit("u", attempt)
        sched.submit("u", attempt)
        assert not sched.has_room("u")
        waiter = asyncio.ensure_future(sched.wait_for_room("u"))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        release.set()
        await asyncio.wait_for(waiter, 1)
        return sched.pending("u")

    assert run(scenario()) <= 1


def test_a_retry_gives_its_slot_back_while_it_waits():
    async def scenario():
        sched = PartScheduler(limit=lambda: 1, per_upload=2)
        calls: list[str] = []
        first = True

        async def flaky():
            nonlocal first
            calls.append("flaky")
            if first:
                first = False
                return 0.05
            return None

        async def other():
            calls.append("other")
            return None

        sched.submit("a", flaky)
        sched.submit("b", other)
        for _ in range(200):
            if calls.count("flaky") == 2 and "other" in calls and not sched.running:
                break
            await asyncio.sleep(0.005)
        return calls, sched.pending("a")

    calls, pending = run(scenario())
    assert calls == ["flaky", "other", "flaky"]
    assert pending == 0
