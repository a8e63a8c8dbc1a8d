"""The Notion breaker on a failure rate over a window, on a fake clock: scattered failures never
open it, a real outage does within seconds, a run of failures on a quiet relay still does (the
seeds' floor), and half-open probing works as before."""
from __future__ import annotations

import random

import pytest

from engine.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from engine.clock import FakeClock
from settings import Settings

pytestmark = pytest.mark.inprocess

# The relay's defaults (settings.py): 3 in a row, 30 s open, a 10 s window, 50 %, 20 calls.
THRESHOLD, OPEN_S, WINDOW_S, RATE, MIN_CALLS = 3, 30.0, 10.0, 0.5, 20
# Notion's request budget: 180 requests a minute, what a loaded relay sends.
BUDGET_PER_S = 3.0


def notion_breaker(clock: FakeClock, **kw) -> CircuitBreaker:
    args = dict(failure_threshold=THRESHOLD, open_duration_s=OPEN_S, half_open_max_calls=1,
                window_s=WINDOW_S, failure_rate=RATE, minimum_calls=MIN_CALLS)
    args.update(kw)
    return CircuitBreaker("notion_api", clock, **args)


def call(b: CircuitBreaker, failed: bool) -> None:
    assert b.allow()
    (b.record_failure if failed else b.record_success)()


def traffic(b: CircuitBreaker, clock: FakeClock, seconds: float, per_s: float, failed, rnd: random.Random) -> None:
    """Calls at random times (per_s on average) for `seconds`; failed(rnd) says how each ends."""
    end = clock.now + seconds
    while True:
        gap = rnd.expovariate(per_s)
        if clock.now + gap > end:
            clock.advance(end - clock.now)
            return
        clock.advance(gap)
        if b.state != CLOSED:
            return
        call(b, failed(rnd))


def test_settings_defaults_give_the_documented_breaker():
    s = Settings.from_env({})
    assert (s.cb_notion_failure_threshold, s.cb_notion_timeout_duration_s) == (THRESHOLD, OPEN_S)
    assert (s.cb_notion_window_s, s.cb_notion_failure_rate_percent, s.cb_notion_minimum_calls) == (
        WINDOW_S, RATE * 100, MIN_CALLS)


@pytest.mark.parametrize("per_s", [BUDGET_PER_S, 6.0, 20.0])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ten_percent_random_failures_under_load_never_open_it(per_s, seed):
    """An hour at the budget's pace (and faster) with 10 % of calls failing at random: runs of
    3, 4, even 5 failures in a row happen, and the breaker stays closed."""
    clock, rnd = FakeClock(), random.Random(seed)
    b = notion_breaker(clock)
    longest = run = 0

    def failed(r: random.Random) -> bool:
        nonlocal longest, run
        f = r.random() < 0.10
        run = run + 1 if f else 0
        longest = max(longest, run)
        return f

    traffic(b, clock, 3600, per_s, failed, rnd)
    assert b.state == CLOSED and b.stats.times_opened == 0
    assert b.stats.failures > 0.08 * b.stats.total_calls
    assert longest >= THRESHOLD  # the seeds' rule would have opened it


def test_the_seeds_rule_alone_opens_on_the_same_scattered_failures():
    """Why the window: the same hour with window_s=0 (consecutive failures only) opens it again and again."""
    clock, rnd = FakeClock(), random.Random(1)
    b = notion_breaker(clock, window_s=0)
    opened = 0
    end = clock.now + 3600
    while clock.now < end:
        clock.advance(rnd.expovariate(BUDGET_PER_S))
        if b.state == OPEN:
            opened += 1
            clock.advance(OPEN_S)
        call(b, rnd.random() < 0.10)
    assert opened >= 3


@pytest.mark.parametrize("pattern", [
    [True] + [False] * 9,                     # every tenth call
    [True, True] + [False] * 18,              # pairs
    [False] * 27 + [True, True, True],        # a run of three, every 30 calls (10 %)
    [True, False] * 3 + [False] * 24,         # three close together
])
def test_scattered_failure_patterns_at_ten_percent_never_open_it(pattern):
    clock = FakeClock()
    b = notion_breaker(clock)
    for _ in range(200):
        for failed in pattern:
            clock.advance(1 / BUDGET_PER_S)
            call(b, failed)
    assert b.state == CLOSED and b.stats.times_opened == 0


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_an_outage_under_load_opens_it_within_a_few_seconds(seed):
    """A minute at the budget's pace with 10 % failures, then Notion fails every call."""
    clock, rnd = FakeClock(), random.Random(seed)
    b = notion_breaker(clock)
    traffic(b, clock, 60, BUDGET_PER_S, lambda r: r.random() < 0.10, rnd)
    assert b.state == CLOSED
    outage_at = clock.now
    traffic(b, clock, 60, BUDGET_PER_S, lambda r: True, rnd)
    assert b.state == OPEN and b.opened_by == "failure_rate"
    assert clock.now - outage_at <= 8.0  # about window_s / 2: the failures became the majority


