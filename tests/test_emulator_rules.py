"""The emulator enforces Notion's File Upload rules: each rule with an accepted and a
rejected case, over real HTTP against `python -m emulator` on an ephemeral port."""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pycurl
import pytest
import requests

from harness.emulator import EmulatorProcess, NotionClient, running_emulator
from harness.processes import wait_until
from tests.support.emulator import error_code

MIB = 2**20
PART_MIN = 5 * MIB
PART_MAX = 20 * MIB
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    # A generous budget: these tests are about the rules, not the rate limit.
    with running_emulator(tmp_path_factory.mktemp("rules"), "--rate-limit", "100000/60") as process:
        yield process


@pytest.fixture
def client(emu: EmulatorProcess) -> NotionClient:
    return NotionClient(emu)


@pytest.fixture(scope="module")
def blob(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 MiB + 1 random bytes; tests send byte ranges of it."""
    path = tmp_path_factory.mktemp("blob") / "blob.bin"
    path.write_bytes(os.urandom(PART_MAX + 1))
    return path


def sha256_of(path: Path, offset: int, length: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        return hashlib.sha256(f.read(length)).hexdigest()


def multi(client: NotionClient, parts: int, filename: str = "data.txt") -> str:
    return client.create_ok(mode="multi_part", filename=filename, number_of_parts=parts)["id"]


def single(client: NotionClient, filename: str = "note.txt") -> str:
    return client.create_ok(filename=filename)["id"]


# --- headers, JSON and routes ----------------------------------------------------------------


def test_authorization_bearer_token_is_required(client: NotionClient, emu: EmulatorProcess) -> None:
    assert client.request("GET", "/v1/users/me").status_code == 200
    for headers in (
        {"Notion-Version": "2025-09-03"},
        {"Notion-Version": "2025-09-03", "Authorization": "Bearer wrong-token"},
        {"Notion-Version": "2025-09-03", "Authorization": f"Basic {emu.token}"},
    ):
        r = requests.get(f"{emu.url}/v1/users/me", headers=headers, timeout=10)
        assert r.status_code == 401 and error_code(r) == "unauthorized"


def test_notion_version_header_is_required(client: NotionClient, emu: EmulatorProcess) -> None:
    r = requests.get(f"{emu.url}/v1/users/me", headers=emu.headers(version=None), timeout=10)
    assert r.status_code == 400 and error_code(r) == "missing_version"
    r = requests.get(f"{emu.url}/v1/users/me", headers=emu.headers(version="1999-01-01"), timeout=10)
    assert r.status_code == 400 and error_code(r) == "validation_error"
    for version in ("2022-06-28", "2025-09-03", "2026-03-11"):
        assert NotionClient(emu, version=version).request("GET", "/v1/users/me").status_code == 200


def test_json_body_must_parse(client: NotionClient) -> None:
    r = client.request("POST", "/v1/file_uploads", data=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and error_code(r) == "invalid_json"
    r = client.request("POST", "/v1/file_uploads", data=b"[1, 2]")
    assert r.status_code == 400 and error_code(r) == "validation_error"
    r = client.request("POST", "/v1/file_uploads", data=b'{"filename": "a.txt"}')
    assert r.status_code == 200


def test_unknown_routes_and_methods_are_invalid_request_urls(client: NotionClient) -> None:
    upload_id = single(client)
    for method, path in (
        ("GET", "/v1/nothing"),
        ("DELETE", "/v1/file_uploads"),
        ("GET", "/"),
        ("GET", f"/v1/file_uploads/{upload_id}/send"),
        ("PUT", f"/v1/file_uploads/{upload_id}/send"),
        ("GET", f"/v1/file_uploads/{upload_id}/complete"),
        ("POST", "/v1/users/me"),
    ):
        r = client.request(method, path)
        assert r.status_code == 400 and error_code(r) == "invalid_request_url"


def test_unknown_and_malformed_upload_ids(client: NotionClient) -> None:
    r = client.retrieve("3c90c3cc-0d44-4b50-8888-8dd25736052a")
    assert r.status_code == 404 and error_code(r) == "object_not_found"
    r = client.retrieve("not-a-uuid")
    assert r.status_code == 400 and error_code(r) == "validation_error"
    upload_id = single(client)
    assert client.retrieve(upload_id.replace("-", "")).json()["id"] == upload_id


def test_error_bodies_have_notions_shape(client: NotionClient) -> None:
    r = client.retrieve("3c90c3cc-0d44-4b50-8888-8dd25736052a")
    body = r.json()
    assert set(body) == {"object", "status", "code", "message", "request_id"}
    assert r.headers["Content-Type"].startswith("application/json")
    assert "Traceback" not in r.text


# --- create ----------------------------------------------------------------------------------


def test_create_returns_a_pending_file_upload_object(client: NotionClient, emu: EmulatorProcess) -> None:
    up = client.create_ok(mode="multi_part", filename="movie.mp4", number_of_parts=3)
    assert up["object"] == "file_upload" and up["status"] == "pending"
    assert up["filename"] == "movie.mp4" and up["content_type"] == "video/mp4"
    assert up["number_of_parts"] == {"total": 3, "sent": 0}
    assert up["upload_url"] == f"{emu.url}/v1/file_uploads/{up['id']}/send"
    assert up["complete_url"] == f"{emu.url}/v1/file_uploads/{up['id']}/complete"
    for key in ("created_time", "last_edited_time", "expiry_time"):
        assert ISO_MS.match(up[key]), up[key]
    # up to 2025-09-03 Notion sends both (the live recordings show them); 2026-03-11 dropped
    # `archived`
    assert up["archived"] is False and up["in_trash"] is False
    assert up["content_length"] is None  # null until the first byte arrives
    newest = NotionClient(emu, version="2026-03-11").retrieve(up["id"]).json()
    assert newest["in_trash"] is False and "archived" not in newest


def test_create_mode_defaults_to_single_part_and_must_be_known(client: NotionClient) -> None:
    up = client.create_ok()
    assert up["status"] == "pending" and "number_of_parts" not in up and "complete_url" not in up
    r = client.create(mode="chunked", filename="a.txt")
    assert r.status_code == 400 and error_code(r) == "validation_error"


def test_number_of_parts_is_1_to_1000_and_multi_part_only(client: NotionClient) -> None:
    for ok in (1, 1000):
        assert client.create(mode="multi_part", filename="a.txt", number_of_parts=ok).status_code == 200
    for bad in (0, 1001, "3", 2.5, True, None):
        body = {"mode": "multi_part", "filename": "a.txt"}
        if bad is not None:
            body["number_of_parts"] = bad
        r = client.create(**body)
        assert r.status_code == 400 and error_code(r) == "validation_error", bad
    r = client.create(mode="single_part", filename="a.txt", number_of_parts=2)
    assert r.status_code == 400 and "multi_part" in r.json()["message"]


def test_multi_part_needs_a_filename(client: NotionClient) -> None:
    r = client.create(mode="multi_part", number_of_parts=2, content_type="text/plain")
    assert r.status_code == 400 and "filename" in r.json()["message"]
    assert client.create(mode="multi_part", number_of_parts=2, filename="a.txt").status_code == 200


def test_filename_is_at_most_900_bytes_including_the_extension(client: NotionClient) -> None:
    assert client.create(filename="a" * 896 + ".txt").status_code == 200
    r = client.create(filename="a" * 897 + ".txt")
    assert r.status_code == 400 and "900" in r.json()["message"]
    # bytes, not characters: "é" is two bytes in UTF-8
    r = client.create(filename="é" * 449 + ".txt")
    assert r.status_code == 400
    # an inferred extension counts too
    assert client.create(filename="b" * 897, content_type="text/plain").status_code == 400
    assert client.create(filename="b" * 896, content_type="text/plain").status_code == 200


def test_extension_and_content_type_rules(client: NotionClient) -> None:
    # supported extension: the content type is inferred from it
    assert client.create_ok(filename="report.PDF")["content_type"] == "application/pdf"
    # no extension: one is derived from content_type
    assert client.create_ok(filename="report", content_type="application/pdf")["filename"] == "report.pdf"
    # content type parameters are ignored
    assert client.create_ok(filename="a.txt", content_type="text/plain; charset=utf-8")["content_type"] == "text/plain"
    for body in (
        {"filename": "archive.zip"},  # extension not in Notion's table
        {"filename": "report"},  # no extension, nothing to infer one from
        {"filename": "sound.wav", "content_type": "audio/x-wav"},  # type not in the table
        {"filename": "photo.png", "content_type": "image/jpeg"},  # type does not fit the extension
        {"filename": "a.txt", "content_type": "application/octet-stream"},
        {"filename": ""},
        {"filename": 42},
    ):
        r = client.create(**body)
        assert r.status_code == 400 and error_code(r) == "validation_error", body


def test_create_refuses_unknown_keys(client: NotionClient) -> None:
    r = client.create(filename="a.txt", size=10)
    assert r.status_code == 400 and "size" in r.json()["message"]


def test_external_url_is_pending_then_fails_without_internet(client: NotionClient) -> None:
    # Notion answers `pending` (with an upload_url, as recorded) and imports afterwards; the
    # emulator reaches only loopback hosts, so this import fails after a short delay.
    up = client.create_ok(mode="external_url", external_url="https://example.com/a.png", filename="a.png")
    assert up["status"] == "pending" and "file_import_result" not in up and up["content_length"] is None
    assert up["upload_url"].endswith(f"/v1/file_uploads/{up['id']}/send")
    wait_until(lambda: client.retrieve(up["id"]).json()["status"] != "pending", timeout_s=10)
    failed = client.retrieve(up["id"]).json()
    assert failed["status"] == "failed" and "upload_url" not in failed
    result = failed["file_import_result"]
    assert set(result) == {"type", "error", "imported_time"} and result["type"] == "error"
    assert set(result["error"]) == {"type", "code", "message", "parameter", "status_code"}
    assert result["error"]["type"] == "download_error" and result["error"]["parameter"] == "external_url"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", result["imported_time"])
    r = client.create(mode="external_url", external_url="http://example.com/a.png", filename="a.png")
    assert r.status_code == 400
    r = client.send(up["id"], b"x", filename="a.png", content_type="image/png")
    assert r.status_code == 400


# --- send: parts -----------------------------------------------------------------------------


def test_part_sizes_every_part_but_the_last_is_5_to_20_mib(client: NotionClient, blob: Path) -> None:
    upload_id = multi(client, 3)
    r = client.send(upload_id, blob, part_number=1, length=PART_MIN - 1)
    assert r.status_code == 400 and error_code(r) == "validation_error" and "5 MiB" in r.json()["message"]
    assert client.send(upload_id, blob, part_number=1, length=PART_MIN).status_code == 200
    r = client.send(upload_id, blob, part_number=2, length=PART_MAX + 1)
    assert r.status_code == 400 and error_code(r) == "validation_error"
    assert client.send(upload_id, blob, part_number=2, length=PART_MAX).status_code == 200
    # the last part may be small, but not empty
    r = client.send(upload_id, b"", part_number=3)
    assert r.status_code == 400 and error_code(r) == "validation_error"
    r = client.send(upload_id, b"x", part_number=3)
    assert r.status_code == 200 and r.json()["number_of_parts"] == {"total": 3, "sent": 3}


def test_the_last_part_may_not_exceed_20_mib(client: NotionClient, blob: Path) -> None:
    upload_id = multi(client, 1)
    r = client.send(upload_id, blob, part_number=1, length=PART_MAX + 1)
    assert r.status_code == 400
    assert client.send(upload_id, blob, part_number=1, length=PART_MAX).status_code == 200


def test_part_numbers_are_1_to_number_of_parts(client: NotionClient) -> None:
    upload_id = multi(client, 2)
    for bad in ("0", "3", "-1", "abc", "1.0", "", "01"):
        r = client.send(upload_id, b"last", part_number=bad)
        assert r.status_code == 400 and error_code(r) == "validation_error", bad
    r = client.send(upload_id, b"last")  # no part_number at all
    assert r.status_code == 400 and "part_number" in r.json()["message"]
    assert client.send(upload_id, b"last", part_number="2").status_code == 200


def test_single_part_takes_no_part_number(client: NotionClient) -> None:
    upload_id = single(client)
    r = client.send(upload_id, b"hello", part_number=1)
    assert r.status_code == 400 and "part_number" in r.json()["message"]
    r = client.send(upload_id, b"hello")
    assert r.status_code == 200 and r.json()["status"] == "uploaded"


def test_single_part_is_at_most_20_mib(client: NotionClient, emu: EmulatorProcess, blob: Path) -> None:
    upload_id = single(client)
    r = client.send(upload_id, blob, length=PART_MAX + 1)
    assert r.status_code == 400 and "multi_part" in r.json()["message"]
    assert emu.upload(upload_id)["parts"] == {}
    r = client.send(upload_id, blob, length=PART_MAX)
    assert r.status_code == 200
    assert emu.upload(upload_id)["sha256"] == sha256_of(blob, 0, PART_MAX)


def test_a_body_over_21_mib_is_refused_before_it_is_read(client: NotionClient, emu: EmulatorProcess, tmp_path: Path) -> None:
    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as f:
        f.truncate(PART_MAX + 2 * MIB)
    upload_id = single(client)
    try:
        r = client.send(upload_id, huge)
        assert r.status_code == 400 and "20 MiB" in r.json()["message"]
    except pycurl.error:
        pass  # the server closed the connection while the client was still sending
    assert emu.upload(upload_id)["parts"] == {}
    assert emu.stats()["requests"]["send"].get("400", 0) >= 1


def test_single_part_file_may_not_be_empty(client: NotionClient) -> None:
    r = client.send(single(client), b"")
    assert r.status_code == 400 and "empty" in r.json()["message"]


def test_send_needs_a_multipart_form_with_a_file_part(client: NotionClient, emu: EmulatorProcess) -> None:
    upload_id = single(client)
    url = f"{emu.url}/v1/file_uploads/{upload_id}/send"
    r = requests.post(url, headers=emu.headers(), data=b"raw bytes", timeout=10)
    assert r.status_code == 400 and "multipart/form-data" in r.json()["message"]
    r = requests.post(url, headers=emu.headers(), files={"other": ("a.txt", b"x", "text/plain")}, timeout=10)
    assert r.status_code == 400 and error_code(r) == "validation_error"
    r = client.send(upload_id, b"x", fields={"comment": "hi"})
    assert r.status_code == 400 and "comment" in r.json()["message"]
    # requests puts the file part first; pycurl (client.send) puts fields first: both work
    r = requests.post(url, headers=emu.headers(), files={"file": ("a.txt", b"hello", "text/plain")}, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "uploaded"


def test_form_field_order_does_not_matter(client: NotionClient, emu: EmulatorProcess) -> None:
    upload_id = multi(client, 1)
    url = f"{emu.url}/v1/file_uploads/{upload_id}/send"
    files = [("file", ("a.txt", b"abc", "text/plain")), ("part_number", (None, "1"))]
    r = requests.post(url, headers=emu.headers(), files=files, timeout=10)
    assert r.status_code == 200, r.text
    assert emu.upload(upload_id)["parts"]["1"]["size"] == 3


def test_part_content_type_must_match_the_upload(client: NotionClient) -> None:
    upload_id = single(client, "note.txt")
    r = client.send(upload_id, b"x", content_type="image/png", filename="note.png")
    assert r.status_code == 400 and "does not match" in r.json()["message"]
    r = client.send(upload_id, b"x", content_type="application/octet-stream")
    assert r.status_code == 400 and "not supported" in r.json()["message"]
    assert client.send(upload_id, b"x", content_type="text/plain; charset=utf-8").status_code == 200
    # no Content-Type on the part is fine: the upload's type stands
    assert client.send(single(client), b"x", content_type=None).status_code == 200


def test_single_part_without_filename_takes_it_from_the_file_part(client: NotionClient) -> None:
    upload_id = client.create_ok()["id"]
    r = client.send(upload_id, b"%PDF-1.4", filename="scan.pdf", content_type="application/pdf")
    assert r.status_code == 200
    assert (r.json()["filename"], r.json()["content_type"]) == ("scan.pdf", "application/pdf")
    r = client.send(client.create_ok()["id"], b"x", filename="scan.exe", content_type=None)
    assert r.status_code == 400 and ".exe" in r.json()["message"]


def test_resending_a_part_number_replaces_it(client: NotionClient, emu: EmulatorProcess, blob: Path) -> None:
    upload_id = multi(client, 2)
    assert client.send(upload_id, blob, part_number=1, length=PART_MIN).status_code == 200
    r = client.send(upload_id, blob, part_number=1, offset=1, length=PART_MIN + 7)
    assert r.status_code == 200
    assert r.json()["number_of_parts"] == {"total": 2, "sent": 1}
    assert r.json()["content_length"] == PART_MIN + 7
    assert client.send(upload_id, b"tail", part_number=2).status_code == 200
    record = emu.upload(upload_id)
    assert record["parts"]["1"] == {"size": PART_MIN + 7, "sends": 2, "sha256": sha256_of(blob, 1, PART_MIN + 7)}
    assert client.complete(upload_id).status_code == 200
    with open(blob, "rb") as f:
        f.seek(1)
        expected = hashlib.sha256(f.read(PART_MIN + 7) + b"tail").hexdigest()
    assert emu.upload(upload_id)["sha256"] == expected


def test_parts_may_arrive_in_any_order(client: NotionClient, emu: EmulatorProcess, blob: Path) -> None:
    upload_id = multi(client, 3)
    sizes = {1: PART_MIN, 2: PART_MIN + 1, 3: 10}
    offsets = {1: 0, 2: PART_MIN, 3: 2 * PART_MIN + 1}
    for n in (3, 1, 2):
        assert client.send(upload_id, blob, part_number=n, offset=offsets[n], length=sizes[n]).status_code == 200
    r = client.complete(upload_id)
    assert r.status_code == 200 and r.json()["status"] == "uploaded"
    record = emu.upload(upload_id)
    assert record["size"] == sum(sizes.values())
    assert record["sha256"] == sha256_of(blob, 0, sum(sizes.values()))


# --- complete and status transitions ---------------------------------------------------------


def test_complete_names_the_missing_parts(client: NotionClient, blob: Path) -> None:
    upload_id = multi(client, 6)
    for n in (1, 3):
        assert client.send(upload_id, blob, part_number=n, length=PART_MIN).status_code == 200
    r = client.complete(upload_id)
    assert r.status_code == 400 and error_code(r) == "validation_error"
    assert "2, 4-6" in r.json()["message"]
    assert client.retrieve(upload_id).json()["status"] == "pending"


def test_multi_part_status_goes_pending_to_uploaded(client: NotionClient, emu: EmulatorProcess, blob: Path) -> None:
    upload_id = multi(client, 2)
    r = client.send(upload_id, blob, part_number=1, length=PART_MIN)
    assert r.json()["status"] == "pending" and r.json()["number_of_parts"]["sent"] == 1
    client.send(upload_id, b"end", part_number=2)
    r = client.complete(upload_id)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "uploaded"
    assert body["content_length"] == PART_MIN + 3
    assert "upload_url" not in body and "complete_url" not in body
    # no way back: neither a second complete nor another send
    r = client.complete(upload_id)
    assert r.status_code == 400 and "pending" in r.json()["message"]
    r = client.send(upload_id, b"end", part_number=2)
    assert r.status_code == 400 and "pending" in r.json()["message"]
    assert emu.upload(upload_id)["parts"]["2"]["sends"] == 1


def test_single_part_status_and_complete(client: NotionClient) -> None:
    upload_id = single(client)
    r = client.complete(upload_id)
    assert r.status_code == 400 and "multi_part" in r.json()["message"]
    assert client.send(upload_id, b"once").json()["status"] == "uploaded"
    r = client.send(upload_id, b"twice")
    assert r.status_code == 400 and "pending" in r.json()["message"]


def test_complete_body_if_any_must_be_json(client: NotionClient) -> None:
    r = client.request("POST", f"/v1/file_uploads/{multi(client, 1)}/complete", data=b"{oops")
    assert r.status_code == 400 and error_code(r) == "invalid_json"


# --- plan limits -----------------------------------------------------------------------------


@pytest.fixture
def free_emu(tmp_path: Path) -> Iterator[EmulatorProcess]:
    with running_emulator(tmp_path, "--plan", "free") as process:
        yield process


def test_free_plan_is_5_mib_per_file_and_single_part_only(free_emu: EmulatorProcess, blob: Path) -> None:
    client = NotionClient(free_emu)
    me = client.request("GET", "/v1/users/me").json()
    assert me["bot"]["workspace_limits"]["max_file_upload_size_in_bytes"] == PART_MIN
    r = client.create(mode="multi_part", filename="a.txt", number_of_parts=2)
    assert r.status_code == 400 and "paid" in r.json()["message"]
    r = client.send(single(client), blob, length=PART_MIN + 1)
    assert r.status_code == 400 and str(PART_MIN) in r.json()["message"]
    assert client.send(single(client), blob, length=PART_MIN).status_code == 200


def test_paid_plan_limit_is_checked_on_send_and_on_complete(client: NotionClient, emu: EmulatorProcess, blob: Path) -> None:
    assert client.request("GET", "/v1/users/me").json()["bot"]["workspace_limits"][
        "max_file_upload_size_in_bytes"
    ] == 5 * 2**30
    try:
        # send: the running total may not pass the limit
        emu.set_plan(max_file_bytes=2 * PART_MIN)
        upload_id = multi(client, 3)
        assert client.send(upload_id, blob, part_number=1, length=PART_MIN).status_code == 200
        assert client.send(upload_id, blob, part_number=2, length=PART_MIN).status_code == 200
        r = client.send(upload_id, b"x", part_number=3)
        assert r.status_code == 400 and "limit" in r.json()["message"]
        # complete: checked again (the workspace's limit dropped after the parts were sent)
        upload_id = multi(client, 2)
        assert client.send(upload_id, blob, part_number=1, length=PART_MIN).status_code == 200
        assert client.send(upload_id, b"x", part_number=2).status_code == 200
        emu.set_plan(max_file_bytes=PART_MIN)
        r = client.complete(upload_id)
        assert r.status_code == 400 and "limit" in r.json()["message"]
        emu.set_plan(max_file_bytes=PART_MIN + 1)
        assert client.complete(upload_id).status_code == 200
    finally:
        emu.set_plan(plan="paid")


# --- expiry ----------------------------------------------------------------------------------


def test_expiry_time_is_created_plus_expiry_s(tmp_path: Path) -> None:
    with running_emulator(tmp_path, "--expiry-s", "1") as process:
        client = NotionClient(process)
        up = client.create_ok(filename="a.txt")
        pending_multi = multi(client, 2)
        from datetime import datetime

        created = datetime.fromisoformat(up["created_time"].replace("Z", "+00:00"))
        expiry = datetime.fromisoformat(up["expiry_time"].replace("Z", "+00:00"))
        assert (expiry - created).total_seconds() == pytest.approx(1.0, abs=0.002)
        wait_until(lambda: client.retrieve(up["id"]).json()["status"] == "expired", timeout_s=10)
        r = client.send(up["id"], b"late")
        assert r.status_code == 400 and "expired" in r.json()["message"]
        r = client.complete(pending_multi)
        assert r.status_code == 400 and "expired" in r.json()["message"]


def test_uploads_expire_unless_attached(client: NotionClient, emu: EmulatorProcess) -> None:
    pending = single(client)
    uploaded = single(client)
    attached = single(client)
    for upload_id in (uploaded, attached):
        assert client.send(upload_id, b"data").status_code == 200
    page = "3c90c3cc0d444b5088888dd25736052a"
    assert client.attach(page, [attached]).status_code == 200
    assert client.retrieve(attached).json()["expiry_time"] is None
    emu.advance_clock(3601)
    assert client.retrieve(pending).json()["status"] == "expired"
    assert client.retrieve(uploaded).json()["status"] == "expired"
    assert client.retrieve(attached).json()["status"] == "uploaded"
    r = client.attach(page, [uploaded])
    assert r.status_code == 400 and "expired" in r.json()["message"]
    r = client.send(pending, b"late")
    assert r.status_code == 400 and "pending" in r.json()["message"]
    # expired uploads are listed under their status
    r = client.request("GET", "/v1/file_uploads?status=expired&page_size=100")
    assert {pending, uploaded} <= {u["id"] for u in r.json()["results"]}


def test_expired_uploads_lose_their_part_files(tmp_path: Path) -> None:
    with running_emulator(tmp_path, "--expiry-s", "1", "--sweep-interval-s", "0.1") as process:
        client = NotionClient(process)
        upload_id = multi(client, 2)
        assert client.send(upload_id, b"x" * PART_MIN, part_number=1).status_code == 200
        part_dir = process.data_dir / "uploads" / upload_id
        assert any(part_dir.iterdir())
        wait_until(lambda: process.upload(upload_id)["files_deleted"], timeout_s=10)
        assert not part_dir.exists()


def test_discard_files_keeps_the_record_but_not_the_bytes(tmp_path: Path) -> None:
    with running_emulator(tmp_path, "--discard-files") as process:
        client = NotionClient(process)
        upload_id = multi(client, 1)
        assert client.send(upload_id, b"abc", part_number=1).status_code == 200
        assert client.complete(upload_id).status_code == 200
        record = process.upload(upload_id)
        assert record["sha256"] == hashlib.sha256(b"abc").hexdigest() and record["files_deleted"]
        assert record["parts"]["1"]["sha256"] is None  # not hashed twice: nobody inspects parts here
        assert not (process.data_dir / "uploads" / upload_id).exists()
        single_id = single(client)
        assert client.send(single_id, b"xyz").status_code == 200
        assert process.upload(single_id)["files_deleted"]
