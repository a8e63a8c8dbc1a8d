"""A private cgroup with a CPU quota and a memory limit, to run one process as if on a small dyno.

    with open_cgroup("relay-dyno", Limits(cpu_cores=0.2, memory_bytes=512 * MiB)) as group:
        proc = subprocess.Popen(group.wrap(["python", "server.py"]))
        group.contains(proc.pid)      # True: /proc/PID/cgroup names our group
        group.reading()               # usage, peak, anon/cache split, limit hits, CPU throttling

cgroup v1 (separate `cpu` and `memory` hierarchies) is tried first, then v2; when neither can
be written (not root, read-only mount), the group is "unconstrained": the command runs as it
is and a warning says so on stderr and in `describe()`, so a result is never mistaken for a
constrained one.

A new group is made under the caller's own group of each hierarchy, not at the root: limits
nest, so whatever already accounts for (or limits) the caller keeps doing so.

`wrap()` prefixes the command with a tiny `sh` that writes its own pid into the group's
`cgroup.procs` and then execs the command, so the limits apply from its first instruction.
"""
from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MiB = 2**20
CFS_PERIOD_US = 100_000

# $1.. are cgroup.procs files; the command follows the "--". `exec` keeps the pid, so the
# caller's Popen pid is the command's pid, already inside the group.
_WRAPPER = 'while [ "$1" != "--" ]; do echo $$ > "$1" || exit 97; shift; done; shift; exec "$@"'


class CgroupError(Exception):
    """A cgroup could not be created or configured."""


@dataclass(frozen=True)
class Limits:
    cpu_cores: float
    memory_bytes: int


@dataclass(frozen=True)
class Reading:
    """One look at the group's counters; None where this cgroup version has no such file."""
    usage_bytes: int | None  # anonymous memory + page cache charged to the group
    peak_usage_bytes: int | None  # the kernel's high-water mark of usage_bytes
    anon_bytes: int | None  # process memory (what RSS counts), no page cache
    cache_bytes: int | None  # page cache (spool files) charged to the group; reclaimable
    limit_hits: int | None  # how often usage reached the limit (v1 failcnt, v2 events "max")
    oom_kills: int | None
    cpu_periods: int | None
    cpu_throttled_periods: int | None  # periods in which the quota ran out
    cpu_throttled_s: float | None


class Cgroup:
    """Base: the unconstrained fallback. Subclasses create real groups."""

    version = "none"

    def __init__(self, name: str, limits: Limits) -> None:
        self.name = name
        self.limits = limits
        self.reason = ""  # why this kind of group was chosen (shown when unconstrained)

    def create(self) -> None:
        print(f"\n*** WARNING: the process runs UNCONSTRAINED, without the {self.limits.cpu_cores:g} CPU / "
              f"{self.limits.memory_bytes / MiB:.0f} MiB limits: {self.reason} ***\n", file=sys.stderr, flush=True)

    def destroy(self) -> None:
        pass

    def procs_files(self) -> list[Path]:
        return []

    def wrap(self, argv: Sequence[str]) -> list[str]:
        files = self.procs_files()
        if not files:
            return list(argv)
        return ["sh", "-c", _WRAPPER, "dyno-cgroup-wrap", *map(str, files), "--", *argv]

    def contains(self, pid: int) -> bool:
        return False

    def reading(self) -> Reading:
        return Reading(None, None, None, None, None, None, None, None, None)

    def describe(self) -> dict[str, Any]:
        return {"version": self.version, "constrained": self.version != "none", "name": self.name,
                "reason": self.reason or None, "requested": asdict(self.limits), "paths": {},
                "applied": {}}

    def pids(self) -> list[int]:
        pids: list[int] = []
        for procs in self.procs_files():
            try:
                pids += [int(p) for p in procs.read_text().split()]
            except OSError:
                pass
        return sorted(set(pids))


