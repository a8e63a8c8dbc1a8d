"""The small-files benchmark: 300 files of 100 KiB–4 MiB from 25 tus clients at Notion's budget,
with batched appends on and off in the same run.

A small file costs the budget a create and a send; without batching each also costs its own
append, so at 180 requests a minute the budget, not the bytes, sets the pace. The same files go
through a fresh relay and emulator twice: once with the relay's defaults (appends of files
finishing for the same page within APPEND_BATCH_WINDOW_MS batched into one request) and once with
APPEND_BATCH_WINDOW_MS=0 (one append per file). Measured for each: files per minute (from the
first creation to the last completion), Notion requests per file and by endpoint (the emulator's
/_emulator/stats), 429s (none may come from Notion's bucket), per-file latency, the relay's CPU
(with its redis-server) and peak RSS. Every file is verified at the emulator (sha256, uploaded,
attached) and every upload must report its own block id.

    python -m bench small [--files 300] [--clients 25] [--min-size 100K] [--max-size 4M] …   (--help)
"""
from __future__ import annotations

import argparse
import math
import os
import queue
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import procs
from bench.big import host_json
from bench.payload import MiB, Payload, make_payload, parse_size
from bench.report import write_results
from bench.stack import NOTION_RATE_LIMIT, RelayStack, relay_cpu, relay_stack
from harness.tusclient import UploadResult, upload

DEFAULT_FILES = 300
DEFAULT_CLIENTS = 25
DEFAULT_MIN_SIZE = "100K"
DEFAULT_MAX_SIZE = "4M"
DEFAULT_SEED = 16
DEFAULT_DEADLINE_S = 1200.0
BATCH_SETTING = "APPEND_BATCH_WINDOW_MS"
# mode → the relay's environment: "on" is the relay's default, "off" turns batching off.
MODES: dict[str, dict[str, str]] = {"on": {}, "off": {BATCH_SETTING: "0"}}
# Targets (issue 16, "Done when").
TARGET_SPEEDUP = 1.4
TARGET_REQUESTS_PER_FILE = 2.2
PROGRESS_EVERY_S = 15.0


@dataclass
class FileOutcome:
    payload: Payload
    started_at: float = 0.0
    completed_at: float = 0.0
    result: UploadResult | None = None
    error: str | None = None
    verified: bool = False
    verify_error: str | None = None
    block_id: str | None = None

    @property
    def latency_s(self) -> float | None:
        return self.completed_at - self.started_at if self.completed_at else None


def file_sizes(count: int, low: int, high: int, seed: int) -> list[int]:
    """Log-uniform between low and high (as many small photos as large ones per octave)."""
    rng = random.Random(seed)
    return [int(math.exp(rng.uniform(math.log(low), math.log(high)))) for _ in range(count)]


def make_files(directory: Path, sizes: Sequence[int]) -> list[Payload]:
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for i, size in enumerate(sizes):
        p = make_payload(directory, f"s{i:03d}", size)
        # The emulator takes only Notion's file types: a .txt is text/plain.
        files.append(replace(p, path=p.path.rename(directory / f"small-{i:03d}.txt")))
    return files


def run_clients(stack: RelayStack, files: Sequence[Payload], clients: int, deadline_s: float) -> list[FileOutcome]:
    """`clients` threads, each taking the next file from one queue until none is left."""
    outcomes = [FileOutcome(f) for f in files]
    todo: queue.Queue[FileOutcome] = queue.Queue()
    for o in outcomes:
        todo.put(o)
    end = time.monotonic() + deadline_s

    def client() -> None:
        while True:
            try:
                o = todo.get_nowait()
            except queue.Empty:
                return
            o.started_at = time.monotonic()
            try:
                o.result = upload(stack.url, o.payload.path, 8 * MiB, deadline_s=max(1.0, end - o.started_at))
                o.completed_at = o.result.completed_at
            except Exception as exc:  # reported per file, never a crash
                o.error = f"{type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=client, name=f"small-client-{i}", daemon=True) for i in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    # Each client stops itself at the deadline; a request in flight may still take its own timeout.
    shown = t0
    while any(t.is_alive() for t in threads) and time.monotonic() < end + 150:
        time.sleep(0.2)
        if time.monotonic() - shown >= PROGRESS_EVERY_S:
            shown = time.monotonic()
            done, failed = sum(1 for o in outcomes if o.completed_at), sum(1 for o in outcomes if o.error)
            print(f"    t={shown - t0:5.0f} s: {done}/{len(outcomes)} files done, {failed} failed", flush=True)
    for o in outcomes:
        if not o.completed_at and o.error is None:
            o.error = "not finished before the benchmark's deadline"
    return outcomes


