"""The seeds' JSON API: create-session, streamed PUT, status and health, end to end."""
from __future__ import annotations

import json
import subprocess

import pytest
import requests
from tusclient import client as tus

from harness.relay import MIB, make_file
from tests.test_tus_uploads import assert_stored_in_notion

HEALTH_FIELDS = {
    "timestamp", "status", "components", "performance",
}
RESOURCE_FIELDS = {"status", "memory_usage_mb", "memory_usage_percent", "cpu_usage_percent", "active_uploads",
                   "optimal_workers", "resource_state"}
STATUS_FIELDS = {"upload_id", "status", "filename", "file_size", "bytes_uploaded", "is_multipart", "created_at",
                 "system_resources", "circuit_breaker", "notion", "offset", "durable_offset"}


def create_session(base: str, filename: str, size: int, content_type: str | None = "text/plain") -> dict:
    body = {"filename": filename, "fileSize": size}
    if content_type:
        body["contentType"] = content_type
    r = requests.post(f"{base}/api/upload/create-session", json=body, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()


def test_health_has_every_field_of_the_seeds_example(stack):
    r = requests.get(f"{stack.relay.url}/api/system/health", timeout=10)
    assert r.status_code == 200
    h = r.json()
    assert HEALTH_FIELDS <= set(h)
    assert h["status"] == "healthy"
    assert RESOURCE_FIELDS <= set(h["components"]["resource_manager"])
    breakers = h["components"]["circuit_breakers"]
    assert breakers["status"] == "healthy"
    for b in breakers["breakers"]:
        assert {"name", "state", "success_rate", "total_calls"} <= set(b)
    assert {"status", "storage_type", "checkpoint_interval"} <= set(h["components"]["checkpoint_manager"])
    assert {"active_upload_sessions", "total_memory_limit_mb", "total_cpu_limit"} <= set(h["performance"])


def test_status_has_every_field_and_one_id_space_with_tus(stack, tmp_path):
    size = 21 * MIB
    path = tmp_path / "both.txt"
    sha = make_file(path, size, seed=3)
    session = create_session(stack.relay.url, "both.txt", size)
    upload_id = session["upload_id"]
    before = stack.relay.status(upload_id)
    assert STATUS_FIELDS <= set(before)
    assert {"memory_usage_mb", "memory_usage_percent", "optimal_workers", "resource_state"} <= set(before["system_resources"])
    assert {"state", "success_rate"} <= set(before["circuit_breaker"])
    assert {"file_upload_id", "status", "block_id"} <= set(before["notion"])
    assert before["status"] == "created" and before["offset"] == 0 and before["is_multipart"]
    # The same id continues with tus.
    uploader = tus.TusClient(f"{stack.relay.url}/files/").uploader(
        str(path), url=f"{stack.relay.url}/files/{upload_id}", chunk_size=4 * MIB)
    uploader.upload()
    assert_stored_in_notion(stack, upload_id, sha, size)


def test_put_with_content_length(stack, tmp_path):
    size = 12 * MIB + 1
    path = tmp_path / "put.txt"
    sha = make_file(path, size, seed=5)
    session = create_session(stack.relay.url, "put.txt", size)
    with open(path, "rb") as f:
        r = requests.put(f"{stack.relay.url}/api/upload/{session['upload_id']}", data=f, timeout=120,
                         headers={"Content-Length": str(size)})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "completed"
    assert_stored_in_notion(stack, session["upload_id"], sha, size)


@pytest.mark.slow
def test_put_1gib_chunked_with_curl(stack, tmp_path):
    size = 2**30
    path = tmp_path / "big.txt"
    sha = make_file(path, size, seed=11)
    session = create_session(stack.relay.url, "big.txt", size)
    result = subprocess.run(
        ["curl", "-sS", "--fail-with-body", "-X", "PUT", "-T", str(path), "-H", "Transfer-Encoding: chunked",
         "-H", "Expect:", f"{stack.relay.url}/api/upload/{session['upload_id']}"],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr + result.stdout
    assert json.loads(result.stdout)["status"] == "completed"
    assert_stored_in_notion(stack, session["upload_id"], sha, size)


@pytest.mark.parametrize("body, needle", [
    ({"fileSize": 10}, "filename"),
    ({"filename": "a.txt", "fileSize": "10"}, "fileSize"),
    ({"filename": "a.txt", "fileSize": -1}, "fileSize"),
    ({"filename": "a.txt", "fileSize": 0}, "at least 1 byte"),
    ({"filename": "a.txt", "fileSize": 6 * 2**30}, "at most"),
])
def test_create_session_rejects_bad_input_clearly(stack, body, needle):
    r = requests.post(f"{stack.relay.url}/api/upload/create-session", json=body, timeout=10)
    assert 400 <= r.status_code < 500
    assert needle in r.json()["error"]


def test_invalid_json_and_unknown_ids(stack):
    r = requests.post(f"{stack.relay.url}/api/upload/create-session", data=b"{nope", timeout=10)
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    r = requests.get(f"{stack.relay.url}/api/upload/status/{'0' * 32}", timeout=10)
    assert r.status_code == 404 and r.json()["error"]
    r = requests.get(f"{stack.relay.url}/api/upload/status/../../etc", timeout=10)
    assert r.status_code == 404
