"""Admission of new uploads from what runs out (engine/admission.py), in process on fakes:
a fake disk reading, a fake limiter sample, a real token bucket on a fake clock, fake uploads.
Deterministic: no sockets, no sleeping, no real disk."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from engine.admission import (
    BREAKER,
    BUDGET_BACKLOG,
    COUNT,
    MEMORY,
    SPOOL_DISK,
    STORE,
    Admission,
    UploadLoad,
    load_of,
    loads_of,
)
from engine.breaker import CircuitBreaker
from engine.budget import RequestBudget
from engine.clock import FakeClock
from engine.disk import SpoolDisk
from engine.errors import ServiceUnavailable
from engine.limiter import AdaptiveLimiter, Sample, Thresholds
from engine.metrics import RelayMetrics, Sources
from engine.upload.partplan import plan_parts
from engine.upload.session import COMPLETED, CREATED, FAILED, FINALIZING, RECEIVING
from settings import Settings

MIB = 2**20
GIB = 2**30
PART = 10 * MIB


class FakeSampler:
    def __init__(self, used_mb: float = 60.0) -> None:
        self.used_mb = used_mb

    def sample(self) -> Sample:
        used = int(self.used_mb * MIB)
        return Sample(used, 0, used, 512 * MIB, 5.0, 0.2)


class FakeDisk:
    """statvfs stand-in: (free, total) bytes, or an OSError; counts how often it is read."""

    def __init__(self, free: int, total: int = 100 * GIB) -> None:
        self.free, self.total, self.reads, self.fail = free, total, 0, False

    def __call__(self, path) -> tuple[int, int]:
        self.reads += 1
        if self.fail:
            raise FileNotFoundError(2, "No such file or directory")
        return self.free, self.total


class Uploads:
    """The running uploads as admission sees them; `add` plays an admitted upload's record."""

    def __init__(self) -> None:
        self.loads: list[UploadLoad] = []
        self.pending = 0

    def add(self, size: int, spooled: int = 0, durable_parts: int = 0) -> None:
        plan = plan_parts(size, PART)
        need = min(3 * plan.part_size, size - durable_parts * plan.part_size)
        finish = 2 if plan.is_multipart else 1
        self.loads.append(UploadLoad(spooled, need, plan.number_of_parts - durable_parts + finish))


class Stack:
    def __init__(self, free: int = 50 * GIB, min_free_mb: int = 256, used_mb: float = 60.0,
                 backlog_limit_s: float = 3000.0, max_active: int | None = None) -> None:
        self.clock = FakeClock()
        self.sampler = FakeSampler(used_mb)
        self.limiter = AdaptiveLimiter(self.sampler, Thresholds(200, 350, 450, 500), 1, 3, 2, scale_thresholds=False)
        self.limiter.tick()
        self.store = SimpleNamespace(healthy=True, last_error=None, restoring=False, amnesia_count=0)
        self.breaker = CircuitBreaker("notion_api", self.clock, 3, 30.0, 3)
        self.budget = RequestBudget(self.clock, 180, 60.0)  # Notion's rate: 179 tokens (one below Notion's), 3/s
        self.uploads = Uploads()
        self.fake_disk = FakeDisk(free)
        self.disk = SpoolDisk(__import__("pathlib").Path("/spool"), min_free_mb * MIB, self.clock,
                              spooled=lambda: sum(x.spooled_bytes for x in self.uploads.loads), read=self.fake_disk)
        self.disk.tick()
        self.admission = Admission([self.breaker], self.store, self.limiter, self.disk, self.budget,
                                   loads=lambda: list(self.uploads.loads), pending=lambda: self.uploads.pending,
                                   part_size_bytes=PART, backlog_limit_s=backlog_limit_s, max_active=max_active)

    def admit(self, size: int | None = None) -> None:
        """Admission for a new upload; when admitted, it becomes a running upload."""
        self.admission(size)
        self.uploads.add(size or PART)

    def refusal(self, size: int | None = None) -> ServiceUnavailable:
        with pytest.raises(ServiceUnavailable) as info:
            self.admission(size)
        return info.value


