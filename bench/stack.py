"""One relay stack per measurement: the Notion emulator and the relay (server.py, with its own
embedded redis-server), the relay optionally inside a dyno-sized cgroup (bench/cgroup.py).

The relay runs on its own defaults: variables the caller's shell may have set for other
purposes (REDIS_URL, PART_SIZE_MB, the budget, admission's limits …) are blanked for it, and
only what a benchmark passes in `relay_env` is set. With no REDIS_URL the relay starts its own
redis-server as a child process, as it does on a dyno; that process's CPU is part of the relay's
cost (`relay_cpu`), and in a cgroup it is inside the same limits.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench import procs
from bench.cgroup import Cgroup, Limits, open_cgroup, proc_cgroup_text
from bench.client import Http, HttpError
from bench.payload import MiB
from harness.emulator import EmulatorProcess
from harness.processes import ROOT, ManagedProcess

# The dyno of DESIGN.md: a fifth of a CPU and 512 MB.
DYNO_LIMITS = Limits(cpu_cores=0.2, memory_bytes=512 * MiB)
# python + tornado + pycurl imports on a fifth of a CPU take a few seconds.
RELAY_START_TIMEOUT_S = 60.0
# Notion's limit (the emulator's default) and the relay's default budget.
NOTION_RATE_LIMIT = "180/60"
# Removed from the relay's environment whatever the caller's shell says (`env -u`): the relay's
# defaults are what is measured; a benchmark sets what it varies through relay_env.
BLANKED = ("REDIS_URL", "PART_SIZE_MB", "NOTION_RATE_LIMIT", "APPEND_BATCH_WINDOW_MS", "TOTAL_MEMORY_MB",
           "TOTAL_CPU_CORES", "MAX_CONCURRENT_UPLOADS", "QUEUE_SIZE_LIMIT", "SPOOL_MIN_FREE_MB",
           "NOTION_BACKLOG_LIMIT", "UPLOAD_TOKENS", "UPLOAD_GRANT_SECRET", "UPLOAD_GRANT_PUBLIC_KEY",
           "WEBHOOK_URL", "NOTION_DESTINATIONS", "LOG_FORMAT")


@dataclass
class RelayStack:
    emulator: EmulatorProcess
    relay: ManagedProcess
    url: str
    group: Cgroup
    data_dir: Path
    helpers: list[psutil.Process] = field(default_factory=list)  # the embedded redis-server
    inside_cgroup: bool = False

    def health(self) -> dict[str, Any]:
        with Http() as http:
            return http.json("GET", f"{self.url}/api/system/health", timeout_s=30).json()

    def status(self, upload_id: str, http: Http | None = None) -> dict[str, Any]:
        own = http is None
        http = http or Http()
        try:
            answer = http.json("GET", f"{self.url}/api/upload/status/{upload_id}", timeout_s=30)
        finally:
            if own:
                http.close()
        if answer.status not in (200, 410):
            raise HttpError(f"status of {upload_id}: HTTP {answer.status}: {answer.body[:300]!r}")
        return answer.json()

    def budget(self) -> dict[str, Any]:
        """The relay's request budget as health shows it (capacity, per_second, tokens …)."""
        return (self.health().get("components") or {}).get("request_budget") or {}

    def describe(self) -> dict[str, Any]:
        return {**self.group.describe(), "relay_inside": self.inside_cgroup,
                "redis_server_pids": [p.pid for p in self.helpers]}


def relay_environment(emulator_url: str, data_dir: Path, relay_env: Mapping[str, str]) -> dict[str, str]:
    env = {
        **procs.MALLOC_ENV,
        "HOST": "127.0.0.1",
        "PORT": "0",
        "NOTION_TOKEN": procs.EMULATOR_TOKEN,
        "NOTION_API_BASE": emulator_url,
        "NOTION_PARENT_PAGE_ID": procs.PARENT_PAGE_ID,
        "DATA_DIR": str(data_dir),
    }
    env.update(relay_env)
    return env


def relay_argv(relay_env: Mapping[str, str]) -> list[str]:
    """server.py, with the caller's settings in BLANKED removed from its environment."""
    unset = [arg for name in BLANKED if name in os.environ and name not in relay_env for arg in ("-u", name)]
    return ["env", *unset, sys.executable, str(ROOT / "server.py")]


@contextmanager
def relay_stack(work: Path, logs: Path, *, emulator_args: Sequence[str] = (),
                relay_env: Mapping[str, str] | None = None, cgroup: str = "none",
                limits: Limits = DYNO_LIMITS, name: str = "relay") -> Iterator[RelayStack]:
    """An emulator and a relay for one measurement; stopped (and the cgroup removed) on the way
    out, whatever happened. `cgroup`: none, auto, v1 or v2 (bench/cgroup.py)."""
    logs.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        emulator = EmulatorProcess(work / f"{name}-emulator", tuple(emulator_args),
                                   log_path=logs / f"{name}-emulator.log")
        stack.callback(emulator.stop)
        group = stack.enter_context(open_cgroup(f"bench-{name}", limits, cgroup))
        data_dir = work / f"{name}-data"
        env = relay_environment(emulator.url, data_dir, relay_env or {})
        argv = group.wrap(relay_argv(env))
        relay = ManagedProcess(argv, r"relay listening on (http://\S+)", logs / f"{name}.log", env=env,
                               timeout_s=RELAY_START_TIMEOUT_S)
        helpers = procs.children_of(relay.pid)
        # Runs before the cgroup is removed (ExitStack unwinds in reverse order).
        stack.callback(procs.kill_leftovers, helpers)
        stack.callback(relay.stop, 30)
        assert relay.match is not None
        inside = group.contains(relay.pid)
        if group.describe().get("constrained") and not inside:
            raise RuntimeError(f"the relay is not inside its cgroup:\n{proc_cgroup_text(relay.pid)}")
        yield RelayStack(emulator, relay, relay.match.group(1).rstrip("/"), group, data_dir, helpers, inside)


@dataclass(frozen=True)
class RelayCpu:
    """The relay's CPU during one piece of work: its own process and its redis-server."""
    relay_s: float
    redis_s: float
    wall_s: float

    @property
    def total_s(self) -> float:
        return self.relay_s + self.redis_s

    def per_gib(self, size_bytes: int) -> float:
        return self.total_s * 2**30 / size_bytes

    def json(self, size_bytes: int | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {"relay_cpu_s": self.relay_s, "redis_cpu_s": self.redis_s,
                               "total_cpu_s": self.total_s, "wall_s": self.wall_s,
                               "cores_used": self.total_s / self.wall_s if self.wall_s else None}
        if size_bytes:
            doc["cpu_s_per_gib"] = self.per_gib(size_bytes)
            doc["relay_only_cpu_s_per_gib"] = self.relay_s * 2**30 / size_bytes
            doc["redis_cpu_s_per_gib"] = self.redis_s * 2**30 / size_bytes
        return doc


def relay_cpu(usage: procs.Usage) -> RelayCpu:
    return RelayCpu(usage.cpu_s, usage.children_cpu_s, usage.wall_s)


def budget_floor_s(requests: int, rate_limit: str = NOTION_RATE_LIMIT) -> float:
    """The least time Notion's budget lets `requests` requests through, its bucket full at the
    start (the emulator's, like Notion's, holds `count` tokens and refills count/window per s)."""
    count, _, window = rate_limit.partition("/")
    capacity, per_s = int(count), int(count) / float(window or 60)
    return max(0.0, requests - capacity) / per_s


def wait_for(predicate: Any, timeout_s: float, interval_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)
