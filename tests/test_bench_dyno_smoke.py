"""The dyno benchmark's machinery still works: a short `python -m bench dyno` end to end.

4 clients, small files (single_part and multi_part), a few seconds of faults. No number is
asserted (speed is judged by the benchmark itself, see bench/README.md), only that the relay
ran in its cgroup (when one can be made here), every upload verified, the report has every
field, and nothing was left behind.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import cgroup as cg
from bench import dyno
from bench.payload import MiB
from tests.support.benchrun import run_bench

SMOKE_ARGS = ["--clients", "4", "--sizes", "2M,6M,12M,21M", "--fault-rate", "0.3", "--fault-seconds", "3",
              "--read-timeout", "3", "--connection-timeout", "2", "--idle-s", "1", "--deadline", "30"]

# What the issue asks the report to contain: section → fields that must have a value.
REQUIRED = {
    "uploads": ["clients", "completed", "verified", "failed", "sha256_mismatches", "early_claims", "refused",
                "clients_refused"],
    "throughput": ["bytes_relayed", "wall_s", "mib_per_s", "bound_mib_per_s", "fraction_of_bound",
                   "bound_with_burst_mib_per_s", "notion_requests", "sends"],
    "memory": ["relay_peak_rss_bytes", "relay_idle_rss_bytes", "limit_bytes"],
    "cpu": ["relay_cpu_s", "relay_cores_used", "limit_cores"],
    "rate_limits": ["received_429", "injected_429", "bucket_429", "relay_budget_pauses"],
    "health": ["polls", "p50_ms", "p99_ms", "max_ms", "failures", "timeouts", "idle_p50_ms", "admission_seen",
               "spool_free_bytes_min", "spool_reserved_bytes_max"],
    "relay_detected": ["total_memory_limit_mb", "total_cpu_limit", "resource_manager_at_start"],
    "emulator": ["requests", "requests_total", "faults_injected", "rate_limited"],
}
CGROUP_FIELDS = {"memory": ["cgroup_max_usage_bytes", "cgroup_peak_anon_sampled_bytes", "cgroup_oom_kills"],
                 "cpu": ["cgroup_periods", "cgroup_throttled_periods"]}


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert dyno.percentile(values, 50) == 50 and dyno.percentile(values, 99) == 99
    assert dyno.percentile([7.0], 99) == 7.0 and dyno.percentile([], 50) is None


def test_file_sizes_cycle_and_leave_mib_boundaries() -> None:
    sizes = dyno.file_sizes([5 * MiB, 80 * MiB], clients=5, scale=1.0)
    assert [s // MiB for s in sizes] == [5, 80, 5, 80, 5]
    assert any(s % MiB for s in sizes)
    assert dyno.file_sizes([4 * MiB], 1, 0.5) == [2 * MiB]


def test_the_admission_preset_is_issue_11s_run_and_keeps_its_own_results() -> None:
    args = dyno.parse_args(["--preset", "admission"])
    assert (args.clients, args.sizes, args.fault_rate) == (25, [40 * MiB], 0.0)
    assert dyno.results_name(args) == "results-dyno-admission"
    assert dyno.parse_args(["--preset", "admission", "--clients", "3"]).clients == 3  # options still win
    assert dyno.results_name(dyno.parse_args([])) == "results-dyno"
    # The relay runs on admission's defaults whatever the caller's environment says.
    assert {"MAX_CONCURRENT_UPLOADS", "QUEUE_SIZE_LIMIT", "SPOOL_MIN_FREE_MB"} <= set(dyno.DEFAULTED_RELAY_VARIABLES)


def test_without_a_cgroup_the_command_runs_as_is_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    group = cg.make_cgroup("dyno-test", cg.Limits(0.2, 512 * MiB), version="none")
    assert group.wrap(["echo", "hi"]) == ["echo", "hi"]
    assert not group.describe()["constrained"] and not group.contains(os.getpid())
    assert "UNCONSTRAINED" in capsys.readouterr().err


def test_a_wrapped_process_is_inside_the_group_which_is_removed_afterwards() -> None:
    with cg.open_cgroup("dyno-test", cg.Limits(0.2, 256 * MiB)) as group:
        # This project's machines (and CI) run as root with cgroup v1 writable: the dyno needs it.
        assert group.version != "none", f"no writable cgroup here: {group.reason}"
        proc = subprocess.Popen(group.wrap([sys.executable, "-c", "import time; time.sleep(30)"]))
        try:
            dyno_paths = [Path(p) for p in group.describe()["paths"].values()]
            deadline = time.monotonic() + 5
            while not group.contains(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)  # the wrapper needs a moment to write its pid
            assert group.contains(proc.pid), cg.proc_cgroup_text(proc.pid)
            assert group.describe()["applied"]["cpu_cores"] == pytest.approx(0.2)
            assert group.reading().usage_bytes is not None
        finally:
            proc.kill()
            proc.wait()
    assert not any(p.exists() for p in dyno_paths)


def test_bench_dyno_runs_end_to_end_in_short_form(tmp_path: Path) -> None:
    run = run_bench(["dyno", *SMOKE_ARGS, "--out-dir", str(tmp_path), "--work-dir", str(tmp_path)], timeout_s=58)
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    doc = json.loads((tmp_path / "results-dyno.json").read_text())

    assert doc["errors"] == []
    up = doc["uploads"]
    assert up["clients"] == up["completed"] == up["verified"] == 4
    assert up["failed"] == up["sha256_mismatches"] == up["early_claims"] == 0
    assert all(c["verified"] and c["notion_file_upload_id"] for c in up["per_client"])
    assert up["refused"] == sum(c["refused"] for c in up["per_client"])
    assert "no upload refused at creation (503)" in {c["name"] for c in doc["checks"]}
    # Health reported admission and the spool disk throughout.
    assert set(doc["health"]["admission_seen"]) <= {"admitting", "refusing"} and doc["health"]["admission_seen"]
    assert {c["mode"] for c in up["per_client"]} == {"single_part", "multi_part"}
    # Faults were on: the emulator failed some requests on purpose.
    assert sum(doc["emulator"]["faults_injected"].values()) > 0
    assert doc["rate_limits"]["bucket_429"] == 0

    required = dict(REQUIRED)
    if doc["cgroup"]["constrained"]:
        assert doc["cgroup"]["relay_inside"], doc["cgroup"]
        assert doc["cgroup"]["applied"]["cpu_cores"] == pytest.approx(0.2)
        for section, names in CGROUP_FIELDS.items():
            required[section] = required[section] + names
        # The relay found the limits by itself (TOTAL_MEMORY_MB is not set).
        assert doc["relay_detected"]["memory_matches_cgroup"] and doc["relay_detected"]["cpu_matches_cgroup"]
        # The cgroups made for the run are gone.
        assert not any(Path(p).exists() for p in doc["cgroup"]["paths"].values())
    for section, names in required.items():
        missing = [n for n in names if doc[section].get(n) is None]
        assert not missing, f"{section} lacks {missing}: {doc[section]}"
    assert doc["health"]["polls"] > 0

    assert "| throughput / budget bound |" in (tmp_path / "results-dyno.md").read_text()
    assert "dyno simulation" in run.stdout and "health" in run.stdout
    assert "Traceback" not in (tmp_path / "out" / "dyno" / "relay.log").read_text()
