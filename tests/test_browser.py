"""The upload page in a real browser: headless Chromium (Debian's, through Playwright) against the
real relay, a private Redis and the Notion emulator. Every upload is checked at the emulator by
sha256, found through the status endpoint's notion.file_upload_id.

The page uploads with tus-js-client (node_modules/, served at /static/vendor/tus.min.js);
axe-core (node_modules/ too) checks it against WCAG 2.1 A/AA.

Screenshots and console logs of each page land in test-artifacts/; the ones named page-*.png are
the README's (copied to docs/screenshots/).
"""
from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import Browser, Page, Request, expect

from harness.emulator import NotionClient
from harness.processes import wait_until
from harness.relay import MIB, PAGE_ID, make_file
from settings import Settings
from tests.support.browser import ARTIFACTS, axe_violations, open_page
from tests.test_destinations import ROW_SCHEMA, caption_of, new_page
from tests.test_exactly_once import page_blocks

MAX_PATCH_BYTES = 8 * MIB
PART = Settings.from_env({}).part_size_bytes  # the relay's default part size (PART_SIZE_MB)
STORED = "Stored in Notion"
NOTION_AWAY = "Notion is not answering; your file is safe here and will continue."
# Sends take a second each, so an upload is still running when the test interrupts it.
SLOW_SENDS = {"rate": 1, "kinds": {"slow": 1}, "endpoints": ["send"], "slow_s": 1.0}
TOKEN = "browser-test-token-0123456789"

pytestmark = pytest.mark.slow
ARTIFACT_PREFIX = "browser"  # names the page fixture's screenshots and logs


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


def shot(page: Page, name: str, scroll_to: str | None = None) -> None:
    """A README screenshot (test-artifacts/page-*.png, copied to docs/screenshots/): the window
    as the user sees it, sticky action bar included; `scroll_to` is put at the top first."""
    if scroll_to:
        page.locator(scroll_to).evaluate("e => e.scrollIntoView({block: 'start'})")
    page.screenshot(path=str(ARTIFACTS / f"page-{name}.png"), animations="disabled")


def assert_accessible(page: Page, when: str) -> None:
    violations = axe_violations(page)
    assert violations == [], f"axe-core, {when}: {violations}"


@pytest.fixture
def wide_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """1280×800, the window of the issue's report."""
    with open_page(browser, f"browser-{request.node.name}", width=1280, height=800) as p:
        yield p


