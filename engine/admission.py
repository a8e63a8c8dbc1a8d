"""Admission: may a new upload start now? Decided from what actually runs out, not from a count.

Uploads stream through spool files, so the relay's memory stays flat whatever their number;
what an upload costs is disk (its part files), Notion requests (one per part, plus create,
complete and attach, all from one budget) and a little memory. A new upload is refused
(503 + Retry-After, a message that says which) while:

- a Notion breaker is open, or the checkpoint store (Redis) is away;
- memory is at the limiter's critical threshold (the seeds' answer, word for word);
- the spool's disk would be left with less than SPOOL_MIN_FREE_MB free if every running upload
  filled its share of the spool (up to 3 part files each: 2 waiting or in flight, 1 being
  written) and the new one its own;
- the request budget is so far behind that the new upload's requests would come after more
  than NOTION_BACKLOG_LIMIT seconds of queued requests (Notion expires an upload 1 hour after
  it was created);
- MAX_CONCURRENT_UPLOADS + QUEUE_SIZE_LIMIT uploads are in progress, when either is set (the
  seeds' count; unset, there is no count limit).

Everything here reads values that are already in memory (the limiter's and the disk's last
samples, the budget's bucket, the live uploads' counters): no I/O on the request path.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.breaker import CircuitBreaker
from engine.disk import HEALTHY, LOW, UNKNOWN, SpoolDisk
from engine.errors import ServiceUnavailable
from engine.limiter import AdaptiveLimiter
from engine.upload.partplan import PlanError, plan_parts
from engine.upload.session import FAILED, FINAL_STATES, FINALIZING

MIB = 2**20
# DESIGN.md invariant 4: at most 2 parts per upload wait or are in flight; the part being
# written is the third file.
PARTS_SPOOLED_PER_UPLOAD = 3
# A new upload of unknown size (and each one between admission and its record) is counted as
# one part and create + complete + attach.
UNKNOWN_UPLOAD_REQUESTS = 4
# Retry-After bounds for the refusals computed from a rate (disk, backlog).
MIN_RETRY_AFTER_S = 10.0
MAX_RETRY_AFTER_S = 600.0
MEMORY_RETRY_AFTER_S = 30.0
STORE_RETRY_AFTER_S = 5.0
COUNT_RETRY_AFTER_S = 10.0

# Why each refusal happened (health's `admission.reason`, the 503's `reason`).
BREAKER, STORE, MEMORY, SPOOL_DISK, BUDGET_BACKLOG, COUNT = (
    "circuit_breaker", "checkpoint_store", "memory", "spool_disk", "budget_backlog", "upload_count")
REASONS = (BREAKER, STORE, MEMORY, SPOOL_DISK, BUDGET_BACKLOG, COUNT)


@dataclass(frozen=True)
class UploadLoad:
    """What one running upload may still cost."""
    spooled_bytes: int  # in its part files now
    spool_need_bytes: int  # the most its part files may hold at once from now on
    requests_left: int  # Notion requests it still needs (parts not yet durable, complete, attach)


def _confirmed_bytes(plan: Any, durable: set[int]) -> int:
    """Bytes of the durable parts, without summing them one by one (every part but the last is
    part_size): admission and health run this for every live upload."""
    n = len(durable)
    if not n:
        return 0
    total = n * plan.part_size
    last = plan.number_of_parts
    if last in durable:
        total -= plan.part_size - plan.part_length(last)
    return int(min(total, plan.size))


def load_of(session: Any) -> UploadLoad | None:
    """An UploadSession's load; None when it is over (completed, expired, terminated)."""
    record, plan = session.record, session.plan
    if record.state in FINAL_STATES:
        return None
    confirmed = _confirmed_bytes(plan, session.durable)
    spooled = max(0, session.assembler.received - confirmed)
    if record.state == FAILED and not record.can_resume:
        return UploadLoad(spooled, 0, 0)  # sends nothing more; its files are about to go
    finish = (1 if plan.is_multipart else 0) + 1  # complete (multi_part), attach
    parts_left = max(0, plan.number_of_parts - len(session.durable))
    if record.state == FINALIZING:
        parts_left = 0
    need = min(PARTS_SPOOLED_PER_UPLOAD * plan.part_size, plan.size - confirmed)
    return UploadLoad(spooled, max(0, need), parts_left + finish)


def loads_of(sessions: Iterable[Any]) -> list[UploadLoad]:
    return [load for load in map(load_of, list(sessions)) if load is not None]


