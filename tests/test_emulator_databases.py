"""Databases, data sources and their rows in the emulator, over real HTTP: a database made
with `POST /_emulator/databases`, read back through Notion's own endpoints; rows with a title,
a caption and a file upload in a `files` property; queries (filters, sorts, pagination); the
refusals; faults (ambiguous included); persistence across a crash; captions on media blocks;
and the same through Notion's official JavaScript SDK (installed as tests/test_notion_sdk.py
installs it).

The key lists below are those of the live answers recorded by notion-sdk-py's test suite at
Notion-Version 2025-09-03 (tests/cassettes/test_databases_retrieve.yaml,
test_data_sources_retrieve.yaml, test_data_sources_query.yaml; MIT licence): the emulator
answers with the same keys, in the same order.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from harness.emulator import EmulatorProcess, NotionClient, running_emulator
from tests.support.emulator import error_code
from tests.test_notion_sdk import SDK_DIR, sdk  # noqa: F401  (the SDK, installed from its lockfile)

DATABASE_KEYS = [
    "object",
    "id",
    "title",
    "description",
    "parent",
    "is_inline",
    "in_trash",
    "is_locked",
    "created_time",
    "last_edited_time",
    "data_sources",
    "icon",
    "cover",
    "url",
    "public_url",
    "archived",
    "request_id",
]
DATA_SOURCE_KEYS = [
    "object",
    "id",
    "cover",
    "icon",
    "created_time",
    "created_by",
    "last_edited_by",
    "last_edited_time",
    "title",
    "description",
    "is_inline",
    "properties",
    "parent",
    "database_parent",
    "url",
    "public_url",
    "in_trash",
    "archived",
    "request_id",
]
QUERY_KEYS = ["object", "results", "next_cursor", "has_more", "type", "page_or_data_source", "request_id"]
PAGE_KEYS = [  # a page as recorded (POST /v1/pages), a row included
    "object",
    "id",
    "created_time",
    "last_edited_time",
    "created_by",
    "last_edited_by",
    "cover",
    "icon",
    "parent",
    "in_trash",
    "is_archived",
    "is_locked",
    "properties",
    "url",
    "public_url",
    "archived",
    "request_id",
]
SCHEMA = {"Name": {"title": {}}, "Files": {"files": {}}, "Caption": {"rich_text": {}}, "Rank": {"number": {}}}
OTHER_TOKEN = "other-integration-token"


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    args = ("--rate-limit", "100000/60", "--token", "emulator-token", "--token", OTHER_TOKEN)
    with running_emulator(tmp_path_factory.mktemp("databases"), *args) as process:
        yield process


@pytest.fixture
def client(emu: EmulatorProcess) -> Iterator[NotionClient]:
    emu.clear_faults()
    yield NotionClient(emu)
    emu.clear_faults()


def text(content: str) -> list[dict[str, Any]]:
    return [{"text": {"content": content}}]


def make_database(emu: EmulatorProcess, title: str = "Deliverables", **extra: Any) -> dict[str, Any]:
    r = requests.post(
        f"{emu.url}/_emulator/databases", json={"title": title, "properties": SCHEMA, **extra}, timeout=10
    )
    assert r.status_code == 200, r.text
    return r.json()


def new_page(client: NotionClient, title: str = "Projects") -> dict[str, Any]:
    r = client.request(
        "POST", "/v1/pages", {"parent": {"page_id": str(uuid.uuid4())}, "properties": {"title": text(title)}}
    )
    assert r.status_code == 200, r.text
    return r.json()


def uploaded(
    client: NotionClient, data: bytes = b"hello", filename: str = "notes.txt", content_type: str = "text/plain"
) -> str:
    upload_id = client.create_ok(filename=filename)["id"]
    sent = client.send(upload_id, data, filename=filename, content_type=content_type)
    assert sent.status_code == 200, sent.text
    return upload_id


def row_body(
    source_id: str, title: str, caption: str | None = None, upload_id: str | None = None, **more: Any
) -> dict[str, Any]:
    props: dict[str, Any] = {"Name": {"title": text(title)}}
    if caption is not None:
        props["Caption"] = {"rich_text": text(caption)}
    if upload_id is not None:
        props["Files"] = {"files": [{"type": "file_upload", "file_upload": {"id": upload_id}, "name": f"{title}.txt"}]}
    props.update(more)
    return {"parent": {"data_source_id": source_id}, "properties": props}


def new_row(client: NotionClient, source_id: str, title: str, **kw: Any) -> dict[str, Any]:
    r = client.request("POST", "/v1/pages", row_body(source_id, title, **kw))
    assert r.status_code == 200, r.text
    return r.json()


def query(client: NotionClient, source_id: str, body: dict[str, Any] | None = None) -> requests.Response:
    return client.request("POST", f"/v1/data_sources/{source_id}/query", body or {})


def query_ok(client: NotionClient, source_id: str, body: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    r = query(client, source_id, body)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def title_equals(title: str) -> dict[str, Any]:
    return {"filter": {"property": "Name", "title": {"equals": title}}}


def plain(rich: list[dict[str, Any]]) -> str:
    return "".join(item["plain_text"] for item in rich)


def rows_of(emu: EmulatorProcess, database_id: str) -> list[dict[str, Any]]:
    r = requests.get(f"{emu.url}/_emulator/databases/{database_id}/rows", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["rows"]


def without_volatile(obj: Any) -> Any:
    """A JSON answer without its request id and the times of file URLs (a new hour per read)."""
    if isinstance(obj, dict):
        return {k: without_volatile(v) for k, v in obj.items() if k not in ("request_id", "expiry_time")}
    if isinstance(obj, list):
        return [without_volatile(v) for v in obj]
    return obj


# --- the database and its data source ------------------------------------------------------------


def test_a_database_reads_like_notion_at_every_version(client: NotionClient, emu: EmulatorProcess) -> None:
    page = new_page(client)
    made = make_database(emu, parent_page_id=page["id"])
    db_id, source_id = made["id"], made["data_source_id"]
    assert made["properties"]["Name"] == {"id": "title", "type": "title"}

    db = client.request("GET", f"/v1/databases/{db_id.replace('-', '')}").json()
    assert list(db) == DATABASE_KEYS, list(db)
    assert db["object"] == "database" and db["id"] == db_id
    assert plain(db["title"]) == "Deliverables" and db["description"] == []
    assert db["parent"] == {"type": "page_id", "page_id": page["id"]}
    assert db["data_sources"] == [{"id": source_id, "name": "Deliverables"}]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", db["created_time"])  # as recorded
    assert db["url"] == f"https://app.notion.com/p/{db_id.replace('-', '')}"
    assert db["in_trash"] is False and db["archived"] is False and "properties" not in db

    source = client.request("GET", f"/v1/data_sources/{source_id}").json()
    assert list(source) == DATA_SOURCE_KEYS, list(source)
    assert source["parent"] == {"type": "database_id", "database_id": db_id}
    assert source["database_parent"] == {"type": "page_id", "page_id": page["id"]}
    assert source["url"] == db["url"] and plain(source["title"]) == "Deliverables"
    assert list(source["properties"]) == ["Name", "Files", "Caption", "Rank"]
    for name, prop in source["properties"].items():
        kind = next(iter(SCHEMA[name]))
        assert prop == {
            "id": made["properties"][name]["id"],
            "name": name,
            "description": None,
            "type": kind,
            kind: {},
        }, prop
    assert source["properties"]["Name"]["id"] == "title"
    ids = [p["id"] for p in source["properties"].values()]
    assert len(set(ids)) == len(ids)

    # 2026-03-11: no deprecated `archived`
    newest = NotionClient(emu, version="2026-03-11")
    assert "archived" not in newest.request("GET", f"/v1/databases/{db_id}").json()
    assert "archived" not in newest.request("GET", f"/v1/data_sources/{source_id}").json()

    # before 2025-09-03: the schema on the database, no data source endpoints
    old = NotionClient(emu, version="2022-06-28")
    legacy = old.request("GET", f"/v1/databases/{db_id}").json()
    assert "data_sources" not in legacy and legacy["archived"] is False and legacy["in_trash"] is False
    assert legacy["properties"]["Files"] == {
        "id": made["properties"]["Files"]["id"],
        "name": "Files",
        "type": "files",
        "files": {},
    }
    for path in (f"/v1/data_sources/{source_id}", f"/v1/data_sources/{source_id}/query"):
        r = old.request("POST" if path.endswith("query") else "GET", path, {} if path.endswith("query") else None)
        assert r.status_code == 400 and error_code(r) == "invalid_request_url", path
    # and the database query is gone from 2025-09-03 on
    r = client.request("POST", f"/v1/databases/{db_id}/query", {})
    assert r.status_code == 400 and error_code(r) == "invalid_request_url"

    # a database under a page is a child_database block of it (as Notion lists it)
    (listed,) = client.request("GET", f"/v1/blocks/{page['id']}/children").json()["results"]
    assert listed["id"] == db_id and listed["type"] == "child_database"
    assert listed["child_database"] == {"title": "Deliverables"}

    # pages and databases are told apart
    r = client.request("GET", f"/v1/pages/{db_id}")
    assert r.status_code == 400 and error_code(r) == "validation_error" and "is a database" in r.json()["message"]
    r = client.request("GET", f"/v1/databases/{page['id']}")
    assert r.status_code == 400 and error_code(r) == "validation_error" and "is a page" in r.json()["message"]
    for path in (f"/v1/databases/{uuid.uuid4()}", f"/v1/data_sources/{uuid.uuid4()}", f"/v1/data_sources/{db_id}"):
        r = client.request("GET", path)
        assert r.status_code == 404 and error_code(r) == "object_not_found", path

    # a workspace-level database (no parent page)
    top = make_database(emu, "Footage")
    top_db = client.request("GET", f"/v1/databases/{top['id']}").json()
    assert top_db["parent"] == {"type": "workspace", "workspace": True}
    listed_dbs = requests.get(f"{emu.url}/_emulator/databases", timeout=10).json()["databases"]
    assert {d["id"] for d in listed_dbs} >= {db_id, top["id"]}


def test_the_control_api_refuses_bad_databases(emu: EmulatorProcess) -> None:
    for body in (
        {"title": "x", "properties": {"Files": {"files": {}}}},  # no title property
        {"title": "x", "properties": {"A": {"title": {}}, "B": {"title": {}}}},
        {"title": "x", "properties": {"Name": {"title": {}}, "Tags": {"multi_select": {}}}},
        {"title": "x", "properties": {"Name": {"title": {}}, "Odd": {"files": {"x": 1}}}},
        {"title": "x", "properties": {}},
        {"title": "x", "colour": "red"},
        {"title": 3},
        {"title": "x", "parent_page_id": "not-an-id"},
    ):
        r = requests.post(f"{emu.url}/_emulator/databases", json=body, timeout=10)
        assert r.status_code == 400 and r.json()["error"], body
    # without properties: Notion's default schema, a "Name" title
    made = requests.post(f"{emu.url}/_emulator/databases", json={"title": "Plain"}, timeout=10).json()
    assert made["properties"] == {"Name": {"id": "title", "type": "title"}}
    assert requests.get(f"{emu.url}/_emulator/databases/{uuid.uuid4()}/rows", timeout=10).status_code == 404


# --- rows ------------------------------------------------------------------------------------------


def test_a_row_with_title_caption_and_file_reads_back_as_in_notion(client: NotionClient, emu: EmulatorProcess) -> None:
    made = make_database(emu)
    db_id, source_id = made["id"], made["data_source_id"]
    upload_id = uploaded(client, b"the quarterly report", "report.txt")
    assert client.retrieve(upload_id).json()["expiry_time"] is not None

    row = new_row(client, source_id, "Q3 report", caption="Numbers for Q3", upload_id=upload_id)
    assert list(row) == PAGE_KEYS, list(row)
    assert row["object"] == "page"
    assert row["parent"] == {"type": "data_source_id", "data_source_id": source_id, "database_id": db_id}
    assert row["url"] == f"https://app.notion.com/p/Q3-report-{row['id'].replace('-', '')}"
    props = row["properties"]
    assert list(props) == ["Name", "Files", "Caption", "Rank"]  # every property, empty ones too
    assert props["Name"]["id"] == "title" and props["Name"]["type"] == "title"
    assert plain(props["Name"]["title"]) == "Q3 report"
    assert props["Name"]["title"][0]["annotations"]["color"] == "default"
    assert props["Caption"] == {
        "id": made["properties"]["Caption"]["id"],
        "type": "rich_text",
        "rich_text": props["Caption"]["rich_text"],
    }
    assert plain(props["Caption"]["rich_text"]) == "Numbers for Q3"
    assert props["Rank"] == {"id": made["properties"]["Rank"]["id"], "type": "number", "number": None}
    (entry,) = props["Files"]["files"]
    assert list(entry) == ["name", "type", "file"] and entry["name"] == "Q3 report.txt"
    assert entry["type"] == "file" and list(entry["file"]) == ["url", "expiry_time"]
    url = entry["file"]["url"]
    assert upload_id not in url and upload_id.replace("-", "") not in url  # never the upload's id
    assert requests.get(url, timeout=10).content == b"the quarterly report"
    assert "file_upload" not in json.dumps(row)

    # the upload is attached: it no longer expires, and the emulator says to what
    assert client.retrieve(upload_id).json()["expiry_time"] is None
    assert emu.upload(upload_id)["attached_to"] == [row["id"]]

    # read back through Notion's endpoints
    again = client.request("GET", f"/v1/pages/{row['id']}").json()
    assert without_volatile(again) == without_volatile(row)
    found = query_ok(client, source_id, title_equals("Q3 report"))
    assert [r["id"] for r in found] == [row["id"]] and without_volatile(found[0]) == without_volatile(
        {**row, "request_id": None}
    )
    assert query_ok(client, source_id, title_equals("Q3")) == []  # equals is exact
    assert [
        r["id"] for r in query_ok(client, source_id, {"filter": {"property": "Name", "title": {"contains": "Q3"}}})
    ] == [row["id"]]
    caption = {"filter": {"property": made["properties"]["Caption"]["id"], "rich_text": {"equals": "Numbers for Q3"}}}
    assert [r["id"] for r in query_ok(client, source_id, caption)] == [row["id"]]  # by property id too
    r = query(client, source_id, title_equals("Q3 report"))
    assert list(r.json()) == QUERY_KEYS and r.json()["type"] == "page_or_data_source"

    # a row without a file, made through the database id; the title keyed by its id "title"
    bare = client.request(
        "POST",
        "/v1/pages",
        {"parent": {"type": "database_id", "database_id": db_id}, "properties": {"title": {"title": text("No file")}}},
    )
    assert bare.status_code == 200, bare.text
    assert bare.json()["properties"]["Files"]["files"] == [] and bare.json()["properties"]["Caption"]["rich_text"] == []
    with_files = query_ok(client, source_id, {"filter": {"property": "Files", "files": {"is_not_empty": True}}})
    assert [r["id"] for r in with_files] == [row["id"]]
    without = query_ok(client, source_id, {"filter": {"property": "Files", "files": {"is_empty": True}}})
    assert [r["id"] for r in without] == [bare.json()["id"]]

    # rows are not children of any page; the control API lists them with their uploads
    listed = rows_of(emu, db_id)
    assert [r["id"] for r in listed] == [row["id"], bare.json()["id"]]
    assert listed[0]["properties"] == {
        "Name": "Q3 report",
        "Files": [{"name": "Q3 report.txt", "upload_id": upload_id}],
        "Caption": "Numbers for Q3",
        "Rank": None,
    }
    assert rows_of(emu, source_id) == listed

    # the same row read at older versions: its database is the parent
    old = NotionClient(emu, version="2022-06-28").request("GET", f"/v1/pages/{row['id']}").json()
    assert old["parent"] == {"type": "database_id", "database_id": db_id}
    legacy = NotionClient(emu, version="2022-06-28").request(
        "POST", f"/v1/databases/{db_id}/query", title_equals("Q3 report")
    )
    assert legacy.status_code == 200 and legacy.json()["type"] == "page_or_database"
    assert [r["id"] for r in legacy.json()["results"]] == [row["id"]]
    # retrieved as a block, a row is a child_page of its data source
    as_block = client.request("GET", f"/v1/blocks/{row['id']}").json()
    assert as_block["type"] == "child_page" and as_block["parent"] == row["parent"]


def test_rows_are_refused_like_notion_refuses_them(client: NotionClient, emu: EmulatorProcess) -> None:
    made = make_database(emu)
    db_id, source_id = made["id"], made["data_source_id"]
    pending = client.create_ok(filename="later.txt")["id"]
    foreign = uploaded(NotionClient(emu, token=OTHER_TOKEN))
    mine = uploaded(client)

    def refused(body: dict[str, Any], code: str = "validation_error", status: int = 400) -> str:
        r = client.request("POST", "/v1/pages", body)
        assert r.status_code == status and error_code(r) == code, (body, r.text)
        return r.json()["message"]

    assert (
        refused(row_body(source_id, "x", Colour={"rich_text": text("red")})) == "Colour is not a property that exists."
    )
    assert refused(row_body(source_id, "x", Caption={"title": text("oops")})) == "Caption is expected to be rich_text."
    assert refused(row_body(source_id, "x", Files={"rich_text": text("oops")})) == "Files is expected to be files."
    assert refused(row_body(source_id, "x", Rank={"number": "3"})).startswith("body failed validation")
    assert (
        refused(row_body(source_id, "x", Caption={"select": {"name": "a"}})) == "Caption is expected to be rich_text."
    )
    assert refused({"parent": {"data_source_id": source_id}, "properties": {"Name": {"title": "flat"}}}).startswith(
        "body failed"
    )
    assert refused(row_body(source_id, "x" * 2001)).startswith("body failed validation")
    assert "status is pending" in refused(row_body(source_id, "x", upload_id=pending))
    assert "Could not find file upload" in refused(row_body(source_id, "x", upload_id=foreign))
    assert "Could not find file upload" in refused(row_body(source_id, "x", upload_id=str(uuid.uuid4())))
    refused(row_body(source_id, "x", Files={"files": [{"type": "file_upload", "file_upload": {}}]}))
    refused(
        row_body(source_id, "x", Files={"files": [{"type": "external", "external": {"url": "https://x.test/a.pdf"}}]})
    )  # no name
    refused(
        row_body(source_id, "x", Files={"files": [{"name": "a", "type": "file", "file": {"url": "https://x.test/a"}}]})
    )
    refused({"parent": {"data_source_id": source_id, "page_id": db_id}, "properties": {}})
    assert refused(row_body(str(uuid.uuid4()), "x"), "object_not_found", 404)
    assert refused({"parent": {"database_id": str(uuid.uuid4())}, "properties": {}}, "object_not_found", 404)
    refused({"parent": {"page_id": db_id}, "properties": {"title": text("x")}})  # a database is no page

    # one bad property refuses the whole row: nothing was created, nothing attached
    refused(row_body(source_id, "partial", upload_id=mine, Colour={"rich_text": text("red")}))
    assert query_ok(client, source_id) == [] and rows_of(emu, db_id) == []
    assert emu.upload(mine)["attached_to"] == []
    # an upload that expired cannot be attached either
    emu.advance_clock(3601)
    assert "status is expired" in refused(row_body(source_id, "late", upload_id=mine))


def test_rows_are_updated_and_trashed(client: NotionClient, emu: EmulatorProcess) -> None:
    made = make_database(emu)
    source_id = made["data_source_id"]
    first = uploaded(client, b"first", "first.txt")
    row = new_row(client, source_id, "Draft", caption="old", upload_id=first)
    kept_url = row["properties"]["Files"]["files"][0]["file"]["url"]
    second = uploaded(client, b"second", "second.txt")
    r = client.request(
        "PATCH",
        f"/v1/pages/{row['id']}",
        {
            "properties": {
                "Name": {"title": text("Final")},
                "Rank": {"number": 2},
                "Files": {
                    "files": [
                        {"name": "kept.txt", "type": "file", "file": {"url": kept_url}},  # an existing file stays
                        {"file_upload": {"id": second}},  # the name defaults to the upload's filename
                        {"name": "Spec", "external": {"url": "https://example.com/spec.pdf"}},
                    ]
                },
            }
        },
    )
    assert r.status_code == 200, r.text
    props = r.json()["properties"]
    assert plain(props["Name"]["title"]) == "Final" and plain(props["Caption"]["rich_text"]) == "old"
    assert props["Rank"]["number"] == 2
    files = props["Files"]["files"]
    assert [f["name"] for f in files] == ["kept.txt", "second.txt", "Spec"]
    assert files[2] == {"name": "Spec", "type": "external", "external": {"url": "https://example.com/spec.pdf"}}
    assert [requests.get(f["file"]["url"], timeout=10).content for f in files[:2]] == [b"first", b"second"]
    assert emu.upload(second)["attached_to"] == [row["id"]]
    assert [x["id"] for x in query_ok(client, source_id, title_equals("Final"))] == [row["id"]]
    assert query_ok(client, source_id, title_equals("Draft")) == []
    r = client.request("PATCH", f"/v1/pages/{row['id']}", {"properties": {"Ghost": {"rich_text": []}}})
    assert r.status_code == 400 and r.json()["message"] == "Ghost is not a property that exists."

    # trashed rows leave the query; they cannot be edited until restored
    assert client.request("DELETE", f"/v1/blocks/{row['id']}").status_code == 200
    assert query_ok(client, source_id) == []
    r = client.request("PATCH", f"/v1/pages/{row['id']}", {"properties": {"Caption": {"rich_text": text("new")}}})
    assert r.status_code == 400 and error_code(r) == "validation_error"
    restored = client.request("PATCH", f"/v1/pages/{row['id']}", {"in_trash": False})
    assert restored.status_code == 200 and restored.json()["in_trash"] is False
    assert [x["id"] for x in query_ok(client, source_id)] == [row["id"]]


# --- queries -----------------------------------------------------------------------------------------


def test_queries_filter_sort_and_page(client: NotionClient, emu: EmulatorProcess) -> None:
    source_id = make_database(emu)["data_source_id"]
    made = [
        new_row(client, source_id, f"Row {n}", caption="even" if n % 2 == 0 else "odd", Rank={"number": n})
        for n in range(7)
    ]
    ids = [r["id"] for r in made]

    # pages of 3: every row exactly once, newest first without sorts
    seen: list[str] = []
    cursor = None
    while True:
        body: dict[str, Any] = {"page_size": 3}
        if cursor:
            body["start_cursor"] = cursor
        page = query(client, source_id, body).json()
        seen += [r["id"] for r in page["results"]]
        assert page["has_more"] is (page["next_cursor"] is not None)
        if not page["has_more"]:
            break
        assert len(page["results"]) == 3
        cursor = page["next_cursor"]
    assert seen == ids[::-1]

    by_rank = query_ok(client, source_id, {"sorts": [{"property": "Rank", "direction": "ascending"}]})
    assert [r["id"] for r in by_rank] == ids
    by_caption_then_rank = query_ok(
        client,
        source_id,
        {"sorts": [{"property": "Caption", "direction": "ascending"}, {"property": "Rank", "direction": "descending"}]},
    )
    assert [r["properties"]["Rank"]["number"] for r in by_caption_then_rank] == [6, 4, 2, 0, 5, 3, 1]
    oldest_first = query_ok(client, source_id, {"sorts": [{"timestamp": "created_time", "direction": "ascending"}]})
    assert [r["id"] for r in oldest_first] == ids

    compound = {
        "filter": {
            "or": [
                {"property": "Caption", "rich_text": {"equals": "even"}},
                {
                    "and": [
                        {"property": "Rank", "number": {"greater_than": 4}},
                        {"property": "Name", "title": {"starts_with": "Row"}},
                    ]
                },
            ]
        },
        "sorts": [{"property": "Rank", "direction": "ascending"}],
    }
    assert [r["properties"]["Rank"]["number"] for r in query_ok(client, source_id, compound)] == [0, 2, 4, 5, 6]
    assert (
        len(query_ok(client, source_id, {"filter": {"property": "Caption", "rich_text": {"does_not_equal": "odd"}}}))
        == 4
    )
    since = {"filter": {"timestamp": "created_time", "created_time": {"on_or_after": made[3]["created_time"]}}}
    assert set(ids[3:]) <= {r["id"] for r in query_ok(client, source_id, since)} <= set(ids[2:])
    for op, expected in (("before", 7), ("after", 0)):
        body = {"filter": {"timestamp": "last_edited_time", "last_edited_time": {op: "2999-01-01"}}}
        assert len(query_ok(client, source_id, body)) == expected, op

    for bad in (
        {"page_size": 0},
        {"page_size": 101},
        {"page_size": "3"},
        {"start_cursor": str(uuid.uuid4())},
        {"filter": {"property": "Nope", "title": {"equals": "x"}}},
        {"filter": {"property": "Caption", "title": {"equals": "x"}}},
        {"filter": {"property": "Files", "files": {"contains": "x"}}},
        {"filter": {"property": "Name", "title": {"is_empty": False}}},
        {"filter": {"property": "Name", "title": {"equals": "a", "contains": "b"}}},
        {"filter": {"or": [{"and": [{"or": [{"property": "Name", "title": {"equals": "x"}}]}]}]}},  # 3 levels
        {"filter": {"timestamp": "created_time", "created_time": {"past_week": {}}}},
        {"sorts": [{"property": "Nope", "direction": "ascending"}]},
        {"sorts": [{"property": "Name", "direction": "up"}]},
        {"in_trash": True, "colour": 1},
    ):
        r = query(client, source_id, bad)
        assert r.status_code == 400 and error_code(r) == "validation_error", (bad, r.text)
    r = query(client, source_id, {"filter": {"property": "Nope", "title": {"equals": "x"}}})
    assert r.json()["message"] == "Could not find property with name or id: Nope"
    r = query(client, source_id, {"filter": {"property": "Caption", "title": {"equals": "x"}}})
    assert r.json()["message"] == "database property rich_text does not match filter title"


# --- faults --------------------------------------------------------------------------------------------


def fail_next(emu: EmulatorProcess, kind: str, endpoint: str) -> None:
    emu.set_faults({"rate": 1, "kinds": {kind: 1}, "endpoints": [endpoint], "count": 1})


def test_an_ambiguous_row_create_is_performed_and_found_again(client: NotionClient, emu: EmulatorProcess) -> None:
    made = make_database(emu)
    db_id, source_id = made["id"], made["data_source_id"]
    upload_id = uploaded(client)
    fail_next(emu, "ambiguous", "create_page")
    r = client.request("POST", "/v1/pages", row_body(source_id, "upload 7f3a", caption="c", upload_id=upload_id))
    assert r.status_code in (503, 504) and error_code(r) in ("service_unavailable", "gateway_timeout")
    # the row exists, once, with its file: a query by the property the client set finds it
    (found,) = query_ok(client, source_id, title_equals("upload 7f3a"))
    assert len(rows_of(emu, db_id)) == 1
    assert emu.upload(upload_id)["attached_to"] == [found["id"]]
    assert found["properties"]["Files"]["files"][0]["name"] == "upload 7f3a.txt"

    # a refused create (a 503 before the work) creates nothing
    fail_next(emu, "503", "create_page")
    r = client.request("POST", "/v1/pages", row_body(source_id, "upload 9c1d"))
    assert r.status_code == 503 and error_code(r) == "service_unavailable"
    assert query_ok(client, source_id, title_equals("upload 9c1d")) == []

    # every new endpoint takes faults by its name
    for endpoint, method, path, body in (
        ("retrieve_database", "GET", f"/v1/databases/{db_id}", None),
        ("retrieve_data_source", "GET", f"/v1/data_sources/{source_id}", None),
        ("query_data_source", "POST", f"/v1/data_sources/{source_id}/query", {}),
        ("retrieve_page", "GET", f"/v1/pages/{found['id']}", None),
        ("update_page", "PATCH", f"/v1/pages/{found['id']}", {"properties": {"Caption": {"rich_text": text("d")}}}),
    ):
        fail_next(emu, "504", endpoint)
        r = client.request(method, path, body)
        assert r.status_code == 504 and error_code(r) == "gateway_timeout", endpoint
        assert client.request(method, path, body).status_code == 200, endpoint
    fail_next(emu, "ambiguous", "update_page")
    r = client.request("PATCH", f"/v1/pages/{found['id']}", {"properties": {"Caption": {"rich_text": text("e")}}})
    assert r.status_code in (503, 504)
    assert plain(client.request("GET", f"/v1/pages/{found['id']}").json()["properties"]["Caption"]["rich_text"]) == "e"
    stats = emu.stats()["requests"]
    assert stats["query_data_source"]["504"] == 1 and stats["retrieve_database"]["200"] >= 1
    r = requests.post(f"{emu.url}/_emulator/faults", json={"rate": 1, "endpoints": ["query_database"]}, timeout=10)
    assert r.status_code == 200


# --- persistence -----------------------------------------------------------------------------------------


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[], EmulatorProcess]]:
    started: list[EmulatorProcess] = []

    def run() -> EmulatorProcess:
        emu = EmulatorProcess(tmp_path / "emu", ())
        started.append(emu)
        return emu

    yield run
    for emu in started:
        emu.stop()
    for emu in started:
        assert "Traceback" not in emu.output(), emu.output()[-4000:]


def test_databases_and_rows_survive_kill_9(start: Callable[[], EmulatorProcess]) -> None:
    emu = start()
    client = NotionClient(emu)
    page = new_page(client)
    made = make_database(emu, parent_page_id=page["id"])
    db_id, source_id = made["id"], made["data_source_id"]
    upload_id = uploaded(client, b"kept bytes", "kept.txt")
    row = new_row(client, source_id, "Kept", caption="across a crash", upload_id=upload_id)
    edited = client.request("PATCH", f"/v1/pages/{row['id']}", {"properties": {"Rank": {"number": 7}}})
    assert edited.status_code == 200
    database = client.request("GET", f"/v1/databases/{db_id}").json()
    source = client.request("GET", f"/v1/data_sources/{source_id}").json()
    before = client.request("GET", f"/v1/pages/{row['id']}").json()
    old_url = emu.url
    emu.process.kill()
    assert emu.process.proc.returncode == -9

    emu = start()
    client = NotionClient(emu)
    assert without_volatile(client.request("GET", f"/v1/databases/{db_id}").json()) == without_volatile(database)
    assert without_volatile(client.request("GET", f"/v1/data_sources/{source_id}").json()) == without_volatile(source)
    after = client.request("GET", f"/v1/pages/{row['id']}").json()
    assert same_page(after, emu.url) == same_page(before, old_url)
    assert after["properties"]["Rank"]["number"] == 7
    (found,) = query_ok(client, source_id, title_equals("Kept"))
    assert found["id"] == row["id"]
    url = after["properties"]["Files"]["files"][0]["file"]["url"]
    assert requests.get(url, timeout=10).content == b"kept bytes"
    assert client.retrieve(upload_id).json()["expiry_time"] is None
    assert [b["type"] for b in client.request("GET", f"/v1/blocks/{page['id']}/children").json()["results"]] == [
        "child_database"
    ]
    assert len(rows_of(emu, db_id)) == 1
    new_row(client, source_id, "After the restart")
    assert len(query_ok(client, source_id)) == 2


def same_page(page: dict[str, Any], base_url: str) -> Any:
    """A page as JSON with its volatile parts out and the emulator's address (a new port after
    a restart) blanked: the file URLs must otherwise stay the same."""
    return json.loads(json.dumps(without_volatile(page)).replace(base_url, "EMU"))


# --- captions on media blocks ----------------------------------------------------------------------------


def test_media_blocks_take_and_return_captions(client: NotionClient) -> None:
    page = new_page(client, "Gallery")
    files = {
        "file": ("notes.txt", "text/plain"),
        "image": ("photo.png", "image/png"),
        "pdf": ("paper.pdf", "application/pdf"),
        "audio": ("sound.mp3", "audio/mpeg"),
        "video": ("clip.mp4", "video/mp4"),
    }
    children = []
    for kind, (filename, content_type) in files.items():
        upload_id = uploaded(client, b"bytes of " + filename.encode(), filename, content_type)
        caption = [
            {"text": {"content": f"A {kind}"}},
            {"text": {"content": " caption", "link": {"url": "https://example.com"}}, "annotations": {"bold": True}},
        ]
        children.append(
            {"type": kind, kind: {"type": "file_upload", "file_upload": {"id": upload_id}, "caption": caption}}
        )
    r = client.request("PATCH", f"/v1/blocks/{page['id']}/children", {"children": children})
    assert r.status_code == 200, r.text
    listed = client.request("GET", f"/v1/blocks/{page['id']}/children").json()["results"]
    for block in r.json()["results"] + listed:
        kind = block["type"]
        caption = block[kind]["caption"]
        assert plain(caption) == f"A {kind} caption"
        assert caption[1]["annotations"]["bold"] is True and caption[1]["href"] == "https://example.com"
        assert block[kind]["type"] == "file" and "file_upload" not in json.dumps(block)
    bad = {
        "children": [
            {
                "type": "image",
                "image": {"type": "file_upload", "file_upload": {"id": str(uuid.uuid4())}, "caption": "not rich text"},
            }
        ]
    }
    r = client.request("PATCH", f"/v1/blocks/{page['id']}/children", bad)
    assert r.status_code == 400 and error_code(r) == "validation_error"


def test_a_trashed_database_takes_no_rows_until_restored(client: NotionClient, emu: EmulatorProcess) -> None:
    page = new_page(client)
    made = make_database(emu, parent_page_id=page["id"])
    db_id, source_id = made["id"], made["data_source_id"]
    trashed = client.request("DELETE", f"/v1/blocks/{db_id}")  # as Notion's own clean-up does
    assert trashed.status_code == 200 and trashed.json()["type"] == "child_database"
    assert client.request("GET", f"/v1/databases/{db_id}").json()["in_trash"] is True
    assert client.request("GET", f"/v1/data_sources/{source_id}").json()["in_trash"] is True
    r = client.request("POST", "/v1/pages", row_body(source_id, "x"))
    assert r.status_code == 400 and error_code(r) == "validation_error"
    assert client.request("PATCH", f"/v1/blocks/{db_id}", {"in_trash": False}).status_code == 200
    new_row(client, source_id, "x")
    # a database holds rows, not block children
    for method, body in (("GET", None), ("PATCH", {"children": [{"paragraph": {"rich_text": text("hi")}}]})):
        r = client.request(method, f"/v1/blocks/{db_id}/children", body)
        assert r.status_code == 400 and error_code(r) == "validation_error", method
        r = client.request(method, f"/v1/blocks/{source_id}/children", body)
        assert r.status_code == 404 and error_code(r) == "object_not_found", method


# --- through Notion's official JavaScript SDK --------------------------------------------------------------

SDK_FLOW = r"""
import { Client, collectAllDataSourceRows, collectPaginatedAPI, isFullDataSource, isFullDatabase,
         isFullPage } from "@notionhq/client";
