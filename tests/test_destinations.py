"""Where files go: two pages and a database on the allowlist (NOTION_DESTINATIONS), chosen per
upload through tus metadata and the JSON API; a place not on the list is refused with 403 and
an unknown name with 400, before any byte. With half of the row creates and appends carried out
by Notion and then answered 503/504, every upload still makes exactly one row or block."""
from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from harness.emulator import NotionClient
from harness.relay import MIB, make_file
from harness.stacks import unthrottled_stack
from harness.tusclient import TUS, upload
from tests.test_exactly_once import page_blocks

ROW_SCHEMA = {"Name": {"title": {}}, "Files": {"files": {}}, "Caption": {"rich_text": {}}}


def meta(**kv: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in kv.items())


def new_page(client: NotionClient, title: str) -> str:
    parent = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
    page = client.request("POST", "/v1/pages", {"parent": {"page_id": parent},
                                                 "properties": {"title": [{"text": {"content": title}}]}}).json()
    return page["id"]


def caption_of(block: dict[str, Any]) -> str:
    return "".join(part["plain_text"] for part in block[block["type"]].get("caption", []))


def stack_with_places(tmp_path: Path, **env: str):
    """A stack whose emulator holds pages A, B and a database D, all three on the relay's list."""
    stack = unthrottled_stack(tmp_path, NOTION_DESTINATIONS="x=00000000-0000-4000-8000-00000000ffff", **env)
    client = NotionClient(stack.emulator)
    page_a, page_b = new_page(client, "Project A"), new_page(client, "Project B")
    database = stack.emulator.create_database("Deliverables", ROW_SCHEMA)
    stack.relay.stop()
    from harness.relay import start_relay

    stack.relay = start_relay(
        tmp_path / "relay2", stack.emulator.url, stack.redis.url, NOTION_RATE_LIMIT="100000/60",
        MAX_CONCURRENT_UPLOADS="100000", NOTION_CAPTION_PROPERTY="Caption",
        NOTION_DESTINATIONS=f"alpha={page_a},beta=https://www.notion.so/Project-B-{page_b.replace('-', '')},"
                            f"deliverables={database['id']}", **env)
    return stack, client, page_a, page_b, database


def create_session(base: str, **body: Any) -> requests.Response:
    return requests.post(f"{base}/api/upload/create-session", json=body, timeout=30)