class CgroupV1(Cgroup):
    """Two groups: one in the `cpu` hierarchy (CFS quota), one in `memory`."""

    version = "v1"

    def __init__(self, name: str, limits: Limits) -> None:
        super().__init__(name, limits)
        cpu_root, mem_root = _v1_mount("cpu"), _v1_mount("memory")
        if cpu_root is None or mem_root is None:
            raise CgroupError("no cgroup v1 cpu and memory hierarchies are mounted")
        self.cpu_dir = cpu_root / _own_path(_controller_line("cpu")) / name
        self.mem_dir = mem_root / _own_path(_controller_line("memory")) / name
        self._made: list[Path] = []

    def create(self) -> None:
        for directory in (self.cpu_dir, self.mem_dir):
            _mkdir(directory)
            self._made.append(directory)
        quota = max(1000, round(self.limits.cpu_cores * CFS_PERIOD_US))  # the kernel's minimum is 1 ms
        _write(self.cpu_dir / "cpu.cfs_period_us", CFS_PERIOD_US)
        _write(self.cpu_dir / "cpu.cfs_quota_us", quota)
        _write(self.mem_dir / "memory.limit_in_bytes", self.limits.memory_bytes)
        # memsw (memory + swap) must be ≥ the memory limit, so it is written second; equal to it,
        # the group cannot escape the limit into swap.
        if (self.mem_dir / "memory.memsw.limit_in_bytes").exists():
            _write(self.mem_dir / "memory.memsw.limit_in_bytes", self.limits.memory_bytes)

    def destroy(self) -> None:
        _empty_and_remove(self, reversed(self._made))
        self._made.clear()

    def procs_files(self) -> list[Path]:
        return [self.cpu_dir / "cgroup.procs", self.mem_dir / "cgroup.procs"]

    def contains(self, pid: int) -> bool:
        paths = _pid_cgroups(pid)
        return (paths.get("cpu") == _rel(self.cpu_dir, _v1_mount("cpu"))
                and paths.get("memory") == _rel(self.mem_dir, _v1_mount("memory")))

    def reading(self) -> Reading:
        stat = _read_stat(self.mem_dir / "memory.stat")
        cpu = _read_stat(self.cpu_dir / "cpu.stat")
        throttled_ns = cpu.get("throttled_time")
        return Reading(
            usage_bytes=_read_int(self.mem_dir / "memory.usage_in_bytes"),
            peak_usage_bytes=_read_int(self.mem_dir / "memory.max_usage_in_bytes"),
            anon_bytes=stat.get("total_rss", stat.get("rss")),
            cache_bytes=stat.get("total_cache", stat.get("cache")),
            limit_hits=_read_int(self.mem_dir / "memory.failcnt"),
            oom_kills=_read_stat(self.mem_dir / "memory.oom_control").get("oom_kill"),
            cpu_periods=cpu.get("nr_periods"),
            cpu_throttled_periods=cpu.get("nr_throttled"),
            cpu_throttled_s=throttled_ns / 1e9 if throttled_ns is not None else None,
        )

    def describe(self) -> dict[str, Any]:
        doc = super().describe()
        doc["paths"] = {"cpu": str(self.cpu_dir), "memory": str(self.mem_dir)}
        quota, period = _read_int(self.cpu_dir / "cpu.cfs_quota_us"), _read_int(self.cpu_dir / "cpu.cfs_period_us")
        doc["applied"] = {
            "cpu.cfs_quota_us": quota,
            "cpu.cfs_period_us": period,
            "cpu_cores": quota / period if quota and period and quota > 0 else None,
            "memory.limit_in_bytes": _read_int(self.mem_dir / "memory.limit_in_bytes"),
            "memory.memsw.limit_in_bytes": _read_int(self.mem_dir / "memory.memsw.limit_in_bytes"),
        }
        return doc


