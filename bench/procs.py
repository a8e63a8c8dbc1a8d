"""Start the measured processes and measure them from outside: RSS sampled with psutil, and CPU
time (user + system) read before and after the work."""
from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from harness.processes import ROOT, ManagedProcess, malloc_env, wait_until

# What run.sh exports: glibc then returns freed buffers to the system, so RSS shows what a
# process really holds (DESIGN.md, "Known quirks").
MALLOC_ENV = malloc_env()
EMULATOR_TOKEN = "emulator-token"
PARENT_PAGE_ID = "00000000-0000-4000-8000-000000000001"
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Usage:
    """What one process used while it did one piece of work."""
    cpu_s: float  # user + system of the process itself
    user_s: float
    system_s: float
    wall_s: float
    idle_rss_bytes: int  # just before the work
    peak_rss_bytes: int  # max of the sampled peak and the kernel's high-water mark
    sampled_peak_rss_bytes: int
    hwm_rss_bytes: int | None  # VmHWM after resetting it at the start; None where unsupported
    children_peak_rss_bytes: int  # e.g. the relay's embedded redis-server, for information
    children_cpu_s: float
    samples: int


class UsageMeter:
    """Context manager: `with UsageMeter(pid) as meter: work()`, then `meter.usage`.

    RSS is sampled every interval_s on a thread; the kernel's VmHWM (reset at the start through
    /proc/PID/clear_refs) also catches a peak that falls between two samples.
    """

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self._proc = psutil.Process(pid)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_loop, daemon=True)
        self._peak = 0
        self._children_peak = 0
        self._samples = 0
        self.usage: Usage | None = None

    def __enter__(self) -> UsageMeter:
        self._children = self._proc.children(recursive=True)
        self._hwm_reset = _reset_hwm(self._proc.pid)
        self._idle_rss = self._proc.memory_info().rss
        self._cpu0 = _cpu_times(self._proc)
        self._children_cpu0 = sum(_cpu_s(c) for c in self._children)
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        wall_s = time.monotonic() - self._t0
        user_s, system_s = (after - before for after, before in zip(_cpu_times(self._proc), self._cpu0, strict=True))
        children_cpu_s = sum(_cpu_s(c) for c in self._children) - self._children_cpu0
        self._stop.set()
        self._thread.join(5)
        self._sample()
        hwm = _read_hwm(self._proc.pid) if self._hwm_reset else None
        self.usage = Usage(
            cpu_s=user_s + system_s,
            user_s=user_s,
            system_s=system_s,
            wall_s=wall_s,
            idle_rss_bytes=self._idle_rss,
            peak_rss_bytes=max(self._peak, hwm or 0),
            sampled_peak_rss_bytes=self._peak,
            hwm_rss_bytes=hwm,
            children_peak_rss_bytes=self._children_peak,
            children_cpu_s=children_cpu_s,
            samples=self._samples,
        )

    def _sample_loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    def _sample(self) -> None:
        try:
            self._peak = max(self._peak, self._proc.memory_info().rss)
            children = sum(_rss(c) for c in self._children)
        except psutil.Error:
            return  # the process ended; its exit is reported by whoever waits for it
        self._children_peak = max(self._children_peak, children)
        self._samples += 1


def _cpu_times(proc: psutil.Process) -> tuple[float, float]:
    """(user, system) seconds; zeros once the process is gone."""
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return 0.0, 0.0
    return times.user, times.system


def _cpu_s(proc: psutil.Process) -> float:
    return sum(_cpu_times(proc))


def _rss(proc: psutil.Process) -> int:
    try:
        return proc.memory_info().rss
    except psutil.Error:
        return 0


