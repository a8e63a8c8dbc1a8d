"""Pages, paragraph and media blocks, block file URLs, external_url imports, users and the
gate's order — the emulator's answers beyond the File Upload calls, over real HTTP."""
from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from harness.emulator import EmulatorProcess, NotionClient, running_emulator
from harness.processes import wait_until
from tests.support.emulator import error_code

MIB = 2**20


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with running_emulator(tmp_path_factory.mktemp("pages"), "--rate-limit", "100000/60") as process:
        yield process


@pytest.fixture
def client(emu: EmulatorProcess) -> NotionClient:
    return NotionClient(emu)


def text(content: str) -> list[dict[str, Any]]:
    return [{"text": {"content": content}}]


def new_page(client: NotionClient, title: str = "A page", parent: str | None = None, **extra: Any) -> dict[str, Any]:
    body = {"parent": {"page_id": parent or str(uuid.uuid4())}, "properties": {"title": text(title)}, **extra}
    r = client.request("POST", "/v1/pages", body)
    assert r.status_code == 200, r.text
    return r.json()


def uploaded(client: NotionClient, data: bytes = b"hello", filename: str = "a.txt") -> str:
    upload_id = client.create_ok(filename=filename)["id"]
    assert client.send(upload_id, data, filename=filename).status_code == 200
    return upload_id


def children(client: NotionClient, parent: str) -> list[dict[str, Any]]:
    return client.request("GET", f"/v1/blocks/{parent}/children").json()["results"]


# --- pages ---------------------------------------------------------------------------------------


def test_a_page_is_created_retrieved_listed_and_trashed(client: NotionClient, emu: EmulatorProcess) -> None:
    parent = str(uuid.uuid4())
    page = new_page(client, "Quarterly report", parent, icon={"type": "emoji", "emoji": "📄"})
    assert page["object"] == "page" and page["parent"] == {"type": "page_id", "page_id": parent}
    (title,) = page["properties"]["title"]["title"]
    assert title["plain_text"] == "Quarterly report" and title["annotations"]["color"] == "default"
    assert page["icon"] == {"type": "emoji", "emoji": "📄"} and page["cover"] is None
    assert page["url"] == f"https://app.notion.com/p/Quarterly-report-{page['id'].replace('-', '')}"
    assert page["in_trash"] is False and page["archived"] is False
    assert client.request("GET", f"/v1/pages/{page['id']}").json()["id"] == page["id"]
    newest = NotionClient(emu, version="2026-03-11").request("GET", f"/v1/pages/{page['id']}").json()
    assert newest["in_trash"] is False and "archived" not in newest
    # the page is a child_page block of its parent
    (listed,) = children(client, parent)
    assert listed["id"] == page["id"] and listed["child_page"] == {"title": "Quarterly report"}
    trashed = client.request("DELETE", f"/v1/blocks/{page['id']}").json()
    assert trashed["type"] == "child_page" and trashed["in_trash"] is True and trashed["archived"] is True
    assert children(client, parent) == []
    assert client.request("GET", f"/v1/pages/{page['id']}").json()["in_trash"] is True
    restored = client.request("PATCH", f"/v1/pages/{page['id']}", {"in_trash": False}).json()
    assert restored["in_trash"] is False and len(children(client, parent)) == 1
    renamed = client.request("PATCH", f"/v1/pages/{page['id']}", {"properties": {"title": {"title": text("Q3")}}})
    assert renamed.json()["properties"]["title"]["title"][0]["plain_text"] == "Q3"


def test_page_create_with_children_and_its_refusals(client: NotionClient) -> None:
    upload_id = uploaded(client)
    page = new_page(client, children=[
        {"paragraph": {"rich_text": text("intro")}},
        {"type": "file", "file": {"type": "file_upload", "file_upload": {"id": upload_id}}},
    ])
    kinds = [b["type"] for b in children(client, page["id"])]
    assert kinds == ["paragraph", "file"]
    parent = str(uuid.uuid4())
    for body in (
        {"parent": {"page_id": parent}, "properties": {"Name": text("x")}},  # not a page property
        {"parent": {"page_id": parent}, "title": "x"},  # unknown key
        {"parent": {"page_id": "nope"}},
        {"parent": {}},
        {"parent": {"page_id": parent}, "children": [{"type": "bookmark", "bookmark": {}}]},
        {"parent": {"page_id": parent}, "properties": {"title": [{"text": {"content": "x" * 2001}}]}},
    ):
        r = client.request("POST", "/v1/pages", body)
        assert r.status_code == 400 and error_code(r) == "validation_error", body
    assert children(client, parent) == []  # nothing was created
    r = client.request("POST", "/v1/pages", {"parent": {"database_id": parent}, "properties": {}})
    assert r.status_code == 404 and error_code(r) == "object_not_found"
    r = client.request("GET", f"/v1/pages/{uuid.uuid4()}")
    assert r.status_code == 404 and error_code(r) == "object_not_found"