const [baseUrl, token, databaseId, dataSourceId] = process.argv.slice(1);
const notion = new Client({ auth: token, baseUrl, notionVersion: "2025-09-03", retry: false });
const database = await notion.databases.retrieve({ database_id: databaseId });
const source = await notion.dataSources.retrieve({ data_source_id: dataSourceId });
const upload = await notion.fileUploads.create({ filename: "sdk.txt", content_type: "text/plain" });
await notion.fileUploads.send({
  file_upload_id: upload.id,
  file: { filename: "sdk.txt", data: new Blob(["sent by the sdk"], { type: "text/plain" }) },
});
const rows = [];
for (const n of [1, 2, 3]) {
  rows.push(await notion.pages.create({
    parent: { type: "data_source_id", data_source_id: dataSourceId },
    properties: {
      Name: { title: [{ text: { content: `sdk row ${n}` } }] },
      Caption: { rich_text: [{ text: { content: `caption ${n}` } }] },
      ...(n === 1
        ? { Files: { files: [{ type: "file_upload", file_upload: { id: upload.id }, name: "From the SDK" }] } }
        : {}),
    },
  }));
}
const paged = await collectPaginatedAPI(notion.dataSources.query, { data_source_id: dataSourceId, page_size: 2 });
const all = await collectAllDataSourceRows(notion, { data_source_id: dataSourceId, page_size: 2 });
const found = await notion.dataSources.query({
  data_source_id: dataSourceId,
  filter: { and: [
    { property: "Name", title: { equals: "sdk row 1" } },
    { property: "Files", files: { is_not_empty: true } },
  ] },
});
const page = await notion.pages.retrieve({ page_id: rows[0].id });
let refused = null;
try {
  await notion.pages.create({ parent: { data_source_id: dataSourceId }, properties: { Colour: { rich_text: [] } } });
} catch (e) {
  refused = { code: e.code, status: e.status, message: e.message };
}
console.log(JSON.stringify({
  isFullDatabase: isFullDatabase(database), isFullDataSource: isFullDataSource(source),
  isFullPage: rows.every(isFullPage) && isFullPage(page),
  dataSources: database.data_sources, properties: Object.keys(source.properties),
  rows: rows.map(r => r.id), paged: paged.map(r => r.id), all: all.map(r => r.id),
  found: found.results.map(r => r.id), file: page.properties.Files.files[0], uploadId: upload.id, refused,
}));
"""


def test_the_official_sdk_reads_databases_and_writes_rows(
    request: pytest.FixtureRequest, client: NotionClient, emu: EmulatorProcess
) -> None:
    """@notionhq/client (installed from tests/sdk's lockfile by the `sdk` fixture) reads the
    database and data source as full objects, writes rows with a file, pages through them."""
    node = request.getfixturevalue("sdk")
    made = make_database(emu, "SDK")
    done = subprocess.run(
        [node, "--input-type=module", "-e", SDK_FLOW, "--", emu.url, emu.token, made["id"], made["data_source_id"]],
        cwd=SDK_DIR,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    out = json.loads(done.stdout)
    assert out["isFullDatabase"] and out["isFullDataSource"] and out["isFullPage"]
    assert out["dataSources"] == [{"id": made["data_source_id"], "name": "SDK"}]
    assert out["properties"] == ["Name", "Files", "Caption", "Rank"]
    assert out["paged"] == out["rows"][::-1] and sorted(out["all"]) == sorted(out["rows"])
    assert out["found"] == [out["rows"][0]]
    assert out["file"]["name"] == "From the SDK" and out["file"]["type"] == "file"
    assert out["uploadId"] not in out["file"]["file"]["url"]
    assert requests.get(out["file"]["file"]["url"], timeout=10).content == b"sent by the sdk"
    assert out["refused"] == {
        "code": "validation_error",
        "status": 400,
        "message": "Colour is not a property that exists.",
    }