def _reset_hwm(pid: int) -> bool:
    """Writing 5 to clear_refs resets the peak RSS (VmHWM) of a process we own (Linux ≥ 4.0)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _read_hwm(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# --- the processes -------------------------------------------------------------------------

def start_emulator(data_dir: Path, log_dir: Path) -> tuple[ManagedProcess, str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = ManagedProcess(
        [sys.executable, "-m", "emulator", "--host", "127.0.0.1", "--port", "0",
         "--data-dir", str(data_dir),
         # Pacing is not what this benchmark measures: Notion's 180 requests/min would turn a
         # large upload's part count into waiting (the relay paces itself with its own budget).
         "--rate-limit", "100000/60"],
        r"emulator listening on (http://\S+)",
        log_dir / "emulator.log",
        timeout_s=START_TIMEOUT_S,
    )
    return proc, _ready_url(proc)


@contextmanager
def running_emulator(data_dir: Path, log_dir: Path) -> Iterator[str]:
    """An emulator for one measurement; what it stored is deleted when it stops."""
    emulator = None
    try:
        emulator, url = start_emulator(data_dir, log_dir)
        yield url
    finally:
        stop_all([emulator])
        shutil.rmtree(data_dir, ignore_errors=True)


def start_relay(emulator_url: str, data_dir: Path, log_dir: Path, part_size_mb: int) -> tuple[ManagedProcess, str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **MALLOC_ENV,
        "HOST": "127.0.0.1",
        "PORT": "0",
        "NOTION_TOKEN": EMULATOR_TOKEN,
        "NOTION_API_BASE": emulator_url,
        "NOTION_PARENT_PAGE_ID": PARENT_PAGE_ID,
        "DATA_DIR": str(data_dir),
        # The bare libcurl baseline cuts parts of this size; the relay must do the same work.
        "PART_SIZE_MB": str(part_size_mb),
    }
    if not (ROOT / "server.py").exists():
        raise RuntimeError(f"{ROOT / 'server.py'} does not exist yet")
    proc = ManagedProcess(
        [sys.executable, "server.py"],
        r"relay listening on (http://\S+)",
        log_dir / "relay.log",
        env=_without_redis_url(env),
        timeout_s=START_TIMEOUT_S,
    )
    return proc, _ready_url(proc)


def start_sink(out_dir: Path, log_dir: Path) -> tuple[ManagedProcess, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = ManagedProcess(
        [sys.executable, "-m", "bench.baselines", "sink", "--out-dir", str(out_dir)],
        r"sink listening on (http://\S+)",
        log_dir / "sink.log",
        env=MALLOC_ENV,
        timeout_s=START_TIMEOUT_S,
    )
    return proc, _ready_url(proc)


def start_curl_uploader(args: Sequence[str], log_dir: Path) -> ManagedProcess:
    return ManagedProcess(
        [sys.executable, "-m", "bench.baselines", "curl", *args],
        r"curl uploader ready",
        log_dir / "curl.log",
        env=MALLOC_ENV,
        timeout_s=START_TIMEOUT_S,
    )


def wait_for_line(proc: ManagedProcess, prefix: str, timeout_s: float) -> str:
    """The rest of the first output line starting with prefix; fails if the process dies."""
    def found() -> str | None:
        for line in proc.output().splitlines():
            if line.startswith(prefix):
                return line[len(prefix):]
        if not proc.alive():
            raise RuntimeError(f"{proc.argv[:4]} exited ({proc.proc.returncode}) before "
                               f"printing {prefix!r}; output:\n{proc.output()[-2000:]}")
        return None

    return wait_until(found, timeout_s=timeout_s, interval_s=0.05, message=repr(prefix))


def stop_all(procs: Sequence[ManagedProcess | None]) -> None:
    """Stop in reverse start order; a failure to stop one never leaves the others running."""
    for proc in reversed(procs):
        if proc is not None:
            try:
                proc.stop()
            except Exception:
                proc.kill()


def children_of(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def kill_leftovers(children: Sequence[psutil.Process], grace_s: float = 5.0) -> None:
    """Children of a stopped process (the relay's redis-server) get grace_s to exit, then SIGKILL.

    psutil.Process checks the start time too, so a reused pid is never hit.
    """
    _, alive = psutil.wait_procs(list(children), timeout=grace_s)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            pass


def _ready_url(proc: ManagedProcess) -> str:
    assert proc.match is not None
    return proc.match.group(1).rstrip("/")


def _without_redis_url(env: dict[str, str]) -> dict[str, str]:
    # With no REDIS_URL the relay starts its own embedded redis-server; one exported in the
    # caller's shell must not point the benchmark at a shared Redis.
    if "REDIS_URL" in os.environ:
        env["REDIS_URL"] = ""
    return env