def test_two_files_are_stored_in_notion_through_the_page(wide_page, relay_factory, emulator, tmp_path):
    page = wide_page
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
    # Every PATCH fits in one part-sized window: 8 MiB steps for the 60 MiB file (20 MiB parts).
    big_offsets = next(v for url, v in patches.offsets.items() if url.endswith(upload_id(page, big.name)))
    assert sorted(set(big_offsets)) == list(range(0, 60 * MIB, MAX_PATCH_BYTES)), big_offsets
    # Nothing from elsewhere: the page works on a machine without internet.
    assert urls and all(u.startswith(f"{relay.url}/") or u.startswith("data:") for u in urls), urls
    # Nothing left to resume after a reload (tus-js-client's entries are gone).
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('tus::'))") == []
    page.screenshot(path=str(ARTIFACTS / "upload-page.png"), full_page=True, animations="disabled")
    shot(page, "done", scroll_to="#list-title")


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
    assert offsets and min(offsets) >= PART, f"the resumed upload sent from {offsets}"
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
        const app = await import("./static/app.js");  // the page's own instance, already loaded
        const rows = {};
        const add = (name, failure) => { rows[name] = [app.decide(failure), app.explain(failure)]; };
        for (const status of [400, 401, 403, 404, 409, 410, 412, 413, 415, 423, 429, 460, 500, 502, 503, 504]) {
            add(String(status), {kind: "http", status, phase: "patch", body: {error: "server words"}});
        }
        add("410 on HEAD", {kind: "http", status: 410, phase: "head",
                            body: {error: "the upload failed for good", can_resume: false}});
        add("415 at creation", {kind: "http", status: 415, phase: "create", body: {error: "no .exe"}});
        add("403 destination", {kind: "http", status: 403, phase: "create", body: {
            error: "that page or database is not one this relay uploads to", code: "forbidden"}});
        add("403 grant destination", {kind: "http", status: 403, phase: "create", body: {
            error: "this upload grant allows only the default destination", code: "forbidden",
            reason: "grant_destination"}});
        add("502 for good", {kind: "http", status: 502, phase: "patch", body: {can_resume: false}});
        add("503 Notion away", {kind: "http", status: 503, phase: "create", body: {
            error: "Upload service temporarily unavailable.", circuit_breaker_state: "OPEN"}});
        for (const kind of ["network", "stalled"]) add(kind, {kind, status: 0, phase: "patch"});
        add("reply timeout", {kind: "timeout", status: 0, phase: "patch"});
        add("HEAD timeout", {kind: "timeout", status: 0, phase: "head"});
        return rows;
    }""")
    decisions = {name: decision for name, (decision, _) in table.items()}
    assert decisions == {
        "400": "fail", "401": "token", "403": "token", "404": "restart", "409": "retry", "410": "gone",
        "412": "fail", "413": "fail", "415": "fail", "423": "retry", "429": "retry", "460": "retry",
        "500": "retry", "502": "retry", "503": "retry", "504": "retry", "410 on HEAD": "gone",
        "415 at creation": "fail", "502 for good": "gone", "503 Notion away": "retry",
        "403 destination": "fail", "403 grant destination": "fail",
        "network": "retry", "stalled": "retry", "reply timeout": "retry", "HEAD timeout": "retry",
    }
    for name, (_, words) in table.items():
        assert words[0].isupper() and words.endswith("."), (name, words)
        assert "HTTP" not in words and "undefined" not in words and "null" not in words, (name, words)
        assert "stopped" not in words, (name, words)  # nothing but the user stops an upload
    assert table["401"][1].startswith("Your upload token was not accepted")
    assert "too large" in table["413"][1]
    assert table["415 at creation"][1] == "Notion does not accept this kind of file: no .exe."
    # A place the relay (or the grant) does not allow: not the token's fault, and no retry helps.
    assert table["403 destination"][1] == \
        "Files may not go to this destination: that page or database is not one this relay uploads to."
    assert table["403 grant destination"][1].startswith("Files may not go to this destination: this upload grant")
    assert "connection to the server was lost" in table["network"][1]
    assert "Start over" in table["410"][1] and "the upload failed for good" in table["410 on HEAD"][1]
    assert table["503 Notion away"][1] == NOTION_AWAY
    # The relay took the whole body and has not answered: it answers once Notion holds the file.
    assert table["reply timeout"][1] == NOTION_AWAY
    assert table["HEAD timeout"][1] == "The server did not answer in time."


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
    expect(row(page, dropped.name).locator(".message")).to_have_text(
        "Cancelled. The server discarded what it had received.")
    assert requests.get(f"{relay.url}/api/upload/status/{dropped_id}", timeout=10).status_code in (404, 410)
    sent_after = sum(len(v) for url, v in patches.offsets.items() if url.endswith(kept_id))
    assert sent_after == sent_before, "sent while paused"
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
        const drop = new DragEvent("drop", {dataTransfer: transfer, bubbles: true});
        document.querySelector("#dropzone").dispatchEvent(drop);
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


# --- outages, dead uploads, the total, the action bar, refusals, accessibility ---------------

def test_notion_away_longer_than_the_reply_timeout_the_page_says_so_and_finishes_by_itself(
        wide_page, relay_factory, emulator, tmp_path):
    page = wide_page
    # The relay retries Notion quickly and keeps the upload through a 15 s outage; the page waits
    # 3 s for an answer (its default is 120 s), so it gives up waiting several times meanwhile.
    relay = relay_factory(CB_NOTION_FAILURE_THRESHOLD="2", CB_NOTION_TIMEOUT_DURATION="3",
                          MAX_RETRIES="60", INITIAL_RETRY_DELAY="0.2", MAX_RETRY_DELAY="1")
    emulator.set_faults(SLOW_SENDS)
    path = tmp_path / "outage-40MiB.txt"
    sha = make_file(path, 40 * MIB, seed=9)
    timed_out: list[str] = []
    page.on("requestfailed", lambda r: timed_out.append(r.method) if "/files/" in r.url else None)
    texts: list[str] = []

    page.goto(f"{relay.url}/?reply_timeout_s=3&stall_timeout_s=5")
    page.set_input_files("#file-input", str(path))
    page.click("#start")
    uid = upload_id(page, path.name)
    wait_until(lambda: relay.status(uid)["parts_confirmed"] >= 1, timeout_s=30, message="a part in Notion")
    emulator.clear_faults()
    emulator.outage(15, 503)
    outage_started = time.monotonic()

    message = row(page, path.name).locator(".message")
    expect(message).to_contain_text(NOTION_AWAY, timeout=15_000)
    expect(row(page, path.name).locator(".state")).to_have_text("Waiting for Notion", timeout=15_000)
    expect(page.locator("#total-rate")).to_have_text("Waiting for Notion…")
    shot(page, "notion-away")
    assert_accessible(page, "while Notion is away")
    while time.monotonic() - outage_started < 12:  # the page keeps waiting, whatever its timeout
        texts.append(row(page, path.name).inner_text())
        time.sleep(0.5)
    assert timed_out, "the page's reply timeout never fired: the test proves nothing"
    assert not any("Failed" in t or "stopped" in t or "Retry " in t for t in texts), texts

    expect(row(page, path.name).locator(".state")).to_have_text(STORED, timeout=60_000)
    assert time.monotonic() - outage_started >= 15
    assert upload_id(page, path.name) == uid  # the same upload, not a new one
    assert stored_sha256(relay, emulator, uid) == sha


def test_an_upload_that_failed_for_good_says_so_and_start_over_succeeds(wide_page, relay, emulator, tmp_path):
    page = wide_page
    emulator.set_faults(SLOW_SENDS)
    path = tmp_path / "for-good-30MiB.txt"
    sha = make_file(path, 30 * MIB, seed=10)

    page.goto(f"{relay.url}/")
    page.set_input_files("#file-input", str(path))
    page.click("#start")
    first = upload_id(page, path.name)
    # The workspace's limit drops below a part after creation: Notion refuses every send, so
    # the relay cannot finish this upload whatever anyone does (it answers 410 from then on).
    emulator.set_plan(max_file_bytes=1 * MIB)
    emulator.clear_faults()
    expect(row(page, path.name).locator(".state")).to_have_text("Cannot continue", timeout=45_000)
    expect(row(page, path.name).locator(".message")).to_contain_text("Start over")
    expect(page.get_by_role("button", name=f"Retry {path.name}")).to_have_count(0)
    start_over = page.get_by_role("button", name=f"Start over {path.name}")
    expect(start_over).to_be_visible()
    shot(page, "start-over")
    assert_accessible(page, "after a failure for good")

    emulator.set_plan(plan="paid")  # the limit is back
    start_over.click()
    expect(row(page, path.name).locator(".state")).to_have_text(STORED, timeout=45_000)
    second = upload_id(page, path.name)
    assert second != first  # a new upload
    assert stored_sha256(relay, emulator, second) == sha
    # Focus stayed on the row's button (now "Remove"), not on the page's body.
    assert page.evaluate("document.activeElement.closest('li.upload') !== null")


def test_total_progress_with_speed_and_time_left(wide_page, relay, emulator, tmp_path):
    page = wide_page
    emulator.set_faults({**SLOW_SENDS, "slow_s": 2.0})  # so the upload lasts a few seconds
    files = [tmp_path / "total-a-40MiB.txt", tmp_path / "total-b-30MiB.txt"]
    make_file(files[0], 40 * MIB, seed=11)
    make_file(files[1], 30 * MIB, seed=12)

    page.goto(f"{relay.url}/")
    page.set_input_files("#file-input", [str(f) for f in files])
    expect(page.locator("#total-text")).to_have_text(
        "2 files: sent 0 B of 70.0 MiB (0%) · stored in Notion 0 B (0%)")
    page.click("#start")
    expect(page.locator("#total-rate")).to_have_text(
        re.compile(r"^\d+(\.\d)? (B|KiB|MiB)/s · about \d+ (s|min) left( to send)?$"), timeout=20_000)
    expect(page.locator("#total-text")).to_contain_text(re.compile(r"sent [1-9][\d.]* MiB of 70\.0 MiB"))
    shot(page, "uploading")
    assert page.locator("#total-bar").get_attribute("aria-valuenow") is not None
    for path in files:
        expect(row(page, path.name).locator(".state")).to_have_text(STORED, timeout=60_000)
    expect(page.locator("#total-text")).to_have_text(
        "2 files: sent 70.0 MiB of 70.0 MiB (100%) · stored in Notion 70.0 MiB (100%)")
    expect(page.locator("#total-rate")).to_have_text("All stored in Notion.")


def test_with_six_files_the_upload_button_is_in_view_without_scrolling(wide_page, relay, tmp_path):
    page = wide_page
    paths = []
    for i in range(6):
        paths.append(tmp_path / f"six-{i}-with-a-rather-long-name-for-the-list.pdf")
        paths[-1].write_bytes(b"%PDF-1.4\n" + bytes(1000 + i))
    page.goto(f"{relay.url}/")
    expect(page.locator("#types-box")).to_be_visible()  # /api/limits answered
    page.set_input_files("#file-input", [str(p) for p in paths])
    expect(page.locator("li.upload")).to_have_count(6)
    button = page.locator("#start")
    expect(button).to_have_text("Upload 6 files")
    assert page.evaluate("window.scrollY") == 0
    assert page.evaluate("document.documentElement.scrollHeight") > 800  # the list goes below the fold
    box = button.bounding_box()
    assert box and box["y"] >= 0 and box["y"] + box["height"] <= 800, box
    # … and nothing covers it: it is what a click at its centre reaches.
    assert page.evaluate("""([x, y]) => document.elementFromPoint(x, y)?.id""",
                         [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2]) == "start"
    shot(page, "six-files")
    assert_accessible(page, "with six files listed")

    # Focus stays on the control that was used: the Upload button, then a row's button.
    button.focus()
    page.keyboard.press("Enter")
    expect(page.locator("li.upload[data-state='done']")).to_have_count(6, timeout=45_000)
    assert page.evaluate("document.activeElement.id") == "start"
    remove = page.get_by_role("button", name=f"Remove {paths[2].name} from the list")
    remove.focus()
    page.keyboard.press("Enter")
    expect(page.locator("li.upload")).to_have_count(5)
    assert page.evaluate("document.activeElement.closest('li.upload')?.querySelector('.name').textContent") \
        == paths[3].name  # the next row's button
    assert_accessible(page, "when done")
    shot(page, "six-files-done")


def test_refusals_are_shown_before_upload_from_the_relays_own_table(wide_page, relay_factory, emulator, tmp_path):
    page = wide_page
    emulator.set_plan(max_file_bytes=5 * MIB)  # the workspace's limit, as the relay will read it
    relay = relay_factory()
    limits = requests.get(f"{relay.url}/api/limits", timeout=10).json()
    assert limits["max_file_bytes"] == 5 * MIB
    assert "pdf" in limits["extensions"] and "exe" not in limits["extensions"]
    assert "application/pdf" in limits["content_types"]
    ok, big, exe = tmp_path / "fine-3MiB.txt", tmp_path / "big-6MiB.txt", tmp_path / "tool.exe"
    sha = make_file(ok, 3 * MIB, seed=13)
    make_file(big, 6 * MIB, seed=14)
    exe.write_bytes(b"MZ" + bytes(100))

    page.goto(f"{relay.url}/")
    expect(page.locator("#accepts")).to_contain_text("each up to 5.0 MiB")
    page.set_input_files("#file-input", [str(ok), str(big), str(exe)])
    expect(row(page, exe.name).locator(".state")).to_have_text("Not accepted")
    expect(row(page, exe.name).locator(".message")).to_have_text("Notion does not accept .exe files.")
    expect(row(page, big.name).locator(".state")).to_have_text("Not accepted")
    expect(row(page, big.name).locator(".message")).to_have_text(
        "This file is 6.0 MiB; this Notion workspace takes files up to 5.0 MiB.")
    expect(row(page, ok.name).locator(".state")).to_have_text("Ready")
    expect(page.locator("#start")).to_have_text("Upload")  # one file to upload, not three
    shot(page, "refusals", scroll_to="#list-title")
    assert_accessible(page, "with refused files listed")
    page.click("#start")
    expect(row(page, ok.name).locator(".state")).to_have_text(STORED, timeout=30_000)
    expect(row(page, exe.name).locator(".state")).to_have_text("Not accepted")  # never sent
    assert stored_sha256(relay, emulator, upload_id(page, ok.name)) == sha


def test_the_idle_page_is_accessible_and_loads_tus_js_client_from_the_relay(wide_page, relay):
    page = wide_page
    scripts: list[str] = []
    page.on("request", lambda r: scripts.append(r.url) if r.resource_type == "script" else None)
    page.goto(f"{relay.url}/")
    expect(page.locator("#types-box")).to_be_visible()
    assert f"{relay.url}/static/vendor/tus.min.js" in scripts
    assert page.evaluate("typeof tus.Upload === 'function' && tus.isSupported")
    version = requests.get(f"{relay.url}/static/vendor/tus.min.js", timeout=10)
    assert version.status_code == 200 and version.headers["Content-Type"].startswith("text/javascript")
    assert requests.get(f"{relay.url}/static/vendor/package.json", timeout=10).status_code == 404
    # One destination (NOTION_PARENT_PAGE_ID): the list is read, and no picker is shown.
    page.wait_for_function("document.querySelectorAll('#destination option').length === 1")
    expect(page.locator("#destination-box")).to_be_hidden()
    assert_accessible(page, "idle")
    shot(page, "idle")


def test_a_410_on_the_resuming_head_stops_the_retries_and_start_over_succeeds(page, relay, emulator, tmp_path):
    path = tmp_path / "head-410-12MiB.txt"
    sha = make_file(path, 12 * MIB, seed=15)
    heads: list[int] = []

    def dead_upload(route) -> None:
        # Every PATCH is cut, so the page asks where to continue; the relay "says" the upload
        # cannot go on (410), as it does for an upload that failed for good or expired.
        if route.request.method == "PATCH":
            route.abort("connectionreset")
        elif route.request.method == "HEAD":
            heads.append(410)
            route.fulfill(status=410, headers={"Tus-Resumable": "1.0.0", "Content-Type": "application/json"},
                          body='{"error": "the upload expired", "code": "gone", "can_resume": false}')
        else:
            route.continue_()

    page.route("**/files/*", dead_upload)
    page.goto(f"{relay.url}/")
    page.set_input_files("#file-input", str(path))
    page.click("#start")
    first = upload_id(page, path.name)
    expect(row(page, path.name).locator(".state")).to_have_text("Cannot continue", timeout=20_000)
    expect(row(page, path.name).locator(".message")).to_have_text(
        "This upload cannot continue: the upload expired. Press “Start over” to send the file again.")
    assert heads == [410]  # no retry after the 410, and no new upload behind the user's back
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('tus::'))") == []

    page.unroute("**/files/*")
    page.get_by_role("button", name=f"Start over {path.name}").click()
    expect(row(page, path.name).locator(".state")).to_have_text(STORED, timeout=30_000)
    second = upload_id(page, path.name)
    assert second != first
    assert stored_sha256(relay, emulator, second) == sha


def test_after_a_reload_an_upload_that_failed_meanwhile_starts_over_when_chosen_again(
        page, relay, emulator, tmp_path):
    emulator.set_faults(SLOW_SENDS)
    path = tmp_path / "reload-dead-30MiB.txt"
    sha = make_file(path, 30 * MIB, seed=16)
    page.goto(f"{relay.url}/")
    page.set_input_files("#file-input", str(path))
    page.click("#start")
    first = upload_id(page, path.name)
    emulator.set_plan(max_file_bytes=1 * MIB)  # Notion refuses every part from now on
    wait_until(lambda: relay.status(first)["bytes_uploaded"] >= PART, timeout_s=30, message="a whole part")
    page.reload()  # the tab goes away mid-upload; the browser keeps the upload's address
    emulator.clear_faults()

    def cannot_continue() -> bool:
        r = requests.get(f"{relay.url}/api/upload/status/{first}", timeout=10)
        return r.status_code in (404, 410) or r.json().get("can_resume") is False

    wait_until(cannot_continue, timeout_s=30, message="the relay to give the upload up")
    emulator.set_plan(plan="paid")
    expect(page.locator("#earlier-list")).to_contain_text(path.name)
    page.set_input_files("#file-input", str(path))
    expect(row(page, path.name).locator(".message")).to_have_text(
        "The earlier upload of this file cannot continue; Upload sends it again from the beginning.")
    expect(row(page, path.name).locator(".state")).to_have_text("Ready")
    page.click("#start")
    expect(row(page, path.name).locator(".state")).to_have_text(STORED, timeout=45_000)
    second = upload_id(page, path.name)
    assert second != first
    assert stored_sha256(relay, emulator, second) == sha


# --- where files go: the destination picker ---------------------------------------------------

def completed_by_kind(relay) -> dict[str, float]:
    text = requests.get(f"{relay.url}/metrics", timeout=10).text
    found = re.findall(r'^relay_uploads_completed_total\{destination_kind="(\w+)"\} (\S+)$', text, re.M)
    return {kind: float(n) for kind, n in found}


def test_the_picker_sends_a_file_to_a_database_row_and_links_to_where_each_file_went(
        wide_page, relay_factory, emulator, tmp_path):
    page = wide_page
    client = NotionClient(emulator)
    project = new_page(client, "Project A")
    database = emulator.create_database("Deliverables", ROW_SCHEMA)
    relay = relay_factory(NOTION_DESTINATIONS=f"project={project},deliverables={database['id']}",
                          NOTION_CAPTION_PROPERTY="Caption")
    report, notes = tmp_path / "report-3MiB.txt", tmp_path / "notes.txt"
    sha = {report.name: make_file(report, 3 * MIB, seed=17), notes.name: make_file(notes, 5000, seed=18)}

    page.goto(f"{relay.url}/")
    picker = page.get_by_label("Upload to", exact=True)
    expect(picker).to_be_visible()
    # The names Notion gives (the default page has none the emulator will tell), the default first.
    expect(picker.locator("option")).to_have_text(["Default page", "Project A (page)", "Deliverables (database)"])
    expect(picker).to_have_value("default")
    picker.select_option(label="Deliverables (database)")
    expect(page.locator("#destination-hint")).to_contain_text("new row of this database")

    page.set_input_files("#file-input", str(report))
    item = row(page, report.name)
    item.get_by_text("Add a title and caption").click()
    item.get_by_label("Row title").fill("Final report")
    item.get_by_label("Caption").fill("v3, approved")
    page.evaluate("document.activeElement.blur()")
    shot(page, "destinations", scroll_to="section[aria-labelledby=pick-title]")
    assert_accessible(page, "with the destination picker and a file's title and caption")
    page.click("#start")
    expect(item.locator(".state")).to_have_text(STORED, timeout=30_000)
    expect(item.locator(".describe")).to_be_hidden()

    status = relay.status(upload_id(page, report.name))
    notion = status["notion"]
    assert notion["destination"] == {"name": "deliverables", "kind": "database", "id": database["id"]}
    assert emulator.upload(notion["file_upload_id"])["sha256"] == sha[report.name]
    [found] = emulator.rows(database["id"])  # one row, titled as given, holding the upload
    assert found["id"] == notion["row_id"]
    assert found["properties"]["Name"] == "Final report" and found["properties"]["Caption"] == "v3, approved"
    assert [f["upload_id"] for f in found["properties"]["Files"]] == [notion["file_upload_id"]]
    expect(item.get_by_role("link", name=f"Open the row in Notion ({report.name})")).to_have_attribute(
        "href", f"https://www.notion.so/{notion['row_id'].replace('-', '')}")
    expect(item.locator(".result dl div", has_text="Went to").locator("dd")).to_have_text("Deliverables (database)")
    shot(page, "destinations-done", scroll_to="#list-title")
    assert page.evaluate("localStorage.getItem('notion-relay/destination')") == "deliverables"

    # The choice is remembered; the next file goes to the page, with its caption, no title asked.
    page.reload()
    expect(picker).to_have_value("deliverables")
    picker.select_option(label="Project A (page)")
    page.set_input_files("#file-input", str(notes))
    item = row(page, notes.name)
    item.get_by_text("Add a caption").click()
    expect(item.get_by_label("Row title")).to_be_hidden()
    item.get_by_label("Caption").fill("meeting notes")
    page.click("#start")
    expect(item.locator(".state")).to_have_text(STORED, timeout=30_000)
    notion = relay.status(upload_id(page, notes.name))["notion"]
    assert notion["destination"] == {"name": "project", "kind": "page", "id": project}
    assert emulator.upload(notion["file_upload_id"])["sha256"] == sha[notes.name]
    [block] = page_blocks(client, project)
    assert block["id"] == notion["block_id"] and caption_of(block) == "meeting notes"
    expect(item.get_by_role("link", name=f"Open the page in Notion ({notes.name})")).to_have_attribute(
        "href", f"https://www.notion.so/{project.replace('-', '')}#{notion['block_id'].replace('-', '')}")
    assert len(emulator.rows(database["id"])) == 1  # nothing more in the database
    assert_accessible(page, "with a file stored on a page")
    assert completed_by_kind(relay) == {"page": 1, "database": 1, "none": 0}
