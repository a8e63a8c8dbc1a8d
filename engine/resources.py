"""Resource sampling (psutil + cgroup files) and the AdaptiveLimiter built on it.

psutil has no cgroup API, so the cgroup v1 and v2 files are read directly. Page cache is not
counted as used memory: spooled parts fill it, and the kernel drops it under pressure.
"""
from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from engine.clock import Clock

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


class IntakePacer:
    """Paces the bytes the relay reads from clients while its CPU quota is nearly used up.

    Why: on a fifth of a CPU, 25 clients sending at full speed take the whole quota just to be
    read into the spool (measured: health p99 500–600 ms in the dyno run, the loop's every turn
    full of body chunks). The relay cannot forward faster than Notion's budget anyway, so reading
    faster only fills the spool sooner. While the process used more than `high` of its CPU over
    the last window, intake is held to the rate that brings it to `target`; below `low` the pace
    rises toward the target again, and is lifted once far above what clients send. A pause is an
    awaitable returned to `data_received`, i.e. the client's socket is not read meanwhile
    (Tornado's flow control), so nothing piles up in memory.

    The pace never falls below `min_rate`: server.py sets it to what Notion's request budget can
    take (requests/s × part size), so pacing never becomes the relay's bottleneck.

    `take(n)` is the hot path (every body chunk): a few float operations, no I/O. `tick()` runs
    every `window_s` (server.py) and reads only this process's CPU time.
    """

    def __init__(self, clock: Clock, cpu_limit: Callable[[], float],
                 cpu_time: Callable[[], float] = time.process_time, window_s: float = 0.5,
                 target: float = 0.7, high: float = 0.85, low: float = 0.6,
                 min_rate: float = 1 * MIB, burst_bytes: int = 2 * MIB) -> None:
        self.clock = clock
        self.cpu_limit = cpu_limit  # cores the process may use (cgroup quota, TOTAL_CPU_CORES, host)
        self.cpu_time = cpu_time
        self.window_s = window_s
        self.target, self.high, self.low = target, high, low
        self.min_rate = min_rate
        self.burst_bytes = burst_bytes
        self.rate: float | None = None  # bytes/s; None = not paced
        self._tokens = float(burst_bytes)
        self._stamp = clock.monotonic()
        self._taken = 0  # bytes read in the current window
        self._cpu_at = cpu_time()
        self._window_at = clock.monotonic()
        self.cpu_share = 0.0  # of the usable CPU, over the last window
        self.paced_windows = 0

    def take(self, n: int) -> Awaitable[None] | None:
        """Count `n` bytes read from a client; an awaitable when that client must wait first."""
        self._taken += n
        rate = self.rate
        if rate is None:
            return None
        now = self.clock.monotonic()
        self._tokens = min(float(self.burst_bytes), self._tokens + (now - self._stamp) * rate)
        self._stamp = now
        self._tokens -= n
        if self._tokens >= 0:
            return None
        # The debt is shared: each client waits until the bytes taken before its own are paid.
        return self.clock.sleep(-self._tokens / rate)

    def tick(self) -> None:
        now = self.clock.monotonic()
        elapsed = now - self._window_at
        if elapsed <= 0:
            return
        cpu = self.cpu_time()
        # A single-threaded loop cannot use more than one core, whatever the host has.
        usable = max(0.01, min(1.0, self.cpu_limit()))
        share = (cpu - self._cpu_at) / elapsed / usable
        intake = self._taken / elapsed
        self._cpu_at, self._window_at, self._taken = cpu, now, 0
        self.cpu_share = share
        if share >= self.high and intake > 0:
            # Bring the CPU to `target`: intake is what costs it (the sends follow from it).
            wanted = max(self.min_rate, intake * self.target / share)
            if self.rate is None or wanted < self.rate:
                if self.rate is None:
                    self._tokens, self._stamp = float(self.burst_bytes), now
                self.rate = wanted
        elif self.rate is not None and share < self.low:
            # Room again: rise toward the target (at most half as fast again per window), and
            # lift the pace once it is far above what clients send.
            self.rate *= min(1.5, self.target / max(share, 0.01))
            if self.rate > 4 * max(intake, self.min_rate):
                self.rate = None
        if self.rate is not None:
            self.paced_windows += 1

    def snapshot(self) -> dict[str, Any]:
        return {"paced": self.rate is not None,
                "rate_mib_per_s": None if self.rate is None else round(self.rate / MIB, 1),
                "cpu_share": round(self.cpu_share, 2), "paced_windows": self.paced_windows}
