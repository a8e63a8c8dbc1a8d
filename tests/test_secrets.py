"""The Notion token and the upload tokens never appear in a response (body or header) or in the
relay's log, whatever happens: uploads, client errors, Notion's faults and outages, health,
metrics, the OpenAPI document, and a configuration error at start."""
from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import requests

from harness.processes import PYTHON, ROOT, wait_until
from harness.relay import MIB
from harness.stacks import UNTHROTTLED, Stack

NOTION_SECRET = "secret_NotionIntegration7f3c9a1e5b2d8c4f6a0e9d1b3c5a7f9e"
UPLOAD_SECRET = "alice-upload-token-4b8e2f6a9c1d3e5f7a9b0c2d4e6f8a1b"
SECRETS = (NOTION_SECRET, UPLOAD_SECRET)
AUTH = {"Authorization": f"Bearer {UPLOAD_SECRET}"}
TUS = {"Tus-Resumable": "1.0.0"}


def leaks(text: str) -> list[str]:
    """The secrets, or their URL-encoded forms, found in `text`."""
    return [s for s in SECRETS for form in {s, quote(s, safe=""), quote_plus(s)} if form in text]


class Recorder(requests.Session):
    """A session that keeps every response it got, to look for secrets in all of them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int, str]] = []
        self.hooks["response"].append(self._keep)
        # Why: the relay hangs up after an error answered before a streamed body was read,
        # without saying `Connection: close`; a reused connection would then be reset.
        self.headers["Connection"] = "close"

    def _keep(self, response: requests.Response, *args, **kwargs) -> None:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        body = response.content.decode("latin-1")
        self.seen.append((f"{response.request.method} {response.request.url}", response.status_code,
                          headers + "\n\n" + body))


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(
        tmp_path, ["--token", NOTION_SECRET, "--rate-limit", UNTHROTTLED],
        NOTION_TOKEN=NOTION_SECRET, UPLOAD_TOKENS=f"alice:{UPLOAD_SECRET}", NOTION_RATE_LIMIT=UNTHROTTLED,
        INITIAL_RETRY_DELAY="0.05", MAX_RETRY_DELAY="0.2", MAX_RETRIES="3", CB_NOTION_TIMEOUT_DURATION="1",
        CB_UPLOAD_TIMEOUT_DURATION="1")
    try:
        yield stack
    finally:
        stack.close()


def create(http: Recorder, base: str, name: str = "s.txt", size: int = MIB, headers=AUTH) -> requests.Response:
    return http.post(f"{base}/api/upload/create-session", json={"filename": name, "fileSize": size},
                     headers=headers, timeout=30)


def test_no_secret_in_any_response_or_log_line(guarded):
    base, emulator = guarded.relay.url, guarded.emulator
    http = Recorder()

    # Uploads that succeed, through Notion faults of several kinds.
    emulator.set_faults({"rate": 1, "kinds": {"500": 1, "429": 1, "reset": 1}, "endpoints": ["send"], "count": 3})
    upload_id = create(http, base).json()["upload_id"]
    assert http.put(f"{base}/api/upload/{upload_id}", data=b"s" * MIB, headers=AUTH, timeout=60).status_code == 200
    assert http.get(f"{base}/api/upload/status/{upload_id}", headers=AUTH, timeout=10).status_code == 200

    # tus, with its errors: offset mismatch, unknown after termination.
    meta = "filename " + base64.b64encode(b"t.txt").decode()
    r = http.post(f"{base}/files/", headers={**AUTH, **TUS, "Upload-Length": str(MIB), "Upload-Metadata": meta},
                  timeout=30)
    assert r.status_code == 201, r.text
    tus_url = r.headers["Location"]
    octets = {**AUTH, **TUS, "Content-Type": "application/offset+octet-stream"}
    assert http.patch(tus_url, data=b"t" * 1000, headers={**octets, "Upload-Offset": "0"}, timeout=30).status_code == 204
    assert http.patch(tus_url, data=b"t", headers={**octets, "Upload-Offset": "7"}, timeout=30).status_code == 409
    assert http.head(tus_url, headers={**AUTH, **TUS}, timeout=10).status_code == 200
    assert http.delete(tus_url, headers={**AUTH, **TUS}, timeout=10).status_code == 204
    assert http.head(tus_url, headers={**AUTH, **TUS}, timeout=10).status_code in (404, 410)

    # Client errors, the token missing, wrong, or where it does not belong (a query string).
    assert create(http, base, headers={}).status_code == 401
    assert create(http, base, headers={"Authorization": f"Bearer {UPLOAD_SECRET[:-1]}x"}).status_code == 401
    assert create(http, base, headers={"Authorization": f"Basic {UPLOAD_SECRET}"}).status_code == 401
    assert http.get(f"{base}/api/upload/status/{'0' * 32}?token={UPLOAD_SECRET}", headers=AUTH,
                    timeout=10).status_code == 404
    assert http.post(f"{base}/api/upload/create-session", data=b"{", headers=AUTH, timeout=10).status_code == 400
    assert create(http, base, name="tool.exe").status_code == 415
    assert create(http, base, size=10 * 2**40).status_code == 413

    # Notion refuses a part for good: the upload fails with Notion's own message.
    emulator.set_faults({"rate": 1, "kinds": {"429": 1}, "endpoints": ["send"], "count": 1,
                         "rate_limit_reason": "public_api_request_blocked"})
    doomed = create(http, base).json()["upload_id"]
    r = http.put(f"{base}/api/upload/{doomed}", data=b"d" * MIB, headers=AUTH, timeout=60)
    assert r.status_code in (410, 503) and r.json()["code"] == "upload_failed", r.text

    # Notion away: creation gives up with 503 and the breaker opens.
    emulator.clear_faults()
    emulator.outage(3, status=503)
    assert create(http, base).status_code == 503
    r = create(http, base)
    assert r.status_code == 503 and r.json().get("circuit_breaker_state") == "OPEN", r.text
    wait_until(lambda: create(http, base).status_code == 201, timeout_s=20, interval_s=0.5,
               message="uploads accepted again after the outage")

    # Observability, with and without a token.
    for headers in (AUTH, {}):
        http.get(f"{base}/api/system/health", headers=headers, timeout=10)
        http.get(f"{base}/metrics", headers=headers, timeout=10)
        http.get(f"{base}/api/openapi.json", headers=headers, timeout=10)
    assert "relay_bytes_received_total" in http.get(f"{base}/metrics", headers=AUTH, timeout=10).text

    guarded.relay.stop()
    statuses = {status for _, status, _ in http.seen}
    assert {200, 201, 204, 400, 401, 404, 409, 413, 415, 503} <= statuses, statuses
    for request, status, text in http.seen:
        assert not leaks(text), f"{request} → {status} shows a secret:\n{text[:2000]}"
    log = guarded.relay.output()
    assert not leaks(log), [line for line in log.splitlines() if leaks(line)][:5]
    # The token in the query string reached the access log, masked.
    assert f"/api/upload/status/{'0' * 32}?token=***" in log
    assert "event=UPLOAD_FAILED" in log and "OPENED" in log  # the error paths above were really taken


def test_a_configuration_error_does_not_echo_the_tokens():
    env = {"PATH": "/usr/bin:/bin", "NOTION_TOKEN": NOTION_SECRET,
           "UPLOAD_TOKENS": f"alice:{UPLOAD_SECRET},bob:short"}
    result = subprocess.run([PYTHON, str(ROOT / "server.py")], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "UPLOAD_TOKENS" in result.stderr
    assert not leaks(result.stdout + result.stderr), result.stderr