class CgroupV2(Cgroup):
    """One group in the unified hierarchy with `cpu.max` and `memory.max`."""

    version = "v2"

    def __init__(self, name: str, limits: Limits) -> None:
        super().__init__(name, limits)
        root = _v2_mount()
        if root is None:
            raise CgroupError("no cgroup v2 hierarchy is mounted")
        if not {"cpu", "memory"} <= set(_read_text(root / "cgroup.controllers").split()):
            raise CgroupError(f"the cgroup v2 hierarchy at {root} lacks the cpu and memory controllers "
                              "(they are bound to v1)")
        self.root = root
        self.parent = self._parent_with_controllers(root / _own_path(_controller_line("")))
        self.dir = self.parent / name
        self._made = False

    @staticmethod
    def _parent_with_controllers(own: Path) -> Path:
        """Our own group if it can delegate cpu and memory to a child, else the hierarchy's root.

        v2's "no internal processes" rule refuses to enable controllers for the children of a
        group that holds processes (ours holds us), except at the root.
        """
        for candidate in (own, _v2_mount()):
            assert candidate is not None
            enabled = set(_read_text(candidate / "cgroup.subtree_control").split())
            if {"cpu", "memory"} <= enabled:
                return candidate
            try:
                _write(candidate / "cgroup.subtree_control", "+cpu +memory")
                return candidate
            except CgroupError:
                continue
        raise CgroupError("cannot enable the cpu and memory controllers for a child group (v2)")

    def create(self) -> None:
        _mkdir(self.dir)
        self._made = True
        _write(self.dir / "cpu.max", f"{max(1000, round(self.limits.cpu_cores * CFS_PERIOD_US))} {CFS_PERIOD_US}")
        _write(self.dir / "memory.max", self.limits.memory_bytes)
        if (self.dir / "memory.swap.max").exists():
            _write(self.dir / "memory.swap.max", 0)

    def destroy(self) -> None:
        if self._made:
            _empty_and_remove(self, [self.dir])
            self._made = False

    def procs_files(self) -> list[Path]:
        return [self.dir / "cgroup.procs"]

    def contains(self, pid: int) -> bool:
        return _pid_cgroups(pid).get("") == _rel(self.dir, self.root)

    def reading(self) -> Reading:
        stat = _read_stat(self.dir / "memory.stat")
        events = _read_stat(self.dir / "memory.events")
        cpu = _read_stat(self.dir / "cpu.stat")
        throttled_us = cpu.get("throttled_usec")
        return Reading(
            usage_bytes=_read_int(self.dir / "memory.current"),
            peak_usage_bytes=_read_int(self.dir / "memory.peak"),  # Linux ≥ 5.19; else sampled only
            anon_bytes=stat.get("anon"),
            cache_bytes=stat.get("file"),
            limit_hits=events.get("max"),
            oom_kills=events.get("oom_kill"),
            cpu_periods=cpu.get("nr_periods"),
            cpu_throttled_periods=cpu.get("nr_throttled"),
            cpu_throttled_s=throttled_us / 1e6 if throttled_us is not None else None,
        )

    def describe(self) -> dict[str, Any]:
        doc = super().describe()
        doc["paths"] = {"unified": str(self.dir)}
        quota, _, period = _read_text(self.dir / "cpu.max").partition(" ")
        doc["applied"] = {
            "cpu.max": _read_text(self.dir / "cpu.max").strip() or None,
            "cpu_cores": int(quota) / int(period) if quota.isdigit() and period.strip().isdigit() else None,
            "memory.max": _read_int(self.dir / "memory.max"),
            "memory.swap.max": _read_int(self.dir / "memory.swap.max"),
        }
        return doc


def make_cgroup(name: str, limits: Limits, version: str = "auto") -> Cgroup:
    """The first kind of group that can be created: v1, then v2, then unconstrained.

    `version` forces one ("v1", "v2", "none"); a forced v1/v2 that fails raises CgroupError.
    """
    kinds: list[type[Cgroup]] = {"auto": [CgroupV1, CgroupV2], "v1": [CgroupV1], "v2": [CgroupV2],
                                 "none": []}[version]
    problems: list[str] = []
    for kind in kinds:
        group: Cgroup | None = None
        try:
            group = kind(name, limits)
            group.create()
            return group
        except (CgroupError, OSError) as exc:
            problems.append(f"{kind.version}: {exc}")
            if group is not None:
                group.destroy()
    if version != "auto" and version != "none":
        raise CgroupError("; ".join(problems))
    fallback = Cgroup(name, limits)
    fallback.reason = "; ".join(problems) if problems else "asked for no cgroup"
    fallback.create()
    return fallback


