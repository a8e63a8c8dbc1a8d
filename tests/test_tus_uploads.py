"""tus uploads end to end: tuspy → relay → emulator, checked at the emulator byte for byte."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import requests
from tusclient import client as tus

from harness.processes import wait_until
from harness.relay import MIB, PAGE_ID, make_file

SIZES = [1, 5 * MIB - 1, 5 * MIB, 20 * MIB, 20 * MIB + 1, 64 * MIB + 3, 300 * MIB]
CHUNKS = {"1MiB": MIB, "8MiB": 8 * MIB, "whole": None}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[int, tuple[Path, str]]:
    folder = tmp_path_factory.mktemp("sources")
    out = {}
    for i, size in enumerate(SIZES):
        path = folder / f"source-{size}.txt"
        out[size] = (path, make_file(path, size, seed=i))
    return out


def tus_upload(base_url: str, path: Path, chunk_size: int, **metadata: str) -> str:
    meta = {"filename": path.name, "filetype": "text/plain", **metadata}
    uploader = tus.TusClient(f"{base_url}/files/").uploader(str(path), chunk_size=chunk_size, metadata=meta)
    uploader.upload()
    return uploader.url.rstrip("/").rsplit("/", 1)[-1]


def assert_stored_in_notion(stack, upload_id: str, sha256: str, size: int) -> dict:
    status = stack.relay.status(upload_id)
    assert status["status"] == "completed", status
    assert status["offset"] == size and status["durable_offset"] == size
    notion = stack.emulator.upload(status["notion"]["file_upload_id"])
    assert notion["status"] == "uploaded"
    assert notion["size"] == size and notion["sha256"] == sha256
    assert_parts_obey_notion(notion)
    assert PAGE_ID.replace("-", "") in [p.replace("-", "") for p in notion["attached_to"]]
    assert status["notion"]["block_id"]
    return notion


def assert_parts_obey_notion(notion: dict) -> None:
    parts = {int(k): v for k, v in notion["parts"].items()}
    if notion["mode"] == "single_part":
        assert notion["size"] <= 20 * MIB
        return
    n = notion["number_of_parts"]
    assert sorted(parts) == list(range(1, n + 1)) and n <= 1000
    for number, part in parts.items():
        assert part["size"] <= 20 * MIB
        if number < n:
            assert part["size"] >= 5 * MIB


@pytest.mark.parametrize("chunk", list(CHUNKS), ids=list(CHUNKS))
@pytest.mark.parametrize("size", SIZES, ids=[f"{s}B" for s in SIZES])
def test_tus_upload_reaches_notion_intact(stack, files, size, chunk):
    path, sha = files[size]
    chunk_size = CHUNKS[chunk] or size
    upload_id = tus_upload(stack.relay.url, path, chunk_size)
    assert_stored_in_notion(stack, upload_id, sha, size)


def _raw_patch(url: str, offset: int, total_length: int, data: bytes, reset: bool) -> None:
    """Send a PATCH that promises total_length bytes, send `data`, then go away without reading
    the reply: with `reset` the connection is cut (RST: unread bytes are lost in the kernel),
    otherwise closed politely after the last byte."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
    path = "/" + url.split("//", 1)[1].split("/", 1)[1]
    sock = socket.create_connection((host, int(port)))
    head = (f"PATCH {path} HTTP/1.1\r\nHost: {host}:{port}\r\nTus-Resumable: 1.0.0\r\n"
            f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\n"
            f"Content-Length: {total_length}\r\n\r\n").encode()
    sock.sendall(head + data)
    if reset:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    else:
        sock.shutdown(socket.SHUT_WR)
    sock.close()


def _head_offset(url: str) -> int:
    r = requests.head(url, headers={"Tus-Resumable": "1.0.0"}, timeout=10)
    assert r.status_code == 200, r.status_code
    return int(r.headers["Upload-Offset"])


def test_a_dropped_patch_resumes_from_an_offset_no_larger_than_sent(stack, tmp_path):
    size = 30 * MIB + 5
    path = tmp_path / "dropped.txt"
    sha = make_file(path, size, seed=42)
    created = requests.post(f"{stack.relay.url}/files/", headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(size),
        "Upload-Metadata": "filename ZHJvcHBlZC50eHQ=,filetype dGV4dC9wbGFpbg=="}, timeout=30)
    assert created.status_code == 201, created.text
    url = created.headers["Location"]
    sent = 27 * MIB + 123  # past part 1 (20 MiB, the default part size), into part 2
    with open(path, "rb") as f:
        _raw_patch(url, 0, size, f.read(sent), reset=True)
    # The relay may still be writing what it had buffered; the offset settles at most at `sent`.
    offset = wait_until(lambda: (lambda o: o if o == _head_offset(url) else None)(_head_offset(url)),
                        timeout_s=10, message="a stable offset")
    assert 0 < offset <= sent
    uploader = tus.TusClient(f"{stack.relay.url}/files/").uploader(str(path), url=url, chunk_size=8 * MIB)
    assert uploader.offset == offset
    uploader.upload()
    assert_stored_in_notion(stack, url.rsplit("/", 1)[-1], sha, size)


def test_a_lost_final_response_never_reads_as_done_too_early(stack, tmp_path):
    size = 25 * MIB
    path = tmp_path / "final.txt"
    sha = make_file(path, size, seed=7)
    created = requests.post(f"{stack.relay.url}/files/", headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(size),
        "Upload-Metadata": "filename ZmluYWwudHh0"}, timeout=30)
    url = created.headers["Location"]
    with open(path, "rb") as f:
        _raw_patch(url, 0, size, f.read(), reset=False)  # every byte sent, the reply never read
    upload_id = url.rsplit("/", 1)[-1]
    # Whenever HEAD says "all bytes", Notion must already hold the file.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        offset = _head_offset(url)
        if offset == size:
            break
        assert offset <= size - 1
        status = stack.relay.status(upload_id)
        assert status["status"] != "completed" or _head_offset(url) == size
        time.sleep(0.05)
    assert _head_offset(url) == size
    assert_stored_in_notion(stack, upload_id, sha, size)
    # A client that asks again after a restart of its own sees the same answer.
    uploader = tus.TusClient(f"{stack.relay.url}/files/").uploader(str(path), url=url, chunk_size=8 * MIB)
    assert uploader.offset == size
