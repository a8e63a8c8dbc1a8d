"""The dyno simulation: the relay on 0.2 CPU and 512 MB, 25 tus clients at once, Notion failing.

The relay (server.py) runs inside a private cgroup (bench/cgroup.py) limited like the PaaS dyno
it is built for; its Redis and the Notion emulator run outside it, as they would in production.
Clients upload a mix of file sizes concurrently through tus while the emulator injects faults
of every kind and enforces Notion's real rate limit. Every upload is verified at the emulator
(sha256). Measured during the run: the relay's peak RSS and CPU, the cgroup's memory high-water
mark and CPU throttling, throughput against the bound the request budget allows (budget ×
part size), the 429s the relay received (injected vs from the emulator's bucket), and the
latency of the health endpoint polled every 250 ms by a separate process.

    python -m bench dyno [--clients 25] [--scale 1.0] [--fault-rate 0.05] …   (--help)
    python -m bench dyno --preset admission    # 25 × 40 MiB at once, no faults: none may be refused
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pycurl
import requests
import tornado

from bench import procs
from bench.cgroup import Cgroup, Limits, Reading, open_cgroup, proc_cgroup_text
from bench.payload import DEFAULT_PART_BYTES, MiB, Payload, make_payload, parse_size
from bench.report import write_results
from bench.stack import NOTION_RATE_LIMIT, relay_environment
from engine.embedded_redis import EmbeddedRedis
from harness.emulator import EmulatorProcess
from harness.processes import ROOT, ManagedProcess
from harness.tusclient import UploadResult, upload

# The dyno of DESIGN.md: one process, 512 MB, a fifth of a CPU.
DEFAULT_CPU = 0.2
DEFAULT_MEMORY = "512M"
DEFAULT_CLIENTS = 25
# The issue's run: 25 uploads of 100 MiB (each size gets an odd tail, so parts end mid-MiB).
DEFAULT_SIZES = "100M"
# The browser page sends tus chunks no larger than a part.
DEFAULT_CHUNK = "8M"
ALL_FAULT_KINDS = ("500", "502", "503", "504", "409", "429", "529", "reset", "stall", "slow", "ambiguous")
DEFAULT_FAULT_ENDPOINTS = "create,send,complete,attach"
# The issue's rate; a 2.5 GiB run then draws about twenty faults of ten or eleven kinds.
DEFAULT_FAULT_RATE = 0.05
# The emulator draws from random.Random(seed) request by request, so a seed fixes which kinds
# come first: seed 27 meets all 11 kinds within the first 150 faultable requests (a 1 GiB run
# makes about 200); seed 1, for example, meets only 7 kinds in 200 (no 429, 529, reset, ambiguous).
DEFAULT_FAULT_SEED = 27
# A stalled request never answers by itself: the relay must give up on it (READ_TIMEOUT).
DEFAULT_STALL_S = 600.0
DEFAULT_SLOW_S = 2.0
DEFAULT_READ_TIMEOUT_S = 10.0
DEFAULT_CONNECTION_TIMEOUT_S = 5.0
DEFAULT_POLL_INTERVAL_S = 0.25
DEFAULT_IDLE_S = 3.0  # health polls of the idle relay before the clients start
HEALTH_TIMEOUT_S = 5.0
# Every upload must be done by then; the default run takes a minute or two.
DEFAULT_DEADLINE_S = 420.0
RELAY_START_TIMEOUT_S = 60.0  # python + tornado + pycurl imports at 0.2 CPU take a few seconds
PROGRESS_EVERY_S = 10.0
# The targets of the dyno issue, checked and printed with every run.
TARGET_PEAK_RSS_MIB = 100
TARGET_HEALTH_P99_MS = 100  # issue 16 (issue 11 asked for 250)
TARGET_FRACTION_OF_BOUND = 0.8
# Named runs: option defaults (anything given on the command line still wins).
PRESETS: dict[str, dict[str, Any]] = {
    # Issue 11's admission run: 25 × 40 MiB tus uploads started at once against the relay with its
    # default settings, Notion healthy: not one may be refused (503 at creation).
    "admission": {"clients": 25, "sizes": "40M", "fault_rate": 0.0},
}
# Admission's variables stay at the relay's defaults in every run (the parent's environment
# must not set them for the relay).
DEFAULTED_RELAY_VARIABLES = ("TOTAL_MEMORY_MB", "TOTAL_CPU_CORES", "MAX_CONCURRENT_UPLOADS", "QUEUE_SIZE_LIMIT",
                             "SPOOL_MIN_FREE_MB", "NOTION_BACKLOG_LIMIT")
RELAY_EVENTS = ("UPLOAD_COMPLETE", "UPLOAD_FAILED", "NOTION_RETRY", "PART_FAILURE", "TIMEOUT_EVENT",
                "CHECKPOINT_RETRY", "OPENED", "Traceback")


# --- test data -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClientFile:
    index: int
    payload: Payload

    @property
    def name(self) -> str:
        return self.payload.path.name


def file_sizes(sizes: Sequence[int], clients: int, scale: float) -> list[int]:
    """Cycle the sizes over the clients. An odd tail per client keeps files off MiB boundaries,
    so last parts and tus chunks end mid-MiB."""
    out = []
    for i in range(clients):
        base = max(1, int(sizes[i % len(sizes)] * scale))
        tail = (i * 7919) % (64 * 1024) if base > MiB else 0
        out.append(base + tail)
    return out


def make_files(directory: Path, sizes: Sequence[int]) -> list[ClientFile]:
    files = []
    for i, size in enumerate(sizes):
        payload = make_payload(directory, f"c{i:02d}", size)
        # The emulator accepts only Notion's file types: .bin is refused, .txt is text/plain.
        path = payload.path.rename(directory / f"dyno-{i:02d}.txt")
        files.append(ClientFile(i, replace(payload, path=path)))
    return files


# --- the health poller (its own process: the clients' threads must not delay its clock) ------

def poll_health(url: str, interval_s: float, stop: Any, conn: Any) -> None:
    """GET url every interval_s until stop is set; send back one record per poll.

    A fresh connection per poll, like an outside monitor or the platform's router: accepting
    the connection is part of what a busy event loop must still do quickly.
    """
    polls: list[dict[str, Any]] = []
    next_at = time.monotonic()
    while not stop.is_set():
        t0 = time.monotonic()
        record: dict[str, Any] = {"t": time.time()}
        try:
            r = requests.get(url, timeout=HEALTH_TIMEOUT_S, headers={"Connection": "close"})
            record["latency_s"] = time.monotonic() - t0
            record["outcome"] = str(r.status_code)
            record.update(_health_brief(r))
        except requests.Timeout:
            record["outcome"] = "timeout"
        except requests.RequestException as exc:
            record["outcome"] = type(exc).__name__
        polls.append(record)
        # A fixed schedule; a poll slower than the interval delays the next one, no catch-up burst.
        next_at = max(next_at + interval_s, time.monotonic())
        stop.wait(next_at - time.monotonic())
    conn.send(polls)
    conn.close()


def _health_brief(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
        components = body["components"]
        rm = components["resource_manager"]
        admission = components.get("admission") or {}
        disk = components.get("spool_disk") or {}
        return {"status": body.get("status"), "resource_state": rm.get("resource_state"),
                "memory_usage_mb": rm.get("memory_usage_mb"), "rss_mb": rm.get("rss_mb"),
                "optimal_workers": rm.get("optimal_workers"), "active_uploads": rm.get("active_uploads"),
                "admission": admission.get("status"), "admission_reason": admission.get("reason"),
                "budget_backlog_s": admission.get("budget_backlog_s"),
                "spool_free_bytes": disk.get("free_bytes"), "spool_reserved_bytes": disk.get("reserved_bytes"),
                "intake_paced": (rm.get("intake") or {}).get("paced"),
                "cpu_share": (rm.get("intake") or {}).get("cpu_share"),
                "intake_rate_mib_per_s": (rm.get("intake") or {}).get("rate_mib_per_s"),
                "loop_lag_ms": (components.get("event_loop") or {}).get("lag_ms"),
                "breaker": ((components.get("circuit_breakers") or {}).get("breakers") or [{}])[0].get("state")}
    except (ValueError, KeyError, TypeError):
        return {}


class HealthPoller:
    """Starts poll_health in a spawned process; `stop()` returns its records."""

    def __init__(self, url: str, interval_s: float) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process that runs threads
        self._stop = ctx.Event()
        self._recv, send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=poll_health, args=(url, interval_s, self._stop, send), daemon=True)
        self._proc.start()
        send.close()

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        polls: list[dict[str, Any]] = []
        if self._recv.poll(HEALTH_TIMEOUT_S + 10):
            polls = self._recv.recv()
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        return polls


# --- sampling the cgroup during the run --------------------------------------------------------

class CgroupSampler:
    """Samples the group's counters every interval: the kernel keeps a high-water mark of usage
    (page cache included) but not of its anonymous part, which is what compares with RSS."""

    def __init__(self, group: Cgroup, interval_s: float = 0.25) -> None:
        self.group = group
        self.peak_anon = 0
        self.peak_cache = 0
        self.peak_usage = 0
        self.samples = 0
        # (time.time(), CFS periods, throttled periods): when the quota ran out, for the timeline.
        self.cpu_marks: list[tuple[float, int, int]] = []
        self.peak_dirty = 0
        self.dirty_marks: list[tuple[float, int]] = []  # (time.time(), dirty + writeback bytes)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> CgroupSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sample()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    def _sample(self) -> None:
        r = self.group.reading()
        self.peak_anon = max(self.peak_anon, r.anon_bytes or 0)
        self.peak_cache = max(self.peak_cache, r.cache_bytes or 0)
        self.peak_usage = max(self.peak_usage, r.usage_bytes or 0)
        self.samples += 1
        if r.cpu_periods is not None and r.cpu_throttled_periods is not None:
            self.cpu_marks.append((time.time(), r.cpu_periods, r.cpu_throttled_periods))
        dirty = self._dirty_bytes()
        if dirty is not None:
            self.peak_dirty = max(self.peak_dirty, dirty)
            self.dirty_marks.append((time.time(), dirty))

    def _dirty_bytes(self) -> int | None:
        """Page cache waiting to be written (dirty + under writeback), cgroup v1: spool pages the
        kernel must write out before it can reclaim them at the limit (a write() then waits)."""
        mem_dir = getattr(self.group, "mem_dir", None)
        if mem_dir is None:
            return None
        try:
            stat = dict(line.split() for line in (mem_dir / "memory.stat").read_text().splitlines())
            return int(stat.get("total_dirty", 0)) + int(stat.get("total_writeback", 0))
        except (OSError, ValueError):
            return None


# --- the clients -----------------------------------------------------------------------------

@dataclass
class ClientOutcome:
    file: ClientFile
    started_at: float = 0.0
    result: UploadResult | None = None
    error: str | None = None
    early_claim: str | None = None  # the relay said "done" before Notion held the file, attached
    upload_id: str | None = None
    file_upload_id: str | None = None
    verified: bool = False
    verify_error: str | None = None

    @property
    def duration_s(self) -> float | None:
        if self.result and self.result.completed_at:
            return self.result.completed_at - self.started_at
        return None


def run_client(outcome: ClientOutcome, relay_url: str, emulator: EmulatorProcess, chunk_bytes: int,
               deadline_s: float) -> None:
    def check_claim(url: str) -> None:
        # The moment the relay first claims completion, Notion must already hold the file.
        try:
            status = _relay_status(relay_url, url.rsplit("/", 1)[-1])
            stored = _emulator_upload(emulator.url, status["notion"]["file_upload_id"])
            if stored["status"] != "uploaded" or not stored["attached_to"]:
                outcome.early_claim = f"emulator has status {stored['status']}, attached_to {stored['attached_to']}"
        except Exception as exc:  # an unverifiable claim is reported as an error, never a crash
            outcome.early_claim = f"could not check the claim: {type(exc).__name__}: {exc}"

    outcome.started_at = time.monotonic()
    try:
        outcome.result = upload(relay_url, outcome.file.payload.path, chunk_bytes, deadline_s=deadline_s,
                                on_complete=check_claim)
        outcome.upload_id = outcome.result.url.rsplit("/", 1)[-1]
    except Exception as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"


def run_clients(files: Sequence[ClientFile], relay_url: str, emulator: EmulatorProcess, chunk_bytes: int,
                deadline_s: float, progress: Callable[[list[ClientOutcome]], None]) -> list[ClientOutcome]:
    outcomes = [ClientOutcome(f) for f in files]
    threads = [threading.Thread(target=run_client, args=(o, relay_url, emulator, chunk_bytes, deadline_s),
                                name=f"dyno-client-{o.file.index:02d}", daemon=True) for o in outcomes]
    for t in threads:
        t.start()
    # Each client stops itself at its deadline; a request in flight then may still take its own
    # timeout (120 s), after which the thread is abandoned (daemon) and the upload counted failed.
    end = time.monotonic() + deadline_s + 150
    while any(t.is_alive() for t in threads) and time.monotonic() < end:
        for t in threads:
            t.join(min(PROGRESS_EVERY_S, max(0.0, end - time.monotonic())))
            if not t.is_alive():
                continue
            progress(outcomes)
            break
    for o, t in zip(outcomes, threads, strict=True):
        if t.is_alive() and o.error is None and not (o.result and o.result.completed_at):
            o.error = "the client did not finish before the benchmark's deadline"
    return outcomes


def verify(outcomes: Sequence[ClientOutcome], relay_url: str, emulator: EmulatorProcess) -> None:
    """Each upload the relay completed must be in the emulator, uploaded, attached, same sha256."""
    for o in outcomes:
        if o.error or not o.upload_id:
            continue
        try:
            status = _relay_status(relay_url, o.upload_id)
            if status.get("status") != "completed":
                raise AssertionError(f"relay status is {status.get('status')!r}: {status.get('error')}")
            o.file_upload_id = status["notion"]["file_upload_id"]
            stored = emulator.upload(o.file_upload_id)
            p = o.file.payload
            if stored.get("sha256") != p.sha256 or stored.get("size") != p.size_bytes:
                raise AssertionError(f"SHA256 MISMATCH: emulator has {stored.get('size')} bytes, sha256 "
                                     f"{stored.get('sha256')}; sent {p.size_bytes} bytes, sha256 {p.sha256}")
            if stored.get("status") != "uploaded" or not stored.get("attached_to"):
                raise AssertionError(f"emulator upload is {stored.get('status')}, "
                                     f"attached to {stored.get('attached_to')}")
            o.verified = True
        except Exception as exc:
            o.verify_error = f"{type(exc).__name__}: {exc}"


def _emulator_upload(emulator_url: str, file_upload_id: str) -> dict[str, Any]:
    # Its own connection: EmulatorProcess shares one requests.Session, and 25 threads ask at once.
    r = requests.get(f"{emulator_url}/_emulator/uploads/{file_upload_id}", timeout=30)
    r.raise_for_status()
    return r.json()


def _relay_status(relay_url: str, upload_id: str) -> dict[str, Any]:
    r = requests.get(f"{relay_url}/api/upload/status/{upload_id}", timeout=30)
    r.raise_for_status()
    return r.json()


# --- the processes ---------------------------------------------------------------------------

def relay_env(args: argparse.Namespace, emulator_url: str, redis_url: str, data_dir: Path) -> dict[str, str]:
    env = relay_environment(emulator_url, data_dir, {
        # Production uses an external Redis: it runs outside the cgroup, like the emulator.
        "REDIS_URL": redis_url,
        "READ_TIMEOUT": f"{args.read_timeout:g}",
        "CONNECTION_TIMEOUT": f"{args.connection_timeout:g}",
    })
    if args.rate_limit != NOTION_RATE_LIMIT:
        env["NOTION_RATE_LIMIT"] = args.rate_limit  # else the relay's default budget (Notion's) is used
    # TOTAL_MEMORY_MB / TOTAL_CPU_CORES stay unset: the relay must find the limits in its cgroup;
    # admission runs on its defaults (no count limit, the spool floor, the backlog limit).
    for name in DEFAULTED_RELAY_VARIABLES:
        if name in os.environ:
            env[name] = ""
    return env


def start_relay(group: Cgroup, env: dict[str, str], log_dir: Path) -> ManagedProcess:
    """server.py through the cgroup's wrapper: inside the limits from its first instruction."""
    argv = group.wrap([sys.executable, str(ROOT / "server.py")])
    return ManagedProcess(argv, r"relay listening on (http://\S+)", log_dir / "relay.log", env=env,
                          timeout_s=RELAY_START_TIMEOUT_S)


