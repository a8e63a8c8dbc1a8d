"""The upload page takes an upload grant from the app as /#grant=…: headless Chromium against the
real relay. The grant is sent as the bearer token on every request, leaves the address bar at
once (a fragment never reaches a server or a Referer), survives a reload of the tab and is never
kept in localStorage."""
from __future__ import annotations

import json
import time

import jwt
import pytest
import redis as redis_sync
from playwright.sync_api import expect

from harness.relay import MIB, make_file

SECRET = "grant-secret-for-the-page-test-0123456789abcdef"
STORED = "Stored in Notion"

pytestmark = pytest.mark.slow
ARTIFACT_PREFIX = "grant"  # names the page fixture's screenshots and logs


def test_the_page_uploads_with_a_grant_handed_over_in_the_fragment(page, relay_factory, redis_server, tmp_path):
    relay = relay_factory(UPLOAD_GRANT_SECRET=SECRET)
    now = int(time.time())
    grant = jwt.encode({"sub": "page-user-7", "aud": "notion-upload-relay", "exp": now + 600,
                        "max_bytes": 4 * MIB, "content_types": ["text/plain"]}, SECRET, algorithm="HS256")
    path = tmp_path / "granted-2MiB.txt"
    make_file(path, 2 * MIB, seed=11)
    seen: list[tuple[str, str | None]] = []
    page.on("request", lambda r: seen.append((r.url, r.headers.get("authorization")))
            if "/files/" in r.url or "/api/upload/" in r.url else None)

    page.goto(f"{relay.url}/#grant={grant}")
    assert "#" not in page.url and grant not in page.url  # out of the address bar at once
    page.set_input_files("#file-input", str(path))
    page.click("#start")
    row = page.locator("li.upload", has_text=path.name)
    expect(row.locator(".state")).to_have_text(STORED, timeout=30_000)
    assert seen and all(auth == f"Bearer {grant}" for _, auth in seen), seen
    assert all(grant not in url for url, _ in seen)

    upload_id = row.get_attribute("data-upload-id")
    client = redis_sync.Redis.from_url(redis_server.url)
    try:
        assert json.loads(client.get(f"relay:upload:{upload_id}"))["owner"] == "page-user-7"
    finally:
        client.close()

    page.reload()  # the grant lasts for this tab...
    expect(page.locator("#token-input")).to_have_value(grant)
    # ... and is never kept beyond it.
    assert page.evaluate("() => Object.values(localStorage).join(' ')").find(grant) == -1