def test_a_sixty_second_outage_opens_it_and_it_closes_when_notion_is_back():
    """The Done-when case: Notion down for 60 s in the middle of steady traffic. The breaker
    opens, probes every 30 s while Notion is still down (and reopens), and closes on the first
    probe after it is back."""
    clock, rnd = FakeClock(), random.Random(7)
    b = notion_breaker(clock)
    changes: list[tuple[str, str]] = []
    b.on_change(lambda name, old, new: changes.append((old, new)))
    traffic(b, clock, 30, BUDGET_PER_S, lambda r: False, rnd)
    down_from, down_until = clock.now, clock.now + 60
    while clock.now < down_until + 40:
        clock.advance(rnd.expovariate(BUDGET_PER_S))
        if b.allow():
            (b.record_failure if clock.now < down_until else b.record_success)()
    assert changes[0] == (CLOSED, OPEN)
    assert b.stats.times_opened >= 2  # the probe at +30 s still met the outage
    assert changes[-1] == (HALF_OPEN, CLOSED) and b.state == CLOSED
    assert b.stats.times_opened - 1 == sum(1 for c in changes if c == (HALF_OPEN, OPEN))
    assert clock.now > down_from  # (time moved)


def test_a_quiet_relay_still_opens_after_the_seeds_run_of_failures():
    """One call every 5 s: the window never holds 20 calls, so the seeds' rule decides."""
    clock = FakeClock()
    b = notion_breaker(clock)
    for failed in (False, False, True, True):
        clock.advance(5)
        call(b, failed)
    assert b.state == CLOSED
    clock.advance(5)
    call(b, True)
    assert b.state == OPEN and b.opened_by == "consecutive"
    assert b.retry_after_s() == OPEN_S


def test_a_run_of_three_in_a_busy_window_is_not_enough():
    """Three failures in a row among 27 successes is 10 %: it takes the window's majority."""
    clock = FakeClock()
    b = notion_breaker(clock)
    for _ in range(27):
        clock.advance(0.3)
        call(b, False)
    for _ in range(3):
        clock.advance(0.3)
        call(b, True)
    assert b.state == CLOSED
    calls, failures = b.window_counts()
    assert (calls, failures) == (30, 3)
    # The outage goes on: the run grows and the old successes leave the window.
    n = 3
    while b.state == CLOSED:
        clock.advance(0.3)
        call(b, True)
        n += 1
    assert b.state == OPEN and 10 <= n <= 20


def test_a_partial_outage_opens_it_without_a_run():
    """Notion failing 60 % of calls, never three in a row: the rate decides."""
    clock = FakeClock()
    b = notion_breaker(clock)
    pattern = [True, True, False, True, False]  # 60 %, runs of at most 2
    for i in range(25):
        clock.advance(0.3)
        call(b, pattern[i % len(pattern)])
        if b.state == OPEN:
            break
    assert b.state == OPEN and b.opened_by == "failure_rate"
    assert b.stats.total_calls >= MIN_CALLS


def test_old_outcomes_leave_the_window():
    clock = FakeClock()
    b = notion_breaker(clock)
    for _ in range(10):
        clock.advance(0.1)
        call(b, True if _ % 2 else False)
    assert b.window_counts() == (10, 5)
    clock.advance(WINDOW_S)
    assert b.window_counts() == (0, 0)
    snap = b.snapshot()["window"]
    assert snap == {"seconds": WINDOW_S, "calls": 0, "failures": 0, "failure_rate_percent": 0.0,
                    "opens_at_percent": 50.0, "minimum_calls": MIN_CALLS}


def test_half_open_probing_as_before_and_a_fresh_window_after_closing():
    clock = FakeClock()
    b = notion_breaker(clock, half_open_max_calls=2)
    for _ in range(3):
        clock.advance(1)
        call(b, True)
    assert b.state == OPEN and not b.allow()
    clock.advance(OPEN_S)
    assert b.state == HALF_OPEN
    assert b.allow() and b.allow() and not b.allow()  # two probes at a time
    b.record_failure()  # one probe fails: open again, at once
    assert b.state == OPEN and b.opened_by == "probe"
    clock.advance(OPEN_S)
    assert b.allow()
    b.record_success()
    assert b.state == CLOSED
    # What happened before the opening is forgotten: one failure now is not a run of three.
    assert b.window_counts() == (0, 0) and b.snapshot()["consecutive_failures"] == 0
    clock.advance(1)
    call(b, True)
    assert b.state == CLOSED


def test_released_calls_count_for_nothing():
    clock = FakeClock()
    b = notion_breaker(clock)
    for _ in range(50):
        assert b.allow()
        b.release()  # a 429, a cancelled call: neither Notion's success nor its failure
    assert b.window_counts() == (0, 0) and b.stats.total_calls == 0


def test_the_threshold_stays_a_floor_for_the_rate_too():
    """A relay told to keep its breaker closed (CB_NOTION_FAILURE_THRESHOLD=1000) keeps it closed
    through a window full of failures, as it did with the seeds' rule."""
    clock = FakeClock()
    b = notion_breaker(clock, failure_threshold=1000)
    for i in range(200):
        clock.advance(0.3)
        call(b, i % 4 != 0)  # 75 % failing, runs of 3
    assert b.state == CLOSED and b.window_counts()[0] >= MIN_CALLS
    b = notion_breaker(clock, failure_threshold=25)
    seen = []
    for i in range(40):
        clock.advance(0.3)
        call(b, i % 4 != 0)
        seen.append(b.window_counts()[1])
        if b.state == OPEN:
            break
    # It opened on the call that brought the window's failures to the floor, not before.
    assert b.state == OPEN and b.opened_by == "failure_rate"
    assert seen[-1] == 0 and max(seen[:-1]) == 24  # (the window is cleared when it opens)


def test_without_a_window_it_is_the_seeds_breaker():
    clock = FakeClock()
    b = notion_breaker(clock, window_s=0)
    for _ in range(30):
        call(b, False)
    call(b, True)
    call(b, True)
    assert b.state == CLOSED
    call(b, True)
    assert b.state == OPEN and b.opened_by == "consecutive"
    assert "window" not in b.snapshot()