def fault_plan(args: argparse.Namespace) -> dict[str, Any]:
    return {"rate": args.fault_rate, "kinds": {k: 1 for k in args.fault_kinds}, "endpoints": args.fault_endpoints,
            "stall_s": args.stall_s, "slow_s": args.slow_s, "seed": args.fault_seed}


def relay_health(url: str) -> dict[str, Any]:
    try:
        return requests.get(f"{url}/api/system/health", timeout=30).json()
    except (requests.RequestException, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


# --- one run ---------------------------------------------------------------------------------

@dataclass
class RunData:
    """Everything measured; results_document() turns it into the report."""
    args: argparse.Namespace
    files: list[ClientFile]
    load_at_start: list[float]
    cgroup: dict[str, Any] = field(default_factory=dict)
    relay_cgroup_text: str = ""
    relay_inside: bool = False
    health_start: dict[str, Any] = field(default_factory=dict)
    health_end: dict[str, Any] = field(default_factory=dict)
    outcomes: list[ClientOutcome] = field(default_factory=list)
    wall_s: float = 0.0
    usage: procs.Usage | None = None
    reading_before: Reading | None = None  # when the clients started
    reading: Reading | None = None  # when the last client finished
    load_started_at: float = 0.0  # time.time() of the clients' start: earlier polls are the idle baseline
    sampler: CgroupSampler | None = None
    polls: list[dict[str, Any]] = field(default_factory=list)
    emulator_stats: dict[str, Any] = field(default_factory=dict)
    relay_log: str = ""
    relay_exit: int | None = None
    outage_started_at: float | None = None  # time.time() when Notion went down (--outage-s)
    errors: list[str] = field(default_factory=list)


def run(args: argparse.Namespace) -> RunData:
    logs = args.out_dir / "out" / "dyno"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    work = Path(tempfile.mkdtemp(prefix="bench-dyno-", dir=args.work_dir))
    try:
        sizes = file_sizes(args.sizes, args.clients, args.scale)
        print(f"writing {len(sizes)} files, {sum(sizes) / MiB:.0f} MiB in all …", flush=True)
        (work / "files").mkdir()
        data = RunData(args, make_files(work / "files", sizes), [round(x, 2) for x in os.getloadavg()])
        os.sync()  # the test data's writeback must not compete with the run
        run_stack(data, work, logs)
        return data
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_stack(data: RunData, work: Path, logs: Path) -> None:
    """Redis and the emulator outside the cgroup, the relay inside; everything is stopped (and
    the cgroup removed) on the way out, in reverse order, whatever happened."""
    args = data.args
    with ExitStack() as stack:
        redis = EmbeddedRedis(work / "redis")
        redis.start()
        stack.callback(redis.stop)
        # Sends count at their last byte: the later moment Notion might pick, the harder one for our pacing.
        emulator = EmulatorProcess(work / "emulator",
                                   ("--rate-limit", args.rate_limit, "--discard-files", "--count-sends-at-end"),
                                   log_path=logs / "emulator.log")
        stack.callback(emulator.stop)
        group = stack.enter_context(open_cgroup("relay-dyno", Limits(args.cpu, args.memory), args.cgroup))
        data.cgroup = group.describe()
        print(f"starting the relay in cgroup {data.cgroup['version']} …", flush=True)
        try:
            relay = start_relay(group, relay_env(args, emulator.url, redis.url, work / "relay"), logs)
        except Exception as exc:
            data.errors.append(f"the relay did not start: {exc}")
            return
        stack.callback(_stop_relay, data, relay)  # runs before the cgroup is removed
        assert relay.match is not None
        url = relay.match.group(1).rstrip("/")
        data.relay_cgroup_text = proc_cgroup_text(relay.pid)
        data.relay_inside = group.contains(relay.pid)
        if data.cgroup["constrained"] and not data.relay_inside:
            data.errors.append(f"the relay is not inside its cgroup: /proc/{relay.pid}/cgroup is\n"
                               f"{data.relay_cgroup_text}")
            return
        data.health_start = relay_health(url)
        print(setup_text(data), flush=True)
        measure(data, url, relay.pid, emulator, group)
        data.health_end = relay_health(url)
        data.emulator_stats = emulator.stats()


def _stop_relay(data: RunData, relay: ManagedProcess) -> None:
    data.relay_exit = relay.stop(timeout_s=30)
    data.relay_log = relay.output()


def measure(data: RunData, url: str, relay_pid: int, emulator: EmulatorProcess, group: Cgroup) -> None:
    args = data.args
    emulator.reset_stats()  # the relay's start-up requests are not part of the run
    if args.fault_rate > 0:
        emulator.set_faults(fault_plan(args))
    clear_faults = threading.Timer(args.fault_seconds, emulator.clear_faults) if args.fault_seconds else None

    def go_down() -> None:
        data.outage_started_at = time.time()
        emulator.outage(args.outage_s, 503)

    outage = threading.Timer(args.outage_at, go_down) if args.outage_s else None
    poller = HealthPoller(f"{url}/api/system/health", args.poll_interval)
    try:
        # The same relay, idle, in the same cgroup: the baseline for the health latency under load.
        time.sleep(args.idle_s)
        if clear_faults:
            clear_faults.start()
        if outage:
            outage.start()
        data.load_started_at, data.reading_before = time.time(), group.reading()
        t0 = time.monotonic()
        with procs.UsageMeter(relay_pid) as meter, CgroupSampler(group) as sampler:
            data.outcomes = run_clients(data.files, url, emulator, args.chunk_size, args.deadline,
                                        lambda outcomes: print(progress_text(outcomes, t0), flush=True))
            print(progress_text(data.outcomes, t0), flush=True)
            finished = [o.result.completed_at for o in data.outcomes if o.result and o.result.completed_at]
            data.wall_s = (max(finished) if finished else time.monotonic()) - t0
        data.usage, data.sampler, data.reading = meter.usage, sampler, group.reading()
    finally:
        data.polls = poller.stop()
        if clear_faults:
            clear_faults.cancel()
        if outage:
            outage.cancel()
        emulator.clear_faults()
    verify(data.outcomes, url, emulator)


def progress_text(outcomes: Sequence[ClientOutcome], t0: float) -> str:
    done = sum(1 for o in outcomes if o.result and o.result.completed_at)
    failed = sum(1 for o in outcomes if o.error)
    mib = sum(o.file.payload.size_bytes for o in outcomes if o.result and o.result.completed_at) / MiB
    return f"  t={time.monotonic() - t0:5.0f} s: {done}/{len(outcomes)} uploads done ({mib:.0f} MiB), {failed} failed"


# --- the results document --------------------------------------------------------------------

def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def results_document(data: RunData) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "benchmark": "dyno",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                 "tornado": tornado.version, "libcurl": pycurl.version, "loadavg_at_start": data.load_at_start},
        "settings": settings_json(data),
        "cgroup": {**data.cgroup, "relay_inside": data.relay_inside,
                   "relay_proc_cgroup": data.relay_cgroup_text.splitlines()},
        "relay_detected": relay_detected(data),
        "uploads": uploads_json(data),
        "throughput": throughput_json(data),
        "memory": memory_json(data),
        "cpu": cpu_json(data),
        "rate_limits": rate_limits_json(data),
        "health": health_json(data),
        "timeline": timeline_json(data),
        "breaker": breaker_json(data),
        "emulator": {k: data.emulator_stats.get(k) for k in
                     ("requests", "requests_total", "rate_limited", "faults_injected", "bytes_received",
                      "max_in_flight", "max_in_flight_by_endpoint", "uploads")},
        "relay_log": relay_log_json(data),
    }
    doc["errors"] = data.errors + upload_errors(data)
    doc["checks"] = checks(doc)
    return doc


