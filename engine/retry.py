"""RetryPolicy: how long to wait before trying again, as a small frozen value.

Which failures are retryable is the caller's business (see Failure.retryable in notion.py);
this only does the arithmetic, so it can be tested without a clock.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5  # tries after the first one (MAX_RETRIES)
    initial_delay_s: float = 1.0
    max_delay_s: float = 120.0
    exponential_base: float = 2.0
    jitter_percent: float = 25.0

    @property
    def attempts(self) -> int:
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
    def from_settings(cls, s) -> "RetryPolicy":
        return cls(
            retries=s.max_retries,
            initial_delay_s=s.initial_retry_delay_s,
            max_delay_s=s.max_retry_delay_s,
            exponential_base=s.retry_exponential_base,
            jitter_percent=s.retry_jitter_percent,
        )
