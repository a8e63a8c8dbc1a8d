"""IntakePacer (engine/pacer.py) on a fake clock, a fake CPU counter and fake cgroup throttling
counters: intake is paced only while the CPU quota is nearly used up or ran out within periods,
to the rate that brings it back, and the pace is lifted once the CPU has room again."""
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
    assert pacer.snapshot() == {"paced": False, "rate_mib_per_s": None, "cpu_share": 0.5,
                                "throttled_share": None, "paced_windows": 0}


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
    assert pacer.rate == pytest.approx(42 * MIB * 0.7 / 0.95 * 1.3)  # by 30% per window at most
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


class Quota:
    """The cgroup's cpu.stat counters: periods, and periods in which the quota ran out."""

    def __init__(self) -> None:
        self.periods = self.throttled = 0

    def __call__(self) -> tuple[int, int]:
        return self.periods, self.throttled

    def window(self, periods: int, throttled: int) -> None:
        self.periods += periods
        self.throttled += throttled


def throttled_dyno() -> tuple[IntakePacer, FakeClock, Cpu, Quota]:
    clock, cpu, quota = FakeClock(), Cpu(), Quota()
    return IntakePacer(clock, cpu_limit=lambda: 0.2, cpu_time=cpu, throttling=quota), clock, cpu, quota


def test_a_quota_used_up_within_periods_paces_even_when_the_average_has_room():
    pacer, clock, cpu, quota = throttled_dyno()
    quota.window(5, 0)
    window(pacer, clock, cpu, cores_used=0.13, mib_per_s=30)  # 65% on average, never frozen
    assert pacer.rate is None and pacer.throttled_share == 0
    quota.window(5, 1)  # one period frozen: at most the rest of it (80 ms) for anyone, tolerated
    window(pacer, clock, cpu, cores_used=0.13, mib_per_s=30)
    assert pacer.rate is None and pacer.throttled_share == pytest.approx(0.2)
    quota.window(5, 2)  # the same average, but bursts froze the process in 2 of 5 periods
    window(pacer, clock, cpu, cores_used=0.13, mib_per_s=30)
    assert pacer.rate == pytest.approx(30 * MIB * 0.9) and pacer.throttled_share == pytest.approx(0.4)
    quota.window(5, 4)  # frozen in most periods: a deep cut, from what was taken
    window(pacer, clock, cpu, cores_used=0.11, mib_per_s=20)
    assert pacer.rate == pytest.approx(30 * MIB * 0.9 * 0.6)  # from the pace, below what was taken
    quota.window(5, 0)  # not frozen any more, and the average is in the band: the pace holds
    held = pacer.rate
    window(pacer, clock, cpu, cores_used=0.13, mib_per_s=6)
    assert pacer.rate == held and pacer.snapshot()["throttled_share"] == 0


def test_a_throttled_pace_rises_again_only_in_windows_without_throttling():
    pacer, clock, cpu, quota = throttled_dyno()
    quota.window(5, 3)
    window(pacer, clock, cpu, cores_used=0.15, mib_per_s=30)
    paced = pacer.rate
    quota.window(5, 2)  # room on average, but the quota still ran out twice: no rise
    window(pacer, clock, cpu, cores_used=0.08, mib_per_s=20)
    assert pacer.rate is not None and pacer.rate <= paced
    quota.window(5, 1)
    before = pacer.rate
    window(pacer, clock, cpu, cores_used=0.08, mib_per_s=20)
    assert pacer.rate > before


def test_without_a_quota_throttling_is_not_a_signal():
    clock, cpu = FakeClock(), Cpu()
    pacer = IntakePacer(clock, cpu_limit=lambda: 1.0, cpu_time=cpu, throttling=lambda: None)
    window(pacer, clock, cpu, cores_used=0.3, mib_per_s=100)
    assert pacer.rate is None and pacer.throttled_share is None


def test_a_lull_is_not_room_the_pace_is_lifted_only_after_quiet_windows_in_a_row(dyno):
    pacer, clock, cpu = dyno
    window(pacer, clock, cpu, cores_used=0.2, mib_per_s=60)
    for _ in range(5):
        window(pacer, clock, cpu, cores_used=0.02, mib_per_s=1)  # clients between requests
    assert pacer.rate is not None
    window(pacer, clock, cpu, cores_used=0.15, mib_per_s=30)  # busy again: the count starts over
    for _ in range(5):
        window(pacer, clock, cpu, cores_used=0.02, mib_per_s=1)
    assert pacer.rate is not None
    window(pacer, clock, cpu, cores_used=0.02, mib_per_s=1)
    assert pacer.rate is None