def checks(doc: dict[str, Any]) -> list[dict[str, Any]]:
    up, tp, mem, h = doc["uploads"], doc["throughput"], doc["memory"], doc["health"]
    rss_mib = (mem["relay_peak_rss_bytes"] or 0) / MiB
    return [
        {"name": "every upload verified", "value": f"{up['verified']}/{up['clients']}",
         "pass": up["verified"] == up["clients"] and not up["sha256_mismatches"]},
        {"name": "no upload refused at creation (503)", "value": f"{up['refused']} refusal(s), "
                 f"{up['clients_refused']} client(s)", "pass": up["refused"] == 0},
        {"name": f"relay peak RSS ≤ {TARGET_PEAK_RSS_MIB} MiB", "value": f"{rss_mib:.1f} MiB",
         "pass": rss_mib <= TARGET_PEAK_RSS_MIB},
        {"name": f"health p99 ≤ {TARGET_HEALTH_P99_MS} ms",
         "value": f"{h['p99_ms']:.0f} ms" if h["p99_ms"] is not None else "-",
         "pass": h["p99_ms"] is not None and h["p99_ms"] <= TARGET_HEALTH_P99_MS},
        {"name": f"throughput ≥ {TARGET_FRACTION_OF_BOUND:.0%} of the budget bound",
         "value": f"{tp['fraction_of_bound']:.2f}" if tp["fraction_of_bound"] is not None else "-",
         "pass": (tp["fraction_of_bound"] or 0) >= TARGET_FRACTION_OF_BOUND},
    ]


