"""The part-size study: the dyno simulation (bench/dyno.py: the relay in a 0.2 CPU / 512 MB cgroup,
25 tus clients, Notion's 180/60 limit, faults on part sends) run once per PART_SIZE_MB.

For each part size the same files go through a fresh stack. Measured:
- throughput (bytes verified / wall) and the bytes each Notion request carried: in steady state
  the budget (3 requests/s) times the bytes per request is the bound. The relay's budget starts
  empty (its bucket in Redis is drained before the clients start), so the bucket's initial
  burst, which would carry a whole run of large parts, does not decide the result;
- re-send cost under the faults: part sends beyond the plan's parts, and the bytes they carried
  again (what the emulator received minus the files' bytes), and how many faults hit sends;
- spool disk: the most bytes in part files at once (the spool directory sampled every 250 ms)
  and what admission reserved (health);
- memory: the relay's peak RSS, the cgroup's peak anonymous memory and page cache;
- the relay's CPU per GiB (its Redis runs outside, as in bench dyno).

    python -m bench partsize [--part-sizes 10,15,20] [--sizes 25M,50M,100M,200M] …   (--help)
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from bench import dyno
from bench.big import host_json
from bench.payload import MiB
from bench.report import write_results
from engine.upload.partplan import plan_parts
from harness.processes import ROOT

DEFAULT_PART_SIZES = "10,15,20"
DEFAULT_SIZES = "25M,50M,100M,200M"
DEFAULT_FAULT_RATE = 0.05
DEFAULT_FAULT_ENDPOINTS = "send"
BUDGET_KEY = "relay:budget"  # engine/budget.py SharedRequestBudget


class SpoolSampler:
    """The bytes in the relay's part files, every interval_s (a walk of a few dozen files)."""

    def __init__(self, spool: Path, interval_s: float = 0.25) -> None:
        self.spool = spool
        self.peak_bytes = 0
        self.peak_files = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="spool-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            total, files = 0, 0
            for root, _, names in os.walk(self.spool):
                for name in names:
                    if name.endswith(".part"):
                        try:
                            total += os.lstat(os.path.join(root, name)).st_size
                            files += 1
                        except OSError:
                            pass
            self.peak_bytes = max(self.peak_bytes, total)
            self.peak_files = max(self.peak_files, files)
            self.samples += 1


def drain_budget(redis_url: str) -> bool:
    """Empty the relay's shared request budget, as a relay busy with other uploads would find it."""
    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=5)
        seconds, micros = client.time()
        client.hset(BUDGET_KEY, mapping={"tokens": "0", "stamp": str(seconds + micros / 1e6), "paused_until": "0"})
        client.close()
        return True
    except redis.RedisError:
        return False


def run_part_size(part_mb: int, args: argparse.Namespace, work: Path, logs: Path) -> dict[str, Any]:
    dyno_argv = ["--clients", str(args.clients), "--sizes", args.sizes, "--scale", str(args.scale),
                 "--fault-rate", str(args.fault_rate), "--fault-endpoints", args.fault_endpoints,
                 "--deadline", str(args.deadline), "--out-dir", str(work / f"dyno-{part_mb}"),
                 "--work-dir", str(work)]
    dargs = dyno.parse_args(dyno_argv)
    seen: dict[str, Any] = {}
    original_env, original_measure = dyno.relay_env, dyno.measure

    # bench dyno's own steps, with the part size set for the relay, its spool sampled, and its
    # budget emptied just before the measurement (the clients start idle_s later).
    def relay_env(a: argparse.Namespace, emulator_url: str, redis_url: str, data_dir: Path) -> dict[str, str]:
        env = original_env(a, emulator_url, redis_url, data_dir)
        env["PART_SIZE_MB"] = str(part_mb)
        seen["redis_url"] = redis_url
        seen["spool"] = SpoolSampler(data_dir / "spool")
        return env

    def measure(data: dyno.RunData, *rest: Any) -> None:
        seen["drained"] = drain_budget(seen["redis_url"]) if args.drain else False
        original_measure(data, *rest)

    dyno.relay_env, dyno.measure = relay_env, measure
    try:
        print(f"  PART_SIZE_MB={part_mb}: {args.clients} clients …", flush=True)
        data = dyno.run(dargs)
    finally:
        dyno.relay_env, dyno.measure = original_env, original_measure
        if "spool" in seen:
            seen["spool"].stop()
    doc = dyno.results_document(data)
    shutil.copytree(work / f"dyno-{part_mb}" / "out" / "dyno", logs / f"part-{part_mb}", dirs_exist_ok=True)
    return summarize(part_mb, data, doc, seen)


