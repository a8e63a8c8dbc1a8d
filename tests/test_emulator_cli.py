"""`python -m emulator`: the ready line, start-up time, flags, and a clean exit on signals."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from harness.emulator import NotionClient, running_emulator, start_emulator
from harness.processes import ROOT, ManagedProcess


def test_starts_in_under_2_s_and_prints_exactly_its_address(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = ManagedProcess(
        [sys.executable, "-m", "emulator", "--port", "0", "--data-dir", str(tmp_path / "d")],
        r"emulator listening on (http://\S+)",
        tmp_path / "emulator.log",
        timeout_s=10,
    )
    try:
        assert time.monotonic() - started < 2.0
        assert proc.match is not None
        line = proc.output().splitlines()[0]
        assert re.fullmatch(r"emulator listening on http://127\.0\.0\.1:(\d+)", line)
        port = int(line.rsplit(":", 1)[1])
        assert port > 0
        assert requests.get(f"http://127.0.0.1:{port}/_emulator/health", timeout=5).json() == {"ok": True}
    finally:
        assert proc.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_exits_cleanly_on_signals(tmp_path: Path, sig: int) -> None:
    emu = start_emulator(tmp_path)
    emu.process.signal(sig)
    assert emu.process.wait(10) == 0
    assert "Traceback" not in emu.output()


def test_defaults_token_and_paid_plan(tmp_path: Path) -> None:
    with running_emulator(tmp_path) as emu:
        assert emu.token == "emulator-token"
        me = NotionClient(emu).request("GET", "/v1/users/me").json()
        assert me["bot"]["workspace_limits"]["max_file_upload_size_in_bytes"] == 5 * 2**30


def test_custom_token_and_max_file_bytes(tmp_path: Path) -> None:
    with running_emulator(tmp_path, "--token", "secret", "--max-file-bytes", "1234") as emu:
        assert emu.token == "secret"
        assert NotionClient(emu, token="emulator-token").request("GET", "/v1/users/me").status_code == 401
        me = NotionClient(emu).request("GET", "/v1/users/me").json()
        assert me["bot"]["workspace_limits"]["max_file_upload_size_in_bytes"] == 1234


@pytest.mark.parametrize(
    "args",
    [
        ["--rate-limit", "fast"],
        ["--rate-limit", "0/60"],
        ["--faults", "{not json"],
        ["--faults", '{"rate": 5}'],
        ["--plan", "enterprise"],
        ["--expiry-s", "0"],
    ],
)
def test_bad_arguments_exit_with_a_message(tmp_path: Path, args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "emulator", "--port", "0", "--data-dir", str(tmp_path), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=20,
    )
    assert result.returncode == 2
    assert "usage:" in result.stderr and "Traceback" not in result.stderr