def settings_json(data: RunData) -> dict[str, Any]:
    args = data.args
    return {
        "preset": args.preset,
        "clients": args.clients, "sizes_cycled": [int(s * args.scale) for s in args.sizes], "scale": args.scale,
        "total_bytes": sum(f.payload.size_bytes for f in data.files), "tus_chunk_bytes": args.chunk_size,
        "part_bytes": DEFAULT_PART_BYTES, "cpu_limit": args.cpu, "memory_limit_bytes": args.memory,
        "cgroup_requested": args.cgroup, "rate_limit": args.rate_limit,
        "faults": fault_plan(args) if args.fault_rate > 0 else None,
        "fault_seconds": args.fault_seconds or "whole run",
        "outage": {"seconds": args.outage_s, "at_s": args.outage_at} if args.outage_s else None,
        "relay_timeouts_s": {"READ_TIMEOUT": args.read_timeout, "CONNECTION_TIMEOUT": args.connection_timeout},
        "health_poll_interval_s": args.poll_interval, "health_idle_baseline_s": args.idle_s,
        "health_timeout_s": HEALTH_TIMEOUT_S,
        "deadline_s": args.deadline, "malloc_env": procs.MALLOC_ENV,
    }


def relay_detected(data: RunData) -> dict[str, Any]:
    """What the relay found by itself (engine/limiter.py), against what the cgroup applied."""
    start, end = data.health_start, data.health_end
    perf = start.get("performance", {})
    applied = data.cgroup.get("applied", {})
    limit = applied.get("memory.limit_in_bytes") or applied.get("memory.max")
    mem_mb, cores = perf.get("total_memory_limit_mb"), perf.get("total_cpu_limit")
    return {
        "total_memory_limit_mb": mem_mb,
        "total_cpu_limit": cores,
        "memory_matches_cgroup": (mem_mb == round(limit / MiB, 1)) if limit and mem_mb is not None else None,
        "cpu_matches_cgroup": (cores == round(applied["cpu_cores"], 2))
        if applied.get("cpu_cores") and cores is not None else None,
        "resource_manager_at_start": start.get("components", {}).get("resource_manager"),
        "resource_manager_at_end": end.get("components", {}).get("resource_manager"),
        "request_budget_at_end": end.get("components", {}).get("request_budget"),
        "health_status_at_end": end.get("status"),
        "health_error": start.get("error") or end.get("error"),
    }


def _error_kind(text: str) -> str:
    """'patch 503 {"error": …}' → 'patch 503' (what a client saw, without the details)."""
    return " ".join(text.split()[:2])


def uploads_json(data: RunData) -> dict[str, Any]:
    outcomes = data.outcomes
    durations = [o.duration_s for o in outcomes if o.duration_s is not None]
    client_errors: Counter[str] = Counter()
    for o in outcomes:
        client_errors.update(_error_kind(e) for e in (o.result.errors if o.result else []))
    # A creation the relay refused (503 + Retry-After) is retried by the client: counted here.
    refusals = [sum(1 for e in (o.result.errors if o.result else []) if e.startswith("create 503"))
                for o in outcomes]
    return {
        "clients": len(data.files),
        "refused": sum(refusals),
        "clients_refused": sum(1 for n in refusals if n),
        "completed": sum(1 for o in outcomes if o.result and o.result.completed_at and not o.error),
        "verified": sum(1 for o in outcomes if o.verified),
        "failed": sum(1 for o in outcomes if o.error),
        "sha256_mismatches": sum(1 for o in outcomes if o.verify_error and "MISMATCH" in o.verify_error),
        "verify_failures": sum(1 for o in outcomes if o.verify_error),
        "early_claims": sum(1 for o in outcomes if o.early_claim),
        "duration_s": {"min": min(durations, default=None), "p50": percentile(durations, 50),
                       "max": max(durations, default=None)},
        "client_retries": sum(len(o.result.errors) for o in outcomes if o.result),
        "client_errors": dict(client_errors.most_common()),
        "per_client": [{
            "index": o.file.index, "file": o.file.name, "bytes": o.file.payload.size_bytes,
            "parts": o.file.payload.plan.number_of_parts, "mode": o.file.payload.plan.mode,
            "duration_s": o.duration_s, "patches": o.result.attempts if o.result else None,
            "client_errors": len(o.result.errors) if o.result else None,
            "refused": sum(1 for e in (o.result.errors if o.result else []) if e.startswith("create 503")),
            "upload_id": o.upload_id,
            "notion_file_upload_id": o.file_upload_id, "verified": o.verified, "error": o.error,
            "verify_error": o.verify_error, "early_claim": o.early_claim,
        } for o in outcomes],
    }


