"""The emulator's settings: one frozen value, validated once, built from the command line."""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .faults import FaultPlan

MIB = 2**20
GIB = 2**30

# Workspace plans and their per-file limit (what GET /v1/users/me reports).
PLAN_MAX_FILE_BYTES: dict[str, int] = {"free": 5 * MIB, "paid": 5 * GIB}

DEFAULT_TOKEN = "emulator-token"


@dataclass(frozen=True)
class RateLimit:
    """`requests` per `window_s` seconds, per token (a token bucket of that capacity)."""

    requests: int
    window_s: float

    @classmethod
    def parse(cls, text: str) -> "RateLimit":
        try:
            requests_text, window_text = text.split("/", 1)
            limit = cls(int(requests_text), float(window_text))
        except ValueError as e:
            raise ValueError(f"--rate-limit must look like 180/60, got {text!r}") from e
        if limit.requests < 1 or limit.window_s <= 0:
            raise ValueError(f"--rate-limit needs N >= 1 and a window > 0, got {text!r}")
        return limit


@dataclass(frozen=True)
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0
    data_dir: Path = Path("emulator-data")
    tokens: tuple[str, ...] = (DEFAULT_TOKEN,)
    rate_limit: RateLimit = RateLimit(180, 60.0)
    expiry_s: float = 3600.0
    plan: str = "paid"
    faults: dict[str, Any] = field(default_factory=dict)
    sweep_interval_s: float = 30.0
    access_log: bool = False
    max_file_bytes_override: int | None = None
    discard_files: bool = False
    count_sends_at_end: bool = False
    port_file: Path | None = None

    @property
    def max_file_bytes(self) -> int:
        if self.max_file_bytes_override is not None:
            return self.max_file_bytes_override
        return PLAN_MAX_FILE_BYTES[self.plan]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m emulator",
        description="A strict stand-in for Notion's File Upload API (see emulator/README.md).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    p.add_argument(
        "--data-dir",
        required=True,
        type=Path,
        help="where uploads, blocks and part files are kept (they survive a restart)",
    )
    p.add_argument(
        "--port-file",
        type=Path,
        default=None,
        help="remember the bound port in this file; with --port 0, bind the remembered port "
        "again when it is free (demo mode keeps its URL across restarts)",
    )
    p.add_argument(
        "--token",
        action="append",
        help=f"a valid integration token (repeatable; default {DEFAULT_TOKEN!r})",
    )
    p.add_argument(
        "--rate-limit",
        default="180/60",
        help="requests per window seconds, per token, bursts allowed (default 180/60)",
    )
    p.add_argument(
        "--expiry-s",
        type=float,
        default=3600.0,
        help="an upload not attached this many seconds after creation expires (default 3600)",
    )
    p.add_argument("--plan", choices=sorted(PLAN_MAX_FILE_BYTES), default="paid")
    p.add_argument(
        "--max-file-bytes",
        type=int,
        default=None,
        help="override the plan's per-file limit (free 5 MiB, paid 5 GiB)",
    )
    p.add_argument("--faults", default=None, help="fault JSON, as POST /_emulator/faults takes")
    p.add_argument(
        "--sweep-interval-s",
        type=float,
        default=30.0,
        help="how often expired uploads' part files are deleted (default 30)",
    )
    p.add_argument(
        "--discard-files",
        action="store_true",
        help="delete an upload's bytes once its size and sha256 are recorded (long benchmarks)",
    )
    p.add_argument(
        "--count-sends-at-end",
        action="store_true",
        help="count a send against the rate limit once its body has arrived, not when its "
        "headers do (Notion does not say when it counts; the later moment is the harder one "
        "for a client's pacing)",
    )
    p.add_argument(
        "--access-log", action="store_true", help="log every request to stderr (Tornado format)"
    )
    return p


def parse_args(argv: Sequence[str] | None = None) -> EmulatorConfig:
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        rate_limit = RateLimit.parse(ns.rate_limit)
        try:
            faults = json.loads(ns.faults) if ns.faults else {}
        except ValueError as e:
            raise ValueError(f"--faults is not valid JSON: {e}") from None
        if not isinstance(faults, dict):
            raise ValueError("--faults must be a JSON object")
        try:
            FaultPlan.parse(faults)  # validate now: a bad plan is a usage error
        except ValueError as e:
            raise ValueError(f"--faults: {e}") from None
    except ValueError as e:
        parser.error(str(e))
    if ns.expiry_s <= 0:
        parser.error("--expiry-s must be > 0")
    if ns.max_file_bytes is not None and ns.max_file_bytes < 1:
        parser.error("--max-file-bytes must be ≥ 1")
    tokens = tuple(ns.token) if ns.token else (DEFAULT_TOKEN,)
    return EmulatorConfig(
        host=ns.host,
        port=ns.port,
        data_dir=ns.data_dir,
        tokens=tokens,
        rate_limit=rate_limit,
        expiry_s=ns.expiry_s,
        plan=ns.plan,
        faults=faults,
        sweep_interval_s=ns.sweep_interval_s,
        access_log=ns.access_log,
        max_file_bytes_override=ns.max_file_bytes,
        discard_files=ns.discard_files,
        count_sends_at_end=ns.count_sends_at_end,
        port_file=ns.port_file,
    )