def test_25_uploads_of_40_mib_at_once_are_all_admitted_with_the_defaults():
    s = Stack()
    for _ in range(25):
        s.admit(40 * MIB)
    # …and many more: no count limit by default; nothing here runs out.
    for _ in range(75):
        s.admit(40 * MIB)
    assert s.admission.snapshot()["admission"]["status"] == "admitting"


def test_the_defaults_have_no_count_limit_and_the_seeds_variables_still_set_one():
    assert Settings.from_env({}).max_active_uploads is None
    assert Settings.from_env({"MAX_CONCURRENT_UPLOADS": ""}).max_active_uploads is None
    assert Settings.from_env({"MAX_CONCURRENT_UPLOADS": "1", "QUEUE_SIZE_LIMIT": "1"}).max_active_uploads == 2
    assert Settings.from_env({"MAX_CONCURRENT_UPLOADS": "30"}).max_active_uploads == 40  # queue: the seeds' 10
    assert Settings.from_env({"QUEUE_SIZE_LIMIT": "0"}).max_active_uploads == 10
    defaults = Settings.from_env({})
    assert (defaults.spool_min_free_mb, defaults.notion_backlog_limit_s) == (256, 3000.0)


def test_a_count_limit_when_set_counts_uploads_being_created_too():
    s = Stack(max_active=2)
    s.admit(MIB)
    s.uploads.pending = 1  # admitted, its record not written yet
    error = s.refusal(MIB)
    assert error.details["reason"] == COUNT and error.retry_after_s == 10
    assert error.details["active_uploads"] == 2


def test_memory_at_the_critical_threshold_refuses_with_the_seeds_message():
    s = Stack(used_mb=505)
    s.limiter.tick()
    error = s.refusal(MIB)
    assert error.details["reason"] == MEMORY and error.retry_after_s == 30
    assert error.message == ("Upload rejected due to resource constraints: Memory would exceed critical limit "
                             "(505.0MB > 500MB)")
    s.sampler.used_mb = 100
    s.limiter.tick()
    s.admit(MIB)


def test_an_open_breaker_or_an_absent_store_refuses():
    s = Stack()
    for _ in range(3):
        s.breaker.record_failure()
    error = s.refusal()
    assert error.details["reason"] == BREAKER and error.details["circuit_breaker_state"] == "OPEN"
    assert 1 <= error.retry_after_s <= 30
    s.clock.advance(31)
    s.breaker.record_success()
    s.store.healthy = False
    assert s.refusal().details["reason"] == STORE


def test_the_disk_admits_as_many_uploads_as_their_spool_shares_leave_the_floor_free():
    # 1 GiB free, 256 MiB kept free: each 40 MiB upload may hold 3 parts of 10 MiB (30 MiB).
    s = Stack(free=1 * GIB, min_free_mb=256)
    admitted = 0
    with pytest.raises(ServiceUnavailable) as info:
        for _ in range(100):
            s.admit(40 * MIB)
            admitted += 1
    assert admitted == (1024 - 256) // 30 == 25
    error = info.value
    assert error.details["reason"] == SPOOL_DISK
    assert "disk is nearly full" in error.message and 10 <= error.retry_after_s <= 600
    # A small file reserves only its own size: it still fits.
    s.admission(1 * MIB)
    snap = s.admission.snapshot()
    assert snap["spool_disk"]["status"] == "low" and snap["admission"]["reason"] == SPOOL_DISK