def verify(stack: RelayStack, outcomes: Sequence[FileOutcome]) -> None:
    for o in outcomes:
        if o.error or o.result is None:
            continue
        try:
            status = stack.status(o.result.url.rsplit("/", 1)[-1])
            if status.get("status") != "completed":
                raise AssertionError(f"the relay says {status.get('status')!r}: {status.get('error')}")
            stored = stack.emulator.upload(status["notion"]["file_upload_id"])
            if stored.get("sha256") != o.payload.sha256 or stored.get("size") != o.payload.size_bytes:
                raise AssertionError(f"SHA256 MISMATCH: emulator {stored.get('size')} B {stored.get('sha256')}, "
                                     f"sent {o.payload.size_bytes} B {o.payload.sha256}")
            if stored.get("status") != "uploaded" or not stored.get("attached_to"):
                raise AssertionError(f"emulator upload {stored.get('status')}, "
                                     f"attached to {stored.get('attached_to')}")
            o.block_id = status["notion"].get("block_id")
            if not o.block_id:
                raise AssertionError("the relay reports no block id for a file on a page")
            o.verified = True
        except Exception as exc:
            o.verify_error = f"{type(exc).__name__}: {exc}"


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def measure_mode(mode: str, files: Sequence[Payload], work: Path, logs: Path,
                 args: argparse.Namespace) -> dict[str, Any]:
    relay_env = dict(MODES[mode])
    if mode == "on" and args.window_ms is not None:
        relay_env[BATCH_SETTING] = str(args.window_ms)
    doc: dict[str, Any] = {"mode": mode, "relay_env": relay_env, "ok": False}
    # Sends count at their last byte: the later moment Notion might pick, the harder one for our pacing.
    emulator_args = ["--rate-limit", args.rate_limit, "--discard-files", "--count-sends-at-end"]
    print(f"  batching {mode}: {len(files)} files, {args.clients} clients …", flush=True)
    with relay_stack(work, logs, emulator_args=emulator_args, relay_env=relay_env, cgroup=args.cgroup,
                     name=f"small-{mode}") as stack:
        doc["cgroup"] = stack.describe()
        time.sleep(1.0)
        stack.emulator.reset_stats()
        t0 = time.monotonic()
        with procs.UsageMeter(stack.relay.pid) as meter:
            outcomes = run_clients(stack, files, args.clients, args.deadline)
        finished = [o.completed_at for o in outcomes if o.completed_at]
        wall = (max(finished) if finished else time.monotonic()) - t0
        stats = stack.emulator.stats()
        verify(stack, outcomes)
        health = stack.health()
        log = stack.relay.output()
    assert meter.usage is not None
    n = len(outcomes)
    verified = sum(1 for o in outcomes if o.verified)
    by_endpoint = stats.get("requests") or {}
    total = stats.get("requests_total") or 0
    attach = sum((by_endpoint.get("attach") or {}).values())
    latencies = [o.latency_s for o in outcomes if o.latency_s is not None]
    blocks = [o.block_id for o in outcomes if o.block_id]
    errors = Counter(" ".join(e.split()[:2]) for o in outcomes if o.result for e in o.result.errors)
    doc.update(
        ok=verified == n,
        files=n, bytes=sum(f.size_bytes for f in files), completed=len(finished), verified=verified,
        failed=sum(1 for o in outcomes if o.error), wall_s=wall,
        files_per_minute=verified / wall * 60 if wall else None,
        notion={"requests": by_endpoint, "requests_total": total, "requests_per_file": total / n if n else None,
                "appends": attach, "files_per_append": verified / attach if attach else None,
                "received_429": sum(o.get("429", 0) for o in by_endpoint.values()),
                "bucket_429": stats.get("rate_limited"),
                # At the budget's steady rate, what these requests per file allow.
                "budget_files_per_minute": _budget_rate(args.rate_limit) * 60 / (total / n) if total else None},
        latency_s={"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                   "max": max(latencies, default=None)},
        block_ids_distinct=len(set(blocks)) == len(blocks) == verified,
        client_retries=dict(errors.most_common()),
        cpu=relay_cpu(meter.usage).json(sum(f.size_bytes for f in files)),
        peak_rss_bytes=meter.usage.peak_rss_bytes,
        relay_budget_at_end=(health.get("components") or {}).get("request_budget"),
        relay_log_events={e: log.count(e) for e in ("UPLOAD_COMPLETE", "UPLOAD_FAILED", "PART_FAILURE", "Traceback")},
        errors=[f"{o.payload.path.name}: {o.error or o.verify_error}"
                for o in outcomes if o.error or o.verify_error][:20],
    )
    return doc


def _budget_rate(rate_limit: str) -> float:
    count, _, window = rate_limit.partition("/")
    return int(count) / float(window or 60)


# --- the document ------------------------------------------------------------------------------

def batching_setting_known() -> bool:
    """Whether this relay has the batching setting at all (settings.py names it)."""
    return BATCH_SETTING in (procs.ROOT / "settings.py").read_text()


def checks(doc: dict[str, Any]) -> list[dict[str, Any]]:
    modes = {m["mode"]: m for m in doc["modes"]}
    out = [{"name": f"batching {m['mode']}: every file verified, each with its own block id",
            "value": f"{m.get('verified')}/{m.get('files')}", "pass": m["ok"] and m.get("block_ids_distinct", False)}
           for m in doc["modes"]]
    out += [{"name": f"batching {m['mode']}: no 429 from Notion's bucket", "value": m["notion"]["bucket_429"],
             "pass": m["notion"]["bucket_429"] == 0} for m in doc["modes"] if "notion" in m]
    on, off = modes.get("on"), modes.get("off")
    if on and off and on.get("files_per_minute") and off.get("files_per_minute"):
        ratio = on["files_per_minute"] / off["files_per_minute"]
        doc["speedup"] = ratio
        out.append({"name": f"files per minute with batching ≥ {TARGET_SPEEDUP:g} × without (same run)",
                    "value": f"{on['files_per_minute']:.1f} / {off['files_per_minute']:.1f} = {ratio:.2f}×",
                    "pass": ratio >= TARGET_SPEEDUP})
    if on and "notion" in on:
        rpf = on["notion"]["requests_per_file"]
        out.append({"name": f"Notion requests per file with batching ≤ {TARGET_REQUESTS_PER_FILE:g}",
                    "value": f"{rpf:.2f}", "pass": rpf is not None and rpf <= TARGET_REQUESTS_PER_FILE})
    return out


def _f(value: float | None, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def markdown_table(doc: dict[str, Any]) -> str:
    lines = ["| batched appends | files verified | wall | files / minute | Notion requests / file | appends "
             "(files per append) | 429s (bucket) | latency p50 / p95 | relay CPU (+ redis) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in doc["modes"]:
        if "notion" not in m:
            lines.append(f"| {m['mode']} | FAILED | | | | | | | |")
            continue
        nt, lat, cpu = m["notion"], m["latency_s"], m["cpu"]
        lines.append(
            f"| {m['mode']} | {m['verified']}/{m['files']} | {m['wall_s']:.0f} s | {_f(m['files_per_minute'], '.1f')} "
            f"| {_f(nt['requests_per_file'])} | {nt['appends']} ({_f(nt['files_per_append'], '.1f')}) "
            f"| {nt['received_429']} ({nt['bucket_429']}) | {_f(lat['p50'], '.1f')} / {_f(lat['p95'], '.1f')} s "
            f"| {cpu['relay_cpu_s']:.1f} + {cpu['redis_cpu_s']:.1f} s |")
    return "\n".join(lines)


def markdown_report(doc: dict[str, Any]) -> str:
    s, host = doc["settings"], doc["host"]
    lines = [f"Measured {doc['timestamp']} by `./run.sh bench small` on {host['cpus']} CPUs ({host['platform']}, "
             f"Python {host['python']}): {s['files']} files of {s['min_size'] / 1024:.0f} KiB–"
             f"{s['max_size'] / MiB:g} MiB "
             f"({s['total_bytes'] / MiB:.0f} MiB, log-uniform, seed {s['seed']}) from {s['clients']} tus clients; "
             f"Notion's limit {s['rate_limit']}, the relay's default budget; relay cgroup {s['cgroup']}; "
             f"load average at start {host['loadavg_at_start']}.", "", markdown_table(doc), ""]
    if not doc["batching_setting_known"]:
        lines.append(f"- ⚠️ this relay has no {BATCH_SETTING} setting yet: both runs append one block per file, "
                     "so the ratio is about 1.")
    lines += [f"- {'✅' if c['pass'] else '❌'} {c['name']}: {c['value']}" for c in doc["checks"]]
    if doc["errors"]:
        lines.append(f"- ❌ {len(doc['errors'])} error(s); see results-small.json.")
    return "\n".join(lines) + "\n"


# --- entry point -------------------------------------------------------------------------------

def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench small", description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=DEFAULT_FILES, help=f"how many files ({DEFAULT_FILES})")
    p.add_argument("--clients", type=int, default=DEFAULT_CLIENTS,
                   help=f"concurrent tus clients ({DEFAULT_CLIENTS})")
    p.add_argument("--min-size", default=DEFAULT_MIN_SIZE, help=f"smallest file ({DEFAULT_MIN_SIZE})")
    p.add_argument("--max-size", default=DEFAULT_MAX_SIZE, help=f"largest file ({DEFAULT_MAX_SIZE})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the sizes")
    p.add_argument("--modes", default="on,off", help="batching on, off or both (on,off)")
    p.add_argument("--window-ms", type=int, default=None,
                   help=f"{BATCH_SETTING} for the run with batching on (default: the relay's own)")
    p.add_argument("--rate-limit", default=NOTION_RATE_LIMIT,
                   help=f"Notion's limit for the emulator ({NOTION_RATE_LIMIT})")
    p.add_argument("--cgroup", choices=("none", "auto", "v1", "v2"), default="auto",
                   help="the relay in a 0.2 CPU / 512 MB cgroup (auto: v1, else v2, else unconstrained) or not")
    p.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_S, help="seconds all files get, per mode")
    p.add_argument("--out-dir", type=Path, default=procs.ROOT / "bench", help="results-small.json/.md go here")
    p.add_argument("--work-dir", type=Path, default=None, help="scratch space for the files")
    p.add_argument("--strict", action="store_true", help="exit 2 when a target is missed")
    args = p.parse_args(argv)
    try:
        args.min_size, args.max_size = parse_size(args.min_size), parse_size(args.max_size)
    except ValueError as exc:
        p.error(str(exc))
    args.modes = [m for m in args.modes.split(",") if m]
    if set(args.modes) - set(MODES) or not args.modes or args.files < 1 or args.clients < 1:
        p.error("--modes is a subset of on,off; --files and --clients ≥ 1")
    if not 0 < args.min_size <= args.max_size:
        p.error("need 0 < --min-size ≤ --max-size")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    logs = args.out_dir / "out" / "small"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    work = Path(tempfile.mkdtemp(prefix="bench-small-", dir=args.work_dir))
    try:
        sizes = file_sizes(args.files, args.min_size, args.max_size, args.seed)
        print(f"writing {len(sizes)} files, {sum(sizes) / MiB:.0f} MiB …", flush=True)
        files = make_files(work / "files", sizes)
        os.sync()
        modes = []
        for mode in args.modes:
            try:
                modes.append(measure_mode(mode, files, work, logs, args))
            except Exception as exc:
                modes.append({"mode": mode, "ok": False, "errors": [f"{type(exc).__name__}: {exc}"]})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc: dict[str, Any] = {
        "benchmark": "small",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": host_json(load_at_start),
        "settings": {"files": args.files, "clients": args.clients, "min_size": args.min_size,
                     "max_size": args.max_size, "seed": args.seed, "total_bytes": sum(sizes),
                     "rate_limit": args.rate_limit, "cgroup": args.cgroup, "tus_client": "harness/tusclient.py"},
        "batching_setting_known": batching_setting_known(),
        "modes": modes,
    }
    doc["checks"] = checks(doc)
    doc["errors"] = [f"batching {m['mode']}: {e}" for m in modes for e in m.get("errors", [])]
    write_results(args.out_dir, "results-small", doc, markdown_report(doc))
    print("\n" + markdown_report(doc))
    print(f"wrote {args.out_dir / 'results-small.json'} and {args.out_dir / 'results-small.md'} (logs in {logs})")
    if doc["errors"]:
        print(f"\nBENCHMARK FAILED: {len(doc['errors'])} error(s)", file=sys.stderr)
        return 1
    if args.strict and not all(c["pass"] for c in doc["checks"]):
        return 2
    return 0
