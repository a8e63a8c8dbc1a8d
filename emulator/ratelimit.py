"""Notion's per-integration request budget: a token bucket per Authorization token.

A bucket holds `requests` tokens and refills at `requests / window_s` tokens per second, so a
full bucket allows a burst of `requests` and the long-run rate is `requests` per window.
Time comes from an injected monotonic clock (never the wall clock: an emulator clock jump
must not refill or drain buckets).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .config import RateLimit


@dataclass
class TokenBucket:
    capacity: float
    refill_per_s: float
    tokens: float
    updated_at: float

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated_at)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.refill_per_s)
        self.updated_at = now

    def take(self, now: float) -> float:
        """Spend one token; return 0.0 on success, else the seconds until one is available."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.refill_per_s


@dataclass
class RateLimiter:
    limit: RateLimit
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def check(self, token: str) -> int:
        """Spend a request for `token`; 0 when allowed, else Retry-After in whole seconds (≥ 1)."""
        now = self.clock()
        bucket = self._buckets.get(token)
        if bucket is None:
            capacity = float(self.limit.requests)
            bucket = TokenBucket(capacity, capacity / self.limit.window_s, capacity, now)
            self._buckets[token] = bucket
        wait_s = bucket.take(now)
        if wait_s <= 0.0:
            return 0
        # Round up so that a client waiting exactly Retry-After finds a token.
        return max(1, math.ceil(wait_s))

    def snapshot(self) -> dict[str, float]:
        now = self.clock()
        out = {}
        for token, bucket in self._buckets.items():
            bucket._refill(now)
            out[token] = round(bucket.tokens, 3)
        return out
