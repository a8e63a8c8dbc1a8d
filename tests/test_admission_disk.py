"""The spool disk's free space, end to end: a relay whose spool is on a small tmpfs (tests run as
root here) reports the disk in health, refuses new uploads before the disk fills, and admits
them again once space is back. The decisions themselves are tested on fakes in test_admission.py;
this proves the wiring (statvfs on the limiter's tick, health, the 503's body)."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

from harness.processes import wait_until
from harness.relay import MIB
from tests.support import tmpfs

DISK_BYTES = 64 * MIB
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture
def small_disk(tmp_path: Path):
    with tmpfs.small_disk(tmp_path, DISK_BYTES) as mount:
        yield mount


def create(url: str, size: int = MIB) -> requests.Response:
    return requests.post(f"{url}/files/", headers={**TUS, "Upload-Length": str(size),
                                                   "Upload-Metadata": "filename ZC50eHQ="}, timeout=30)


def spool_disk(relay) -> dict:
    return relay.health()["components"]["spool_disk"]


def test_a_low_spool_disk_refuses_new_uploads_and_health_says_so(relay_factory, small_disk: Path):
    # 64 MiB disk, 16 MiB kept free; a new upload of unknown size reserves 3 parts (30 MiB with
    # the 10 MiB parts set here; 3 default parts of 20 MiB would not fit the disk to begin with).
    relay = relay_factory(SPOOL_DIR=str(small_disk / "spool"), SPOOL_MIN_FREE_MB="16", METRICS_INTERVAL="0.2",
                          PART_SIZE_MB="10")
    disk = spool_disk(relay)
    assert disk["status"] == "healthy" and disk["total_bytes"] == DISK_BYTES and disk["min_free_mb"] == 16
    assert create(relay.url).status_code == 201

    ballast = small_disk / "ballast"
    ballast.write_bytes(b"\0" * (30 * MIB))  # 34 MiB free: 30 reserved would leave 4 < 16
    assert wait_until(lambda: spool_disk(relay)["status"] == "low", timeout_s=10)
    health = relay.health()
    assert health["status"] == "degraded"
    disk = health["components"]["spool_disk"]
    assert 30 * MIB <= disk["free_bytes"] <= 35 * MIB and disk["reserved_bytes"] >= 30 * MIB
    refused = create(relay.url, 40 * MIB)  # reserves its 3 parts: 30 MiB
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 10
    body = refused.json()
    assert body["reason"] == "spool_disk" and "disk is nearly full" in body["error"]
    assert relay.health()["components"]["admission"]["refused"] == {"spool_disk": 1}

    ballast.unlink()
    assert wait_until(lambda: spool_disk(relay)["status"] == "healthy", timeout_s=10)
    assert relay.health()["status"] == "healthy"
    assert create(relay.url).status_code == 201
    metrics = requests.get(f"{relay.url}/metrics", timeout=10).text
    assert "relay_spool_free_bytes " in metrics and 'relay_uploads_refused_total{reason="spool_disk"} 1.0' in metrics
