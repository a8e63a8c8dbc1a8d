"""The memory and CPU benchmark: the relay against the floor of any Tornado + libcurl design.

For each size the same bytes go through three subjects, each a fresh process measured from
outside (procs.UsageMeter):

- sink:  a bare Tornado @stream_request_body app writing the PUT body to disk;
- curl:  a bare libcurl uploader sending the pre-cut part files to the emulator;
- relay: server.py, receiving the PUT on /api/upload/{id} and forwarding it to the emulator; its
         CPU includes its embedded redis-server's (a child process on the same dyno).

floor = sink + curl CPU per GiB; the relay's ratio to it is the number that matters, because
both are measured in the same run on the same (shared, noisy) machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pycurl
import tornado

from bench import procs
from bench.baselines import CURL_RESULT_PREFIX
from bench.client import Http
from bench.payload import (
    DEFAULT_PART_BYTES,
    GiB,
    MiB,
    Payload,
    make_payload,
    parse_size,
    sha256_of,
    split_parts,
)
from bench.report import write_results

FILENAME = "bench.txt"
CONTENT_TYPE = "text/plain"
SUBJECTS = ("sink", "curl", "relay")
DEFAULT_SIZES = "100M,1G"
# Shared machines are noisy: the least disturbed of three interleaved runs is the estimate.
DEFAULT_REPEAT = 3

# The targets of the issue ("Done when"); checked on the largest and smallest sizes of the run.
RELAY_PEAK_RSS_MAX_MIB = 64.0
RELAY_RSS_FLATNESS_MIB = 5.0
RELAY_CPU_OVER_FLOOR_MAX = 1.5

# A whole upload gets this long before the benchmark gives up on it.
BASE_TIMEOUT_S = 120.0
MIN_BYTES_PER_S = 2 * MiB


class BenchError(Exception):
    """A subject failed to take the bytes or to deliver them intact."""


@dataclass(frozen=True)
class Measurement:
    subject: str
    size_label: str
    size_bytes: int
    run: int
    usage: procs.Usage | None
    error: str | None = None

    @property
    def cpu_s_per_gib(self) -> float | None:
        """The process's CPU and its children's: the relay's embedded redis-server is part of its cost."""
        return (self.usage.cpu_s + self.usage.children_cpu_s) * GiB / self.size_bytes if self.usage else None


# --- one subject each ----------------------------------------------------------------------

def measure_sink(payload: Payload, work: Path, logs: Path, chunked: bool = False) -> procs.Usage:
    """chunked: the body with Transfer-Encoding: chunked (as the relay's chunked PUT gets it)."""
    out_dir = work / "sink"
    sink, url = procs.start_sink(out_dir, logs)
    try:
        _settle()
        with Http() as http, procs.UsageMeter(sink.pid) as meter:
            if chunked:
                answer = http.send_body("PUT", f"{url}/sink/{FILENAME}", payload.path, chunked=True,
                                        timeout_s=_timeout_s(payload))
            else:
                answer = http.put_file(f"{url}/sink/{FILENAME}", payload.path, payload.size_bytes,
                                       _timeout_s(payload))
        _expect(answer.status == 200, f"sink answered HTTP {answer.status}: {answer.body[:300]!r}")
        _expect_sha256(payload, sha256_of(out_dir / FILENAME), "the sink's file")
        assert meter.usage is not None
        return meter.usage
    finally:
        procs.stop_all([sink])
        shutil.rmtree(out_dir, ignore_errors=True)


def measure_curl(payload: Payload, parts: Sequence[Path], work: Path, logs: Path) -> procs.Usage:
    with procs.running_emulator(work / "emulator", logs) as emulator_url:
        args = ["--api", emulator_url, "--token", procs.EMULATOR_TOKEN, "--filename", FILENAME,
                "--content-type", CONTENT_TYPE, *map(str, parts)]
        uploader = procs.start_curl_uploader(args, logs)
        try:
            _settle()
            with procs.UsageMeter(uploader.pid) as meter:
                uploader.signal(signal.SIGUSR1)
                line = procs.wait_for_line(uploader, CURL_RESULT_PREFIX, _timeout_s(payload))
            result = json.loads(line)
            _expect(result["ok"], f"bare libcurl upload failed: {result.get('error')}")
            _verify_in_emulator(payload, emulator_url, result["file_upload_id"])
            assert meter.usage is not None
            return meter.usage
        finally:
            procs.stop_all([uploader])


