"""Start the real relay (server.py) as a child process against an emulator and a Redis."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import requests

from harness.processes import PYTHON, ROOT, ManagedProcess, malloc_env

PAGE_ID = "00000000-0000-4000-8000-0000000000aa"
MIB = 2**20


class RelayProcess(ManagedProcess):
    @property
    def url(self) -> str:
        assert self.match is not None
        return self.match.group(1)

    def status(self, upload_id: str) -> dict[str, Any]:
        r = requests.get(f"{self.url}/api/upload/status/{upload_id}", timeout=10)
        r.raise_for_status()
        return r.json()

    def health(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/api/system/health", timeout=10).json()


def start_relay(workdir: Path, emulator_url: str, redis_url: str | None, **env: str) -> RelayProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    full_env = {
        "HOST": "127.0.0.1",
        "PORT": "0",
        "NOTION_TOKEN": "emulator-token",
        "NOTION_API_BASE": emulator_url,
        "NOTION_PARENT_PAGE_ID": PAGE_ID,
        "DATA_DIR": str(workdir / "data"),
        "METRICS_INTERVAL": "0.5",
        **malloc_env(),
    }
    if redis_url:
        full_env["REDIS_URL"] = redis_url
    full_env.update(env)
    return RelayProcess([PYTHON, str(ROOT / "server.py")], r"relay listening on (http://\S+)",
                        workdir / "relay.log", env=full_env, timeout_s=30)


def make_file(path: Path, size: int, seed: int = 0) -> str:
    """Write `size` pseudo-random bytes to `path` quickly; return their sha256 hex."""
    digest = hashlib.sha256()
    block = hashlib.sha256(f"seed-{seed}".encode()).digest() * 2048  # 64 KiB
    base = os.urandom(1 << 20)
    written = 0
    counter = 0
    with open(path, "wb") as f:
        while written < size:
            # Vary each MiB so parts differ and a misplaced part changes the hash.
            piece = (counter.to_bytes(8, "big") + block[:56]) + base[64:]
            piece = piece[: min(len(piece), size - written)]
            f.write(piece)
            digest.update(piece)
            written += len(piece)
            counter += 1
    return digest.hexdigest()
