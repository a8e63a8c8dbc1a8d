"""Attaching uploads to pages, listing block children and file uploads, users/me, and which
integration sees what — over real HTTP against the emulator."""
from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness.emulator import EmulatorProcess, NotionClient, running_emulator
from tests.support.emulator import error_code

MIB = 2**20


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with running_emulator(
        tmp_path_factory.mktemp("blocks"),
        "--rate-limit", "100000/60", "--token", "token-a", "--token", "token-b",
    ) as process:
        yield process


@pytest.fixture
def client(emu: EmulatorProcess) -> NotionClient:
    return NotionClient(emu, token="token-a")


def uploaded(client: NotionClient, data: bytes = b"hello", filename: str = "a.txt",
             content_type: str = "text/plain") -> str:
    upload_id = client.create_ok(filename=filename)["id"]
    r = client.send(upload_id, data, filename=filename, content_type=content_type)
    assert r.status_code == 200, r.text
    return upload_id


def page() -> str:
    return str(uuid.uuid4())


def test_attach_an_uploaded_file_to_any_page(client: NotionClient, emu: EmulatorProcess) -> None:
    upload_id = uploaded(client, b"attached bytes")
    page_id = page()
    r = client.attach(page_id.replace("-", ""), [upload_id])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["has_more"] is False and body["next_cursor"] is None
    (block,) = body["results"]
    assert block["object"] == "block" and block["type"] == "file"
    assert block["parent"] == {"type": "page_id", "page_id": page_id}
    assert uuid.UUID(block["id"]) and block["id"] != upload_id
    assert block["file"]["name"] == "a.txt"
    # the block's URL serves the stored bytes
    assert requests.get(block["file"]["file"]["url"], timeout=10).content == b"attached bytes"
    assert emu.upload(upload_id)["attached_to"] == [page_id]
    after = client.retrieve(upload_id).json()
    assert after["status"] == "uploaded" and after["expiry_time"] is None


def test_only_uploaded_files_can_be_attached(client: NotionClient) -> None:
    pending = client.create_ok(filename="a.txt")["id"]
    r = client.attach(page(), [pending])
    assert r.status_code == 400 and error_code(r) == "validation_error"
    assert "pending" in r.json()["message"]
    r = client.attach(page(), [str(uuid.uuid4())])
    assert r.status_code == 400 and "Could not find" in r.json()["message"]
    assert client.attach(page(), [uploaded(client)]).status_code == 200


def test_a_failed_child_attaches_nothing(client: NotionClient, emu: EmulatorProcess) -> None:
    good = uploaded(client)
    pending = client.create_ok(filename="b.txt")["id"]
    page_id = page()
    assert client.attach(page_id, [good, pending]).status_code == 400
    assert emu.upload(good)["attached_to"] == []
    assert client.request("GET", f"/v1/blocks/{page_id}/children").json()["results"] == []


def test_media_block_types_must_fit_the_file(client: NotionClient) -> None:
    text = uploaded(client)
    png = uploaded(client, b"\x89PNG", "pic.png", "image/png")
    pdf = uploaded(client, b"%PDF", "doc.pdf", "application/pdf")
    assert client.attach(page(), [png], block_type="image").status_code == 200
    assert client.attach(page(), [pdf], block_type="pdf").status_code == 200
    assert client.attach(page(), [text], block_type="file").status_code == 200
    for block_type, upload_id in (("image", text), ("pdf", png), ("video", pdf), ("audio", png)):
        r = client.attach(page(), [upload_id], block_type=block_type)
        assert r.status_code == 400 and block_type in r.json()["message"], block_type
    # paragraphs are appended (the live recordings do it); block types the emulator does not
    # keep are refused
    r = client.request("PATCH", f"/v1/blocks/{page()}/children", {
        "children": [{"type": "paragraph", "paragraph": {"rich_text": []}}]})
    assert r.status_code == 200, r.text
    r = client.request("PATCH", f"/v1/blocks/{page()}/children", {
        "children": [{"type": "bookmark", "bookmark": {"url": "https://example.com"}}]})
    assert r.status_code == 400 and error_code(r) == "validation_error"


