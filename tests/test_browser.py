"""The upload page in a real browser: headless Chromium (Debian's, through Playwright) against the
real relay, a private Redis and the Notion emulator. Every upload is checked at the emulator by
sha256, found through the status endpoint's notion.file_upload_id.

Screenshots and console logs of each page land in test-artifacts/; the finished page of the
two-file upload is test-artifacts/upload-page.png.
"""
from __future__ import annotations

import hashlib
import re
from typing import Iterator

import pytest
import requests
from playwright.sync_api import Browser, Page, Request, expect

from tests.support.browser import ARTIFACTS, launch_browser, open_page
from tests.support.processes import wait_until
from tests.support.relay import MIB, PAGE_ID, make_file

MAX_PATCH_BYTES = 8 * MIB
STORED = "Stored in Notion"
# Sends take a second each, so an upload is still running when the test interrupts it.
SLOW_SENDS = {"rate": 1, "kinds": {"slow": 1}, "endpoints": ["send"], "slow_s": 1.0}
TOKEN = "browser-test-token-0123456789"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_browser() as b:
        yield b


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    with open_page(browser, f"browser-{request.node.name}") as p:
        yield p


class Patches:
    """The Upload-Offset of every tus PATCH the page sends, per upload URL."""

    def __init__(self, page: Page) -> None:
        self.offsets: dict[str, list[int]] = {}
        page.on("request", self._seen)

    def _seen(self, request: Request) -> None:
        if request.method == "PATCH" and "/files/" in request.url:
            self.offsets.setdefault(request.url, []).append(int(request.headers["upload-offset"]))


def row(page: Page, filename: str):
    return page.locator("li.upload", has_text=filename)


def upload_id(page: Page, filename: str) -> str:
    expect(row(page, filename)).to_have_attribute("data-upload-id", re.compile(r".+"))
    value = row(page, filename).get_attribute("data-upload-id")
    assert value
    return value


def stored_sha256(relay, emulator, uid: str, headers: dict[str, str] | None = None) -> str:
    response = requests.get(f"{relay.url}/api/upload/status/{uid}", headers=headers or {}, timeout=10)
    response.raise_for_status()
    status = response.json()
    assert status["status"] == "completed", status
    stored = emulator.upload(status["notion"]["file_upload_id"])
    assert PAGE_ID in stored["attached_to"]
    return stored["sha256"]


def port_of(relay) -> str:
    return relay.url.rsplit(":", 1)[-1]


def test_two_files_are_stored_in_notion_through_the_page(page, relay_factory, emulator, tmp_path):
    relay = relay_factory()
    big, small = tmp_path / "big-60MiB.txt", tmp_path / "small-3MiB.txt"
    sha = {big.name: make_file(big, 60 * MIB, seed=1), small.name: make_file(small, 3 * MIB, seed=2)}
    patches = Patches(page)
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))

    page.goto(f"{relay.url}/")
    expect(page).to_have_title("Upload files to Notion")
    page.set_input_files("#file-input", [str(big), str(small)])
    expect(row(page, big.name).locator(".state")).to_have_text("Ready")
    page.click("#start")

    for path in (big, small):
        expect(row(page, path.name).locator(".state")).to_have_text(STORED, timeout=45_000)
    for path in (big, small):
        uid = upload_id(page, path.name)
        assert stored_sha256(relay, emulator, uid) == sha[path.name]
        status = relay.status(uid)
        expect(row(page, path.name).locator(".result")).to_contain_text(status["notion"]["file_upload_id"])
        expect(row(page, path.name).locator(".numbers")).to_contain_text("stored in Notion 60.0 MiB (100%)"
                                                                          if path is big else "(100%)")
    # Every PATCH fits in one part-sized window: 8 MiB steps for the 60 MiB file (10 MiB parts).
    big_offsets = next(v for url, v in patches.offsets.items() if url.endswith(upload_id(page, big.name)))
    assert sorted(set(big_offsets)) == list(range(0, 60 * MIB, MAX_PATCH_BYTES)), big_offsets
    # Nothing from elsewhere: the page works on a machine without internet.
    assert urls and all(u.startswith(f"{relay.url}/") or u.startswith("data:") for u in urls), urls
    # Nothing left to resume after a reload.
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('notion-relay/upload/'))") == []
    page.screenshot(path=str(ARTIFACTS / "upload-page.png"), full_page=True, animations="disabled")


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_relay_restart_mid_upload_the_page_finishes_by_itself(how, page, relay_factory, emulator, tmp_path):
    emulator.set_faults(SLOW_SENDS)
    relay = relay_factory()
    path = tmp_path / "restart-60MiB.txt"
    sha = make_file(path, 60 * MIB, seed=3)

    page.goto(f"{relay.url}/")
    page.set_input_files("#file-input", str(path))
    page.click("#start")
    uid = upload_id(page, path.name)
    wait_until(lambda: relay.status(uid)["parts_confirmed"] >= 1, timeout_s=30, message="a part in Notion")
    before = relay.status(uid)
    assert before["status"] != "completed" and before["bytes_confirmed"] < 60 * MIB, before

    if how == "kill":
        relay.kill()  # a crash: no goodbye to the browser
    else:
        relay.stop()  # SIGTERM: the relay drains and exits
    expect(row(page, path.name).locator(".state")).to_have_text("Retrying", timeout=15_000)
    expect(row(page, path.name).locator(".message")).to_contain_text("Trying again")
    if how == "kill":
        expect(row(page, path.name).locator(".message")).to_contain_text("connection to the server was lost")
    page.screenshot(path=str(ARTIFACTS / f"upload-page-{how}-retrying.png"), full_page=True, animations="disabled")
    emulator.clear_faults()
    relay2 = relay_factory(name="relay2", PORT=port_of(relay), DATA_DIR=str(tmp_path / "relay" / "data"))

    expect(row(page, path.name).locator(".state")).to_have_text(STORED, timeout=45_000)
    assert upload_id(page, path.name) == uid  # resumed, not started over
    assert stored_sha256(relay2, emulator, uid) == sha
    page.screenshot(path=str(ARTIFACTS / f"upload-page-{how}-finished.png"), full_page=True, animations="disabled")


