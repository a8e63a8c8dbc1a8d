"""RetryPolicy: how long to wait before trying again, as a small frozen value; and `retrying`,
the one loop that waits and tries again (Notion calls, checkpoints, record saves).

Which failures are retryable is the caller's business (see Failure.retryable in
notion_answers.py); the policy only does the arithmetic, so it can be tested without a clock.
"""
from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Sleeper(Protocol):
    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    retries: float = 5  # tries after the first one (MAX_RETRIES; math.inf: until it works)
    initial_delay_s: float = 1.0
    max_delay_s: float = 120.0
    exponential_base: float = 2.0
    jitter_percent: float = 25.0

    @property
    def attempts(self) -> float:
        return self.retries + 1

    def may_retry(self, failed_attempts: int) -> bool:
        """After `failed_attempts` failures in a row, is another try allowed?"""
        return failed_attempts <= self.retries

    def delay_s(self, failed_attempts: int, retry_after_s: float | None = None,
                rand: Callable[[], float] = random.random) -> float:
        """Wait before the next try; failed_attempts counts from 1.

        A server's Retry-After is honoured as a floor: waiting less would only earn another 429.
        """
        exponent = max(0, failed_attempts - 1)
        base = min(self.initial_delay_s * self.exponential_base ** exponent, self.max_delay_s)
        spread = base * self.jitter_percent / 100.0
        wait = max(0.0, base + (rand() * 2 - 1) * spread)
        if retry_after_s is not None:
            wait = max(wait, retry_after_s)
        return wait

    @classmethod
    def from_settings(cls, s: Any) -> "RetryPolicy":
        return cls(
            retries=s.max_retries,
            initial_delay_s=s.initial_retry_delay_s,
            max_delay_s=s.max_retry_delay_s,
            exponential_base=s.retry_exponential_base,
            jitter_percent=s.retry_jitter_percent,
        )


# Redis writes that must land (checkpoints, records): tried until they do, 0.1 s doubling to 5 s.
UNTIL_STORED = RetryPolicy(retries=math.inf, initial_delay_s=0.1, max_delay_s=5.0,
                           exponential_base=2.0, jitter_percent=0.0)


class GaveUp(Exception):
    """The attempts or the deadline ran out; `last` is the last failure."""

    def __init__(self, last: BaseException) -> None:
        super().__init__(str(last))
        self.last = last


async def retrying(attempt: Callable[[], Awaitable[T]], *, policy: RetryPolicy, clock: Sleeper,
                   retry_on: type[BaseException] | tuple[type[BaseException], ...],
                   retry_after: Callable[[BaseException], float | None] = lambda exc: None,
                   may_retry: Callable[[BaseException], bool] = lambda exc: True,
                   deadline: float | None = None,
                   on_failure: Callable[[BaseException, int], None] | None = None) -> T:
    """`attempt()` until it returns. A failure of type `retry_on` that `may_retry` accepts is
    retried after the policy's delay (a server's Retry-After as a floor), within the policy's
    attempts and the monotonic `deadline`; anything else, or running out, raises GaveUp
    (with the failure as `last`) for retryable kinds, or the failure itself for the rest."""
    failures = 0
    while True:
        try:
            return await attempt()
        except retry_on as exc:
            failures += 1
            if on_failure is not None:
                on_failure(exc, failures)
            if not may_retry(exc):
                raise
            wait = policy.delay_s(failures, retry_after(exc))
            if not policy.may_retry(failures) or (deadline is not None and clock.monotonic() + wait > deadline):
                raise GaveUp(exc) from exc
            await clock.sleep(wait)
