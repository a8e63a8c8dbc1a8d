"""The benchmark machinery still works: a tiny run of `python -m bench memory` end to end.

No number is asserted here (timed unit tests are not how speed is judged; see bench/README.md),
only that every subject ran, delivered intact bytes, and that the results files are written.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from bench import memory
from bench.payload import MiB, make_payload, parse_size
from tests.support.benchrun import run_bench

# 8 MiB goes to Notion as one single_part send, 24 MiB as multi_part (parts of 20 and 4 MiB): both paths.
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
    run = run_bench(["memory", "--sizes", SMOKE_SIZES, "--repeat", "1",
                     "--out-dir", str(tmp_path), "--work-dir", str(tmp_path)], timeout_s=55)
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


# --- issue 16's benchmarks in short form: they ran, every upload verified, the report is whole ---

def _bench(name: str, tmp_path: Path, *args: str, timeout_s: float = 55) -> dict:
    run = run_bench([name, *args, "--out-dir", str(tmp_path), "--work-dir", str(tmp_path)], timeout_s=timeout_s)
    assert run.returncode == 0, f"stdout:\n{run.stdout[-6000:]}\nstderr:\n{run.stderr[-6000:]}"
    doc = json.loads((tmp_path / f"results-{name}.json").read_text())
    assert doc["errors"] == [] and doc["host"]["cpus"]
    assert "Measured" in (tmp_path / f"results-{name}.md").read_text()
    for log in (tmp_path / "out").rglob("*.log"):
        assert "Traceback" not in log.read_text(), f"{log}:\n{log.read_text()[-3000:]}"
    return doc


def test_bench_small_runs_batching_on_and_off_in_short_form(tmp_path: Path) -> None:
    doc = _bench("small", tmp_path, "--files", "12", "--clients", "4", "--max-size", "1M")
    assert [m["mode"] for m in doc["modes"]] == ["on", "off"]
    assert doc["modes"][1]["relay_env"] == {"APPEND_BATCH_WINDOW_MS": "0"}
    for m in doc["modes"]:
        assert m["ok"] and m["verified"] == m["files"] == 12 and m["block_ids_distinct"]
        assert m["notion"]["bucket_429"] == 0 and m["notion"]["requests_per_file"] > 0
        assert m["files_per_minute"] > 0 and m["cpu"]["total_cpu_s"] > 0
    # Without batching every file has its own append.
    assert doc["modes"][1]["notion"]["appends"] == 12
    names = {c["name"] for c in doc["checks"]}
    assert any("files per minute with batching" in n for n in names)
    assert any("requests per file" in n for n in names)


def test_bench_big_runs_tus_and_the_chunked_put_in_short_form(tmp_path: Path) -> None:
    doc = _bench("big", tmp_path, "--size", "45M")
    assert [p["protocol"] for p in doc["protocols"]] == ["tus", "put-chunked"]
    for p in doc["protocols"]:
        assert p["ok"] and p["verified"]["size"] == 45 * MiB
        assert p["usage"]["peak_rss_bytes"] > 0 and p["cpu"]["total_cpu_s"] > 0
        tail = p["client"]["tail"]
        # The watcher saw the last byte arrive and the upload complete.
        assert tail["last_byte_received_s"] is not None and tail["parts_left_at_last_byte"] is not None
        assert tail["last_byte_to_completed_s"] >= 0
        assert p["timing"]["requests_needed"] == p["client"]["total_parts"] + 3
    assert doc["floor"]["cpu_s_per_gib"] is not None
    assert len(doc["checks"]) == 2 * 6


def test_bench_pipeline_runs_relay_and_store_and_forward_in_short_form(tmp_path: Path) -> None:
    doc = _bench("pipeline", tmp_path, "--size", "30M", "--link", "40")
    assert [b["budget"] for b in doc["budgets"]] == ["180/60", "3/1"]
    for b in doc["budgets"]:
        assert b["relay"]["ok"] and b["store_and_forward"]["ok"] and b["ratio"] > 0
        sf = b["store_and_forward"]
        assert sf["receive_s"] > 0 and sf["send_s"] > 0 and sf["parts"] >= 2  # 30 MiB is multi_part
    assert any("steady state" in c["name"] for c in doc["checks"])


def test_bench_partsize_runs_the_dyno_per_part_size_in_short_form(tmp_path: Path) -> None:
    doc = _bench("partsize", tmp_path, "--part-sizes", "10,20", "--clients", "2", "--sizes", "21M,30M",
                 "--deadline", "40")
    assert [r["part_size_mb"] for r in doc["runs"]] == [10, 20]
    for r in doc["runs"]:
        assert r["verified"] == r["clients"] == 2 and r["budget_drained_at_start"]
        assert r["sends"] >= r["sends_needed"] > 0 and r["spool_peak_bytes"] > 0
    assert doc["runs"][0]["sends_needed"] > doc["runs"][1]["sends_needed"]


def test_a_bench_past_its_time_leaves_no_process_behind(tmp_path: Path) -> None:
    """A short form that overruns must not leave its relay, emulator and redis-server loading
    every later test: the whole process group goes."""
    import psutil

    def ours() -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            if str(tmp_path) in " ".join(p.info["cmdline"] or []):
                found.append(p)
        return found

    with pytest.raises(subprocess.TimeoutExpired):
        run_bench(["small", "--files", "40", "--clients", "2", "--max-size", "1M", "--out-dir", str(tmp_path),
                   "--work-dir", str(tmp_path)], timeout_s=6)
    assert (tmp_path / "out" / "small" / "small-on.log").exists()  # it had started its relay
    assert ours() == []
