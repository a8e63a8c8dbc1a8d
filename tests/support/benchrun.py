"""Run a benchmark as the tests' short forms do, without leaving its processes behind.

`subprocess.run(timeout=…)` kills only the bench itself: the relay, emulator and redis-server
it started would live on (and load every later test and benchmark on the machine). Here the
bench gets its own process group; past its time it is interrupted first, so that its own
clean-up (processes, cgroups, scratch files) runs, and then the whole group is killed.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLEAN_UP_S = 15.0


def run_bench(args: Sequence[str], timeout_s: float,
              env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m bench *args` from the project's root; raises TimeoutExpired past `timeout_s`."""
    argv = [sys.executable, "-m", "bench", *args]
    proc = subprocess.Popen(argv, cwd=ROOT, env=dict(env) if env is not None else None, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=CLEAN_UP_S)
        except subprocess.TimeoutExpired:
            out, err = "", ""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise subprocess.TimeoutExpired(argv, timeout_s, output=out, stderr=err) from None
    finally:
        # Whatever the bench left running in its group goes with it.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)
