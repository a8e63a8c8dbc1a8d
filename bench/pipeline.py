"""The pipeline benchmark: time from the first byte to "stored in Notion" for a 1 GiB file sent
over a link held to about the budget's bandwidth, the relay against store-and-forward.

The client's link is held by libcurl to `--link` MiB/s (default: what Notion's budget can carry,
requests per second × the part size: 3/s × 20 MiB = 60 MiB/s with the default parts). Two subjects, each with a fresh
emulator enforcing the same limit (with --discard-files):

- relay: create-session, then one streamed PUT; the relay sends each part as soon as it is
  spooled, and answers once Notion holds the file and it is on the page;
- store-and-forward, built here (what a tus server with a post-finish hook does): a bare
  Tornado sink receives the whole file to disk; then the file is cut into the relay's parts
  (copy_file_range) and sent with libcurl (pycurl, one handle, CurlMime reading each part file):
  create, every part, complete, append, paced by a token bucket equal to the relay's (the same
  capacity and rate), a 429 waited out.

Both times run from the first request to the end of the append. Each budget in `--budgets` is
measured: Notion's 180/60 (its bucket starts full: a 1 GiB file's ~106 requests fit in the
burst, so store-and-forward sends at full speed after receiving) and 3/1, the same rate with no
burst (a budget that other uploads keep drained, the steady state of a busy relay: every
request waits for its token, so sending cannot start before receiving ends and catch up).

    python -m bench pipeline [--size 1G] [--link 30] [--budgets 180/60,3/1] …   (--help)
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import procs
from bench.baselines import NOTION_VERSION
from bench.big import host_json, procs_usage_json
from bench.client import Http, HttpError, Response
from bench.payload import DEFAULT_PART_BYTES, MiB, Payload, make_payload, parse_size, sha256_of, split_parts
from bench.relayclient import send_file, verify_in_emulator
from bench.report import write_results
from bench.stack import NOTION_RATE_LIMIT, relay_cpu, relay_stack
from engine.budget import RequestBudget, Ticket
from engine.clock import SystemClock
from engine.upload.partplan import plan_parts
from harness.emulator import EmulatorProcess

DEFAULT_SIZE = "1G"
DEFAULT_BUDGETS = "180/60,3/1"
STEADY_BUDGET = "3/1"
TARGET_RATIO = 0.6
FILENAME = "pipeline.txt"
CONTENT_TYPE = "text/plain"
RATE_LIMIT_WAITS = 50


def rate_of(budget: str) -> tuple[int, float]:
    count, _, window = budget.partition("/")
    return int(count), float(window or 60)


class Bucket:
    """The relay's request budget (engine/budget.py RequestBudget), blocking: the same capacity,
    rate and requests-in-flight rule."""

    def __init__(self, budget: str) -> None:
        count, window = rate_of(budget)
        self.budget = RequestBudget(SystemClock(), count, window)
        self.capacity = self.budget.capacity

    def take(self) -> Ticket:
        while (ticket := self.budget.try_take()) is None:
            time.sleep(self.budget.wait_s())
        return ticket

    def settle(self, ticket: Ticket) -> None:
        self.budget.settle(ticket, answered=True)

    def pause(self, seconds: float) -> None:
        self.budget.pause(seconds)
        time.sleep(seconds)


def paced(bucket: Bucket, call: Any, what: str) -> Response:
    """One Notion request under the bucket; a 429 is waited out (Retry-After) and tried again."""
    for _ in range(RATE_LIMIT_WAITS):
        ticket = bucket.take()
        try:
            answer = call()
        finally:
            bucket.settle(ticket)
        if answer.status != 429:
            if answer.status != 200:
                raise HttpError(f"{what}: HTTP {answer.status}: {answer.body[:300]!r}")
            return answer
        bucket.pause(float(answer.headers.get("retry-after", "1")))
    raise HttpError(f"{what}: rate limited {RATE_LIMIT_WAITS} times")


def store_and_forward(payload: Payload, part_size: int, budget: str, link_bytes_per_s: int, work: Path,
                      logs: Path) -> dict[str, Any]:
    """Receive the whole file (bare sink), cut it, send it with libcurl under the budget."""
    sink_dir = work / "sf-sink"
    emulator = EmulatorProcess(work / "sf-emulator", ("--rate-limit", budget, "--discard-files"),
                               log_path=logs / "sf-emulator.log")
    sink = None
    try:
        sink, sink_url = procs.start_sink(sink_dir, logs)
        bucket = Bucket(budget)  # the sender's budget exists from the start, like the relay's
        headers = {"Authorization": f"Bearer {emulator.token}", "Notion-Version": NOTION_VERSION}
        api = emulator.url
        with Http() as client:
            t0 = time.monotonic()
            answer = client.send_body("PUT", f"{sink_url}/sink/{FILENAME}", payload.path,
                                      max_bytes_per_s=link_bytes_per_s)
            if answer.status != 200:
                raise HttpError(f"sink: HTTP {answer.status}")
            received_at = time.monotonic()
        received = replace(payload, path=sink_dir / FILENAME, plan=plan_parts(payload.size_bytes, part_size))
        parts = split_parts(received, work / "sf-parts")
        cut_at = time.monotonic()
        multi = len(parts) > 1
        with Http(headers) as http:
            create = {"filename": FILENAME, "content_type": CONTENT_TYPE}
            if multi:
                create.update(mode="multi_part", number_of_parts=len(parts))
            upload = paced(bucket, lambda: http.json("POST", f"{api}/v1/file_uploads", create), "create").json()
            for number, part in enumerate(parts, start=1):
                fields = {"part_number": str(number)} if multi else {}
                paced(bucket, lambda part=part, fields=fields: http.send_file_part(
                    f"{api}/v1/file_uploads/{upload['id']}/send", part, FILENAME, CONTENT_TYPE, fields),
                      f"send {number}")
            if multi:
                paced(bucket, lambda: http.json("POST", f"{api}/v1/file_uploads/{upload['id']}/complete"), "complete")
            block = {"type": "file", "file": {"type": "file_upload", "file_upload": {"id": upload["id"]}}}
            paced(bucket, lambda: http.json("PATCH", f"{api}/v1/blocks/{procs.PARENT_PAGE_ID}/children",
                                            {"children": [block]}), "append")
        ended_at = time.monotonic()
        stored = emulator.upload(upload["id"])
        if (stored.get("sha256") != payload.sha256 or stored.get("status") != "uploaded"
                or not stored.get("attached_to")):
            raise AssertionError(f"store-and-forward: the emulator holds {stored.get('sha256')} "
                                 f"({stored.get('status')}, attached to {stored.get('attached_to')})")
        sink_sha = sha256_of(sink_dir / FILENAME)
        if sink_sha != payload.sha256:
            raise AssertionError(f"SHA256 MISMATCH at the sink: {sink_sha}")
        stats = emulator.stats()
        return {"ok": True, "wall_s": ended_at - t0, "receive_s": received_at - t0, "cut_s": cut_at - received_at,
                "send_s": ended_at - cut_at, "parts": len(parts), "part_size": part_size,
                "bucket_capacity": bucket.capacity, "notion_requests": stats.get("requests_total"),
                "bucket_429": stats.get("rate_limited")}
    finally:
        procs.stop_all([sink])
        emulator.stop()
        for d in (sink_dir, work / "sf-parts", work / "sf-emulator"):
            shutil.rmtree(d, ignore_errors=True)


def through_relay(payload: Payload, budget: str, link_bytes_per_s: int, work: Path, logs: Path,
                  args: argparse.Namespace) -> dict[str, Any]:
    env = {} if budget == NOTION_RATE_LIMIT else {"NOTION_RATE_LIMIT": budget}
    if args.part_size_mb:
        env["PART_SIZE_MB"] = str(args.part_size_mb)
    name = "pipeline-" + budget.replace("/", "-")
    with relay_stack(work, logs, emulator_args=["--rate-limit", budget, "--discard-files"], relay_env=env,
                     cgroup=args.cgroup, name=name) as stack:
        cgroup = stack.describe()
        time.sleep(1.0)
        stack.emulator.reset_stats()
        with procs.UsageMeter(stack.relay.pid) as meter:
            run = send_file(stack, payload.path, payload.size_bytes, protocol="put", filename=FILENAME,
                            content_type=CONTENT_TYPE, max_bytes_per_s=link_bytes_per_s)
        verified = verify_in_emulator(stack, run, payload.sha256)
        stats = stack.emulator.stats()
    shutil.rmtree(work / f"{name}-data", ignore_errors=True)
    assert meter.usage is not None
    return {"ok": True, "wall_s": run.wall_s, "client": run.json(), "verified": verified, "cgroup": cgroup,
            "usage": procs_usage_json(meter.usage), "cpu": relay_cpu(meter.usage).json(payload.size_bytes),
            "part_size": run.part_size, "notion_requests": stats.get("requests_total"),
            "bucket_429": stats.get("rate_limited")}


def measure_budget(budget: str, payload: Payload, work: Path, logs: Path, args: argparse.Namespace) -> dict[str, Any]:
    doc: dict[str, Any] = {"budget": budget}
    count, window = rate_of(budget)
    print(f"  budget {budget}: the relay …", flush=True)
    try:
        doc["relay"] = through_relay(payload, budget, args.link_bytes_per_s, work, logs, args)
    except Exception as exc:
        doc["relay"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    part_size = doc["relay"].get("part_size") or args.part_size
    print(f"  budget {budget}: store-and-forward …", flush=True)
    try:
        doc["store_and_forward"] = store_and_forward(payload, part_size, budget, args.link_bytes_per_s, work, logs)
    except Exception as exc:
        doc["store_and_forward"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    relay_s, sf_s = doc["relay"].get("wall_s"), doc["store_and_forward"].get("wall_s")
    doc["ratio"] = relay_s / sf_s if relay_s and sf_s else None
    doc["link_s"] = payload.size_bytes / args.link_bytes_per_s
    # What the budget alone allows for the relay's requests, with a bucket of its capacity.
    needed = doc["relay"].get("notion_requests") or 0
    doc["budget_s"] = max(0.0, needed - count) / (count / window)
    return doc


def checks(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for b in doc["budgets"]:
        for subject in ("relay", "store_and_forward"):
            ok = b[subject].get("ok", False)
            out.append({"name": f"{b['budget']}: {subject.replace('_', '-')} delivered and verified",
                        "value": "yes" if ok else b[subject].get("error", "no"), "pass": ok})
        if b["budget"] == STEADY_BUDGET:
            out.append({"name": f"{b['budget']} (steady state): relay ≤ {TARGET_RATIO:g} × store-and-forward",
                        "value": f"{_f(b['ratio'])}×", "pass": b["ratio"] is not None and b["ratio"] <= TARGET_RATIO})
    return out


def _f(value: float | None, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def markdown_table(doc: dict[str, Any]) -> str:
    lines = ["| Notion budget | link | relay: first byte → completed | store-and-forward: receive + cut + send "
             "| relay / store-and-forward |", "|---|---|---|---|---|"]
    link = doc["settings"]["link_bytes_per_s"] / MiB
    for b in doc["budgets"]:
        r, sf = b["relay"], b["store_and_forward"]
        sf_text = (f"{sf['wall_s']:.1f} s = {sf['receive_s']:.1f} + {sf['cut_s']:.1f} + {sf['send_s']:.1f}"
                   if sf.get("ok") else "FAILED")
        relay_text = f"{r['wall_s']:.1f} s" if r.get("ok") else "FAILED"
        lines.append(f"| {b['budget']} | {link:g} MiB/s ({b['link_s']:.0f} s) | {relay_text} | {sf_text} "
                     f"| {_f(b['ratio'])}× |")
    return "\n".join(lines)


def markdown_report(doc: dict[str, Any]) -> str:
    s, host = doc["settings"], doc["host"]
    lines = [f"Measured {doc['timestamp']} by `./run.sh bench pipeline` on {host['cpus']} CPUs ({host['platform']}, "
             f"Python {host['python']}): {s['size_bytes'] / MiB:.0f} MiB, the client's link held to "
             f"{s['link_bytes_per_s'] / MiB:g} MiB/s, relay cgroup {s['cgroup']}; load average at start "
             f"{host['loadavg_at_start']}.", "", markdown_table(doc), ""]
    lines += [f"- {'✅' if c['pass'] else '❌'} {c['name']}: {c['value']}" for c in doc["checks"]]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench pipeline", description=__doc__.splitlines()[0])
    p.add_argument("--size", default=DEFAULT_SIZE, help=f"file size ({DEFAULT_SIZE})")
    p.add_argument("--link", type=float, default=None,
                   help="the client's link in MiB/s (default: the budget's requests/s × the part size)")
    p.add_argument("--part-size", default=f"{DEFAULT_PART_BYTES // MiB}M",
                   help="part size for the default link and store-and-forward's parts when the relay's run did "
                   f"not say (the relay's default, {DEFAULT_PART_BYTES // MiB}M)")
    p.add_argument("--budgets", default=DEFAULT_BUDGETS, help=f"Notion limits N/W to measure ({DEFAULT_BUDGETS})")
    p.add_argument("--part-size-mb", type=int, default=None,
                   help="PART_SIZE_MB for the relay (default: the relay's own default)")
    p.add_argument("--cgroup", choices=("none", "auto", "v1", "v2"), default="none",
                   help="run the relay in a 0.2 CPU / 512 MB cgroup (auto, v1, v2) or not (none)")
    p.add_argument("--out-dir", type=Path, default=procs.ROOT / "bench", help="results-pipeline.json/.md go here")
    p.add_argument("--work-dir", type=Path, default=None, help="scratch space (about 3 × the size)")
    p.add_argument("--strict", action="store_true", help="exit 2 when a target is missed")
    args = p.parse_args(argv)
    try:
        args.size, args.part_size = parse_size(args.size), parse_size(args.part_size)
    except ValueError as exc:
        p.error(str(exc))
    args.budgets = [b for b in args.budgets.split(",") if b]
    if not args.budgets:
        p.error("--budgets needs at least one N/W")
    count, window = rate_of(args.budgets[0])
    if args.part_size_mb:
        args.part_size = args.part_size_mb * MiB
    args.link_bytes_per_s = int(args.link * MiB) if args.link else int(count / window * args.part_size)
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    logs = args.out_dir / "out" / "pipeline"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-", dir=args.work_dir))
    try:
        print(f"writing {args.size / MiB:.0f} MiB of test data …", flush=True)
        payload = make_payload(work, "pipeline", args.size)
        os.sync()
        budgets = [measure_budget(b, payload, work, logs, args) for b in args.budgets]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc: dict[str, Any] = {
        "benchmark": "pipeline",
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": host_json(load_at_start),
        "settings": {"size_bytes": args.size, "sha256": payload.sha256, "link_bytes_per_s": args.link_bytes_per_s,
                     "cgroup": args.cgroup, "budgets": args.budgets,
                     "part_size_mb": args.part_size_mb or "relay default"},
        "budgets": budgets,
    }
    doc["checks"] = checks(doc)
    doc["errors"] = [f"{b['budget']} {k}: {b[k]['error']}" for b in budgets for k in ("relay", "store_and_forward")
                     if b[k].get("error")]
    write_results(args.out_dir, "results-pipeline", doc, markdown_report(doc))
    print("\n" + markdown_report(doc))
    print(f"wrote {args.out_dir / 'results-pipeline.json'} and {args.out_dir / 'results-pipeline.md'}")
    if doc["errors"]:
        print("\nBENCHMARK FAILED:\n" + "\n".join(doc["errors"]), file=sys.stderr)
        return 1
    if args.strict and not all(c["pass"] for c in doc["checks"]):
        return 2
    return 0
