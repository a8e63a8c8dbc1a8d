"""The emulator remembers: uploads, part files and blocks survive a restart and a SIGKILL."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from emulator.store import Block, UploadStore, WallClock
from harness.emulator import EmulatorProcess, NotionClient
from harness.processes import ROOT, wait_until

MIB = 2**20
PART_MIN = 5 * MIB
PAGE = "3c90c3cc0d444b5088888dd25736052a"


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., EmulatorProcess]]:
    """start() → an emulator on tmp_path/emu (the same data dir every time); all of them are
    stopped at the end, whatever the test did."""
    started: list[EmulatorProcess] = []

    def run(*args: str) -> EmulatorProcess:
        emu = EmulatorProcess(tmp_path / "emu", tuple(args))
        started.append(emu)
        return emu

    yield run
    for emu in started:
        emu.stop()
    for emu in started:
        assert "Traceback" not in emu.output(), emu.output()[-4000:]


def crash(emu: EmulatorProcess) -> None:
    """SIGKILL: no shutdown code runs, as in a crash."""
    emu.process.kill()
    assert emu.process.proc.returncode == -9


def children(client: NotionClient, page: str = PAGE) -> list[dict]:
    r = client.request("GET", f"/v1/blocks/{page}/children?page_size=100")
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_a_multi_part_upload_goes_on_after_kill_9(start) -> None:
    part1 = os.urandom(PART_MIN)
    part2 = b"the end\n" * 1000
    emu = start()
    client = NotionClient(emu)
    upload_id = client.create_ok(mode="multi_part", filename="big.txt", number_of_parts=2)["id"]
    assert client.send(upload_id, part1, part_number=1).status_code == 200
    crash(emu)

    emu = start()
    client = NotionClient(emu)
    kept = client.retrieve(upload_id).json()
    assert kept["status"] == "pending", kept
    assert kept["number_of_parts"] == {"total": 2, "sent": 1}, kept
    assert kept["content_length"] == len(part1)
    assert emu.upload(upload_id)["parts"]["1"]["sha256"] == hashlib.sha256(part1).hexdigest()
    assert client.send(upload_id, part2, part_number=2).status_code == 200
    done = client.complete(upload_id)
    assert done.status_code == 200 and done.json()["status"] == "uploaded", done.text
    record = emu.upload(upload_id)
    assert record["sha256"] == hashlib.sha256(part1 + part2).hexdigest()
    assert record["size"] == len(part1) + len(part2)


def test_an_uploaded_file_is_attached_after_a_restart_and_its_block_stays(start) -> None:
    emu = start()
    client = NotionClient(emu)
    upload_id = client.create_ok(filename="note.txt")["id"]
    assert client.send(upload_id, b"hello, notion").status_code == 200
    crash(emu)

    emu = start()
    client = NotionClient(emu)
    assert client.retrieve(upload_id).json()["status"] == "uploaded"
    attached = client.attach(PAGE, [upload_id])
    assert attached.status_code == 200, attached.text
    block_id = attached.json()["results"][0]["id"]
    crash(emu)

    emu = start()
    client = NotionClient(emu)
    assert [b["id"] for b in children(client)] == [block_id]
    kept = client.retrieve(upload_id).json()
    assert kept["status"] == "uploaded" and kept["expiry_time"] is None, kept
    record = emu.upload(upload_id)
    assert record["attached_to"] == [str(uuid.UUID(PAGE))]
    assert record["sha256"] == hashlib.sha256(b"hello, notion").hexdigest()
    # attached once: a second attach after the restart is a second block, like Notion
    assert client.attach(PAGE, [upload_id]).status_code == 200
    assert len(children(client)) == 2


def test_pages_and_their_edits_survive_kill_9(start) -> None:
    emu = start()
    client = NotionClient(emu)
    paragraph = {"type": "paragraph", "paragraph": {"rich_text": [{"type": "text", "text": {"content": "hi"}}]}}
    made = client.request("POST", "/v1/pages", {
        "parent": {"page_id": PAGE}, "properties": {"title": [{"text": {"content": "Draft"}}]},
        "children": [paragraph, paragraph]})
    assert made.status_code == 200, made.text
    page_id = made.json()["id"]
    first, second = [b["id"] for b in children(client, page_id)]
    renamed = client.request("PATCH", f"/v1/pages/{page_id}", {"properties": {"title": [{"text": {"content": "Final"}}]}})
    assert renamed.status_code == 200, renamed.text
    assert client.request("DELETE", f"/v1/blocks/{second}").status_code == 200
    crash(emu)

    emu = start()
    client = NotionClient(emu)
    page = client.request("GET", f"/v1/pages/{page_id}").json()
    assert "Final" in json.dumps(page) and "Draft" not in json.dumps(page), page
    assert [b["id"] for b in children(client, page_id)] == [first]
    assert client.request("GET", f"/v1/blocks/{second}").json()["in_trash"] is True
    assert page_id in [b["id"] for b in children(client)]  # the page, a child of its parent


def test_expired_uploads_stay_expired_and_the_clock_keeps_its_offset(start) -> None:
    emu = start()
    client = NotionClient(emu)
    upload_id = client.create_ok(mode="multi_part", filename="a.txt", number_of_parts=2)["id"]
    assert client.send(upload_id, b"x" * PART_MIN, part_number=1).status_code == 200
    emu.advance_clock(3601)
    assert client.retrieve(upload_id).json()["status"] == "expired"
    crash(emu)

    emu = start()
    client = NotionClient(emu)
    assert client.retrieve(upload_id).json()["status"] == "expired"
    refused = client.send(upload_id, b"y", part_number=2)
    assert refused.status_code == 400, refused.text
    assert emu.upload(upload_id)["status"] == "expired"


def test_a_clean_stop_keeps_everything_too_and_a_resent_part_replaces_the_old_bytes(tmp_path: Path, start) -> None:
    data_dir = tmp_path / "emu"
    emu = start()
    client = NotionClient(emu)
    upload_id = client.create_ok(mode="multi_part", filename="a.txt", number_of_parts=2)["id"]
    assert client.send(upload_id, b"a" * PART_MIN, part_number=1).status_code == 200
    assert emu.stop() == 0

    emu = start()
    client = NotionClient(emu)
    assert client.send(upload_id, b"b" * PART_MIN, part_number=1).status_code == 200
    assert client.send(upload_id, b"c", part_number=2).status_code == 200
    assert emu.upload(upload_id)["parts"]["1"]["sends"] == 2
    assert client.complete(upload_id).status_code == 200
    assert emu.upload(upload_id)["sha256"] == hashlib.sha256(b"b" * PART_MIN + b"c").hexdigest()
    # one file per part on disk: the replaced bytes are gone
    assert len(list((data_dir / "uploads" / upload_id).iterdir())) == 2


def test_a_torn_last_line_and_leftover_files_are_cleaned_up_at_start(tmp_path: Path, start) -> None:
    data_dir = tmp_path / "emu"
    emu = start()
    client = NotionClient(emu)
    upload_id = client.create_ok(mode="multi_part", filename="a.txt", number_of_parts=2)["id"]
    assert client.send(upload_id, b"a" * PART_MIN, part_number=1).status_code == 200
    crash(emu)
    # What a crash in the middle of things may leave: half a journal line, the temporary file
    # of a send that never finished, a part file the record never pointed at, and the
    # directory of an upload the journal never heard of.
    journal = data_dir / "journal.jsonl"
    with open(journal, "ab") as f:
        f.write(b'[["set","upload","' + upload_id.encode() + b'",{"stored_status":"upl')
    part_dir = data_dir / "uploads" / upload_id
    (part_dir / ".incoming-deadbeef").write_bytes(b"half a part")
    (part_dir / "part-000002.1").write_bytes(b"never recorded")
    stray = data_dir / "uploads" / str(uuid.uuid4())
    stray.mkdir()
    (stray / "part-000001.1").write_bytes(b"?")

    emu = start()
    client = NotionClient(emu)
    assert client.retrieve(upload_id).json()["status"] == "pending"
    assert sorted(p.name for p in part_dir.iterdir()) == ["part-000001.1"]
    assert not stray.exists()
    assert journal.read_bytes().endswith(b"\n")  # the torn line was cut off
    assert client.send(upload_id, b"z", part_number=2).status_code == 200
    assert client.complete(upload_id).status_code == 200
    assert emu.upload(upload_id)["sha256"] == hashlib.sha256(b"a" * PART_MIN + b"z").hexdigest()


def test_a_second_emulator_on_the_same_data_dir_is_refused(tmp_path: Path, start) -> None:
    data_dir = tmp_path / "emu"
    start()  # holds the data dir's lock
    result = subprocess.run(
        [sys.executable, "-m", "emulator", "--port", "0", "--data-dir", str(data_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=20,
    )
    assert result.returncode == 1
    assert "in use by another emulator" in result.stderr and "Traceback" not in result.stderr


def test_the_port_file_keeps_the_url_across_restarts(tmp_path: Path, start) -> None:
    port_file = tmp_path / "port"
    emu = start("--port-file", str(port_file))
    url = emu.url
    assert port_file.read_text().strip() == url.rsplit(":", 1)[1]
    crash(emu)
    emu = start("--port-file", str(port_file))
    assert emu.url == url


def test_an_external_url_import_cut_by_a_crash_starts_again(start) -> None:
    body = os.urandom(100_000)
    release = threading.Event()
    hits: list[int] = []

    class Files(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(1)
            if len(hits) == 1:
                release.wait(30)  # the first import hangs until the emulator is gone
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        emu = start()
        client = NotionClient(emu)
        url = f"http://127.0.0.1:{server.server_address[1]}/a.txt"
        upload_id = client.create_ok(mode="external_url", external_url=url, filename="a.txt")["id"]
        wait_until(lambda: hits, timeout_s=10, message="the import's first request")
        crash(emu)
        release.set()

        emu = start()
        client = NotionClient(emu)
        done = wait_until(lambda: client.retrieve(upload_id).json()["status"] != "pending", timeout_s=20)
        assert done
        kept = emu.upload(upload_id)
        assert kept["status"] == "uploaded", kept
        assert kept["sha256"] == hashlib.sha256(body).hexdigest()
    finally:
        release.set()
        server.shutdown()
        server.server_close()


# --- the journal itself (in process) ------------------------------------------------------------


def _block(upload_id: str, n: int) -> Block:
    return Block(id=str(uuid.uuid4()), page_id=PAGE, type="file", upload_id=upload_id, created_at=float(n),
                 creator_bot_id="bot", caption=[{"plain_text": f"#{n}"}], name=None)


def test_the_journal_compacts_and_replays_to_the_same_state(tmp_path: Path) -> None:
    clock = WallClock()
    store = UploadStore(tmp_path, clock, compact_bytes=16 * 1024)
    upload = store.create(owner="t", mode="multi_part", filename="a.txt", content_type="text/plain",
                          total_parts=200, expires_at=clock.now() + 3600)
    for n in range(1, 201):
        temp = store.temp_path(upload.id)
        temp.write_bytes(b"p")
        store.commit_part(upload, n, temp, 1, f"{n:064x}")
    blocks = [_block(upload.id, n) for n in range(3)]
    store.append_blocks(PAGE, blocks)
    upload.attached_to.append(PAGE)
    clock.advance(5)
    journal = tmp_path / "journal.jsonl"
    # 200 part lines of ~200 bytes are 40 KB; compaction kept the file near the state's size
    assert journal.stat().st_size < 3 * 16 * 1024
    lines = journal.read_text().splitlines()
    assert all(isinstance(json.loads(line), list) for line in lines)
    store.close()

    again = UploadStore(tmp_path, WallClock())
    kept = again.uploads[upload.id]
    assert kept == upload
    assert sorted(kept.parts) == list(range(1, 201)) and kept.parts[7].sha256 == f"{7:064x}"
    assert again.blocks(PAGE) == blocks
    assert again.clock.offset_s == 5
    # changes made after a reload are journaled as well
    kept.stored_status = "uploaded"
    del kept.parts[200]
    again.close()
    third = UploadStore(tmp_path, WallClock())
    assert third.uploads[upload.id].stored_status == "uploaded"
    assert 200 not in third.uploads[upload.id].parts
    third.close()
