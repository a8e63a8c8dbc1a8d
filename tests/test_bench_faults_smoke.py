"""The faults benchmark's machinery still works: a short `python -m bench faults` end to end.

3 clients, small files, the three runs (no faults, 30 % random 5xx, a 6 s Notion outage). No
number is asserted (the benchmark judges speed itself, see bench/README.md): only that every run
ran and verified every upload, that faults were injected, that the outage opened the breaker and
that the report has its fields.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from bench import faults
from tests.support.benchrun import run_bench

SMOKE_ARGS = ["--clients", "3", "--sizes", "6M,21M,12M", "--fault-rate", "0.3", "--outage-s", "6",
              "--outage-at", "0.2", "--outage-clients", "3", "--idle-s", "0.5", "--deadline", "60"]
# The relay's breaker stays open 30 s by default; the outage run would wait that out in full
# after a 6 s outage. A short open period still opens it during the outage, lets its half-open
# probe meet the outage or its end, and closes it before the run ends (the relay reads this from
# its environment, which the benchmark passes on).
SMOKE_ENV = {"CB_NOTION_TIMEOUT_DURATION": "3"}


def test_each_run_gets_its_own_faults() -> None:
    args = faults.parse_args(["--clients", "25", "--outage-clients", "10"])
    clean, faulted, outage = (faults.phase_args(args, r) for r in faults.RUNS)
    assert clean.fault_rate == 0 and not clean.outage_s and clean.clients == 25
    assert faulted.fault_rate == 0.1 and faulted.fault_kinds == ["500", "502", "503", "504"] and not faulted.outage_s
    assert outage.fault_rate == 0 and outage.outage_s == 60 and outage.clients == 10
    # Everything else is the dyno run's: the same cgroup limits, timeouts and files.
    assert (clean.cpu, clean.memory, clean.sizes) == (faulted.cpu, faulted.memory, faulted.sizes)


def test_bench_faults_runs_end_to_end_in_short_form(tmp_path: Path) -> None:
    run = run_bench(["faults", *SMOKE_ARGS, "--out-dir", str(tmp_path), "--work-dir", str(tmp_path)],
                    timeout_s=170, env={**os.environ, **SMOKE_ENV})
    assert run.returncode == 0, f"stdout:\n{run.stdout[-6000:]}\nstderr:\n{run.stderr[-4000:]}"
    doc = json.loads((tmp_path / "results-faults.json").read_text())
    assert doc["errors"] == []
    assert set(doc["runs"]) == {"clean", "faults", "outage"}
    for name, s in doc["runs"].items():
        assert s["clients"] == s["verified"] == 3, (name, s)
        assert s["failed"] == s["sha256_mismatches"] == s["early_claims"] == 0, (name, s)
        assert s["mib_per_s"] and s["wall_s"] and s["health_p99_ms"] is not None, (name, s)
        assert s["bucket_429"] == 0, (name, s)
    assert doc["runs"]["clean"]["faults_injected_total"] == 0
    assert doc["runs"]["faults"]["faults_injected_total"] > 0
    assert doc["throughput_ratio"] is not None
    outage = doc["runs"]["outage"]
    assert outage["breaker_openings"] >= 1 and outage["breaker_opened_after_outage_start_s"] is not None
    assert outage["breaker_state_at_end"] == "CLOSED"
    names = {c["name"] for c in doc["checks"]}
    assert any(n.startswith("throughput with") for n in names) and "scattered 5xx never opened the breaker" in names
    assert "| 30% random 5xx |" in (tmp_path / "results-faults.md").read_text()
    for name in doc["runs"]:
        assert "Traceback" not in (tmp_path / "out" / "faults" / name / "relay.log").read_text()