def measure_relay(payload: Payload, work: Path, logs: Path) -> procs.Usage:
    with procs.running_emulator(work / "emulator", logs) as emulator_url:
        try:
            relay, url = procs.start_relay(emulator_url, work / "relay", logs, DEFAULT_PART_BYTES // MiB)
        except Exception as exc:
            raise BenchError(f"the relay did not start: {exc}") from exc
        helpers = procs.children_of(relay.pid)
        try:
            with Http() as http:
                _settle()
                with procs.UsageMeter(relay.pid) as meter:
                    upload_id = _relay_create(http, url, payload)
                    answer = http.put_file(f"{url}/api/upload/{upload_id}", payload.path,
                                           payload.size_bytes, _timeout_s(payload))
                _expect(answer.status == 200 and answer.json().get("status") == "completed",
                        f"PUT /api/upload/{upload_id}: HTTP {answer.status}: {answer.body[:500]!r}")
                file_upload_id = _relay_notion_id(http, url, upload_id)
            _verify_in_emulator(payload, emulator_url, file_upload_id)
            assert meter.usage is not None
            return meter.usage
        except Exception as exc:
            raise BenchError(f"{exc}\n--- relay log (tail) ---\n{relay.output()[-3000:]}") from exc
        finally:
            procs.stop_all([relay])
            procs.kill_leftovers(helpers)
            shutil.rmtree(work / "relay", ignore_errors=True)


def _relay_create(http: Http, url: str, payload: Payload) -> str:
    body = {"filename": FILENAME, "fileSize": payload.size_bytes, "contentType": CONTENT_TYPE}
    answer = http.json("POST", f"{url}/api/upload/create-session", body)
    _expect(answer.status in (200, 201),
            f"POST /api/upload/create-session: HTTP {answer.status}: {answer.body[:500]!r}")
    upload_id = answer.json().get("upload_id")
    _expect(bool(upload_id), f"create-session gave no upload_id: {answer.body[:500]!r}")
    return str(upload_id)


def _relay_notion_id(http: Http, url: str, upload_id: str) -> str:
    answer = http.json("GET", f"{url}/api/upload/status/{upload_id}")
    _expect(answer.status == 200, f"GET /api/upload/status/{upload_id}: HTTP {answer.status}")
    notion = answer.json().get("notion") or {}
    _expect(bool(notion.get("file_upload_id")),
            f"status of {upload_id} names no notion.file_upload_id: {answer.body[:500]!r}")
    return str(notion["file_upload_id"])


def _verify_in_emulator(payload: Payload, emulator_url: str, file_upload_id: str) -> None:
    with Http() as http:
        answer = http.json("GET", f"{emulator_url}/_emulator/uploads/{file_upload_id}")
    _expect(answer.status == 200, f"emulator has no upload {file_upload_id}: HTTP {answer.status}")
    doc = answer.json()
    _expect(doc.get("status") in (None, "uploaded"), f"emulator upload {file_upload_id} is {doc.get('status')!r}")
    _expect_sha256(payload, doc.get("sha256"), f"Notion upload {file_upload_id} in the emulator")


def _expect_sha256(payload: Payload, actual: str | None, what: str) -> None:
    _expect(actual == payload.sha256,
            f"SHA256 MISMATCH for {what}: got {actual}, sent {payload.sha256} ({payload.label})")


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise BenchError(message)


def _settle() -> None:
    """Flush dirty pages before a measurement: writeback left by the previous step (test data,
    another subject's files) would otherwise compete with the subject measured next."""
    os.sync()


def _timeout_s(payload: Payload) -> float:
    return BASE_TIMEOUT_S + payload.size_bytes / MIN_BYTES_PER_S


# --- one size, all subjects ----------------------------------------------------------------

def run_size(payload: Payload, work: Path, logs: Path, repeat: int, subjects: Sequence[str]) -> list[Measurement]:
    """Each subject `repeat` times, interleaved so that a noisy minute hits all of them."""
    parts = split_parts(payload, work / "parts") if "curl" in subjects else []
    # Each measurement starts its own processes (an emulator too) and deletes what they stored,
    # so no run inherits the previous one's files, page cache or rate-limit bucket.
    actions: dict[str, Callable[[], procs.Usage]] = {
        "sink": lambda: measure_sink(payload, work, logs),
        "curl": lambda: measure_curl(payload, parts, work, logs),
        "relay": lambda: measure_relay(payload, work, logs),
    }
    try:
        return [_measure(subject, payload, run, actions[subject])
                for run in range(1, repeat + 1) for subject in subjects]
    finally:
        shutil.rmtree(work / "parts", ignore_errors=True)


def _measure(subject: str, payload: Payload, run: int, action: Callable[[], procs.Usage]) -> Measurement:
    print(f"  {payload.label:>6} {subject:<5} run {run} …", end=" ", flush=True)
    try:
        usage = action()
    except Exception as exc:  # every failure becomes a reported result, never a trace
        print("FAILED", flush=True)
        return Measurement(subject, payload.label, payload.size_bytes, run, None, f"{type(exc).__name__}: {exc}")
    redis = f" + {usage.children_cpu_s:.2f} s its children's" if usage.children_cpu_s else ""
    print(f"{usage.cpu_s:.2f} s CPU{redis}, peak RSS {usage.peak_rss_bytes / MiB:.1f} MiB", flush=True)
    return Measurement(subject, payload.label, payload.size_bytes, run, usage)


# --- summary, checks, output ---------------------------------------------------------------

def summarize(measurements: Sequence[Measurement], payloads: Sequence[Payload]) -> list[dict[str, Any]]:
    """Per size: the least-disturbed CPU (min over runs) and the worst peak RSS (max over runs)."""
    rows = []
    for p in payloads:
        row: dict[str, Any] = {"size": p.label, "size_bytes": p.size_bytes}
        for subject in SUBJECTS:
            ok = [m for m in measurements if m.size_label == p.label and m.subject == subject and m.usage]
            cpu = [m.cpu_s_per_gib for m in ok]
            row[f"{subject}_cpu_s_per_gib"] = min(cpu, default=None)
            # The spread shows how noisy the machine was; a wide one calls for more --repeat.
            row[f"{subject}_cpu_s_per_gib_max"] = max(cpu, default=None)
            row[f"{subject}_peak_rss_mib"] = max((m.usage.peak_rss_bytes / MiB for m in ok), default=None)
        sink, curl, relay = (row[f"{s}_cpu_s_per_gib"] for s in SUBJECTS)
        row["floor_cpu_s_per_gib"] = sink + curl if sink is not None and curl is not None else None
        row["relay_over_floor"] = (relay / row["floor_cpu_s_per_gib"]
                                   if relay is not None and row["floor_cpu_s_per_gib"] else None)
        rows.append(row)
    return rows


def checks(summary: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, on the largest size (and the smallest, for flatness)."""
    small, large = summary[0], summary[-1]
    peak = large["relay_peak_rss_mib"]
    ratio = large["relay_over_floor"]
    out = [
        _check(f"relay peak RSS at {large['size']} ≤ {RELAY_PEAK_RSS_MAX_MIB:g} MiB",
               peak, peak is not None and peak <= RELAY_PEAK_RSS_MAX_MIB, "MiB"),
        _check(f"relay CPU per GiB at {large['size']} ≤ {RELAY_CPU_OVER_FLOOR_MAX:g} × (sink + curl)",
               ratio, ratio is not None and ratio <= RELAY_CPU_OVER_FLOOR_MAX, "×"),
    ]
    if small is not large:
        base = small["relay_peak_rss_mib"]
        growth = peak - base if peak is not None and base is not None else None
        out.insert(1, _check(
            f"relay peak RSS at {large['size']} within {RELAY_RSS_FLATNESS_MIB:g} MiB of {small['size']}",
            growth, growth is not None and abs(growth) <= RELAY_RSS_FLATNESS_MIB, "MiB"))
    return out


def _check(name: str, value: float | None, passed: bool, unit: str) -> dict[str, Any]:
    # pass is None when the run did not measure what the check needs.
    return {"name": name, "value": value, "unit": unit, "pass": passed if value is not None else None}


_VERDICT = {True: ("PASS", "✅"), False: ("FAIL", "❌"), None: ("n/a ", "➖")}


def results_document(
    payloads: Sequence[Payload], measurements: Sequence[Measurement], repeat: int, load_at_start: Sequence[float],
) -> dict[str, Any]:
    summary = summarize(measurements, payloads)
    return {
        "benchmark": "memory",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "tornado": tornado.version,
            "libcurl": pycurl.version,
            # Load from other work on the machine when the run started (before our processes).
            "loadavg_at_start": load_at_start,
        },
        "settings": {"repeat": repeat, "sample_interval_s": 0.05, "filename": FILENAME,
                     "content_type": CONTENT_TYPE, "malloc_env": procs.MALLOC_ENV},
        "sizes": [{"label": p.label, "bytes": p.size_bytes, "sha256": p.sha256, "mode": p.plan.mode,
                   "part_size_bytes": p.plan.part_size, "number_of_parts": p.plan.number_of_parts}
                  for p in payloads],
        "measurements": [_measurement_json(m) for m in measurements],
        "summary": summary,
        "checks": checks(summary),
        "errors": [f"{m.subject} {m.size_label} run {m.run}: {m.error}" for m in measurements if m.error],
    }


def _measurement_json(m: Measurement) -> dict[str, Any]:
    doc: dict[str, Any] = {"subject": m.subject, "size": m.size_label, "size_bytes": m.size_bytes,
                           "run": m.run, "ok": m.error is None, "error": m.error}
    if m.usage:
        doc.update(asdict(m.usage))
        doc["cpu_s_per_gib"] = m.cpu_s_per_gib
        doc["mib_per_s"] = m.size_bytes / MiB / m.usage.wall_s if m.usage.wall_s else None
    return doc


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def text_report(doc: dict[str, Any]) -> str:
    lines = ["", "size    subject  run  CPU s (user+sys)    children CPU s  CPU s/GiB  wall s   MiB/s  idle RSS  "
             "peak RSS  children RSS",
             "------  -------  ---  ------------------  --------------  ---------  ------  ------  --------  "
             "--------  ------------"]
    for m in doc["measurements"]:
        if not m["ok"]:
            lines.append(f"{m['size']:<6}  {m['subject']:<7}  FAILED (run {m['run']}): {m['error'].splitlines()[0]}")
            continue
        lines.append(
            f"{m['size']:<6}  {m['subject']:<7}  {m['run']:3d}  "
            f"{m['cpu_s']:6.2f} ({m['user_s']:4.2f}+{m['system_s']:4.2f})  {m['children_cpu_s']:14.2f}  "
            f"{m['cpu_s_per_gib']:9.2f}  "
            f"{m['wall_s']:6.1f}  {_fmt(m['mib_per_s'], '6.1f')}  {m['idle_rss_bytes'] / MiB:8.1f}  "
            f"{m['peak_rss_bytes'] / MiB:8.1f}  {m['children_peak_rss_bytes'] / MiB:12.1f}")
    lines += ["", "RSS in MiB. CPU s/GiB counts children (the relay's redis-server). floor = sink + curl CPU s/GiB "
              "(min over runs); peak = max over runs.",
              f"Load average when the run started: {doc['host']['loadavg_at_start']} "
              f"on {doc['host']['cpus']} CPUs (other work on the machine inflates CPU times).", ""]
    for row in doc["summary"]:
        spread = ", ".join(f"{s} {_fmt(row[f'{s}_cpu_s_per_gib'])}–{_fmt(row[f'{s}_cpu_s_per_gib_max'])}"
                           for s in SUBJECTS)
        lines.append(f"{row['size']}: CPU s/GiB min–max over runs: {spread}")
    lines += ["", markdown_table(doc), ""]
    lines += [f"[{_VERDICT[c['pass']][0]}] {c['name']}: {_fmt(c['value'])} {c['unit']}"
              for c in doc["checks"]]
    for error in doc["errors"]:
        lines += ["", f"ERROR {error}"]
    return "\n".join(lines)


def markdown_table(doc: dict[str, Any]) -> str:
    lines = ["| upload | relay peak RSS (MiB) | relay CPU s/GiB | sink CPU s/GiB | libcurl CPU s/GiB "
             "| floor (sink + libcurl) | relay / floor |",
             "|---|---|---|---|---|---|---|"]
    for row in doc["summary"]:
        ratio = row["relay_over_floor"]
        lines.append(
            f"| {row['size']} | {_fmt(row['relay_peak_rss_mib'], '.1f')} | {_fmt(row['relay_cpu_s_per_gib'])} "
            f"| {_fmt(row['sink_cpu_s_per_gib'])} | {_fmt(row['curl_cpu_s_per_gib'])} "
            f"| {_fmt(row['floor_cpu_s_per_gib'])} | {_fmt(ratio)}{'' if ratio is None else '×'} |")
    return "\n".join(lines)


def markdown_report(doc: dict[str, Any]) -> str:
    host = doc["host"]
    lines = [f"Measured {doc['timestamp']} by `./run.sh bench memory` on {host['cpus']} CPUs "
             f"({host['platform']}, Python {host['python']}, Tornado {host['tornado']}); "
             f"CPU is user + system seconds per GiB relayed (the relay with its redis-server), "
             f"the min of {doc['settings']['repeat']} run(s).",
             "", markdown_table(doc), ""]
    lines += [f"- {_VERDICT[c['pass']][1]} {c['name']}: {_fmt(c['value'])} {c['unit']}" for c in doc["checks"]]
    if doc["errors"]:
        lines += ["", f"- ❌ {len(doc['errors'])} measurement(s) failed; see results.json."]
    return "\n".join(lines) + "\n"


# --- entry point ---------------------------------------------------------------------------

def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench memory", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated, e.g. 100M,1G (binary units)")
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT,
                        help=f"runs per subject and size (default {DEFAULT_REPEAT})")
    parser.add_argument("--subjects", default=",".join(SUBJECTS), help="a subset of sink,curl,relay")
    parser.add_argument("--out-dir", type=Path, default=procs.ROOT / "bench",
                        help="where results.json and results.md go (logs in OUT_DIR/out/logs)")
    parser.add_argument("--work-dir", type=Path, default=None, help="scratch space (default: a temp dir)")
    parser.add_argument("--strict", action="store_true", help="exit 2 when a target is missed")
    args = parser.parse_args(argv)
    args.subjects = [s for s in args.subjects.split(",") if s]
    unknown = set(args.subjects) - set(SUBJECTS)
    if unknown or args.repeat < 1:
        parser.error(f"unknown subjects {sorted(unknown)}" if unknown else "--repeat must be ≥ 1")
    try:
        labels = [s.strip() for s in args.sizes.split(",") if s.strip()]
        args.sizes = sorted(((label, parse_size(label)) for label in labels), key=lambda s: s[1])
    except ValueError as exc:
        parser.error(str(exc))
    if not args.sizes:
        parser.error("--sizes needs at least one size")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    logs = args.out_dir / "out" / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    work_root = Path(tempfile.mkdtemp(prefix="bench-memory-", dir=args.work_dir))
    payloads: list[Payload] = []
    measurements: list[Measurement] = []
    try:
        for label, size in args.sizes:
            work = work_root / label
            work.mkdir()
            print(f"{label}: writing {size / MiB:.0f} MiB of test data …", flush=True)
            payload = make_payload(work, label, size)
            payloads.append(payload)
            measurements += run_size(payload, work, logs, args.repeat, args.subjects)
            shutil.rmtree(work, ignore_errors=True)
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
    return results_document(payloads, measurements, args.repeat, load_at_start)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    doc = run(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_results(args.out_dir, "results", doc, markdown_report(doc))
    print(text_report(doc))
    print(f"\nwrote {args.out_dir / 'results.json'} and {args.out_dir / 'results.md'}")
    if doc["errors"]:
        print(f"\nBENCHMARK FAILED: {len(doc['errors'])} measurement(s) did not complete or did not verify "
              f"(logs in {args.out_dir / 'out' / 'logs'})", file=sys.stderr)
        return 1
    if args.strict and not all(c["pass"] for c in doc["checks"]):  # n/a counts as missed
        return 2
    return 0
