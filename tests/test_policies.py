"""Retry, breaker and budget arithmetic on a fake clock: no real sleeping."""
from __future__ import annotations

import pytest

from engine.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from engine.clock import FakeClock
from engine.notion import Failure
from engine.retry import RetryPolicy

pytestmark = pytest.mark.inprocess


def test_retry_delays_grow_exponentially_and_cap():
    p = RetryPolicy(retries=5, initial_delay_s=1, max_delay_s=10, exponential_base=2, jitter_percent=0)
    assert [p.delay_s(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert p.attempts == 6
    assert p.may_retry(5) and not p.may_retry(6)


def test_retry_jitter_stays_within_its_percent():
    p = RetryPolicy(initial_delay_s=4, jitter_percent=25)
    assert p.delay_s(1, rand=lambda: 0.0) == 3.0
    assert p.delay_s(1, rand=lambda: 1.0) == 5.0


def test_retry_after_is_a_floor():
    p = RetryPolicy(initial_delay_s=1, jitter_percent=0)
    assert p.delay_s(1, retry_after_s=7) == 7
    assert p.delay_s(4, retry_after_s=2) == 8


@pytest.mark.parametrize("failure, retryable", [
    (Failure("connect", "x"), True),
    (Failure("timeout", "x"), True),
    (Failure("transfer", "x"), True),
    (Failure("http", "x", status=400, code="validation_error"), False),
    (Failure("http", "x", status=401), False),
    (Failure("http", "x", status=404), False),
    (Failure("http", "x", status=409), True),
    (Failure("http", "x", status=429), True),
    (Failure("http", "x", status=429, rate_limit_reason="public_api_request_blocked"), False),
    (Failure("http", "x", status=503), True),
    (Failure("http", "x", status=529), True),
])
def test_failure_classification_follows_notion_api_md(failure, retryable):
    assert failure.retryable is retryable


def test_breaker_opens_after_threshold_and_recovers_through_half_open():
    clock = FakeClock()
    changes = []
    b = CircuitBreaker("notion", clock, failure_threshold=3, open_duration_s=30, half_open_max_calls=1)
    b.on_change(lambda name, old, new: changes.append((old, new)))
    for _ in range(2):
        assert b.allow()
        b.record_failure()
    assert b.state == CLOSED
    b.record_failure()
    assert b.state == OPEN and not b.allow()
    assert b.retry_after_s() == 30
    clock.advance(29.9)
    assert b.state == OPEN
    clock.advance(0.1)
    assert b.state == HALF_OPEN
    assert b.allow() and not b.allow()  # one probe at a time
    b.record_failure()
    assert b.state == OPEN
    clock.advance(30)
    assert b.allow()
    b.record_success()
    assert b.state == CLOSED
    assert changes == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    assert b.stats.success_rate == pytest.approx(100 * 1 / 5, abs=0.1)


def test_a_success_resets_the_consecutive_failure_count():
    b = CircuitBreaker("n", FakeClock(), failure_threshold=2, open_duration_s=1)
    b.record_failure()
    b.record_success()
    b.record_failure()
    assert b.state == CLOSED
