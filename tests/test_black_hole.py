"""Notion as a black hole (accepts connections, never answers): a create must still get its
answer, 503 + Retry-After, before the platform's router cuts the request at 30 s. Every wait
counts against the create's deadline: the workspace-limit lookup, the create itself, the look
for a create whose answer was lost, the open breaker and the request budget."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from harness.stacks import Stack

ANSWER_WITHIN_S = 25.0


@pytest.mark.slow
def test_every_create_answers_503_within_25_s(tmp_path: Path):
    black_hole = '{"rate": 1, "kinds": {"stall": 1}, "stall_s": 600}'
    stack = Stack(tmp_path, ["--faults", black_hole])  # the relay's default timeouts and breaker
    try:
        for attempt in range(4):
            started = time.monotonic()
            r = requests.post(f"{stack.relay.url}/files/", timeout=40, headers={
                "Tus-Resumable": "1.0.0", "Upload-Length": "1000", "Upload-Metadata": "filename YS50eHQ="})
            took = time.monotonic() - started
            assert r.status_code == 503, (attempt, r.status_code, r.text)
            assert int(r.headers["Retry-After"]) >= 1 and r.json()["retry_after"] >= 1
            assert took <= ANSWER_WITHIN_S, f"create {attempt} answered after {took:.1f} s"
        assert stack.relay.health()["status"] != "healthy"
    finally:
        stack.close()