def test_bytes_spooled_since_the_reading_are_counted_without_reading_the_disk_again():
    s = Stack(free=360 * MIB, min_free_mb=256)
    s.uploads.add(100 * MIB)  # reserves 30 MiB; 360 - 30 - 30 (a new one) = 300 ≥ 256
    s.admission(PART * 4)
    reads = s.fake_disk.reads
    # The upload writes 30 MiB into its spool: the disk's free space falls, its reservation is
    # now on disk. Still admitted, and nothing read the disk.
    s.uploads.loads[0] = UploadLoad(30 * MIB, 30 * MIB, 12)
    s.admission(PART * 4)
    # An upload holding more than its share (parts that failed, kept for a resume) counts in full.
    s.uploads.loads[0] = UploadLoad(100 * MIB, 30 * MIB, 12)
    assert s.refusal(PART * 4).details["reason"] == SPOOL_DISK
    assert s.fake_disk.reads == reads  # admission never reads the disk; only tick() does
    # The next tick sees the same disk: the same answer.
    s.fake_disk.free = 360 * MIB - 100 * MIB
    s.disk.tick()
    assert s.refusal(PART * 4).details["reason"] == SPOOL_DISK
    # The parts are confirmed and removed: space comes back.
    s.uploads.loads[0] = UploadLoad(0, 0, 1)
    s.fake_disk.free = 360 * MIB
    s.disk.tick()
    s.admission(PART * 4)


def test_uploads_being_created_reserve_their_share_before_their_record_exists():
    s = Stack(free=256 * MIB + 60 * MIB, min_free_mb=256)
    s.uploads.pending = 1  # 30 MiB for it, 30 MiB for the new one: exactly the floor left
    s.admission()
    s.uploads.pending = 2
    assert s.refusal().details["reason"] == SPOOL_DISK


def test_a_floor_of_zero_turns_the_disk_check_off_and_an_unreadable_disk_is_reported_not_guessed():
    s = Stack(free=0, min_free_mb=0)
    s.admit(40 * MIB)
    assert s.admission.snapshot()["spool_disk"]["checked"] is False
    s = Stack(free=0)
    s.fake_disk.fail = True
    s.disk.last = None
    s.disk.tick()
    s.admit(40 * MIB)  # unknown is not "full"
    disk = s.admission.snapshot()["spool_disk"]
    assert disk["status"] == "unknown" and "FileNotFoundError" in disk["last_error"]


