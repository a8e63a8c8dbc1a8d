"""The linter and the type checker, run by `./run.sh test` like every other test: ruff over the
whole project (ruff.toml) and mypy, strict on engine/ (every file there carries type hints)."""
from __future__ import annotations

import subprocess
import sys

from harness.processes import ROOT


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_finds_nothing():
    result = run("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_strict_on_the_engine_and_clean():
    result = run("mypy", "--strict", "--ignore-missing-imports", "--no-incremental", "engine")
    assert result.returncode == 0, result.stdout + result.stderr
