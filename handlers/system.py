"""Health: the live state of resources, breakers, budget, queue and store, in the seeds' shape.

Answered from what is already in memory: the limiter's last sample (psutil and the cgroup files
are read on its tick, never per request), the spool disk's last reading, counters. No I/O and
no await, so a poll costs about a millisecond of CPU and never waits behind upload work it could
avoid; on a 0.2-CPU dyno what it still waits for is the CPU quota (README, "Benchmarks").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.admission import BUDGET_BACKLOG, Admission
from engine.breaker import CLOSED, CircuitBreaker
from engine.budget import Budget
from engine.clock import Clock
from engine.limiter import CRITICAL, AdaptiveLimiter, Sample
from engine.looplag import LoopLagMonitor
from engine.store import CheckpointStore
from engine.upload.scheduler import PartScheduler
from engine.upload.service import UploadService
from engine.upload.session import FINAL_STATES
from handlers.base import BaseHandler


@dataclass
class SystemView:
    clock: Clock
    service: UploadService
    limiter: AdaptiveLimiter
    breakers: list[CircuitBreaker]
    budget: Budget
    scheduler: PartScheduler
    store: CheckpointStore
    store_kind: str
    max_concurrent_uploads: int | None  # None: unset (no count limit)
    queue_size_limit: int | None
    looplag: LoopLagMonitor | None = None
    admission: Admission | None = None
    pacer: Any | None = None  # engine.limiter.IntakePacer
    webhooks: Any | None = None  # engine.webhooks.WebhookDispatcher, when WEBHOOK_URL is set

    def active_uploads(self) -> int:
        return sum(1 for s in self.service.live.values() if s.record.state not in FINAL_STATES)

    def sample(self) -> Sample:
        """The limiter's last sample; only a relay that was never sampled reads one now."""
        return self.limiter.last or self.limiter.tick()

    def resources_brief(self) -> dict[str, Any]:
        sample = self.sample()
        return {
            "memory_usage_mb": round(sample.used_mb, 1),
            "memory_usage_percent": round(sample.used_percent, 1),
            "optimal_workers": self.limiter.workers,
            "resource_state": self.limiter.state,
        }

    def breaker_brief(self) -> dict[str, Any]:
        notion = self.breakers[0]
        return {"state": notion.state, "success_rate": notion.stats.success_rate}

    def health(self) -> dict[str, Any]:
        sample = self.sample()
        breakers = [b.snapshot() for b in self.breakers]
        breakers_ok = all(b["state"] == CLOSED for b in breakers)
        resource_ok = self.limiter.state != CRITICAL
        store_ok = self.store.healthy
        # Whether a new upload would be admitted now, and the spool disk's free space.
        admission = self.admission.snapshot() if self.admission is not None else {}
        disk_low = admission.get("spool_disk", {}).get("status") == "low"
        backlogged = admission.get("admission", {}).get("reason") == BUDGET_BACKLOG
        # A webhook receiver that keeps failing: events wait in the outbox (uploads go on).
        webhooks = self.webhooks.snapshot() if self.webhooks is not None else None
        receiver_failing = webhooks is not None and webhooks["status"] == "failing"
        if not store_ok or not resource_ok:
            status = "unhealthy"
        elif not breakers_ok or disk_low or backlogged or self.store.restoring or receiver_failing:
            status = "degraded"
        else:
            status = "healthy"
        active = self.active_uploads()
        return {
            "timestamp": round(self.clock.wall(), 3),
            "status": status,
            "components": {
                "resource_manager": {
                    "status": "healthy" if resource_ok else "critical",
                    "memory_usage_mb": round(sample.used_mb, 1),
                    "memory_usage_percent": round(sample.used_percent, 1),
                    "rss_mb": round(sample.rss_bytes / 2**20, 1),
                    "cpu_usage_percent": round(sample.cpu_percent, 1),
                    "active_uploads": active,
                    "optimal_workers": self.limiter.workers,
                    "resource_state": self.limiter.state,
                    "thresholds_mb": {k: round(v, 1) for k, v in vars(self.limiter.thresholds).items()},
                    **({"intake": self.pacer.snapshot()} if self.pacer is not None else {}),
                },
                "circuit_breakers": {
                    "status": "healthy" if breakers_ok else "degraded",
                    "breakers": breakers,
                },
                "checkpoint_manager": {
                    # "restoring": Redis lost its data and this instance is writing back its uploads.
                    "status": "unhealthy" if not store_ok else "restoring" if self.store.restoring else "healthy",
                    "data_lost_count": self.store.amnesia_count,
                    "storage_type": self.store_kind,
                    "checkpoint_interval": 1,
                    "last_error": self.store.last_error,
                },
                "request_budget": self.budget.snapshot(),
                **admission,
                "backpressure_manager": {
                    "parts_running": self.scheduler.running,
                    "parts_queued": self.scheduler.queued,
                    "uploads_with_parts_pending": self.scheduler.snapshot()["uploads"],
                    "max_concurrent_uploads": self.max_concurrent_uploads,
                    "queue_size_limit": self.queue_size_limit,
                },
                **({"event_loop": self.looplag.snapshot()} if self.looplag is not None else {}),
                **({"webhooks": webhooks} if webhooks is not None else {}),
            },
            "performance": {
                "active_upload_sessions": active,
                "total_memory_limit_mb": round(sample.total_bytes / 2**20, 1),
                "total_cpu_limit": round(sample.cpu_limit_cores, 2),
            },
        }


class HealthHandler(BaseHandler):
    system: SystemView  # given (server.py), with access

    def compute_etag(self) -> None:
        # A no-store document that changes with every poll: hashing it would be wasted CPU.
        return None

    def get(self) -> None:
        body = self.system.health()
        if not self.may_see_details():
            # Public health says only whether we are up; the details need a token.
            body = {"timestamp": body["timestamp"], "status": body["status"]}
        self.write_json(200 if body["status"] != "unhealthy" else 503, body)
