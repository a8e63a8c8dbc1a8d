"""The big-file benchmark: one 5 GiB file through the relay by tus and by the chunked PUT,
against Notion's request budget (the emulator at 180/60 with --discard-files).

Measured for each protocol, in one run:
- the relay's peak RSS (psutil every 50 ms and the kernel's VmHWM);
- the time from the first request to the answer that says Notion holds the file, against the
  budget floor: the least time Notion's bucket (180 tokens, 3 per second) lets the upload's
  requests through (create + parts + complete + append);
- the tail: from the last byte received to "completed", and how many part sends were still to
  go then (the watcher of bench/relayclient.py);
- the relay's CPU per GiB, its embedded redis-server included, against the floor of a bare
  Tornado sink + a bare libcurl uploader (bench/baselines.py) measured on the same bytes in
  the same run.

    python -m bench big [--size 5G] [--protocols tus,put-chunked] [--cgroup none] …   (--help)
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pycurl
import tornado

from bench import memory, procs
from bench.payload import MiB, Payload, make_payload, parse_size, split_parts
from bench.relayclient import ClientRun, send_file, verify_in_emulator
from bench.report import write_results
from bench.stack import NOTION_RATE_LIMIT, budget_floor_s, relay_cpu, relay_stack

PROTOCOLS = ("tus", "put-chunked", "put")
DEFAULT_PROTOCOLS = "tus,put-chunked"
DEFAULT_SIZE = "5G"
# The upload page's PATCH size (never more than a part).
DEFAULT_TUS_CHUNK = "8M"
# Targets (issue 16, "Done when").
TARGET_PEAK_RSS_MIB = 64.0
TARGET_OVER_FLOOR = 1.1
TARGET_PARTS_LEFT = 2
TARGET_CPU_OVER_FLOOR = 1.25
FILENAME = "big.txt"
CONTENT_TYPE = "text/plain"
# Sends count at their last byte: the later moment Notion might pick, the harder one for our pacing.
EMULATOR_FLAGS = ("--discard-files", "--count-sends-at-end")


def measure_protocol(protocol: str, payload: Payload, work: Path, logs: Path,
                     args: argparse.Namespace) -> dict[str, Any]:
    """One upload through a fresh relay and emulator; everything measured about it."""
    doc: dict[str, Any] = {"protocol": protocol, "ok": False}
    emulator_args = ["--rate-limit", args.rate_limit, *EMULATOR_FLAGS]
    relay_env = {"PART_SIZE_MB": str(args.part_size_mb)} if args.part_size_mb else {}
    with relay_stack(work, logs, emulator_args=emulator_args, relay_env=relay_env, cgroup=args.cgroup,
                     name=f"big-{protocol}") as stack:
        doc["cgroup"] = stack.describe()
        time.sleep(1.0)  # the relay's start-up requests are over
        stack.emulator.reset_stats()
        budget = stack.budget()
        os.sync()
        print(f"  {protocol}: uploading {payload.size_bytes / MiB:.0f} MiB …", flush=True)
        try:
            with procs.UsageMeter(stack.relay.pid) as meter:
                run = send_file(stack, payload.path, payload.size_bytes, protocol=protocol, filename=FILENAME,
                                content_type=CONTENT_TYPE, chunk_bytes=args.tus_chunk)
            doc["verified"] = verify_in_emulator(stack, run, payload.sha256)
        except Exception as exc:
            doc["error"] = f"{type(exc).__name__}: {exc}\n--- relay log (tail) ---\n{stack.relay.output()[-3000:]}"
            return doc
        stats = stack.emulator.stats()
    assert meter.usage is not None
    notion = notion_json(stats, run)
    doc.update(ok=True, client=run.json(), usage=procs_usage_json(meter.usage),
               cpu=relay_cpu(meter.usage).json(payload.size_bytes), relay_budget=budget, notion=notion,
               timing=timing_json(run, args.rate_limit, budget, notion["users_me_requests"]))
    return doc


def _mib(n: int | None) -> str:
    return "—" if n is None else f"{n / MiB:.0f} MiB"


def procs_usage_json(usage: procs.Usage) -> dict[str, Any]:
    return {"peak_rss_bytes": usage.peak_rss_bytes, "sampled_peak_rss_bytes": usage.sampled_peak_rss_bytes,
            "hwm_rss_bytes": usage.hwm_rss_bytes, "idle_rss_bytes": usage.idle_rss_bytes,
            "redis_peak_rss_bytes": usage.children_peak_rss_bytes, "samples": usage.samples}


def notion_json(stats: dict[str, Any], run: ClientRun) -> dict[str, Any]:
    by_endpoint = stats.get("requests") or {}
    needed = run.total_parts + (3 if run.total_parts > 1 else 2)  # create, parts, complete, append
    answered_429 = sum(o.get("429", 0) for o in by_endpoint.values())
    # The workspace's limits (users/me) are asked once per process, for the first upload.
    once = sum((by_endpoint.get("users_me") or {}).values())
    return {"requests": by_endpoint, "requests_total": stats.get("requests_total"), "requests_needed": needed,
            "extra_requests": (stats.get("requests_total") or 0) - needed - once, "users_me_requests": once,
            "received_429": answered_429, "bucket_429": stats.get("rate_limited"),
            # The emulator's own lag: bytes its complete still had to hash (Notion's is not ours).
            "emulator_hashed_at_complete_bytes": stats.get("digest_bytes_at_complete")}


def timing_json(run: ClientRun, rate_limit: str, budget: dict[str, Any], once: int = 0) -> dict[str, Any]:
    needed = run.total_parts + (3 if run.total_parts > 1 else 2)
    floor = budget_floor_s(needed, rate_limit)
    # The relay's bucket is one request below Notion's and holds its requests in flight below
    # that (engine/budget.py); it asks the workspace's limits once (`once`): its own floor is a
    # little higher.
    capacity, per_s = budget.get("capacity"), budget.get("per_second")
    own_floor = max(0.0, needed + once - capacity) / per_s if capacity is not None and per_s else None
    # Until every part is in Notion, against the floor for create + parts: the same comparison
    # without complete and append, whose time at the emulator (complete hashes the whole file)
    # says nothing about the relay.
    parts_done = run.tail.parts_done_at - run.started_at if run.tail.parts_done_at is not None else None
    parts_floor = budget_floor_s(needed - (2 if run.total_parts > 1 else 1), rate_limit)
    return {"wall_s": run.wall_s, "requests_needed": needed, "budget_floor_s": floor,
            "over_floor": run.wall_s / floor if floor else None,
            "parts_in_notion_s": parts_done, "parts_floor_s": parts_floor,
            "parts_over_floor": parts_done / parts_floor if parts_done is not None and parts_floor else None,
            "relay_budget_floor_s": own_floor, "mib_per_s": run.size_bytes / MiB / run.wall_s if run.wall_s else None}


def measure_floor(payload: Payload, work: Path, logs: Path, chunked: bool) -> dict[str, Any]:
    """The bare sink and the bare libcurl uploader on the same bytes (bench/memory.py's subjects).
    With `chunked` the sink also takes the bytes as a chunked body: the floor for the chunked PUT
    (Tornado's parsing of chunked framing is work any Tornado front door does for that body)."""
    out: dict[str, Any] = {}
    for name, framing in (("sink", False), ("sink_chunked", True)):
        if framing and not chunked:
            continue
        print(f"  floor: bare Tornado sink{' (chunked body)' if framing else ''} …", flush=True)
        try:
            out[name] = usage_cpu_json(memory.measure_sink(payload, work, logs, chunked=framing), payload)
        except Exception as exc:
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    print("  floor: cutting parts, bare libcurl uploader …", flush=True)
    try:
        parts = split_parts(payload, work / "parts")
        out["curl"] = usage_cpu_json(memory.measure_curl(payload, parts, work, logs), payload)
    except Exception as exc:
        out["curl"] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        shutil.rmtree(work / "parts", ignore_errors=True)
    curl = out["curl"].get("cpu_s_per_gib")
    for sink, total in (("sink", "cpu_s_per_gib"), ("sink_chunked", "chunked_cpu_s_per_gib")):
        value = (out.get(sink) or {}).get("cpu_s_per_gib")
        out[total] = value + curl if value is not None and curl is not None else None
    return out


def floor_for(floor: dict[str, Any], protocol: str) -> tuple[float | None, str]:
    """The floor that matches the protocol's framing, and the name of its sink."""
    if protocol == "put-chunked":
        return floor.get("chunked_cpu_s_per_gib"), "sink_chunked"
    return floor.get("cpu_s_per_gib"), "sink"


def usage_cpu_json(usage: procs.Usage, payload: Payload) -> dict[str, Any]:
    return {"cpu_s": usage.cpu_s, "user_s": usage.user_s, "system_s": usage.system_s, "wall_s": usage.wall_s,
            "cpu_s_per_gib": usage.cpu_s * 2**30 / payload.size_bytes, "peak_rss_bytes": usage.peak_rss_bytes}


# --- the document ------------------------------------------------------------------------------

def checks(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in doc["protocols"]:
        name = p["protocol"]
        floor, _ = floor_for(doc["floor"], name)
        out.append({"name": f"{name}: uploaded and verified (sha256 at the emulator, attached)",
                    "value": "yes" if p["ok"] else "no", "pass": p["ok"]})
        if not p["ok"]:
            continue
        rss = p["usage"]["peak_rss_bytes"] / MiB
        over = p["timing"]["over_floor"]
        left = p["client"]["tail"]["parts_left_at_last_byte"]
        out += [
            {"name": f"{name}: relay peak RSS ≤ {TARGET_PEAK_RSS_MIB:g} MiB", "value": f"{rss:.1f} MiB",
             "pass": rss <= TARGET_PEAK_RSS_MIB},
            # A file whose requests all fit in the bucket's burst has no budget floor (n/a).
            {"name": f"{name}: time ≤ {TARGET_OVER_FLOOR:g} × the budget floor",
             "value": f"{p['timing']['wall_s']:.1f} s / {p['timing']['budget_floor_s']:.1f} s = {_f(over)}×",
             "pass": None if over is None else over <= TARGET_OVER_FLOOR},
            {"name": f"{name}: after the last byte, ≤ {TARGET_PARTS_LEFT} part sends + complete + append",
             "value": f"{left} part(s) left, {p['notion']['extra_requests']} extra request(s), "
                      f"{_f(p['client']['tail']['last_byte_to_completed_s'])} s",
             "pass": left is not None and left <= TARGET_PARTS_LEFT and p["notion"]["extra_requests"] <= 0},
            {"name": f"{name}: no 429 from Notion's bucket", "value": p["notion"]["bucket_429"],
             "pass": p["notion"]["bucket_429"] == 0},
        ]
        cpu = p["cpu"]["cpu_s_per_gib"]
        ratio = cpu / floor if floor else None
        p["cpu"]["over_floor"] = ratio
        out.append({"name": f"{name}: relay CPU per GiB (with its redis-server) ≤ {TARGET_CPU_OVER_FLOOR:g} × floor",
                    "value": f"{cpu:.2f} / {_f(floor)} s/GiB = {_f(ratio)}×",
                    "pass": ratio is not None and ratio <= TARGET_CPU_OVER_FLOOR})
    return out


def results_document(args: argparse.Namespace, payload: Payload, protocols: list[dict[str, Any]],
                     floor: dict[str, Any], load_at_start: list[float]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "benchmark": "big",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": host_json(load_at_start),
        "settings": {"size_bytes": payload.size_bytes, "sha256": payload.sha256, "rate_limit": args.rate_limit,
                     "tus_chunk_bytes": args.tus_chunk, "cgroup": args.cgroup,
                     "emulator": " ".join(EMULATOR_FLAGS),
                     "part_size_mb": args.part_size_mb or "relay default"},
        "protocols": protocols,
        "floor": floor,
    }
    doc["checks"] = checks(doc)
    doc["errors"] = [f"{p['protocol']}: {p['error']}" for p in protocols if p.get("error")]
    doc["errors"] += [f"floor {k}: {v['error']}" for k, v in floor.items() if isinstance(v, dict) and v.get("error")]
    return doc


def host_json(load_at_start: list[float]) -> dict[str, Any]:
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "tornado": tornado.version, "libcurl": pycurl.version, "loadavg_at_start": load_at_start}


VERDICT = {True: "✅", False: "❌", None: "➖"}


def _f(value: float | None, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def markdown_table(doc: dict[str, Any]) -> str:
    lines = ["| protocol | relay peak RSS | time / budget floor | last byte → completed (parts left then) "
             "| relay CPU s/GiB (own + redis) | floor CPU s/GiB (sink + libcurl) | relay / floor |",
             "|---|---|---|---|---|---|---|"]
    for p in doc["protocols"]:
        if not p["ok"]:
            lines.append(f"| {p['protocol']} | FAILED | | | | | |")
            continue
        t, tail, cpu = p["timing"], p["client"]["tail"], p["cpu"]
        floor, sink = floor_for(doc["floor"], p["protocol"])
        lines.append(
            f"| {p['protocol']} | {p['usage']['peak_rss_bytes'] / MiB:.1f} MiB "
            f"| {t['wall_s']:.1f} s / {t['budget_floor_s']:.1f} s = {_f(t['over_floor'])}× "
            f"| {_f(tail['last_byte_to_completed_s'])} s ({tail['parts_left_at_last_byte']}) "
            f"| {cpu['cpu_s_per_gib']:.2f} ({cpu['relay_only_cpu_s_per_gib']:.2f} + {cpu['redis_cpu_s_per_gib']:.2f}) "
            f"| {_f(floor)} ({_f((doc['floor'].get(sink) or {}).get('cpu_s_per_gib'))} + "
            f"{_f(doc['floor']['curl'].get('cpu_s_per_gib'))}) | {_f(cpu.get('over_floor'))}× |")
    return "\n".join(lines)


def markdown_report(doc: dict[str, Any]) -> str:
    s, host = doc["settings"], doc["host"]
    lines = [f"Measured {doc['timestamp']} by `./run.sh bench big` on {host['cpus']} CPUs ({host['platform']}, "
             f"Python {host['python']}, Tornado {host['tornado']}): {s['size_bytes'] / 2**30:g} GiB, Notion's limit "
             f"{s['rate_limit']} (emulator with {s['emulator']}), PART_SIZE_MB {s['part_size_mb']}, "
             f"tus PATCHes of {s['tus_chunk_bytes'] / MiB:g} MiB, "
             f"relay cgroup: {s['cgroup']}; load average at start {host['loadavg_at_start']}.", "",
             markdown_table(doc), ""]
    for p in doc["protocols"]:
        if p["ok"]:
            tail = p["client"]["tail"]
            t = p["timing"]
            lines.append(f"- {p['protocol']}: tail = {_f(tail['sends_after_last_byte_s'])} s of part sends + "
                         f"{_f(tail['finishing_s'])} s complete and append; every part in Notion after "
                         f"{_f(t['parts_in_notion_s'], '.1f')} s = {_f(t['parts_over_floor'])}× the floor for create "
                         f"+ parts ({_f(t['parts_floor_s'], '.1f')} s); Notion requests "
                         f"{p['notion']['requests_total']} (needed {p['notion']['requests_needed']}); the relay's "
                         f"own floor (its bucket is one below Notion's) {_f(t['relay_budget_floor_s'], '.1f')} s; the "
                         f"emulator's complete hashed {_mib(p['notion'].get('emulator_hashed_at_complete_bytes'))} "
                         f"it was behind on.")
    lines += [f"- {VERDICT[c['pass']]} {c['name']}: {c['value']}" for c in doc["checks"]]
    if doc["errors"]:
        lines.append(f"- ❌ {len(doc['errors'])} error(s); see results-big.json.")
    return "\n".join(lines) + "\n"


# --- entry point -------------------------------------------------------------------------------

def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench big", description=__doc__.splitlines()[0])
    p.add_argument("--size", default=DEFAULT_SIZE, help=f"file size ({DEFAULT_SIZE}; binary units)")
    p.add_argument("--protocols", default=DEFAULT_PROTOCOLS, help=f"a subset of {','.join(PROTOCOLS)}")
    p.add_argument("--tus-chunk", default=DEFAULT_TUS_CHUNK, help=f"tus PATCH size ({DEFAULT_TUS_CHUNK})")
    p.add_argument("--rate-limit", default=NOTION_RATE_LIMIT,
                   help=f"Notion's limit for the emulator ({NOTION_RATE_LIMIT})")
    p.add_argument("--part-size-mb", type=int, default=None,
                   help="PART_SIZE_MB for the relay (default: the relay's own default)")
    p.add_argument("--cgroup", choices=("none", "auto", "v1", "v2"), default="none",
                   help="run the relay in a 0.2 CPU / 512 MB cgroup (auto, v1, v2) or not (none, the default)")
    p.add_argument("--no-floor", action="store_true", help="skip the bare sink + libcurl measurement")
    p.add_argument("--out-dir", type=Path, default=procs.ROOT / "bench", help="results-big.json/.md go here")
    p.add_argument("--work-dir", type=Path, default=None, help="scratch space (about 2 × the size)")
    p.add_argument("--strict", action="store_true", help="exit 2 when a target is missed")
    args = p.parse_args(argv)
    try:
        args.size = parse_size(args.size)
        args.tus_chunk = parse_size(args.tus_chunk)
    except ValueError as exc:
        p.error(str(exc))
    args.protocols = [x for x in args.protocols.split(",") if x]
    if set(args.protocols) - set(PROTOCOLS) or not args.protocols:
        p.error(f"--protocols: choose from {','.join(PROTOCOLS)}")
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    logs = args.out_dir / "out" / "big"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    work = Path(tempfile.mkdtemp(prefix="bench-big-", dir=args.work_dir))
    try:
        print(f"writing {args.size / MiB:.0f} MiB of test data …", flush=True)
        payload = make_payload(work, "big", args.size)
        os.sync()
        protocols = [measure_protocol(name, payload, work, logs, args) for name in args.protocols]
        floor = ({"sink": {}, "curl": {}, "cpu_s_per_gib": None} if args.no_floor
                 else measure_floor(payload, work, logs, chunked="put-chunked" in args.protocols))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc = results_document(args, payload, protocols, floor, load_at_start)
    write_results(args.out_dir, "results-big", doc, markdown_report(doc))
    print("\n" + markdown_report(doc))
    print(f"wrote {args.out_dir / 'results-big.json'} and {args.out_dir / 'results-big.md'} (logs in {logs})")
    if doc["errors"]:
        print(f"\nBENCHMARK FAILED: {len(doc['errors'])} error(s):\n" + "\n".join(doc["errors"]), file=sys.stderr)
        return 1
    if args.strict and not all(c["pass"] for c in doc["checks"]):
        return 2
    return 0