def test_reload_then_choosing_the_same_file_resumes_the_upload(page, relay_factory, emulator, tmp_path):
    emulator.set_faults(SLOW_SENDS)
    relay = relay_factory()
    path = tmp_path / "reload-60MiB.txt"
    sha = make_file(path, 60 * MIB, seed=4)

    page.goto(f"{relay.url}/")
    page.set_input_files("#file-input", str(path))
    page.click("#start")
    uid = upload_id(page, path.name)
    wait_until(lambda: relay.status(uid)["parts_confirmed"] >= 1, timeout_s=30, message="a part in Notion")

    page.reload()
    emulator.clear_faults()
    expect(page.locator("#earlier")).to_be_visible()
    expect(page.locator("#earlier-list")).to_contain_text(path.name)
    patches = Patches(page)
    page.set_input_files("#file-input", str(path))
    expect(row(page, path.name).locator(".state")).to_have_text("Ready to resume")
    expect(row(page, path.name).locator(".message")).to_contain_text("already on the server")
    expect(page.locator("#earlier")).to_be_hidden()
    page.click("#start")

    expect(row(page, path.name).locator(".state")).to_have_text(STORED, timeout=45_000)
    assert upload_id(page, path.name) == uid
    offsets = [o for v in patches.offsets.values() for o in v]
    assert offsets and min(offsets) >= 10 * MIB, f"the resumed upload sent from {offsets}"
    assert stored_sha256(relay, emulator, uid) == sha


def test_upload_token_refused_in_plain_words_then_sent_on_every_request(page, relay_factory, emulator, tmp_path):
    relay = relay_factory(UPLOAD_TOKENS=f"browser:{TOKEN}")
    path = tmp_path / "token-3MiB.txt"
    sha = make_file(path, 3 * MIB, seed=5)
    seen: list[tuple[str, str, str | None]] = []
    page.on("request", lambda r: seen.append((r.method, r.url, r.headers.get("authorization")))
            if "/files/" in r.url or "/api/" in r.url else None)

    page.goto(f"{relay.url}/")
    page.set_input_files("#file-input", str(path))
    page.click("#start")
    expect(row(page, path.name).locator(".state")).to_have_text("Failed", timeout=15_000)
    expect(row(page, path.name).locator(".message")).to_contain_text("Your upload token was not accepted")
    assert seen and all(auth is None for _, _, auth in seen)

    seen.clear()
    expect(page.locator("#token-input")).to_be_visible()  # the token field opens by itself
    page.fill("#token-input", TOKEN)
    page.get_by_role("button", name=f"Retry {path.name}").click()
    expect(row(page, path.name).locator(".state")).to_have_text(STORED, timeout=30_000)
    assert {method for method, _, _ in seen} >= {"POST", "PATCH", "GET"}
    assert all(auth == f"Bearer {TOKEN}" for _, _, auth in seen), seen
    assert stored_sha256(relay, emulator, upload_id(page, path.name), {"Authorization": f"Bearer {TOKEN}"}) == sha

    page.reload()  # the token is remembered in this browser
    expect(page.locator("#token-input")).to_have_value(TOKEN)


