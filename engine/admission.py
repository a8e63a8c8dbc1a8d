"""Admission: may a new upload start now? Refused (503 + Retry-After) while Notion's breakers
are open, Redis is away, memory is at the critical threshold, or too many uploads are running."""
from __future__ import annotations

from typing import Callable

from engine.breaker import CircuitBreaker
from engine.errors import ServiceUnavailable
from engine.resources import AdaptiveLimiter
from engine.store import CheckpointStore


class Admission:
    def __init__(self, breakers: list[CircuitBreaker], store: CheckpointStore, limiter: AdaptiveLimiter,
                 active_uploads: Callable[[], int], max_active: int) -> None:
        self.breakers = breakers
        self.store = store
        self.limiter = limiter
        self.active_uploads = active_uploads
        self.max_active = max_active

    def __call__(self) -> None:
        for breaker in self.breakers:
            if not breaker.would_allow():
                raise ServiceUnavailable("Upload service temporarily unavailable. Please try again later.",
                                         retry_after_s=max(1.0, breaker.retry_after_s()),
                                         circuit_breaker_state=breaker.state)
        if not self.store.healthy:
            raise ServiceUnavailable("the checkpoint store is unavailable; try again shortly", retry_after_s=5)
        if not self.limiter.admitting:
            sample = self.limiter.last
            used = sample.used_mb if sample else 0.0
            # The seeds' "Resource Exhaustion" answer, word for word.
            raise ServiceUnavailable(
                f"Upload rejected due to resource constraints: Memory would exceed critical limit "
                f"({used:.1f}MB > {self.limiter.thresholds.critical_mb:.0f}MB)", retry_after_s=30)
        active = self.active_uploads()
        if active >= self.max_active:
            raise ServiceUnavailable("Too many uploads in progress; try again shortly", retry_after_s=10,
                                     active_uploads=active)