# --- blocks --------------------------------------------------------------------------------------


def test_paragraphs_are_appended_retrieved_updated_trashed_and_restored(client: NotionClient) -> None:
    page = new_page(client)
    r = client.request("PATCH", f"/v1/blocks/{page['id']}/children",
                       {"children": [{"paragraph": {"rich_text": text("I'm a paragraph."), "color": "blue"}}]})
    assert r.status_code == 200, r.text
    (para,) = r.json()["results"]
    assert para["type"] == "paragraph" and para["parent"] == {"type": "page_id", "page_id": page["id"]}
    assert para["paragraph"]["color"] == "blue" and para["paragraph"]["icon"] is None
    assert para["paragraph"]["rich_text"][0]["text"] == {"content": "I'm a paragraph.", "link": None}
    assert client.request("GET", f"/v1/blocks/{para['id']}").json() | {"request_id": None} == para | {"request_id": None}
    # a page with a live child has children; a trashed child does not count
    assert client.request("DELETE", f"/v1/blocks/{page['id']}").json()["has_children"] is True
    assert client.request("PATCH", f"/v1/blocks/{page['id']}", {"archived": False}).status_code == 200
    updated = client.request("PATCH", f"/v1/blocks/{para['id']}", {"paragraph": {"rich_text": text("edited")}}).json()
    assert updated["paragraph"]["rich_text"][0]["plain_text"] == "edited" and updated["paragraph"]["color"] == "blue"
    deleted = client.request("DELETE", f"/v1/blocks/{para['id']}").json()
    assert deleted["in_trash"] is True and deleted["archived"] is True
    assert client.request("GET", f"/v1/blocks/{para['id']}").json()["in_trash"] is True
    assert children(client, page["id"]) == []
    r = client.request("PATCH", f"/v1/blocks/{para['id']}", {"paragraph": {"rich_text": text("no")}})
    assert r.status_code == 400 and "archived" in r.json()["message"]
    assert client.request("DELETE", f"/v1/blocks/{para['id']}").status_code == 400
    assert client.request("PATCH", f"/v1/blocks/{para['id']}", {"archived": False}).json()["in_trash"] is False
    assert [b["id"] for b in children(client, page["id"])] == [para["id"]]
    # nested: a paragraph takes children (parent block_id); a file block does not
    r = client.request("PATCH", f"/v1/blocks/{para['id']}/children", {"children": [{"paragraph": {"rich_text": []}}]})
    assert r.json()["results"][0]["parent"] == {"type": "block_id", "block_id": para["id"]}
    assert client.request("GET", f"/v1/blocks/{para['id']}").json()["has_children"] is True
    r = client.request("GET", f"/v1/blocks/{uuid.uuid4()}")
    assert r.status_code == 404 and error_code(r) == "object_not_found"
    r = client.request("PATCH", f"/v1/blocks/{para['id']}", {"paragraph": {"rich_text": []}, "color": "red"})
    assert r.status_code == 400


def test_a_file_block_never_carries_the_file_upload_id(client: NotionClient, emu: EmulatorProcess) -> None:
    upload_id = uploaded(client, b"the bytes", "report.txt")
    page = new_page(client)
    blocks = client.attach(page["id"], [upload_id, upload_id]).json()["results"]
    listed = children(client, page["id"])
    for b in blocks + listed + [client.request("GET", f"/v1/blocks/{blocks[0]['id']}").json()]:
        text_of_block = str(b)
        assert upload_id not in text_of_block and upload_id.replace("-", "") not in text_of_block
        assert set(b["file"]) == {"caption", "type", "file", "name"} and b["file"]["type"] == "file"
        assert set(b["file"]["file"]) == {"url", "expiry_time"} and b["file"]["name"] == "report.txt"
    url0, url1 = (b["file"]["file"]["url"] for b in blocks)
    assert url0 != url1 and url0.endswith("/report.txt")
    assert requests.get(url0, timeout=10).content == b"the bytes"
    assert requests.get(f"{emu.url}/_emulator/files/{upload_id}", timeout=10).content == b"the bytes"
    assert requests.get(f"{emu.url}/_emulator/blobs/{uuid.uuid4().hex}/report.txt", timeout=10).status_code == 404


