"""GET /api/openapi.json, and schemathesis against it: no server error, every response as documented.

A short run (schemathesis's coverage, fuzzing and stateful phases, 50 examples per operation)
against a real relay, emulator and Redis. The stack gets a request budget, emulator rate limit
and upload cap far above what the run needs: throttling is proven elsewhere
(test_resilience.py), and here a 503 would only hide the answers being checked.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from handlers.openapi import build_document
from harness.processes import ROOT
from harness.stacks import Stack, unthrottled_stack

CHECKS = ",".join([
    "not_a_server_error",  # no 5xx at all: the stack is sized so that none is legitimate
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
])
MAX_EXAMPLES = 50
RUN_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory) -> Iterator[Stack]:
    s = unthrottled_stack(tmp_path_factory.mktemp("openapi"))
    yield s
    s.close()


def schemathesis_cli() -> list[str]:
    st = Path(sys.executable).with_name("st")
    return [str(st)] if st.exists() else [sys.executable, "-m", "schemathesis.cli"]


def test_the_document_is_openapi_3_1_and_names_every_route(fuzz_stack):
    r = requests.get(f"{fuzz_stack.relay.url}/api/openapi.json", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    doc = r.json()
    assert doc == build_document()
    assert doc["openapi"] == "3.1.0"
    assert {"/api/upload/create-session", "/api/upload/status/{upload_id}", "/api/upload/{upload_id}",
            "/api/system/health", "/metrics", "/files/", "/files/{upload_id}"} <= set(doc["paths"])
    assert set(doc["paths"]["/files/{upload_id}"]) >= {"head", "patch", "delete"}


def test_schemathesis_finds_no_server_error_or_schema_violation(fuzz_stack, tmp_path):
    url = f"{fuzz_stack.relay.url}/api/openapi.json"
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.support.schemathesis_hooks",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    argv = [*schemathesis_cli(), "run", url, "--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES),
            "--generation-database", "none", "--request-timeout", "20", "--no-color", "--output-truncate", "false",
            "--report", "junit", "--report-dir", str(tmp_path)]
    # cwd: schemathesis keeps a cache (.schemathesis/) in its working directory.
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-12000:]
    # Every operation of the document was exercised, not skipped.
    selected = re.search(r"Selected: (\d+)/(\d+)", out)
    tested = re.search(r"Tested: (\d+)", out)
    assert selected and tested and int(tested.group(1)) == int(selected.group(2)), out[-3000:]
    # The relay survived it in good shape: no trace in its log, breakers closed.
    relay = fuzz_stack.relay
    assert "Traceback" not in relay.output(), relay.output()[-4000:]
    health = relay.health()
    assert all(b["state"] == "CLOSED" for b in health["components"]["circuit_breakers"]["breakers"]), health
