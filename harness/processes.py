"""Start real child processes (relay, emulator, redis-server) and wait for their ready line."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


class ManagedProcess:
    """A child process whose output is copied to a log file and scanned for a ready line."""

    def __init__(
        self,
        argv: Sequence[str],
        ready_pattern: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path = ROOT,
        timeout_s: float = 20.0,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._ready = threading.Event()
        self._pattern = re.compile(ready_pattern)
        self.match: re.Match[str] | None = None
        self._lines: list[str] = []
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._reader.join(1)
                self.kill()
                raise RuntimeError(
                    f"{self.argv[:3]} did not print its ready line "
                    f"(exit={self.proc.returncode}); output:\n{self.output()[-4000:]}"
                )

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with open(self.log_path, "a", encoding="utf-8") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                self._lines.append(line)
                if not self._ready.is_set():
                    m = self._pattern.search(line)
                    if m:
                        self.match = m
                        self._ready.set()

    def output(self) -> str:
        return "".join(self._lines)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        return self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after timeout_s; returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(2)
        return self.proc.returncode


def malloc_env() -> dict[str, str]:
    """The allocator settings run.sh gives the relay (malloc.env), for tests and benchmarks."""
    env = {}
    for line in (ROOT / "malloc.env").read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            env[key] = value
    return env


def wait_until(predicate, timeout_s: float = 10.0, interval_s: float = 0.05, message: str = ""):
    """Poll predicate() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {message or predicate}")
        time.sleep(interval_s)