# --- external_url --------------------------------------------------------------------------------


class Served(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {"/photo.png": b"\x89PNG fake image bytes", "/big.png": b"x" * (MIB + 1)}

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        data = self.files.get(self.path)
        self.send_response(200 if data is not None else 404)
        self.send_header("Content-Length", str(len(data or b"")))
        self.end_headers()
        self.wfile.write(data or b"")

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Served)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def imported(client: NotionClient, url: str, filename: str = "photo.png") -> dict[str, Any]:
    up = client.create_ok(mode="external_url", external_url=url, filename=filename)
    assert up["status"] == "pending" and up["content_length"] is None
    wait_until(lambda: client.retrieve(up["id"]).json()["status"] != "pending", timeout_s=10)
    return client.retrieve(up["id"]).json()


def test_external_url_from_loopback_is_imported(client: NotionClient, emu: EmulatorProcess, served: str) -> None:
    done = imported(client, f"{served}/photo.png")
    data = Served.files["/photo.png"]
    assert done["status"] == "uploaded" and done["content_length"] == len(data) and "upload_url" not in done
    result = done["file_import_result"]
    assert result["type"] == "success" and result["success"] == {} and result["imported_time"].endswith("+00:00")
    assert requests.get(f"{emu.url}/_emulator/files/{done['id']}", timeout=10).content == data
    assert client.attach(str(uuid.uuid4()), [done["id"]], block_type="image").status_code == 200


def test_external_url_imports_that_fail(client: NotionClient, emu: EmulatorProcess, served: str) -> None:
    missing = imported(client, f"{served}/nothing.png")
    assert missing["status"] == "failed" and missing["content_length"] is None
    error = missing["file_import_result"]["error"]
    assert error["type"] == "download_error" and error["status_code"] == 404
    emu.set_plan(max_file_bytes=MIB)
    try:
        big = imported(client, f"{served}/big.png", "big.png")
    finally:
        emu.set_plan(plan="paid")
    assert big["status"] == "failed" and big["file_import_result"]["error"]["type"] == "validation_error"
    r = client.attach(str(uuid.uuid4()), [big["id"]])
    assert r.status_code == 400 and "failed" in r.json()["message"]


# --- file upload objects, users and the gate -----------------------------------------------------


def test_content_length_is_null_until_the_first_byte(client: NotionClient) -> None:
    up = client.create_ok(mode="multi_part", filename="a.txt", number_of_parts=2)
    assert up["content_length"] is None
    r = client.send(up["id"], b"x" * (5 * MIB), part_number=1)
    assert r.json()["content_length"] == 5 * MIB


def test_expired_uploads_show_no_expiry_time(tmp_path) -> None:
    with running_emulator(tmp_path, "--expiry-s", "1") as process:
        client = NotionClient(process)
        up = client.create_ok(filename="a.txt")
        wait_until(lambda: client.retrieve(up["id"]).json()["status"] == "expired", timeout_s=10)
        expired = client.retrieve(up["id"]).json()
        assert expired["expiry_time"] is None and "upload_url" not in expired


def test_users_list_and_retrieve(client: NotionClient) -> None:
    me = client.request("GET", "/v1/users/me").json()
    listed = client.request("GET", "/v1/users").json()
    assert listed["object"] == "list" and listed["type"] == "user" and listed["user"] == {}
    assert [u["id"] for u in listed["results"]] == [me["id"]]
    assert client.request("GET", f"/v1/users/{me['id']}").json()["id"] == me["id"]
    r = client.request("GET", f"/v1/users/{uuid.uuid4()}")
    assert r.status_code == 404 and error_code(r) == "object_not_found"


def test_authentication_comes_before_routing(emu: EmulatorProcess) -> None:
    bad = {"Authorization": "Bearer nope", "Notion-Version": "2025-09-03"}
    for method, path in (("GET", "/v1/invalid"), ("GET", "/v1/users"), ("DELETE", "/v1/file_uploads")):
        r = requests.request(method, f"{emu.url}{path}", headers=bad, timeout=10)
        assert r.status_code == 401 and error_code(r) == "unauthorized", path
        assert r.headers["x-notion-request-id"] == r.json()["request_id"]
    r = requests.get(f"{emu.url}/v1/invalid", headers=emu.headers(), timeout=10)
    assert r.status_code == 400 and error_code(r) == "invalid_request_url"
    assert r.headers["x-notion-request-id"] == r.json()["request_id"]
