"""emulator/README.md stays true: its curl session runs against a live emulator."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from harness.emulator import running_emulator
from harness.processes import ROOT

README = ROOT / "emulator" / "README.md"


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def test_the_readme_curl_session_runs(tmp_path: Path) -> None:
    (session,) = [block for block in shell_blocks(README.read_text()) if "AUTH=(" in block]
    with running_emulator(tmp_path) as emu:
        env = dict(os.environ, EMU=emu.url, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", session],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        stats = emu.stats()
        assert stats["requests"]["send"] == {"200": 2}
        assert stats["requests"]["users_me"] == {"503": 1}


def test_the_readme_lists_every_flag() -> None:
    text = README.read_text()
    help_text = subprocess.run(
        [sys.executable, "-m", "emulator", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=20
    ).stdout
    flags = set(re.findall(r"(--[a-z][a-z-]+)", help_text)) - {"--help"}
    assert flags and all(f"`{flag}" in text for flag in flags), flags