def test_every_failure_gets_plain_words_and_the_right_decision(page, relay):
    page.goto(f"{relay.url}/")
    table = page.evaluate("""async () => {
        const tus = await import("./static/tus.js");
        const app = await import("./static/app.js");  // the page's own instance, already loaded
        const rows = {};
        const add = (name, failure) => { rows[name] = [tus.decide(failure), app.explain(failure)]; };
        for (const status of [400, 401, 403, 404, 409, 410, 412, 413, 415, 423, 429, 460, 500, 502, 503, 504]) {
            add(String(status), new tus.RequestFailure("http", "x", {status, phase: "patch", body: {error: "server words"}}));
        }
        add("415 at creation", new tus.RequestFailure("http", "x", {status: 415, phase: "create", body: {error: "no .exe"}}));
        add("502 for good", new tus.RequestFailure("http", "x", {status: 502, phase: "patch", body: {can_resume: false}}));
        for (const kind of ["network", "stalled", "timeout"]) add(kind, new tus.RequestFailure(kind, "x"));
        return rows;
    }""")
    decisions = {name: decision for name, (decision, _) in table.items()}
    assert decisions == {
        "400": "fail", "401": "fail", "403": "fail", "404": "restart", "409": "retry", "410": "restart",
        "412": "fail", "413": "fail", "415": "fail", "423": "retry", "429": "retry", "460": "retry",
        "500": "retry", "502": "retry", "503": "retry", "504": "retry", "415 at creation": "fail",
        "502 for good": "fail", "network": "retry", "stalled": "retry", "timeout": "retry",
    }
    for name, (_, words) in table.items():
        assert words[0].isupper() and words.endswith((".", "words", "exe")), (name, words)
        assert "HTTP" not in words and "undefined" not in words and "null" not in words, (name, words)
    assert table["401"][1].startswith("Your upload token was not accepted")
    assert "too large" in table["413"][1]
    assert "Notion does not accept this kind of file: no .exe" == table["415 at creation"][1]
    assert "connection to the server was lost" in table["network"][1]


def test_a_lost_final_reply_is_asked_again_and_never_taken_for_done(page, relay, emulator, tmp_path):
    path = tmp_path / "lost-reply-3MiB.txt"
    sha = make_file(path, 3 * MIB, seed=6)
    answers: list[tuple[int, str | None]] = []

    def lose_the_first_final_reply(route) -> None:
        if route.request.method == "PATCH" and not answers:
            response = route.fetch()  # the relay gets the bytes and answers once Notion holds them
            answers.append((response.status, response.headers.get("upload-status")))
            route.abort("connectionreset")  # … but the browser never hears it
        else:
            route.continue_()

    page.route("**/files/*", lose_the_first_final_reply)
    page.goto(f"{relay.url}/")
    page.set_input_files("#file-input", str(path))
    page.click("#start")
    expect(row(page, path.name).locator(".state")).to_have_text(STORED, timeout=30_000)
    assert answers == [(204, "completed")]
    assert stored_sha256(relay, emulator, upload_id(page, path.name)) == sha


def test_pause_resume_and_cancel(page, relay, emulator, tmp_path):
    emulator.set_faults(SLOW_SENDS)
    kept, dropped = tmp_path / "pause-60MiB.txt", tmp_path / "cancel-40MiB.txt"
    sha = make_file(kept, 60 * MIB, seed=7)
    make_file(dropped, 40 * MIB, seed=8)
    patches = Patches(page)

    page.goto(f"{relay.url}/")
    page.set_input_files("#file-input", [str(kept), str(dropped)])
    page.click("#start")
    kept_id, dropped_id = upload_id(page, kept.name), upload_id(page, dropped.name)
    page.get_by_role("button", name=f"Pause {kept.name}").click()
    expect(row(page, kept.name).locator(".state")).to_have_text("Paused")
    sent_before = sum(len(v) for url, v in patches.offsets.items() if url.endswith(kept_id))

    page.get_by_role("button", name=f"Cancel {dropped.name}").click()
    expect(row(page, dropped.name).locator(".state")).to_have_text("Cancelled")
    expect(row(page, dropped.name).locator(".message")).to_have_text("Cancelled. The server discarded what it had received.")
    assert requests.get(f"{relay.url}/api/upload/status/{dropped_id}", timeout=10).status_code in (404, 410)
    assert sum(len(v) for url, v in patches.offsets.items() if url.endswith(kept_id)) == sent_before, "sent while paused"
    remembered = page.evaluate("Object.values(localStorage)")
    assert len(remembered) == 1 and kept_id in remembered[0]  # only the paused one can resume

    emulator.clear_faults()
    page.get_by_role("button", name=f"Resume {kept.name}").click()
    expect(row(page, kept.name).locator(".state")).to_have_text(STORED, timeout=45_000)
    assert stored_sha256(relay, emulator, kept_id) == sha


def test_dropped_files_are_added_and_a_file_already_listed_is_not_added_twice(page, relay, emulator):
    page.goto(f"{relay.url}/")
    drop = """() => {
        const transfer = new DataTransfer();
        transfer.items.add(new File(["dropped on the page\\n"], "dropped.txt", {type: "text/plain", lastModified: 1}));
        document.querySelector("#dropzone").dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
    }"""
    page.evaluate(drop)
    expect(row(page, "dropped.txt").locator(".state")).to_have_text("Ready")
    page.evaluate(drop)
    expect(page.locator("#notice")).to_have_text("Already in the list: dropped.txt.")
    expect(page.locator("li.upload")).to_have_count(1)
    page.click("#start")
    expect(row(page, "dropped.txt").locator(".state")).to_have_text(STORED, timeout=30_000)
    expected = hashlib.sha256(b"dropped on the page\n").hexdigest()
    assert stored_sha256(relay, emulator, upload_id(page, "dropped.txt")) == expected