@contextmanager
def open_cgroup(prefix: str, limits: Limits, version: str = "auto") -> Iterator[Cgroup]:
    """A fresh group (unique name) that is removed on the way out, whatever happened."""
    group = make_cgroup(f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:6]}", limits, version)
    try:
        yield group
    finally:
        group.destroy()


# --- files -----------------------------------------------------------------------------------

def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _read_int(path: Path) -> int | None:
    text = _read_text(path).strip()
    try:
        return int(text.split()[0]) if text and text != "max" else None
    except ValueError:
        return None


def _read_stat(path: Path) -> dict[str, int]:
    """`key value` lines (memory.stat, cpu.stat, memory.events, memory.oom_control)."""
    out: dict[str, int] = {}
    for line in _read_text(path).splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def _write(path: Path, value: object) -> None:
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError as exc:
        raise CgroupError(f"cannot write {value!r} to {path}: {exc.strerror or exc}") from exc


def _mkdir(path: Path) -> None:
    try:
        path.mkdir()
    except OSError as exc:
        raise CgroupError(f"cannot create {path}: {exc.strerror or exc}") from exc


def _empty_and_remove(group: Cgroup, directories: Iterator[Path] | Sequence[Path]) -> None:
    """Kill what is still inside (only processes we put there: the group is ours and new), then
    remove the directories; the kernel refuses rmdir while a task is in the group."""
    for pid in group.pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for directory in directories:
        deadline = time.monotonic() + 10
        while directory.exists():
            try:
                directory.rmdir()
            except FileNotFoundError:
                break
            except OSError as exc:
                # EBUSY until a killed task has really exited.
                if time.monotonic() > deadline:
                    print(f"warning: could not remove cgroup {directory}: {exc.strerror}", file=sys.stderr)
                    break
                time.sleep(0.05)


# --- where things are ------------------------------------------------------------------------

def _mounts() -> list[tuple[str, Path, set[str]]]:
    """(fstype, mount point, options) of every cgroup mount."""
    out = []
    for line in _read_text(Path("/proc/self/mounts")).splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] in ("cgroup", "cgroup2"):
            out.append((fields[2], Path(fields[1]), set(fields[3].split(","))))
    return out


def _v1_mount(controller: str) -> Path | None:
    for fstype, point, options in _mounts():
        if fstype == "cgroup" and controller in options:
            return point
    return None


def _v2_mount() -> Path | None:
    for fstype, point, _ in _mounts():
        if fstype == "cgroup2":
            return point
    return None


def _controller_line(controller: str) -> str:
    """Our path in the hierarchy holding `controller` ("" = the v2 line), from /proc/self/cgroup."""
    return _pid_cgroups(os.getpid()).get(controller, "/")


def _pid_cgroups(pid: int) -> dict[str, str]:
    """controller → path, from /proc/PID/cgroup ("" is the v2 hierarchy)."""
    out: dict[str, str] = {}
    for line in _read_text(Path(f"/proc/{pid}/cgroup")).splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            out[controller] = parts[2]
    return out


def _own_path(line_path: str) -> str:
    return line_path.lstrip("/")


def _rel(directory: Path, mount: Path | None) -> str:
    return "/" + str(directory.relative_to(mount)) if mount else ""


def proc_cgroup_text(pid: int) -> str:
    """/proc/PID/cgroup as it is, for the report (proof of where the process runs)."""
    return _read_text(Path(f"/proc/{pid}/cgroup")).strip()