def summarize(part_mb: int, data: dyno.RunData, doc: dict[str, Any], seen: dict[str, Any]) -> dict[str, Any]:
    part = part_mb * MiB
    plans = [plan_parts(f.payload.size_bytes, part) for f in data.files]
    total = sum(f.payload.size_bytes for f in data.files)
    up, tp, mem, cpu, em = doc["uploads"], doc["throughput"], doc["memory"], doc["cpu"], doc["emulator"]
    requests = em.get("requests") or {}
    sends = sum((requests.get("send") or {}).values())
    needed = sum(p.number_of_parts for p in plans)
    faults = em.get("faults_injected") or {}
    wall = tp["wall_s"]
    relayed = tp["bytes_relayed"]
    total_requests = em.get("requests_total") or 0
    spool: SpoolSampler | None = seen.get("spool")
    per_s = tp["budget_per_s"]
    return {
        "part_size_mb": part_mb, "verified": up["verified"], "clients": up["clients"], "failed": up["failed"],
        "total_bytes": total, "wall_s": wall, "mib_per_s": tp["mib_per_s"],
        "budget_drained_at_start": seen.get("drained"),
        "notion_requests": total_requests, "requests_needed": needed + sum(3 if p.is_multipart else 2 for p in plans),
        "mib_per_request": relayed / MiB / total_requests if total_requests else None,
        "budget_bound_mib_per_s": per_s * relayed / MiB / total_requests if total_requests else None,
        "budget_bound_full_parts_mib_per_s": per_s * part_mb,
        "fraction_of_budget_bound": (tp["mib_per_s"] / (per_s * relayed / MiB / total_requests)
                                     if tp["mib_per_s"] and total_requests else None),
        "sends": sends, "sends_needed": needed, "resends": sends - needed,
        "faults_injected": sum(faults.values()) if isinstance(faults, dict) else faults,
        "bytes_received_by_notion": em.get("bytes_received"),
        "bytes_resent": (em.get("bytes_received") or 0) - total,
        "resent_share": ((em.get("bytes_received") or 0) - total) / total if total else None,
        "spool_peak_bytes": spool.peak_bytes if spool else None,
        "spool_peak_files": spool.peak_files if spool else None,
        "spool_reserved_max_bytes": doc["health"].get("spool_reserved_bytes_max"),
        "relay_peak_rss_bytes": mem.get("relay_peak_rss_bytes"),
        "cgroup_peak_anon_bytes": mem.get("cgroup_peak_anon_sampled_bytes"),
        "cgroup_peak_cache_bytes": mem.get("cgroup_peak_cache_sampled_bytes"),
        "cgroup_max_usage_bytes": mem.get("cgroup_max_usage_bytes"), "cgroup_limit_hits": mem.get("cgroup_limit_hits"),
        "relay_cpu_s": cpu.get("relay_cpu_s"),
        "relay_cpu_s_per_gib": cpu["relay_cpu_s"] * 2**30 / relayed if cpu.get("relay_cpu_s") and relayed else None,
        "cpu_throttled_periods": cpu.get("cgroup_throttled_periods"), "cpu_periods": cpu.get("cgroup_periods"),
        "bucket_429": doc["rate_limits"].get("bucket_429"),
        "health_p99_ms": doc["health"].get("p99_ms"),
        "errors": doc["errors"],
    }


