"""The emulator as seen by Notion's official JavaScript SDK, `@notionhq/client` (pinned in
tests/sdk/package.json, installed from tests/sdk/package-lock.json).

tests/sdk/flow.mjs drives a live emulator through the SDK: users.me; single_part create+send
(file, image, pdf, audio, video); a multi_part upload whose parts go out of order and
concurrently, then complete and retrieve; list with a status filter and pagination (page_size,
start_cursor, and the SDK's collectPaginatedAPI); appending file, image, pdf, audio and video
blocks and listing them back; and the documented refusals, each surfacing as the SDK's
APIResponseError with its documented code. It also records what the SDK puts on the wire
(User-Agent, headers, complete without a body). It prints a JSON summary; this test checks it
claim by claim and verifies the stored bytes at the emulator by sha256.

The test installs the SDK itself (`npm ci` in tests/sdk when node_modules is missing or does not
match the lockfile), as the browser tests install chromium; it fails, never skips, when node or
npm are missing.
"""
from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from harness.emulator import NOTION_VERSION, running_emulator
from harness.processes import ROOT

SDK_DIR = ROOT / "tests" / "sdk"
PACKAGE = "@notionhq/client"
FLOW_TIMEOUT_S = 50
INSTALL_TIMEOUT_S = 180


def pinned_version() -> str:
    version = json.loads((SDK_DIR / "package.json").read_text())["dependencies"][PACKAGE]
    assert version[0].isdigit(), f"{PACKAGE} must be pinned to an exact version, not {version!r}"
    return version


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: the SDK test needs Node.js (>= 18) and npm", pytrace=False)
    return path


def installed_matches_lockfile() -> bool:
    """node_modules holds exactly what package-lock.json pins (npm's hidden lockfile agrees)."""
    hidden = SDK_DIR / "node_modules" / ".package-lock.json"
    if not hidden.exists():
        return False
    wanted = json.loads((SDK_DIR / "package-lock.json").read_text())["packages"]
    have = json.loads(hidden.read_text()).get("packages", {})
    for path, entry in wanted.items():
        if not path:
            continue
        got = have.get(path)
        if got is None or got.get("version") != entry.get("version") or got.get("integrity") != entry.get("integrity"):
            return False
        if not (SDK_DIR / path / "package.json").exists():
            return False
    return True


@pytest.fixture(scope="module")
def sdk() -> Iterator[str]:
    """The node binary, with tests/sdk/node_modules installed from the lockfile."""
    node = tool("node")
    npm = tool("npm")
    # One installer at a time (another pytest process may be here too).
    with open(SDK_DIR / "package.json", "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not installed_matches_lockfile():
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"], cwd=SDK_DIR, capture_output=True, text=True,
                timeout=INSTALL_TIMEOUT_S,
            )
            assert done.returncode == 0, f"npm ci failed in {SDK_DIR}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            assert installed_matches_lockfile(), "npm ci finished but node_modules does not match package-lock.json"
    installed = json.loads((SDK_DIR / "node_modules" / PACKAGE / "package.json").read_text())["version"]
    assert installed == pinned_version()
    yield node


def run_flow(node: str, url: str, token: str) -> dict[str, Any]:
    try:
        done = subprocess.run(
            [node, str(SDK_DIR / "flow.mjs"), "--base-url", url, "--token", token],
            cwd=SDK_DIR, capture_output=True, text=True, timeout=FLOW_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"flow.mjs did not finish in {FLOW_TIMEOUT_S} s; stderr:\n{(exc.stderr or b'')[-3000:]!r}")
    try:
        summary = json.loads(done.stdout)
    except ValueError:
        pytest.fail(f"flow.mjs printed no JSON summary (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    summary["_exit"] = done.returncode
    summary["_stderr"] = done.stderr
    return summary


@pytest.fixture(scope="module")
def flow(sdk: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], Any]]:
    """One run of flow.mjs against a fresh emulator (default flags); the emulator stays up for
    the checks of its records."""
    with running_emulator(tmp_path_factory.mktemp("sdk")) as emu:
        yield run_flow(sdk, emu.url, emu.token), emu


def checks(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in summary["checks"]}


def assert_checks(summary: dict[str, Any], *prefixes: str) -> None:
    """Every check whose name starts with one of the prefixes ran and passed."""
    found = [c for c in summary["checks"] if c["name"].startswith(prefixes)]
    assert found, f"flow.mjs ran no check named {prefixes}; crash: {summary.get('crash')}"
    failed = [f"{c['name']}: expected {c['expected']!r}, got {c['actual']!r}" for c in found if not c["ok"]]
    assert not failed, "\n".join(failed)


