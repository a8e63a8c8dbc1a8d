"""IntakePacer (engine/pacer.py) on a fake clock and a fake CPU counter: intake is paced only
while the CPU quota is nearly used up, to the rate that brings it back to the target, and the
pace is lifted once the CPU has room again."""
from __future__ import annotations

import asyncio

import pytest

from engine.clock import FakeClock
from engine.pacer import IntakePacer

MIB = 2**20


class Cpu:
    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


def window(pacer: IntakePacer, clock: FakeClock, cpu: Cpu, cores_used: float, mib_per_s: float) -> None:
    """One tick window in which the process used `cores_used` and clients sent `mib_per_s`."""
    pauses = []
    sent = 0
    while sent < mib_per_s * MIB * pacer.window_s:
        pause = pacer.take(256 * 1024)
        if pause is not None:
            pauses.append(pause)
        sent += 256 * 1024
    for pause in pauses:
        pause.close()  # a coroutine from FakeClock.sleep that nobody awaits here
    clock.advance(pacer.window_s)
    cpu.seconds += cores_used * pacer.window_s
    pacer.tick()


@pytest.fixture
def dyno():
    clock, cpu = FakeClock(), Cpu()
    return IntakePacer(clock, cpu_limit=lambda: 0.2, cpu_time=cpu), clock, cpu


def test_not_paced_while_the_cpu_has_room(dyno):
    pacer, clock, cpu = dyno
    for _ in range(10):
        window(pacer, clock, cpu, cores_used=0.1, mib_per_s=30)  # half the quota
    assert pacer.rate is None and pacer.take(10 * MIB) is None
    assert pacer.snapshot() == {"paced": False, "rate_mib_per_s": None, "cpu_share": 0.5, "paced_windows": 0}


def test_a_saturated_quota_paces_intake_to_the_target_share(dyno):
    pacer, clock, cpu = dyno
    window(pacer, clock, cpu, cores_used=0.2, mib_per_s=60)  # the whole quota for 60 MiB/s
    assert pacer.rate == pytest.approx(60 * MIB * 0.7)  # 70% of the quota: 42 MiB/s
    assert pacer.snapshot()["paced"] and pacer.cpu_share == pytest.approx(1.0)
    # The bucket's burst goes at once, then each client waits for the bytes before its own.
    assert pacer.take(2 * MIB) is None
    first = pacer.take(MIB)
    second = pacer.take(MIB)
    assert first is not None and second is not None
    assert first.cr_frame.f_locals["seconds"] == pytest.approx(MIB / pacer.rate)
    assert second.cr_frame.f_locals["seconds"] == pytest.approx(2 * MIB / pacer.rate)
    first.close()
    second.close()


def test_the_pace_holds_in_the_band_falls_above_it_and_is_lifted_below(dyno):
    pacer, clock, cpu = dyno
    window(pacer, clock, cpu, cores_used=0.2, mib_per_s=60)
    paced = pacer.rate
    window(pacer, clock, cpu, cores_used=0.15, mib_per_s=42)  # 75%: inside the band, held
    assert pacer.rate == paced
    window(pacer, clock, cpu, cores_used=0.19, mib_per_s=42)  # still too much: slower
    assert pacer.rate == pytest.approx(42 * MIB * 0.7 / 0.95)
    window(pacer, clock, cpu, cores_used=0.1, mib_per_s=31)  # 50%: room again, toward the target
    assert pacer.rate == pytest.approx(42 * MIB * 0.7 / 0.95 * 0.7 / 0.5)
    rates = []
    for _ in range(20):
        window(pacer, clock, cpu, cores_used=0.04, mib_per_s=5)  # clients slowed down themselves
        rates.append(pacer.rate)
    assert rates[-1] is None  # lifted once far above what clients send
    assert all(b is None or a is None or b > a for a, b in zip(rates, rates[1:], strict=False))


def test_the_pace_never_falls_below_its_floor(dyno):
    pacer, clock, cpu = dyno
    window(pacer, clock, cpu, cores_used=0.2, mib_per_s=0.5)  # the CPU is busy with something else
    assert pacer.rate == 1 * MIB


def test_a_single_threaded_loop_is_saturated_at_one_core_whatever_the_host_has():
    clock, cpu = FakeClock(), Cpu()
    pacer = IntakePacer(clock, cpu_limit=lambda: 8.0, cpu_time=cpu)
    window(pacer, clock, cpu, cores_used=0.5, mib_per_s=300)
    assert pacer.rate is None
    window(pacer, clock, cpu, cores_used=0.95, mib_per_s=300)
    assert pacer.rate == pytest.approx(300 * MIB * 0.7 / 0.95)


def test_a_paused_client_resumes_when_its_wait_is_over(dyno):
    pacer, clock, cpu = dyno
    window(pacer, clock, cpu, cores_used=0.2, mib_per_s=10)
    pacer.rate = 6 * MIB

    async def client() -> None:
        assert pacer.take(2 * MIB) is None
        pause = pacer.take(3 * MIB)
        assert pause is not None
        await pause

    async def run() -> None:
        task = asyncio.ensure_future(client())
        await asyncio.sleep(0)
        clock.advance(0.4)
        await asyncio.sleep(0)
        assert not task.done()
        clock.advance(0.2)  # 3 MiB at 6 MiB/s: half a second
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert task.done()
        await task

    asyncio.run(run())
