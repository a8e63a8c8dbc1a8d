"""The benchmark machinery still works: a tiny run of `python -m bench memory` end to end.

No number is asserted here (timed unit tests are not how speed is judged; see bench/README.md),
only that every subject ran, delivered intact bytes, and that the results files are written.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import memory
from bench.payload import MiB, make_payload, parse_size
from harness.processes import ROOT

# 8 MiB goes to Notion as one single_part send, 24 MiB as three multi_part parts: both paths.
SMOKE_SIZES = "8M,24M"


def test_parse_size_uses_binary_units() -> None:
    assert parse_size("8M") == 8 * MiB
    assert parse_size("1G") == 2**30
    assert parse_size("512K") == 512 * 1024
    with pytest.raises(ValueError):
        parse_size("lots")


def test_a_wrong_sha256_fails_loudly(tmp_path: Path) -> None:
    payload = make_payload(tmp_path, "1M", MiB)
    tampered = dataclasses.replace(payload, sha256="0" * 64)
    with pytest.raises(memory.BenchError, match="SHA256 MISMATCH"):
        memory.measure_sink(tampered, tmp_path / "work", tmp_path)


def test_bench_memory_runs_end_to_end_at_a_tiny_size(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "memory", "--sizes", SMOKE_SIZES, "--repeat", "1",
         "--out-dir", str(tmp_path), "--work-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=55,
    )
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    doc = json.loads((tmp_path / "results.json").read_text())
    assert [s["label"] for s in doc["sizes"]] == ["8M", "24M"]
    done = {(m["subject"], m["size"]) for m in doc["measurements"] if m["ok"]}
    assert done == {(s, size) for s in memory.SUBJECTS for size in ("8M", "24M")}
    for m in doc["measurements"]:
        assert m["cpu_s"] >= 0 and m["peak_rss_bytes"] > 0 and m["idle_rss_bytes"] > 0
    for row in doc["summary"]:
        # CPU times come in 10 ms ticks, so at 8 MiB a floor of 0.0 (no ratio) is possible.
        assert row["relay_cpu_s_per_gib"] is not None and row["relay_peak_rss_mib"] > 0
    assert len(doc["checks"]) == 3
    assert "| relay / floor |" in (tmp_path / "results.md").read_text()
    assert "relay / floor" in run.stdout