def test_the_flow_ran_to_the_end(flow):
    summary, _ = flow
    assert summary.get("crash") is None, summary["crash"]
    assert summary["sdk_version"] == pinned_version()
    assert summary["notion_version"] == NOTION_VERSION == "2025-09-03"
    failed = [f"{c['name']}: expected {c['expected']!r}, got {c['actual']!r}" for c in summary["checks"] if not c["ok"]]
    assert summary["_exit"] == (1 if failed else 0), summary["_stderr"][-3000:]
    assert len(summary["checks"]) >= 150


def test_users_me(flow):
    summary, _ = flow
    assert_checks(summary, "users.me:")
    assert summary["max_file_upload_size_in_bytes"] == 5 * 2**30  # the emulator's default paid plan


@pytest.mark.parametrize("label", ["file", "image", "pdf", "audio", "video"])
def test_single_part_create_and_send(flow, label):
    summary, _ = flow
    assert_checks(summary, f"{label} create:", f"{label} send:")


def test_multi_part_out_of_order_and_concurrent_then_complete_and_retrieve(flow):
    summary, emu = flow
    assert_checks(summary, "multi_part ")
    record = emu.upload(summary["uploads"]["multi_part"]["id"])
    assert record["mode"] == "multi_part"
    assert record["number_of_parts"] == 3
    assert sorted(record["parts"]) == ["1", "2", "3"]
    assert record["max_concurrent_sends"] >= 2


def test_list_with_status_filter_and_pagination(flow):
    summary, _ = flow
    assert_checks(summary, "list ")
    names = checks(summary)
    assert "list pending page 3: object" in names  # 5 pending uploads, page_size 2


def test_file_image_pdf_audio_video_blocks(flow):
    summary, emu = flow
    assert_checks(summary, "blocks", "retrieve after append:")
    for label in ("file", "image", "pdf", "audio", "video", "multi_part"):
        assert emu.upload(summary["uploads"][label]["id"])["attached_to"], label


@pytest.mark.parametrize("refusal, code, status", [
    ("small middle part", "validation_error", 400),
    ("number_of_parts 1001", "validation_error", 400),
    ("complete with a missing part", "validation_error", 400),
    ("send after expiry", "validation_error", 400),
    ("bad token: users.me", "unauthorized", 401),
    ("bad token: fileUploads.create", "unauthorized", 401),
    ("unknown id: retrieve", "object_not_found", 404),
    ("unknown id: send", "object_not_found", 404),
    ("unknown id: complete", "object_not_found", 404),
])
def test_refusal_surfaces_as_the_documented_sdk_error(flow, refusal, code, status):
    summary, _ = flow
    names = checks(summary)
    assert names[f"{refusal}: code"]["actual"] == code
    assert names[f"{refusal}: status"]["actual"] == status
    assert names[f"{refusal}: sent once (not retried)"]["actual"] == 1
    assert_checks(summary, f"{refusal}:")


def test_refused_uploads_are_left_as_notion_leaves_them(flow):
    summary, emu = flow
    assert_checks(summary, "after expiry:")
    incomplete = emu.upload(summary["uploads"]["incomplete"]["id"])
    assert sorted(incomplete["parts"]) == ["1", "3"]
    assert incomplete["sha256"] is None
    assert emu.upload(summary["uploads"]["expired"]["id"])["status"] == "expired"


def test_bytes_at_the_emulator(flow):
    summary, emu = flow
    assert_checks(summary, "emulator record ")
    finished = {label: u for label, u in summary["uploads"].items() if u["sha256"] is not None}
    assert set(finished) == {"file", "image", "pdf", "audio", "video", "multi_part"}
    for label, upload in finished.items():
        record = emu.upload(upload["id"])
        assert (record["sha256"], record["size"]) == (upload["sha256"], upload["size"]), label
        assert record["filename"] == upload["filename"], label
        assert record["content_type"] == upload["content_type"], label
    assert finished["multi_part"]["size"] > 10 * 2**20


def test_what_the_sdk_sends_on_the_wire(flow):
    """What the relay should match (issue 10, item 6): the SDK's User-Agent and headers, and a
    complete with no body."""
    summary, _ = flow
    assert_checks(summary, "wire:")
    wire = summary["wire"]
    assert wire["complete"]["body_bytes"] == 0
    assert "content-type" not in wire["complete"]["headers"]
    assert wire["users_me"]["headers"]["user-agent"] == f"notionhq-client/{pinned_version()}"
    # Every request the SDK made during the flow: complete never carried a body.
    completes = [r for r in summary["requests"] if r["path"].endswith("/complete")]
    assert completes and all(r["body"] == "none" for r in completes)
    sends = [r for r in summary["requests"] if r["path"].endswith("/send")]
    assert sends and all(r["body"] == "form-data" for r in sends)