def test_at_most_100_children_per_call(client: NotionClient) -> None:
    upload_id = uploaded(client)
    assert client.attach(page(), [upload_id] * 100).status_code == 200
    r = client.attach(page(), [upload_id] * 101)
    assert r.status_code == 400 and "100" in r.json()["message"]
    for body in ({}, {"children": []}, {"children": "x"}, {"children": [{"type": "file"}]}):
        r = client.request("PATCH", f"/v1/blocks/{page()}/children", body)
        assert r.status_code == 400 and error_code(r) == "validation_error", body


def test_page_ids_must_be_uuids(client: NotionClient) -> None:
    r = client.attach("not-a-page", [uploaded(client)])
    assert r.status_code == 400 and error_code(r) == "validation_error"


def test_block_children_are_listed_with_pagination(client: NotionClient) -> None:
    upload_id = uploaded(client)
    page_id = page()
    appended = []
    for _ in range(3):
        appended += [b["id"] for b in client.attach(page_id, [upload_id] * 2).json()["results"]]
    seen, cursor = [], None
    while True:
        query = "?page_size=4" + (f"&start_cursor={cursor}" if cursor else "")
        body = client.request("GET", f"/v1/blocks/{page_id}/children{query}").json()
        assert body["object"] == "list" and body["type"] == "block"
        seen += [b["id"] for b in body["results"]]
        cursor = body["next_cursor"]
        assert body["has_more"] is (cursor is not None)
        if cursor is None:
            break
    assert seen == appended
    assert client.request("GET", f"/v1/blocks/{page()}/children").json()["results"] == []
    r = client.request("GET", f"/v1/blocks/{page_id}/children?page_size=101")
    assert r.status_code == 400


def test_list_file_uploads_newest_first_with_status_filter(client: NotionClient) -> None:
    ids = [client.create_ok(filename=f"{i}.txt")["id"] for i in range(3)]
    done = uploaded(client)
    body = client.request("GET", "/v1/file_uploads?page_size=2").json()
    assert [u["id"] for u in body["results"]] == [done, ids[2]]
    assert body["has_more"] and body["next_cursor"] == ids[1]
    body = client.request("GET", f"/v1/file_uploads?page_size=2&start_cursor={ids[1]}").json()
    assert [u["id"] for u in body["results"]][:2] == [ids[1], ids[0]]
    statuses = {u["status"] for u in client.request("GET", "/v1/file_uploads?status=uploaded").json()["results"]}
    assert statuses == {"uploaded"}
    for query in ("status=done", "page_size=0", "page_size=101", f"start_cursor={uuid.uuid4()}"):
        r = client.request("GET", f"/v1/file_uploads?{query}")
        assert r.status_code == 400 and error_code(r) == "validation_error", query


def test_users_me_reports_the_bot_and_its_file_size_limit(client: NotionClient) -> None:
    me = client.request("GET", "/v1/users/me").json()
    assert me["object"] == "user" and me["type"] == "bot"
    assert me["bot"]["workspace_limits"]["max_file_upload_size_in_bytes"] == 5 * 2**30
    assert "token-a" not in str(me)


def test_each_integration_sees_only_its_own_uploads(client: NotionClient, emu: EmulatorProcess) -> None:
    other = NotionClient(emu, token="token-b")
    mine = client.create_ok(filename="mine.txt")["id"]
    r = other.retrieve(mine)
    assert r.status_code == 404 and error_code(r) == "object_not_found"
    r = other.send(mine, b"x")
    assert r.status_code == 404
    assert mine not in {u["id"] for u in other.request("GET", "/v1/file_uploads").json()["results"]}
    assert client.request("GET", "/v1/users/me").json()["id"] != other.request("GET", "/v1/users/me").json()["id"]


def test_file_download_of_a_multi_part_upload(client: NotionClient, emu: EmulatorProcess, tmp_path: Path) -> None:
    data = bytes(range(256)) * (5 * MIB // 256) + b"tail"
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    upload_id = client.create_ok(mode="multi_part", filename="data.txt", number_of_parts=2)["id"]
    assert client.send(upload_id, path, part_number=1, length=5 * MIB).status_code == 200
    assert client.send(upload_id, path, part_number=2, offset=5 * MIB).status_code == 200
    assert requests.get(f"{emu.url}/_emulator/files/{upload_id}", timeout=10).status_code == 409
    assert client.complete(upload_id).status_code == 200
    got = requests.get(f"{emu.url}/_emulator/files/{upload_id}", timeout=10)
    assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == hashlib.sha256(data).hexdigest()