def _f(value: float | None, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def _mib(value: float | None, spec: str = ".0f") -> str:
    return "—" if value is None else format(value / MiB, spec)


def markdown_table(doc: dict[str, Any]) -> str:
    lines = ["| PART_SIZE_MB | verified | throughput | MiB per Notion request | of the budget bound | part sends "
             "(re-sends; faults) | bytes re-sent | spool peak (reserved) | relay peak RSS | cgroup anon / cache "
             "| relay CPU s/GiB (throttled periods) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["runs"]:
        lines.append(
            f"| {r['part_size_mb']} | {r['verified']}/{r['clients']} | {_f(r['mib_per_s'], '.1f')} MiB/s "
            f"| {_f(r['mib_per_request'])} | {_f(r['fraction_of_budget_bound'])} "
            f"| {r['sends']} ({r['resends']}; {r['faults_injected']}) | {_mib(r['bytes_resent'])} MiB "
            f"({_f(100 * r['resent_share'] if r['resent_share'] is not None else None, '.1f')} %) "
            f"| {_mib(r['spool_peak_bytes'])} MiB ({_mib(r['spool_reserved_max_bytes'])}) "
            f"| {_mib(r['relay_peak_rss_bytes'], '.1f')} MiB | {_mib(r['cgroup_peak_anon_bytes'])} / "
            f"{_mib(r['cgroup_peak_cache_bytes'])} MiB | {_f(r['relay_cpu_s_per_gib'])} "
            f"({r['cpu_throttled_periods']}/{r['cpu_periods']}) |")
    return "\n".join(lines)


def markdown_report(doc: dict[str, Any]) -> str:
    s, host = doc["settings"], doc["host"]
    lines = [f"Measured {doc['timestamp']} by `./run.sh bench partsize` on {host['cpus']} CPUs ({host['platform']}): "
             f"the dyno simulation (0.2 CPU, 512 MB cgroup), {s['clients']} tus clients, sizes {s['sizes']} cycled "
             f"(× {s['scale']:g}, {s['total_bytes'] / MiB:.0f} MiB in all), Notion's limit 180/60 with the relay's "
             f"budget {'drained' if s['drain'] else 'full'} at the start, {s['fault_rate']:.0%} faults on "
             f"{s['fault_endpoints']}; load average at start {host['loadavg_at_start']}.", "", markdown_table(doc), ""]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench partsize", description=__doc__.splitlines()[0])
    p.add_argument("--part-sizes", default=DEFAULT_PART_SIZES, help=f"PART_SIZE_MB values ({DEFAULT_PART_SIZES})")
    p.add_argument("--clients", type=int, default=dyno.DEFAULT_CLIENTS)
    p.add_argument("--sizes", default=DEFAULT_SIZES, help=f"file sizes cycled over the clients ({DEFAULT_SIZES})")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--fault-rate", type=float, default=DEFAULT_FAULT_RATE)
    p.add_argument("--fault-endpoints", default=DEFAULT_FAULT_ENDPOINTS,
                   help=f"faulted endpoints ({DEFAULT_FAULT_ENDPOINTS}: re-sends are what part size changes)")
    p.add_argument("--no-drain", dest="drain", action="store_false",
                   help="start with the relay's budget full (the burst then carries much of a short run)")
    p.add_argument("--deadline", type=float, default=dyno.DEFAULT_DEADLINE_S)
    p.add_argument("--out-dir", type=Path, default=ROOT / "bench", help="results-partsize.json/.md go here")
    p.add_argument("--work-dir", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        args.part_sizes = [int(x) for x in args.part_sizes.split(",") if x]
    except ValueError:
        p.error("--part-sizes: whole MiB, e.g. 10,15,20")
    if not args.part_sizes or not all(5 <= x <= 20 for x in args.part_sizes):
        p.error("--part-sizes: between 5 and 20 (Notion's part rules)")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    logs = args.out_dir / "out" / "partsize"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    work = Path(tempfile.mkdtemp(prefix="bench-partsize-", dir=args.work_dir))
    runs = []
    try:
        for part_mb in args.part_sizes:
            runs.append(run_part_size(part_mb, args, work, logs))
            time.sleep(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc: dict[str, Any] = {
        "benchmark": "partsize",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": host_json(load_at_start),
        "settings": {"part_sizes_mb": args.part_sizes, "clients": args.clients, "sizes": args.sizes,
                     "scale": args.scale, "fault_rate": args.fault_rate, "fault_endpoints": args.fault_endpoints,
                     "drain": args.drain, "total_bytes": runs[0]["total_bytes"] if runs else None},
        "runs": runs,
    }
    doc["errors"] = [f"PART_SIZE_MB={r['part_size_mb']}: {e}" for r in runs for e in r["errors"]]
    write_results(args.out_dir, "results-partsize", doc, markdown_report(doc))
    print("\n" + markdown_report(doc))
    print(f"wrote {args.out_dir / 'results-partsize.json'} and {args.out_dir / 'results-partsize.md'}")
    if doc["errors"]:
        print("\nBENCHMARK FAILED:\n" + "\n".join(doc["errors"]), file=sys.stderr)
        return 1
    return 0
