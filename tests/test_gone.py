"""An upload that can never go on answers 410 on HEAD, PATCH and PUT, so that every tus client
starts over by itself; the status endpoint still says why. Real relay, emulator and Redis."""
from __future__ import annotations

import base64
import http.client
import json
from urllib.parse import urlsplit

import pytest
import requests

from harness.processes import wait_until
from harness.relay import MIB

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}


@pytest.fixture
def refusing_notion(stack):
    """After this, Notion refuses every file larger than 1 MiB for good (a 400 at send)."""
    before = stack.emulator.set_plan()  # an empty change: tells the current limit
    yield lambda: stack.emulator.set_plan(max_file_bytes=1 * MIB)
    stack.emulator.set_plan(plan=before["plan"], max_file_bytes=before["max_file_bytes"])


def assert_gone(r: requests.Response, head: bool = False, tus: bool = True) -> None:
    assert r.status_code == 410, r.text
    if tus:
        assert r.headers["Tus-Resumable"] == "1.0.0"
    if not head:
        body = r.json()
        assert body["error"] and body["can_resume"] is False and body["code"], body
        assert "Retry-After" not in r.headers


def test_an_upload_that_failed_for_good_answers_410_and_status_says_why(stack, refusing_notion):
    base = stack.relay.url
    size = 6 * MIB
    created = requests.post(f"{base}/files/", headers={
        **TUS, "Upload-Length": str(size),
        "Upload-Metadata": "filename " + base64.b64encode(b"doomed.txt").decode()}, timeout=30)
    assert created.status_code == 201, created.text
    url = created.headers["Location"]
    upload_id = url.rsplit("/", 1)[-1]
    refusing_notion()

    # The request that sends the last byte waits for Notion, which refuses the file for good.
    r = requests.patch(url, data=b"g" * size, headers={**TUS, **OCTET, "Upload-Offset": "0"}, timeout=60)
    assert_gone(r)

    status = wait_until(lambda: (s := stack.relay.status(upload_id))["status"] == "failed" and s,
                        timeout_s=30, message="the upload to be failed")
    assert status["can_resume"] is False and status["error"], status

    assert_gone(requests.head(url, headers=TUS, timeout=10), head=True)
    assert_gone(requests.patch(url, data=b"g", headers={**TUS, **OCTET, "Upload-Offset": str(size - 1)}, timeout=30))
    assert_gone(requests.put(f"{base}/api/upload/{upload_id}", data=b"g" * size, timeout=30), tus=False)

    # Also when the refusal comes before an 8 MiB body that the client sends in full first.
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("PATCH", parts.path, body=b"g" * (8 * MIB),
                     headers={**TUS, **OCTET, "Upload-Offset": "0"})
        answer = conn.getresponse()
        assert answer.status == 410
        assert json.loads(answer.read())["can_resume"] is False
    finally:
        conn.close()

    # The status keeps answering, and says why.
    again = requests.get(f"{base}/api/upload/status/{upload_id}", timeout=10)
    assert again.status_code == 200
    assert again.json()["status"] == "failed" and again.json()["error"] == status["error"]