def test_a_budget_far_behind_refuses_uploads_that_would_wait_past_the_limit():
    s = Stack(free=10_000 * GIB)
    # 5 GiB uploads: 512 parts of 10 MiB + create, complete, attach = 515 requests for a new one,
    # 514 once created. At 3/s with 179 in the bucket, 3000 s carry 9179 requests: 17 of them.
    admitted = 0
    with pytest.raises(ServiceUnavailable) as info:
        for _ in range(30):
            s.admit(5 * GIB)
            admitted += 1
    assert admitted == 17
    error = info.value
    assert error.details["reason"] == BUDGET_BACKLOG
    wait = (17 * 514 + 515 - 179) / 3
    assert error.details["budget_backlog_s"] == round(wait)
    assert error.retry_after_s == max(10, -(-(wait - 3000) // 1))
    assert "request budget is" in error.message and "1 hour" in error.message
    # A small upload still fits in what is left of the limit.
    s.admission(1 * MIB)
    # Time passes and the budget spends its tokens on the running uploads: more room again.
    for load in s.uploads.loads[:5]:
        object.__setattr__(load, "requests_left", 0)
    s.admission(5 * GIB)


def test_a_pause_after_a_429_and_an_empty_bucket_count_in_the_backlog():
    s = Stack(backlog_limit_s=120)
    s.admission(40 * MIB)
    s.budget.pause(200)  # Notion said 429, Retry-After 200: nobody sends for 200 s
    error = s.refusal(40 * MIB)
    assert error.details["reason"] == BUDGET_BACKLOG and error.details["budget_backlog_s"] >= 200
    s.clock.advance(200)  # the pause is over; the bucket refills at 3/s
    s.admission(40 * MIB)


def test_health_numbers_are_admissions_own():
    s = Stack(free=1 * GIB)
    s.uploads.add(40 * MIB, spooled=20 * MIB)
    snap = s.admission.snapshot()
    disk, adm = snap["spool_disk"], snap["admission"]
    assert disk["free_bytes"] == 1 * GIB - 20 * MIB  # the reading, less what was spooled since
    assert disk["reserved_bytes"] == 30 * MIB + 30 * MIB and disk["min_free_mb"] == 256
    assert disk["available_bytes"] == 1 * GIB - 60 * MIB and disk["status"] == "healthy"
    assert adm["status"] == "admitting" and adm["max_uploads"] is None and adm["uploads_in_progress"] == 1
    assert adm["budget_backlog_requests"] == 4 + 2 + 4  # 4 parts, complete, attach; a new one
    assert adm["budget_backlog_s"] == 0.0 and adm["refused"] == {}


def session(size: int, state: str = RECEIVING, received: int = 0, durable: set[int] | None = None,
            can_resume: bool = True) -> SimpleNamespace:
    return SimpleNamespace(record=SimpleNamespace(state=state, can_resume=can_resume), plan=plan_parts(size, PART),
                           durable=durable or set(), assembler=SimpleNamespace(received=received))


def test_a_sessions_load_comes_from_its_plan_its_durable_parts_and_its_spool():
    size = 45 * MIB + 123  # 5 parts, the last one 5 MiB + 123 bytes
    fresh = load_of(session(size, CREATED))
    assert fresh == UploadLoad(0, 30 * MIB, 5 + 2)
    midway = load_of(session(size, received=25 * MIB, durable={1}))
    assert midway == UploadLoad(15 * MIB, 30 * MIB, 4 + 2)
    near_end = load_of(session(size, received=size, durable={1, 2, 3, 5}))
    assert near_end == UploadLoad(10 * MIB, 10 * MIB, 1 + 2)  # only part 4 is not durable
    assert load_of(session(size, FINALIZING, received=size, durable={1, 2, 3, 4, 5})) == UploadLoad(0, 0, 2)
    assert load_of(session(size, COMPLETED, received=size, durable={1, 2, 3, 4, 5})) is None
    failed_for_good = session(size, FAILED, received=25 * MIB, durable={1}, can_resume=False)
    assert load_of(failed_for_good) == UploadLoad(15 * MIB, 0, 0)
    single = load_of(session(3 * MIB, received=MIB))
    assert single == UploadLoad(MIB, 3 * MIB, 1 + 1)  # single_part: send, attach
    assert len(loads_of([session(size), session(size, COMPLETED)])) == 1


def test_health_says_degraded_when_the_spool_disk_is_low_and_metrics_show_it():
    from handlers.system import SystemView

    s = Stack(free=280 * MIB)  # a new upload's 30 MiB would leave 250 MiB, under the 256 MiB floor
    scheduler = SimpleNamespace(running=0, queued=0, snapshot=lambda: {"uploads": 0})
    service = SimpleNamespace(live={}, bytes_received_total=lambda: 0)
    view = SystemView(s.clock, service, s.limiter, [s.breaker], s.budget, scheduler, s.store, "fake", None, None,
                      admission=s.admission)
    health = view.health()
    assert health["status"] == "degraded"
    disk = health["components"]["spool_disk"]
    assert disk["status"] == "low" and disk["free_bytes"] == 280 * MIB and disk["min_free_mb"] == 256
    assert health["components"]["admission"]["reason"] == SPOOL_DISK
    assert health["components"]["backpressure_manager"]["max_concurrent_uploads"] is None
    s.fake_disk.free = 10 * GIB
    s.disk.tick()
    assert view.health()["status"] == "healthy"

    s.fake_disk.free = 280 * MIB
    s.disk.tick()
    with pytest.raises(ServiceUnavailable):
        s.admission()
    metrics = RelayMetrics(Sources(service, [s.breaker], s.budget, s.limiter, scheduler, s.store,
                                   admission=s.admission), process_metrics=False)
    text = metrics.exposition()[0].decode()
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line and not line.startswith("#")}
    assert samples["relay_spool_free_bytes"] == 280 * MIB
    assert samples["relay_spool_min_free_bytes"] == 256 * MIB
    assert "relay_spool_low 1.0" in text and "relay_admission_refusing 1.0" in text
    assert 'relay_uploads_refused_total{reason="spool_disk"} 1.0' in text
