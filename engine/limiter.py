"""Resource sampling (psutil + cgroup files) and the AdaptiveLimiter built on it.

psutil has no cgroup API, so the cgroup v1 and v2 files are read directly. Page cache is not
counted as used memory: spooled parts fill it, and the kernel drops it under pressure.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    pass

MIB = 2**20
MIN_CPU_WINDOW_S = 0.5
SEED_DYNO_MB = 512.0  # the seeds' thresholds were written for a 512 MB dyno
LOW_LOAD, MEDIUM_LOAD, HIGH_LOAD, CRITICAL = "LOW_LOAD", "MEDIUM_LOAD", "HIGH_LOAD", "CRITICAL"


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text in ("", "max"):
        return None
    try:
        return int(text.split()[0])
    except ValueError:
        return None


def _read_stat(path: Path, key: str) -> int | None:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        return None
    return None


@dataclass(frozen=True)
class CgroupInfo:
    memory_limit_bytes: int | None
    memory_used_bytes: int | None  # anonymous memory (no page cache)
    cpu_limit_cores: float | None


def _own_cgroup_dirs() -> tuple[Path | None, Path | None, Path | None]:
    """(v2 dir, v1 memory dir, v1 cpu dir) of this process, where they exist."""
    v2 = v1_mem = v1_cpu = None
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None, None, None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel = rel.lstrip("/")
        if controllers == "":
            candidate = Path("/sys/fs/cgroup") / rel
            if (candidate / "memory.max").exists() or (candidate / "cpu.max").exists():
                v2 = candidate
        for name in controllers.split(","):
            if name == "memory":
                v1_mem = Path("/sys/fs/cgroup/memory") / rel
            elif name in ("cpu", "cpu,cpuacct"):
                v1_cpu = Path("/sys/fs/cgroup/cpu") / rel
            elif name == "cpuacct" and v1_cpu is None:
                pass
    return v2, v1_mem, v1_cpu


def read_cgroup() -> CgroupInfo:
    v2, v1_mem, v1_cpu = _own_cgroup_dirs()
    limit = used = None
    cores = None
    if v2 is not None:
        limit = _read_int(v2 / "memory.max")
        used = _read_stat(v2 / "memory.stat", "anon")
        try:
            quota, period = (v2 / "cpu.max").read_text().split()
            if quota != "max":
                cores = int(quota) / int(period)
        except (OSError, ValueError):
            pass
    if v1_mem is not None and v1_mem.exists():
        limit = limit or _read_int(v1_mem / "memory.limit_in_bytes")
        used = used or _read_stat(v1_mem / "memory.stat", "total_rss")
    if v1_cpu is not None and v1_cpu.exists():
        cfs_quota = _read_int(v1_cpu / "cpu.cfs_quota_us")
        cfs_period = _read_int(v1_cpu / "cpu.cfs_period_us")
        if cfs_quota and cfs_quota > 0 and cfs_period:
            cores = cores or cfs_quota / cfs_period
    host = psutil.virtual_memory().total
    if limit is not None and limit >= host:
        limit = None  # "unlimited" is reported as a huge number in v1
    return CgroupInfo(limit, used, cores)


def read_cpu_throttling() -> tuple[int, int] | None:
    """(periods, periods throttled) the CPU quota of our cgroup has counted; None without one.

    A throttled period is one in which the process used its whole quota and then stood still
    for the rest of it: every request, health too, waited (bench/README.md, dyno)."""
    v2, _, v1_cpu = _own_cgroup_dirs()
    for directory in (v2, v1_cpu):
        if directory is None:
            continue
        periods = _read_stat(directory / "cpu.stat", "nr_periods")
        throttled = _read_stat(directory / "cpu.stat", "nr_throttled")
        if periods is not None and throttled is not None:
            return periods, throttled
    return None


@dataclass(frozen=True)
class Sample:
    rss_bytes: int
    children_rss_bytes: int
    used_bytes: int  # what we compare with the thresholds
    total_bytes: int  # the memory we may use (cgroup limit, TOTAL_MEMORY_MB, or the host's)
    cpu_percent: float  # of one core, like psutil
    cpu_limit_cores: float

    @property
    def used_mb(self) -> float:
        return self.used_bytes / MIB

    @property
    def used_percent(self) -> float:
        return 100.0 * self.used_bytes / self.total_bytes if self.total_bytes else 0.0


class ResourceSampler:
    def __init__(self, total_memory_mb: float | None = None, total_cpu_cores: float | None = None) -> None:
        self._proc = psutil.Process(os.getpid())
        self._proc.cpu_percent(None)  # the first call only starts the measurement window
        self._cpu_at = time.monotonic()
        self._cpu = 0.0
        self._total_memory_mb = total_memory_mb
        self._total_cpu_cores = total_cpu_cores

    def sample(self) -> Sample:
        rss = self._proc.memory_info().rss
        children = 0
        for child in self._proc.children():
            try:
                children += child.memory_info().rss
            except psutil.Error:
                pass
        cg = read_cgroup()
        if self._total_memory_mb:
            total = int(self._total_memory_mb * MIB)
        else:
            total = cg.memory_limit_bytes or psutil.virtual_memory().total
        used = max(rss + children, cg.memory_used_bytes or 0)
        cores = self._total_cpu_cores or cg.cpu_limit_cores or float(psutil.cpu_count() or 1)
        return Sample(rss, children, used, total, self._cpu_percent(), cores)

    def _cpu_percent(self) -> float:
        # Over a window of a few milliseconds (a sample right after start, or health polled
        # between ticks) the percentage is noise; keep the last one until a real window passed.
        now = time.monotonic()
        if now - self._cpu_at >= MIN_CPU_WINDOW_S:
            self._cpu = self._proc.cpu_percent(None)
            self._cpu_at = now
        return self._cpu


@dataclass(frozen=True)
class Thresholds:
    low_mb: float
    medium_mb: float
    high_mb: float
    critical_mb: float

    def scaled_to(self, total_mb: float) -> "Thresholds":
        factor = total_mb / SEED_DYNO_MB
        return Thresholds(self.low_mb * factor, self.medium_mb * factor, self.high_mb * factor,
                          self.critical_mb * factor)


class AdaptiveLimiter:
    """Memory and CPU → how many Notion requests may run at once, and whether to admit uploads."""

    def __init__(self, sampler: ResourceSampler, thresholds: Thresholds, min_workers: int, max_workers: int,
                 default_workers: int, scale_thresholds: bool) -> None:
        self.sampler = sampler
        self.base_thresholds = thresholds
        self.scale_thresholds = scale_thresholds
        self.min_workers = min_workers
        self.max_workers = max_workers
        self.workers = default_workers
        self.state = LOW_LOAD
        self.last: Sample | None = None
        self.thresholds = thresholds

    def tick(self) -> Sample:
        sample = self.sampler.sample()
        self.last = sample
        t = self.base_thresholds.scaled_to(sample.total_bytes / MIB) if self.scale_thresholds else self.base_thresholds
        self.thresholds = t
        used = sample.used_mb
        # The seeds: crossing LOW scales to 3 workers, MEDIUM to 2, HIGH to 1; CRITICAL rejects.
        if used >= t.critical_mb:
            self.state, workers = CRITICAL, self.min_workers
        elif used >= t.high_mb:
            self.state, workers = HIGH_LOAD, self.min_workers
        elif used >= t.medium_mb:
            self.state, workers = HIGH_LOAD, self._clamp(2)
        elif used >= t.low_mb:
            self.state, workers = MEDIUM_LOAD, self._clamp(3)
        else:
            self.state, workers = LOW_LOAD, self.max_workers
        # A fifth of a CPU that is already saturated gains nothing from more transfers at once.
        if sample.cpu_percent >= 90.0 * sample.cpu_limit_cores:
            workers = max(self.min_workers, workers - 1)
        self.workers = workers
        return sample

    def _clamp(self, workers: int) -> int:
        return max(self.min_workers, min(self.max_workers, workers))

    @property
    def admitting(self) -> bool:
        return self.state != CRITICAL