def upload_errors(data: RunData) -> list[str]:
    out = []
    for o in data.outcomes:
        for what, text in (("failed", o.error), ("not verified", o.verify_error),
                           ("claimed done too early", o.early_claim)):
            if text:
                out.append(f"upload {o.file.name} ({o.file.payload.size_bytes} B) {what}: {text}")
    if data.files and not data.outcomes and not data.errors:
        out.append("no upload ran")
    return out


def throughput_json(data: RunData) -> dict[str, Any]:
    budget = data.health_start.get("components", {}).get("request_budget") or {}
    count, _, window = data.args.rate_limit.partition("/")
    per_s = budget.get("per_second") or int(count) / float(window or 60)
    capacity = budget.get("capacity") or int(count)
    relayed = sum(o.file.payload.size_bytes for o in data.outcomes if o.verified)
    wall = data.wall_s
    mib_per_s = relayed / MiB / wall if wall else None
    bound = per_s * DEFAULT_PART_BYTES / MiB
    # The bucket starts full: a run shorter than a few minutes can also spend the burst.
    burst_bound = (capacity + per_s * wall) * DEFAULT_PART_BYTES / MiB / wall if wall else None
    requests_by_endpoint = data.emulator_stats.get("requests") or {}
    sends = sum((requests_by_endpoint.get("send") or {}).values())
    total = data.emulator_stats.get("requests_total") or 0
    expected_sends = sum(f.payload.plan.number_of_parts for f in data.files)
    return {
        "bytes_relayed": relayed, "wall_s": wall, "mib_per_s": mib_per_s,
        "budget_per_s": per_s, "budget_capacity": capacity, "part_bytes": DEFAULT_PART_BYTES,
        "bound_mib_per_s": bound, "fraction_of_bound": mib_per_s / bound if mib_per_s is not None else None,
        "bound_with_burst_mib_per_s": burst_bound,
        "fraction_of_bound_with_burst": mib_per_s / burst_bound if mib_per_s is not None and burst_bound else None,
        "notion_requests": total, "sends": sends, "sends_needed": expected_sends,
        "sends_share_of_requests": sends / total if total else None,
        "note": ("bound = budget requests/s × part size, as if every request carried a full part; create, "
                 "complete, attach and retrieve spend the same budget, last parts and single_part files are "
                 "smaller, and faulted requests are spent too, so in steady state 1.0 is out of reach; a run "
                 "shorter than a few minutes can pass it by spending the bucket's initial burst (second bound)"),
    }


def memory_json(data: RunData) -> dict[str, Any]:
    u, r, s = data.usage, data.reading, data.sampler
    return {
        "limit_bytes": data.args.memory,
        "relay_idle_rss_bytes": u.idle_rss_bytes if u else None,
        "relay_peak_rss_bytes": u.peak_rss_bytes if u else None,
        "relay_peak_rss_sampled_bytes": u.sampled_peak_rss_bytes if u else None,
        "relay_vmhwm_bytes": u.hwm_rss_bytes if u else None,
        # v1 memory.max_usage_in_bytes (v2 memory.peak): anonymous memory AND page cache (the
        # spool files), since the group was made; the kernel reclaims the cache at the limit.
        "cgroup_max_usage_bytes": r.peak_usage_bytes if r else None,
        "cgroup_peak_anon_sampled_bytes": s.peak_anon if s else None,
        "cgroup_peak_cache_sampled_bytes": s.peak_cache if s else None,
        "cgroup_peak_usage_sampled_bytes": s.peak_usage if s else None,
        "cgroup_peak_dirty_sampled_bytes": s.peak_dirty if s and s.dirty_marks else None,
        "cgroup_limit_hits": r.limit_hits if r else None,
        "cgroup_oom_kills": r.oom_kills if r else None,
    }


def _delta(after: float | None, before: float | None) -> float | None:
    return after - before if after is not None and before is not None else None


def cpu_json(data: RunData) -> dict[str, Any]:
    u, r, r0 = data.usage, data.reading, data.reading_before
    return {
        "limit_cores": data.args.cpu,
        "relay_cpu_s": u.cpu_s if u else None, "relay_user_s": u.user_s if u else None,
        "relay_system_s": u.system_s if u else None, "measured_wall_s": u.wall_s if u else None,
        "relay_cores_used": u.cpu_s / u.wall_s if u and u.wall_s else None,
        # During the uploads: CFS periods (100 ms) in which the relay ran, and those in which it
        # used up its quota and was stopped until the next period.
        "cgroup_periods": _delta(r.cpu_periods, r0.cpu_periods) if r and r0 else None,
        "cgroup_throttled_periods": _delta(r.cpu_throttled_periods, r0.cpu_throttled_periods) if r and r0 else None,
        "cgroup_throttled_s": _delta(r.cpu_throttled_s, r0.cpu_throttled_s) if r and r0 else None,
    }


def rate_limits_json(data: RunData) -> dict[str, Any]:
    stats = data.emulator_stats
    answered: Counter[str] = Counter()
    for outcomes in (stats.get("requests") or {}).values():
        answered.update({k: v for k, v in outcomes.items() if k in ("429", "529")})
    injected = stats.get("faults_injected") or {}
    budget = data.health_end.get("components", {}).get("request_budget") or {}
    return {
        "received_429": answered.get("429", 0),
        "injected_429": injected.get("429", 0),
        # The emulator's own bucket (Notion's limit): our pacing must never earn one.
        "bucket_429": stats.get("rate_limited"),
        "received_529": answered.get("529", 0),
        # The relay pauses its whole budget for Retry-After on a 429 and on a 529 (engine/guard.py).
        "relay_budget_pauses": budget.get("rate_limited"),
    }