@pytest.mark.slow
def test_files_go_to_the_page_or_database_they_name(tmp_path: Path):
    stack, client, page_a, page_b, database = stack_with_places(tmp_path)
    base = stack.relay.url
    try:
        listing = requests.get(f"{base}/api/destinations", timeout=30).json()["destinations"]
        kinds = {d["name"]: (d["kind"], d["title"]) for d in listing}
        assert kinds["alpha"] == ("page", "Project A") and kinds["beta"] == ("page", "Project B")
        assert kinds["deliverables"] == ("database", "Deliverables")

        # Refused before any byte: not on the list (403), an unknown name (400).
        stats_before = stack.emulator.stats()["requests"].get("create", {})
        elsewhere = requests.post(f"{base}/files/", timeout=30, headers={
            **TUS, "Upload-Length": "10", "Upload-Metadata": meta(filename="a.txt",
                                                                  destination="5c6a2821-6bb1-4a7e-b6e1-c50111515c3d")})
        assert elsewhere.status_code == 403, elsewhere.text
        unknown = create_session(base, filename="a.txt", fileSize=10, destination="gamma")
        assert unknown.status_code == 400 and "gamma" in unknown.json()["error"]
        assert stack.emulator.stats()["requests"].get("create", {}) == stats_before

        # tus to page A (an image with a caption) and to the database (title, caption).
        png = tmp_path / "shot.png"
        png_sha = make_file(png, 3 * MIB + 5, seed=1)
        pdf = tmp_path / "invoice.pdf"
        pdf_sha = make_file(pdf, 25 * MIB + 1, seed=2)
        to_a = upload(base, png, 8 * MIB, filetype="image/png",
                      metadata={"destination": "alpha", "caption": "the login screen"})
        to_d = upload(base, pdf, 8 * MIB, filetype="application/pdf",
                      metadata={"destination": "deliverables", "title": "Invoice 42", "caption": "paid"})
        # The JSON API to page B (by the id Notion gave it) and to the database (title defaults).
        txt = tmp_path / "notes.txt"
        txt_sha = make_file(txt, 1000, seed=3)
        to_b = create_session(base, filename="notes.txt", fileSize=1000, contentType="text/plain",
                              destination=page_b, caption="meeting notes").json()
        assert requests.put(f"{base}{to_b['put_url']}", data=txt.read_bytes(), timeout=60).status_code == 200
        to_d2 = create_session(base, filename="notes.txt", fileSize=1000, contentType="text/plain",
                               destination="deliverables").json()
        assert requests.put(f"{base}{to_d2['put_url']}", data=txt.read_bytes(), timeout=60).status_code == 200

        status = {name: stack.relay.status(uid) for name, uid in (
            ("a", to_a.url.rsplit("/", 1)[-1]), ("d", to_d.url.rsplit("/", 1)[-1]),
            ("b", to_b["upload_id"]), ("d2", to_d2["upload_id"]))}
        assert all(s["status"] == "completed" for s in status.values()), status
        for key, sha in (("a", png_sha), ("d", pdf_sha), ("b", txt_sha), ("d2", txt_sha)):
            assert stack.emulator.upload(status[key]["notion"]["file_upload_id"])["sha256"] == sha

        [block_a] = page_blocks(client, page_a)
        assert block_a["type"] == "image" and caption_of(block_a) == "the login screen"
        assert status["a"]["notion"]["block_id"] == block_a["id"]
        assert status["a"]["notion"]["destination"] == {"name": "alpha", "kind": "page", "id": page_a}
        [block_b] = page_blocks(client, page_b)
        assert block_b["type"] == "file" and caption_of(block_b) == "meeting notes"

        rows = {r["id"]: r["properties"] for r in stack.emulator.rows(database["id"])}
        assert len(rows) == 2
        invoice = rows[status["d"]["notion"]["row_id"]]
        assert invoice["Name"] == "Invoice 42" and invoice["Caption"] == "paid"
        assert [f["upload_id"] for f in invoice["Files"]] == [status["d"]["notion"]["file_upload_id"]]
        notes = rows[status["d2"]["notion"]["row_id"]]
        assert notes["Name"] == "notes.txt" and [f["name"] for f in notes["Files"]] == ["notes.txt"]
    finally:
        stack.close()


@pytest.mark.slow
def test_half_of_the_row_creates_and_appends_stored_then_answered_5xx(tmp_path: Path):
    stack, client, page_a, _, database = stack_with_places(
        tmp_path, MAX_RETRIES="8", INITIAL_RETRY_DELAY="0.1", MAX_RETRY_DELAY="0.5",
        CB_NOTION_FAILURE_THRESHOLD="1000", CB_UPLOAD_FAILURE_THRESHOLD="1000")
    try:
        files = []
        for i in range(20):
            path = tmp_path / f"f{i:02d}.txt"
            make_file(path, 2000 + i, seed=40 + i)
            files.append((path, "deliverables" if i % 2 else "alpha"))
        stack.emulator.set_faults({"rate": 0.5, "kinds": {"ambiguous": 1}, "seed": 4,
                                   "endpoints": ["create_page", "attach"]})
        with ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(lambda f: upload(stack.relay.url, f[0], MIB, deadline_s=300,
                                                     metadata={"destination": f[1], "title": f[0].stem}), files))
        injected = stack.emulator.stats()["faults_injected"].get("ambiguous", 0)
        stack.emulator.clear_faults()
        statuses = [stack.relay.status(r.url.rsplit("/", 1)[-1]) for r in results]
        assert all(s["status"] == "completed" for s in statuses), statuses
        rows = stack.emulator.rows(database["id"])
        blocks = page_blocks(client, page_a)
        assert len(rows) == 10 and len(blocks) == 10, (len(rows), len(blocks))
        assert sorted(r["properties"]["Name"] for r in rows) == sorted(p.stem for p, d in files if d == "deliverables")
        assert {s["notion"]["row_id"] for s in statuses if s["notion"]["row_id"]} == {r["id"] for r in rows}
        assert injected >= 6, injected
    finally:
        stack.close()