class BudgetState(Protocol):
    """What admission reads from the request budget (RequestBudget, SharedRequestBudget)."""
    rate_per_s: float

    @property
    def tokens(self) -> float: ...

    def snapshot(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Refusal:
    reason: str
    message: str
    retry_after_s: float
    details: dict[str, Any] = field(default_factory=dict)

    def error(self) -> ServiceUnavailable:
        return ServiceUnavailable(self.message, retry_after_s=self.retry_after_s, reason=self.reason,
                                  **self.details)


@dataclass(frozen=True)
class SpoolView:
    status: str  # healthy, low (a new upload would be refused), unknown (never read)
    free_bytes: int | None
    total_bytes: int | None
    reserved_bytes: int  # what running uploads (and the new one) may still write
    available_bytes: int | None  # free now, less the reservations
    min_free_bytes: int
    age_s: float | None
    error: str | None

    def brief(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "free_bytes": self.free_bytes,
            "free_mb": None if self.free_bytes is None else round(self.free_bytes / MIB, 1),
            "total_bytes": self.total_bytes,
            "reserved_bytes": self.reserved_bytes,
            "available_bytes": self.available_bytes,
            "min_free_mb": round(self.min_free_bytes / MIB, 1),
            "min_free_bytes": self.min_free_bytes,
            "checked": self.min_free_bytes > 0,
            "sampled_s_ago": None if self.age_s is None else round(self.age_s, 1),
            "last_error": self.error,
        }


@dataclass(frozen=True)
class BacklogView:
    requests: int  # Notion requests the running uploads (and the new one) still need
    wait_s: float  # how long the budget needs for them, at its rate, from its current state
    limit_s: float

    @property
    def over(self) -> bool:
        return self.wait_s > self.limit_s


class Admission:
    def __init__(self, breakers: list[CircuitBreaker], store: Any, limiter: AdaptiveLimiter,
                 disk: SpoolDisk | None, budget: BudgetState, loads: Callable[[], list[UploadLoad]],
                 pending: Callable[[], int], part_size_bytes: int, backlog_limit_s: float,
                 max_active: int | None = None) -> None:
        self.breakers = breakers
        self.store = store
        self.limiter = limiter
        self.disk = disk
        self.budget = budget
        self.loads = loads  # the running uploads (UploadLoad each)
        self.pending = pending  # uploads between admission and their record (not in `loads` yet)
        self.part_size_bytes = part_size_bytes
        self.backlog_limit_s = backlog_limit_s
        self.max_active = max_active  # None: no count limit
        self.refused: dict[str, int] = {}  # refusals by reason, since start (metrics)

    # --- the decision -------------------------------------------------------------------------

    def __call__(self, size: int | None = None) -> None:
        """Raise ServiceUnavailable when a new upload (of `size` bytes, when known) must wait."""
        refusal = self.decide(size)
        if refusal is not None:
            self.refused[refusal.reason] = self.refused.get(refusal.reason, 0) + 1
            raise refusal.error()

    def decide(self, size: int | None = None, loads: list[UploadLoad] | None = None,
               pending: int | None = None) -> Refusal | None:
        for breaker in self.breakers:
            if not breaker.would_allow():
                return Refusal(BREAKER, "Upload service temporarily unavailable. Please try again later.",
                               max(1.0, breaker.retry_after_s()), {"circuit_breaker_state": breaker.state})
        if not self.store.healthy:
            return Refusal(STORE, "the checkpoint store is unavailable; try again shortly", STORE_RETRY_AFTER_S)
        if not self.limiter.admitting:
            sample = self.limiter.last
            used = sample.used_mb if sample else 0.0
            # The seeds' "Resource Exhaustion" answer, word for word.
            return Refusal(MEMORY, f"Upload rejected due to resource constraints: Memory would exceed critical "
                                   f"limit ({used:.1f}MB > {self.limiter.thresholds.critical_mb:.0f}MB)",
                           MEMORY_RETRY_AFTER_S)
        loads = self.loads() if loads is None else loads
        pending = self.pending() if pending is None else pending
        spool = self.spool_view(loads, pending, size)
        if spool.status == LOW:
            short = self.spool_shortfall(spool)
            return Refusal(
                SPOOL_DISK,
                f"Upload rejected: the relay's disk is nearly full ({(spool.free_bytes or 0) / MIB:.0f} MiB free, "
                f"{spool.reserved_bytes / MIB:.0f} MiB of it reserved for uploads in progress, "
                f"{spool.min_free_bytes / MIB:.0f} MiB kept free); try again once running uploads have moved on",
                self._retry_after(short / (self.budget.rate_per_s * self.part_size_bytes)))
        backlog = self.backlog_view(loads, pending, size)
        if backlog.over:
            return Refusal(
                BUDGET_BACKLOG,
                f"Upload rejected: Notion's request budget is {backlog.wait_s / 60:.0f} minutes behind "
                f"({backlog.requests} requests for uploads in progress at {self.budget.rate_per_s:g}/s); a new "
                f"upload would wait longer than {backlog.limit_s / 60:.0f} minutes (Notion expires an upload "
                f"1 hour after it starts)",
                self._retry_after(backlog.wait_s - backlog.limit_s),
                {"budget_backlog_s": round(backlog.wait_s)})
        active = len(loads) + pending
        if self.max_active is not None and active >= self.max_active:
            return Refusal(COUNT, "Too many uploads in progress; try again shortly", COUNT_RETRY_AFTER_S,
                           {"active_uploads": active})
        return None

    # --- the numbers behind it (health shows them) --------------------------------------------

    def _new_upload(self, size: int | None) -> tuple[int, int]:
        """(spool bytes, Notion requests) a new upload of `size` bytes needs; unknown size: one
        default part's worth of each."""
        if size is None or size <= 0:
            return PARTS_SPOOLED_PER_UPLOAD * self.part_size_bytes, UNKNOWN_UPLOAD_REQUESTS
        try:
            plan = plan_parts(size, self.part_size_bytes)
        except PlanError:
            return PARTS_SPOOLED_PER_UPLOAD * self.part_size_bytes, UNKNOWN_UPLOAD_REQUESTS
        finish = 3 if plan.is_multipart else 2  # create, (complete,) attach
        return min(size, PARTS_SPOOLED_PER_UPLOAD * plan.part_size), plan.number_of_parts + finish

    def spool_view(self, loads: list[UploadLoad], pending: int, size: int | None) -> SpoolView:
        new_bytes, _ = self._new_upload(size)
        unknown_bytes, _ = self._new_upload(None)
        reserved = sum(max(x.spool_need_bytes, x.spooled_bytes) for x in loads) + pending * unknown_bytes + new_bytes
        disk = self.disk
        reading = disk.last if disk is not None else None
        floor = disk.min_free_bytes if disk is not None else 0
        error = disk.error if disk is not None else None
        if reading is None:
            return SpoolView(UNKNOWN, None, None, reserved, None, floor, None, error)
        # The reading's free space plus what the spool held then is the room the spool has; what
        # it may hold from now on (written already or still to come) is taken from it.
        available = reading.space_for_spool - reserved
        spooled_now = sum(x.spooled_bytes for x in loads)
        free_now = max(0, reading.space_for_spool - spooled_now)
        status = LOW if floor > 0 and available < floor else HEALTHY
        age_s = disk.clock.monotonic() - reading.at if disk is not None else 0.0
        return SpoolView(status, free_now, reading.total_bytes, reserved, available, floor, age_s, error)

    @staticmethod
    def spool_shortfall(view: SpoolView) -> int:
        return max(0, view.min_free_bytes - (view.available_bytes or 0))

    def backlog_view(self, loads: list[UploadLoad], pending: int, size: int | None) -> BacklogView:
        _, new_requests = self._new_upload(size)
        requests = sum(x.requests_left for x in loads) + pending * UNKNOWN_UPLOAD_REQUESTS + new_requests
        budget = self.budget
        paused = float(budget.snapshot().get("paused_for_s", 0.0) or 0.0)
        rate = budget.rate_per_s
        # Requests beyond the tokens in the bucket come at the budget's rate, after any pause.
        wait = paused + max(0.0, requests - budget.tokens) / rate if rate > 0 else math.inf
        return BacklogView(requests, wait, self.backlog_limit_s)

    @staticmethod
    def _retry_after(seconds: float) -> float:
        return float(min(MAX_RETRY_AFTER_S, max(MIN_RETRY_AFTER_S, math.ceil(seconds))))

    def snapshot(self) -> dict[str, Any]:
        """Health's `admission` and `spool_disk`: whether a new upload (of unknown size) would be
        admitted now, and why not."""
        loads = self.loads()
        pending = self.pending()
        refusal = self.decide(None, loads, pending)
        spool = self.spool_view(loads, pending, None)
        backlog = self.backlog_view(loads, pending, None)
        return {
            "admission": {
                "status": "admitting" if refusal is None else "refusing",
                "reason": None if refusal is None else refusal.reason,
                "message": None if refusal is None else refusal.message,
                "retry_after": None if refusal is None else int(refusal.retry_after_s),
                "uploads_in_progress": len(loads) + pending,
                "max_uploads": self.max_active,
                "budget_backlog_requests": backlog.requests,
                "budget_backlog_s": round(backlog.wait_s, 1) if math.isfinite(backlog.wait_s) else None,
                "budget_backlog_limit_s": self.backlog_limit_s,
                "refused": dict(self.refused),
            },
            "spool_disk": spool.brief(),
        }