def health_json(data: RunData) -> dict[str, Any]:
    """Polls while the clients ran; those before are the idle baseline."""
    polls = [p for p in data.polls if p["t"] >= data.load_started_at]
    idle = [p["latency_s"] * 1000 for p in data.polls if p["t"] < data.load_started_at and "latency_s" in p]
    latencies = [p["latency_s"] * 1000 for p in polls if "latency_s" in p]
    outcomes = Counter(p["outcome"] for p in polls)
    workers = [p["optimal_workers"] for p in polls if p.get("optimal_workers") is not None]
    memory = [p["memory_usage_mb"] for p in polls if p.get("memory_usage_mb") is not None]
    active = [p["active_uploads"] for p in polls if p.get("active_uploads") is not None]
    backlog = [p["budget_backlog_s"] for p in polls if p.get("budget_backlog_s") is not None]
    spool_free = [p["spool_free_bytes"] for p in polls if p.get("spool_free_bytes") is not None]
    spool_reserved = [p["spool_reserved_bytes"] for p in polls if p.get("spool_reserved_bytes") is not None]
    return {
        "polls": len(polls), "answered": len(latencies), "ok_200": outcomes.get("200", 0),
        "timeouts": outcomes.get("timeout", 0),
        "failures": len(polls) - outcomes.get("200", 0),
        "outcomes": dict(outcomes),
        "p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=None),
        "idle_polls": len(idle), "idle_p50_ms": percentile(idle, 50), "idle_p99_ms": percentile(idle, 99),
        "interval_s": data.args.poll_interval,
        "active_uploads_max": max(active, default=None),
        "relay_status_seen": dict(Counter(p.get("status") for p in polls if p.get("status"))),
        # Roughly how long the relay said it was not healthy (e.g. its Notion breaker open).
        "not_healthy_s": sum(1 for p in polls if p.get("status") not in (None, "healthy")) * data.args.poll_interval,
        "resource_state_seen": dict(Counter(p.get("resource_state") for p in polls if p.get("resource_state"))),
        "relay_memory_usage_mb_max": max(memory, default=None),
        "optimal_workers_range": [min(workers), max(workers)] if workers else None,
        # The slowest polls, seconds after the clients started: when the loop was late, and how busy.
        "slowest_polls": [{"at_s": round(p["t"] - data.load_started_at, 2), "ms": round(p["latency_s"] * 1000, 1),
                           "active_uploads": p.get("active_uploads")}
                          for p in sorted((p for p in polls if "latency_s" in p), key=lambda p: -p["latency_s"])[:5]],
        "admission_seen": dict(Counter(p.get("admission") for p in polls if p.get("admission"))),
        "admission_refusing_reasons": dict(Counter(p.get("admission_reason") for p in polls
                                                   if p.get("admission_reason"))),
        "budget_backlog_s_max": max(backlog, default=None),
        "spool_free_bytes_min": min(spool_free, default=None),
        "spool_reserved_bytes_max": max(spool_reserved, default=None),
    }


def breaker_json(data: RunData) -> dict[str, Any]:
    """The Notion breaker as the health polls saw it, and its openings in the relay log; with an
    outage (--outage-s), how long after Notion went down the breaker was first seen open."""
    polls = [p for p in data.polls if p["t"] >= data.load_started_at and p.get("breaker")]
    open_polls = [p["t"] for p in polls if p["breaker"] != "CLOSED"]
    down = data.outage_started_at
    first_open = min((t for t in open_polls if down is not None and t >= down), default=None)
    end = (data.health_end.get("components", {}).get("circuit_breakers") or {}).get("breakers") or [{}]
    return {
        "states_seen": dict(Counter(p["breaker"] for p in polls)),
        "not_closed_s": len(open_polls) * data.args.poll_interval,
        "notion_openings_in_log": data.relay_log.count("notion_api OPENED"),
        "outage_s": data.args.outage_s or None,
        "opened_after_outage_start_s": round(first_open - down, 2) if first_open is not None and down else None,
        "state_at_end": end[0].get("state"),
        "at_end": end[0],
    }


def timeline_json(data: RunData, step_s: float = 1.0) -> list[dict[str, Any]]:
    """Second by second from the clients' start: the slowest health poll, the CFS periods in
    which the relay's quota ran out, and what the relay said (intake paced, its CPU share, the
    loop's lag, the Notion breaker). Where the time of a slow poll went, without a profiler."""
    t0 = data.load_started_at
    polls = [p for p in data.polls if p["t"] >= t0]
    marks = data.sampler.cpu_marks if data.sampler else []
    dirty = data.sampler.dirty_marks if data.sampler else []
    end = max([p["t"] for p in polls] + [m[0] for m in marks] + [t0])
    rows = []
    for i in range(int((end - t0) / step_s) + 1):
        lo, hi = t0 + i * step_s, t0 + (i + 1) * step_s
        in_step = [p for p in polls if lo <= p["t"] < hi]
        ms = [p["latency_s"] * 1000 for p in in_step if "latency_s" in p]
        # Counters at the last sample before the step and the last one in it.
        before = [m for m in marks if m[0] < lo]
        upto = [m for m in marks if m[0] < hi]
        throttled = periods = None
        if before and upto:
            periods, throttled = upto[-1][1] - before[-1][1], upto[-1][2] - before[-1][2]
        rows.append({
            "s": round(i * step_s, 2), "polls": len(in_step),
            "health_max_ms": round(max(ms), 1) if ms else None,
            "throttled_periods": throttled, "periods": periods,
            "active_uploads": max((p.get("active_uploads") or 0 for p in in_step), default=None),
            "paced": any(p.get("intake_paced") for p in in_step),
            "cpu_share": max((p.get("cpu_share") or 0 for p in in_step), default=None),
            "intake_rate_mib_per_s": min((p["intake_rate_mib_per_s"] for p in in_step
                                          if p.get("intake_rate_mib_per_s") is not None), default=None),
            "loop_lag_max_ms": max((p.get("loop_lag_ms") or 0 for p in in_step), default=None),
            "dirty_mib_max": max((round(m[1] / MiB, 1) for m in dirty if lo <= m[0] < hi), default=None),
            "breaker": sorted({p["breaker"] for p in in_step if p.get("breaker")}),
        })
    return rows


def relay_log_json(data: RunData) -> dict[str, Any]:
    log = data.relay_log
    tail = log.splitlines()[-40:] if "Traceback" in log or data.relay_exit not in (0, None) else []
    return {"exit_code": data.relay_exit, "events": {e: log.count(e) for e in RELAY_EVENTS}, "tail": tail}


# --- printing ----------------------------------------------------------------------------------

def _mib(value: float | None, spec: str = ".1f") -> str:
    return "—" if value is None else format(value / MiB, spec)


def _f(value: float | None, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def setup_text(data: RunData) -> str:
    cg = data.cgroup
    lines = [f"cgroup {cg['version']} ({'constrained' if cg['constrained'] else 'UNCONSTRAINED'}):"]
    lines += [f"  {k}: {v}" for k, v in cg.get("paths", {}).items()]
    lines += [f"  {k} = {v}" for k, v in cg.get("applied", {}).items() if v is not None]
    lines += [f"  relay /proc/PID/cgroup: {line}" for line in data.relay_cgroup_text.splitlines()
              if re.search(r":(cpu|memory|):", line + ":") or line.startswith("0::")]
    perf = data.health_start.get("performance", {})
    lines.append(f"  relay detects: total_memory_limit_mb={perf.get('total_memory_limit_mb')} "
                 f"total_cpu_limit={perf.get('total_cpu_limit')}")
    total = sum(f.payload.size_bytes for f in data.files)
    a = data.args
    faults = (f"faults {a.fault_rate:.0%} of {','.join(a.fault_endpoints)} ({len(a.fault_kinds)} kinds, "
              f"{'for ' + format(a.fault_seconds, 'g') + ' s' if a.fault_seconds else 'whole run'})"
              if a.fault_rate > 0 else "no faults")
    lines.append(f"{len(data.files)} tus clients, {total / MiB:.0f} MiB, chunks of {a.chunk_size / MiB:g} MiB; "
                 f"{faults}; Notion rate limit {a.rate_limit}")
    return "\n".join(lines)


def text_report(doc: dict[str, Any]) -> str:
    up, tp, mem, cpu, rl, h = (doc[k] for k in ("uploads", "throughput", "memory", "cpu", "rate_limits", "health"))
    det, cg, em = doc["relay_detected"], doc["cgroup"], doc["emulator"]
    lines = ["", "dyno simulation", "---------------",
             f"cgroup         {cg['version']}, relay inside: {cg['relay_inside']}; applied {cg.get('applied')}",
             f"relay detects  memory {det['total_memory_limit_mb']} MB (matches: {det['memory_matches_cgroup']}), "
             f"CPU {det['total_cpu_limit']} (matches: {det['cpu_matches_cgroup']}); resource_manager at start: "
             f"{det['resource_manager_at_start']}",
             f"uploads        {up['completed']}/{up['clients']} completed, {up['verified']} sha256 verified, "
             f"{up['failed']} failed, {up['sha256_mismatches']} mismatched, {up['early_claims']} claimed early; "
             f"durations {_f(up['duration_s']['min'], '.1f')}–{_f(up['duration_s']['max'], '.1f')} s "
             f"(p50 {_f(up['duration_s']['p50'], '.1f')})",
             f"client retries {up['client_retries']}: {up['client_errors']}; refused at creation "
             f"{up['refused']} time(s) ({up['clients_refused']} clients)",
             f"admission      health said {h['admission_seen']} (refusing because {h['admission_refusing_reasons']}); "
             f"budget backlog max {_f(h['budget_backlog_s_max'], '.0f')} s; spool disk free min "
             f"{_mib(h['spool_free_bytes_min'], '.0f')} MiB, reserved max "
             f"{_mib(h['spool_reserved_bytes_max'], '.0f')} MiB",
             f"throughput     {_mib(tp['bytes_relayed'], '.0f')} MiB in {tp['wall_s']:.1f} s = "
             f"{_f(tp['mib_per_s'])} MiB/s"
             f" = {_f(tp['fraction_of_bound'])} × the budget bound {tp['bound_mib_per_s']:.1f} MiB/s "
             f"({tp['budget_per_s']:g} req/s × {tp['part_bytes'] / MiB:g} MiB); "
             f"{_f(tp['fraction_of_bound_with_burst'])} × {_f(tp['bound_with_burst_mib_per_s'], '.1f')} MiB/s "
             f"counting the initial burst of {tp['budget_capacity']}",
             f"               Notion requests {tp['notion_requests']}, sends {tp['sends']} "
             f"(parts needed {tp['sends_needed']}; sends are {_f(tp['sends_share_of_requests'])} of requests)",
             f"memory         relay peak RSS {_mib(mem['relay_peak_rss_bytes'])} MiB "
             f"(idle {_mib(mem['relay_idle_rss_bytes'])}); "
             f"cgroup max_usage {_mib(mem['cgroup_max_usage_bytes'])} MiB of {_mib(mem['limit_bytes'], '.0f')} "
             f"(sampled peaks: anon {_mib(mem['cgroup_peak_anon_sampled_bytes'])}, page cache "
             f"{_mib(mem['cgroup_peak_cache_sampled_bytes'])}); limit hits {mem['cgroup_limit_hits']}, "
             f"OOM kills {mem['cgroup_oom_kills']}; relay's own view max {h['relay_memory_usage_mb_max']} MB",
             f"CPU            relay {_f(cpu['relay_cpu_s'])} s ({_f(cpu['relay_user_s'])} user + "
             f"{_f(cpu['relay_system_s'])} sys)"
             f" = {_f(cpu['relay_cores_used'])} cores of {cpu['limit_cores']:g}; throttled "
             f"{cpu['cgroup_throttled_periods']}/{cpu['cgroup_periods']} periods "
             f"({_f(cpu['cgroup_throttled_s'], '.1f')} s)",
             f"429s           {rl['received_429']} received: {rl['injected_429']} injected, {rl['bucket_429']} from "
             f"Notion's bucket (must be 0); 529s {rl['received_529']}; the relay paused its budget "
             f"{rl['relay_budget_pauses']} times (after a 429 or a 529)",
             f"health         {h['polls']} polls every {h['interval_s']:g} s under load: "
             f"p50 {_f(h['p50_ms'], '.1f')} ms, "
             f"p99 {_f(h['p99_ms'], '.1f')} ms, max {_f(h['max_ms'], '.1f')} ms (idle baseline: p50 "
             f"{_f(h['idle_p50_ms'], '.1f')}, p99 {_f(h['idle_p99_ms'], '.1f')} ms over {h['idle_polls']} polls); "
             f"{h['failures']} not 200 ({h['timeouts']} timeouts): {h['outcomes']}",
             f"               relay said {h['relay_status_seen']} (not healthy for ~{h['not_healthy_s']:.0f} s); "
             f"resource states {h['resource_state_seen']}, workers {h['optimal_workers_range']}, "
             f"active uploads max {h['active_uploads_max']}",
             f"emulator       faults injected {em['faults_injected']}; max in flight {em['max_in_flight']}",
             f"               requests {json.dumps(em['requests'])}",
             f"relay log      exit {doc['relay_log']['exit_code']}, {doc['relay_log']['events']}",
             "", markdown_table(doc)]
    lines += [f"\nERROR {e}" for e in doc["errors"]]
    return "\n".join(lines)


def markdown_table(doc: dict[str, Any]) -> str:
    up, tp, mem, cpu, rl, h = (doc[k] for k in ("uploads", "throughput", "memory", "cpu", "rate_limits", "health"))
    det, cg = doc["relay_detected"], doc["cgroup"]
    rows = [
        ("cgroup", f"{cg['version']}: {doc['settings']['cpu_limit']:g} CPU, {_mib(mem['limit_bytes'], '.0f')} MiB; "
                   f"relay inside: {'yes' if cg['relay_inside'] else 'NO'}"),
        ("limits the relay detected (health)", f"{det['total_memory_limit_mb']} MB, {det['total_cpu_limit']} CPU"),
        ("uploads verified (sha256 at the emulator)",
         f"{up['verified']} / {up['clients']} ({up['failed']} failed, {up['sha256_mismatches']} mismatched)"),
        ("uploads refused at creation (503)", f"{up['refused']} ({up['clients_refused']} clients); relay in progress "
                                             f"max {h['active_uploads_max']}"),
        ("data relayed", f"{_mib(tp['bytes_relayed'], '.0f')} MiB in {tp['wall_s']:.1f} s"),
        ("throughput / budget bound", f"{_f(tp['mib_per_s'])} MiB/s / {tp['bound_mib_per_s']:.0f} MiB/s = "
                                      f"{_f(tp['fraction_of_bound'])} (with the initial burst: "
                                      f"{_f(tp['fraction_of_bound_with_burst'])})"),
        ("relay peak RSS", f"{_mib(mem['relay_peak_rss_bytes'])} MiB"),
        ("cgroup memory.max_usage_in_bytes (incl. page cache)", f"{_mib(mem['cgroup_max_usage_bytes'])} MiB; "
                                                               f"OOM kills {mem['cgroup_oom_kills']}"),
        ("relay CPU", f"{_f(cpu['relay_cpu_s'], '.1f')} s = {_f(cpu['relay_cores_used'])} of "
                      f"{cpu['limit_cores']:g} CPU; "
                      f"throttled in {cpu['cgroup_throttled_periods']} of {cpu['cgroup_periods']} periods"),
        ("429s received (injected / Notion's bucket)",
         f"{rl['received_429']} ({rl['injected_429']} / {rl['bucket_429']})"),
        ("health p50 / p99 / max under load",
         f"{_f(h['p50_ms'], '.0f')} / {_f(h['p99_ms'], '.0f')} / {_f(h['max_ms'], '.0f')} ms "
                                   f"({h['polls']} polls, {h['failures']} failed, {h['timeouts']} timed out)"),
        ("health p50 / p99 idle (same run)", f"{_f(h['idle_p50_ms'], '.0f')} / {_f(h['idle_p99_ms'], '.0f')} ms"),
        ("relay not healthy (health polls; breaker open)",
         f"~{h['not_healthy_s']:.0f} s; Notion breaker opened {doc['relay_log']['events'].get('OPENED', 0)} time(s)"),
        ("Notion requests (sends / needed parts)", f"{tp['notion_requests']} ({tp['sends']} / {tp['sends_needed']})"),
    ]
    return "\n".join(["| dyno run | result |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])


def markdown_report(doc: dict[str, Any]) -> str:
    s, host = doc["settings"], doc["host"]
    faults = s["faults"]
    command = "./run.sh bench dyno" + (f" --preset {s['preset']}" if s.get("preset") else "")
    lines = [f"Measured {doc['timestamp']} by `{command}` on {host['cpus']} CPUs ({host['platform']}, "
             f"Python {host['python']}, Tornado {host['tornado']}): {s['clients']} tus clients, "
             f"{s['total_bytes'] / MiB:.0f} MiB in all, tus chunks of {s['tus_chunk_bytes'] / MiB:g} MiB; "
             + (f"faults on {faults['rate']:.0%} of {', '.join(faults['endpoints'])} ({len(faults['kinds'])} kinds, "
                f"seed {faults['seed']}); " if faults else "no faults; ")
             + f"Notion rate limit {s['rate_limit']}.", "", markdown_table(doc), "",
             f"- {doc['throughput']['note']}."]
    lines += [f"- {'✅' if c['pass'] else '❌'} {c['name']}: {c['value']}" for c in doc["checks"]]
    if doc["errors"]:
        lines.append(f"- ❌ {len(doc['errors'])} error(s); see results-dyno.json.")
    return "\n".join(lines) + "\n"


# --- entry point -----------------------------------------------------------------------------

def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench dyno", description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="a named run: admission = 25 × 40 MiB at once, no faults (options given still win)")
    p.add_argument("--clients", type=int, default=DEFAULT_CLIENTS, help=f"concurrent tus clients ({DEFAULT_CLIENTS})")
    p.add_argument("--sizes", default=DEFAULT_SIZES, help=f"file sizes cycled over the clients ({DEFAULT_SIZES})")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every size (0.25 → about 256 MiB in all)")
    p.add_argument("--chunk-size", default=DEFAULT_CHUNK, help=f"tus PATCH size ({DEFAULT_CHUNK}; ≤ the part size)")
    p.add_argument("--cpu", type=float, default=DEFAULT_CPU, help=f"CPU quota in cores ({DEFAULT_CPU})")
    p.add_argument("--memory", default=DEFAULT_MEMORY, help=f"memory limit ({DEFAULT_MEMORY})")
    p.add_argument("--cgroup", choices=("auto", "v1", "v2", "none"), default="auto",
                   help="which cgroup version (auto: v1, else v2, else unconstrained with a warning)")
    p.add_argument("--rate-limit", default=NOTION_RATE_LIMIT,
                   help=f"Notion's limit N/W for the emulator ({NOTION_RATE_LIMIT});"
                   " the relay's budget is set to it only when it differs from the default")
    p.add_argument("--fault-rate", type=float, default=DEFAULT_FAULT_RATE, help="share of requests faulted (0 = none)")
    p.add_argument("--fault-kinds", default=",".join(ALL_FAULT_KINDS), help="fault kinds, equal weights")
    p.add_argument("--fault-endpoints", default=DEFAULT_FAULT_ENDPOINTS, help="emulator endpoints faulted")
    p.add_argument("--fault-seconds", type=float, default=0.0, help="clear the faults after this long (0: whole run)")
    p.add_argument("--fault-seed", type=int, default=DEFAULT_FAULT_SEED)
    p.add_argument("--outage-s", type=float, default=0.0,
                   help="Notion answers 503 to every request for this long (0: no outage)")
    p.add_argument("--outage-at", type=float, default=5.0, help="seconds after the clients start")
    p.add_argument("--stall-s", type=float, default=DEFAULT_STALL_S, help="a stalled request's silence")
    p.add_argument("--slow-s", type=float, default=DEFAULT_SLOW_S, help="a slow answer's delay")
    p.add_argument("--read-timeout", type=float, default=DEFAULT_READ_TIMEOUT_S, help="the relay's READ_TIMEOUT")
    p.add_argument("--connection-timeout", type=float, default=DEFAULT_CONNECTION_TIMEOUT_S,
                   help="the relay's CONNECTION_TIMEOUT")
    p.add_argument("--poll-interval", type=float, default=DEFAULT_POLL_INTERVAL_S, help="health poll interval (s)")
    p.add_argument("--idle-s", type=float, default=DEFAULT_IDLE_S,
                   help="poll the idle relay this long first: the health latency baseline")
    p.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_S, help="seconds every upload gets")
    p.add_argument("--out-dir", type=Path, default=ROOT / "bench",
                   help="where results-dyno.json/.md go (logs in OUT_DIR/out/dyno)")
    p.add_argument("--work-dir", type=Path, default=None, help="scratch space for the files (default: a temp dir)")
    preset = p.parse_known_args(argv)[0].preset
    if preset:
        p.set_defaults(**PRESETS[preset])
    args = p.parse_args(argv)
    try:
        args.sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
        args.chunk_size = parse_size(args.chunk_size)
        args.memory = parse_size(args.memory)
    except ValueError as exc:
        p.error(str(exc))
    args.fault_kinds = [k for k in args.fault_kinds.split(",") if k]
    args.fault_endpoints = [e for e in args.fault_endpoints.split(",") if e]
    if unknown := set(args.fault_kinds) - set(ALL_FAULT_KINDS):
        p.error(f"unknown fault kinds {sorted(unknown)}")
    if not args.sizes or args.clients < 1 or args.scale <= 0 or not 0 <= args.fault_rate <= 1 or args.cpu <= 0:
        p.error("need --sizes, --clients ≥ 1, --scale > 0, 0 ≤ --fault-rate ≤ 1 and --cpu > 0")
    if not re.fullmatch(r"\d+/\d+(\.\d+)?", args.rate_limit):
        p.error("--rate-limit is N/W, e.g. 180/60")
    return args


def results_name(args: argparse.Namespace) -> str:
    """results-dyno, or results-dyno-PRESET for a named run (so each keeps its last numbers)."""
    return "results-dyno" + (f"-{args.preset}" if args.preset else "")


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    data = run(args)
    doc = results_document(data)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    name = results_name(args)
    write_results(args.out_dir, name, doc, markdown_report(doc))
    print(text_report(doc))
    for c in doc["checks"]:
        print(f"[{'PASS' if c['pass'] else 'FAIL'}] {c['name']}: {c['value']}")
    print(f"\nwrote {args.out_dir / (name + '.json')} and {args.out_dir / (name + '.md')} "
          f"(logs in {args.out_dir / 'out' / 'dyno'})")
    if doc["errors"]:
        print(f"\nBENCHMARK FAILED: {len(doc['errors'])} error(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
