"""The emulator's whole-file sha256 is kept up to date while the parts arrive, so complete only
finishes what is left (Notion answers complete quickly; a benchmark must not measure the
emulator re-reading 5 GiB). Whatever the order of the sends, a re-sent part, or a part replaced
while it is being hashed, complete must still report the sha256 of the bytes as they are."""
from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import requests
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from emulator.app import make_app
from emulator.config import parse_args
from emulator.rules import MAX_SEND_BODY_BYTES, PART_MIN_BYTES
from emulator.state import Emulator
from emulator.store import HASH_CHUNK_BYTES, Upload, UploadStore, WallClock
from harness.emulator import DEFAULT_TOKEN, NOTION_VERSION, EmulatorProcess, NotionClient, send_form
from tests.support.emulator import emulator  # noqa: F401  (the fixture)

MIB = 2**20
T = TypeVar("T")


def sha(*pieces: bytes) -> str:
    return hashlib.sha256(b"".join(pieces)).hexdigest()


def pattern(tag: int, size: int) -> bytes:
    """Bytes that differ from one tag to the next all along, so a misplaced or stale part
    changes the hash."""
    seed = hashlib.sha256(tag.to_bytes(8, "big")).digest()
    return (seed * (size // len(seed) + 1))[:size]


# --- the store on its own ---------------------------------------------------------------------


def new_store(tmp_path: Path) -> UploadStore:
    return UploadStore(tmp_path / "data", WallClock())


def new_upload(store: UploadStore, parts: int, mode: str = "multi_part") -> Upload:
    return store.create(owner="t", mode=mode, filename="a.txt", content_type="text/plain",
                        total_parts=parts if mode == "multi_part" else None,
                        expires_at=store.clock.now() + 3600)


def put(store: UploadStore, upload: Upload, number: int, data: bytes) -> None:
    """What a send does once its body is in: the bytes in a temporary file, then committed."""
    temp = store.temp_path(upload.id)
    temp.write_bytes(data)
    store.commit_part(upload, number, temp, len(data), sha(data))


async def settle(store: UploadStore, upload: Upload) -> None:
    task = store.advance_digest(upload)
    if task is not None:
        await task


def hashed_parts(store: UploadStore, upload: Upload) -> list[int]:
    state = store._digests.get(upload.id)
    return [n for n, _ in state.fed] if state else []


async def complete(store: UploadStore, upload: Upload) -> tuple[int, str, int]:
    """file_digest as complete calls it, with the bytes complete itself had to hash."""
    before = store.digest_bytes_at_complete
    size, digest = await store.file_digest(upload)
    return size, digest, store.digest_bytes_at_complete - before


def run(tmp_path: Path, scenario: Callable[[UploadStore], Awaitable[T]]) -> T:
    store = new_store(tmp_path)
    try:
        return asyncio.run(scenario(store))
    finally:
        store.close()


def test_parts_in_order_are_hashed_as_they_come_and_complete_hashes_nothing(tmp_path: Path) -> None:
    data = [pattern(n, 2 * MIB + n) for n in range(1, 4)]

    async def scenario(store: UploadStore) -> None:
        upload = new_upload(store, 3)
        for n, piece in enumerate(data, 1):
            put(store, upload, n, piece)
            await settle(store, upload)
            assert hashed_parts(store, upload) == list(range(1, n + 1))
        assert await complete(store, upload) == (sum(map(len, data)), sha(*data), 0)
        assert upload.id not in store._digests  # dropped once completed

    run(tmp_path, scenario)


def test_parts_out_of_order_wait_for_the_gap_to_be_filled(tmp_path: Path) -> None:
    data = [pattern(n, MIB + 7 * n) for n in range(1, 5)]

    async def scenario(store: UploadStore) -> None:
        upload = new_upload(store, 4)
        for n in (3, 4, 2):
            put(store, upload, n, data[n - 1])
            await settle(store, upload)
            assert hashed_parts(store, upload) == []  # part 1 is still missing
        put(store, upload, 1, data[0])
        await settle(store, upload)
        assert hashed_parts(store, upload) == [1, 2, 3, 4]
        assert await complete(store, upload) == (sum(map(len, data)), sha(*data), 0)

    run(tmp_path, scenario)


def test_a_part_re_sent_after_it_was_hashed_restarts_the_digest(tmp_path: Path) -> None:
    data = [pattern(n, MIB + n) for n in range(1, 4)]
    new_second = pattern(20, MIB // 2)

    async def scenario(store: UploadStore) -> None:
        upload = new_upload(store, 3)
        for n, piece in enumerate(data, 1):
            put(store, upload, n, piece)
        await settle(store, upload)
        put(store, upload, 2, new_second)
        await settle(store, upload)
        assert hashed_parts(store, upload) == [1, 2, 3]
        expected = (len(data[0]) + len(new_second) + len(data[2]), sha(data[0], new_second, data[2]), 0)
        assert await complete(store, upload) == expected

    run(tmp_path, scenario)


def test_complete_right_after_a_re_send_hashes_what_is_left_and_is_right(tmp_path: Path) -> None:
    data = [pattern(n, MIB + n) for n in range(1, 4)]
    new_first = pattern(10, MIB)

    async def scenario(store: UploadStore) -> None:
        upload = new_upload(store, 3)
        for n, piece in enumerate(data, 1):
            put(store, upload, n, piece)
        await settle(store, upload)
        put(store, upload, 1, new_first)  # no settling: complete has everything to redo
        size, digest, at_complete = await complete(store, upload)
        assert (size, digest) == (len(new_first) + len(data[1]) + len(data[2]), sha(new_first, *data[1:]))
        assert at_complete == size

    run(tmp_path, scenario)


async def mid_second_part(store: UploadStore, upload: Upload) -> asyncio.Task[None]:
    """The advance once it has hashed part 1 and read the first MiB of part 2 (of 3 MiB)."""
    task = store.advance_digest(upload)
    assert task is not None
    while hashed_parts(store, upload) != [1]:
        await asyncio.sleep(0)
    # Part 1 was appended and part 2 opened in the same step: one chunk of it is read now.
    assert not task.done()
    return task


def test_the_part_being_hashed_is_replaced_mid_read(tmp_path: Path) -> None:
    first, second, new_second = pattern(1, 3 * MIB), pattern(2, 3 * MIB), pattern(3, 3 * MIB - 5)
    assert len(second) > 2 * HASH_CHUNK_BYTES

    async def scenario(store: UploadStore) -> None:
        upload = new_upload(store, 2)
        put(store, upload, 1, first)
        put(store, upload, 2, second)
        task = await mid_second_part(store, upload)
        put(store, upload, 2, new_second)  # the file being read is unlinked under the advance
        assert store.advance_digest(upload) is task  # one advance at a time
        await task
        state = store._digests[upload.id]
        assert state.fed == sorted(upload.parts.items()) and upload.parts[2].sends == 2
        assert await complete(store, upload) == (len(first) + len(new_second), sha(first, new_second), 0)

    run(tmp_path, scenario)


def test_an_earlier_part_is_replaced_while_a_later_one_is_hashed(tmp_path: Path) -> None:
    first, second, new_first = pattern(1, 3 * MIB), pattern(2, 3 * MIB), pattern(4, 2 * MIB)

    async def scenario(store: UploadStore) -> None:
        upload = new_upload(store, 2)
        put(store, upload, 1, first)
        put(store, upload, 2, second)
        task = await mid_second_part(store, upload)
        put(store, upload, 1, new_first)
        await task
        assert hashed_parts(store, upload) == [1, 2]
        assert await complete(store, upload) == (len(new_first) + len(second), sha(new_first, second), 0)

    run(tmp_path, scenario)


def test_after_a_restart_complete_hashes_everything(tmp_path: Path) -> None:
    data = [pattern(n, MIB + n) for n in range(1, 4)]
    total = sum(map(len, data))

    async def send_all(store: UploadStore) -> str:
        upload = new_upload(store, 3)
        for n, piece in enumerate(data, 1):
            put(store, upload, n, piece)
        await settle(store, upload)
        return upload.id

    upload_id = run(tmp_path, send_all)

    async def complete_after_restart(store: UploadStore) -> None:
        assert await complete(store, store.uploads[upload_id]) == (total, sha(*data), total)

    run(tmp_path, complete_after_restart)


def test_a_part_sent_after_a_restart_hashes_from_part_1_again(tmp_path: Path) -> None:
    data = [pattern(n, MIB + n) for n in range(1, 4)]

    async def send_two(store: UploadStore) -> str:
        upload = new_upload(store, 3)
        put(store, upload, 1, data[0])
        put(store, upload, 2, data[1])
        await settle(store, upload)
        return upload.id

    upload_id = run(tmp_path, send_two)

    async def send_the_last_and_complete(store: UploadStore) -> None:
        upload = store.uploads[upload_id]
        put(store, upload, 3, data[2])
        await settle(store, upload)
        assert await complete(store, upload) == (sum(map(len, data)), sha(*data), 0)

    run(tmp_path, send_the_last_and_complete)


def test_parts_changed_behind_the_store_s_back_are_hashed_again(tmp_path: Path) -> None:
    data = [pattern(n, MIB + n) for n in range(1, 4)]

    async def scenario(store: UploadStore) -> None:
        upload = new_upload(store, 3)
        for n, piece in enumerate(data, 1):
            put(store, upload, n, piece)
        await settle(store, upload)
        del upload.parts[3]  # not through commit_part: only complete's own check can see it
        expected = len(data[0]) + len(data[1])
        assert await complete(store, upload) == (expected, sha(data[0], data[1]), expected)

    run(tmp_path, scenario)

def test_parts_committed_without_a_loop_are_hashed_at_complete(tmp_path: Path) -> None:
    store = new_store(tmp_path)
    try:
        upload = new_upload(store, 2)
        put(store, upload, 1, b"a" * 10)
        put(store, upload, 2, b"b" * 5)
        assert asyncio.run(complete(store, upload)) == (15, sha(b"a" * 10, b"b" * 5), 15)
    finally:
        store.close()


def test_deleting_the_files_drops_the_running_digest(tmp_path: Path) -> None:
    async def scenario(store: UploadStore) -> None:
        upload = new_upload(store, 2)
        put(store, upload, 1, pattern(1, 3 * MIB))
        put(store, upload, 2, pattern(2, 3 * MIB))
        task = await mid_second_part(store, upload)
        store.delete_files(upload)
        await asyncio.wait([task])
        assert task.cancelled()
        assert upload.id not in store._digests and store.advance_digest(upload) is None

    run(tmp_path, scenario)


def test_single_part_uploads_keep_no_running_digest(tmp_path: Path) -> None:
    async def scenario(store: UploadStore) -> None:
        upload = new_upload(store, 1, mode="single_part")
        put(store, upload, 1, b"hello")
        assert store.advance_digest(upload) is None and upload.id not in store._digests

    run(tmp_path, scenario)


# --- through the API (an emulator process, as the other emulator tests run it) ----------------


def send_parts(client: NotionClient, upload_id: str, parts: dict[int, bytes], order: list[int]) -> None:
    for n in order:
        r = client.send(upload_id, parts[n], part_number=n, filename="a.txt")
        assert r.status_code == 200, r.text


def complete_ok(emu: EmulatorProcess, client: NotionClient, upload_id: str) -> dict[str, Any]:
    r = client.complete(upload_id)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "uploaded"
    return emu.upload(upload_id)


def three_parts(tag: int) -> dict[int, bytes]:
    return {1: pattern(tag, PART_MIN_BYTES), 2: pattern(tag + 1, PART_MIN_BYTES + 3), 3: pattern(tag + 2, 1234)}


def test_the_sha256_after_complete_is_the_bytes_sha256(emulator: EmulatorProcess) -> None:  # noqa: F811
    client = NotionClient(emulator)
    cases: list[tuple[dict[int, bytes], list[int], dict[int, bytes]]] = [
        (three_parts(1), [1, 2, 3], {}),  # in order
        (three_parts(4), [3, 1, 2], {}),  # out of order
        (three_parts(7), [1, 2, 3], {2: pattern(99, PART_MIN_BYTES + 11)}),  # part 2 re-sent
        (three_parts(10), [2, 3, 1], {1: pattern(98, PART_MIN_BYTES)}),  # part 1 re-sent
    ]
    for parts, order, resent in cases:
        upload_id = client.create_ok(mode="multi_part", filename="a.txt", number_of_parts=3)["id"]
        send_parts(client, upload_id, parts, order)
        if resent:
            send_parts(client, upload_id, resent, sorted(resent))
            parts = {**parts, **resent}
        record = complete_ok(emulator, client, upload_id)
        assert record["sha256"] == sha(*(parts[n] for n in (1, 2, 3))), (order, sorted(resent))
        assert record["size"] == sum(map(len, parts.values()))


# --- through the API, in process: how much complete itself hashed -----------------------------


@contextmanager
def emulator_in_thread(data_dir: Path) -> Iterator[tuple[Emulator, asyncio.AbstractEventLoop, str]]:
    """The emulator's app on its own event loop in a thread, so the test can look at its store."""
    config = parse_args(["--data-dir", str(data_dir)])
    started: dict[str, Any] = {}
    ready = threading.Event()

    async def serve() -> None:
        emu = Emulator(config)
        app = make_app(emu)
        app.settings["log_function"] = lambda handler: None
        server = HTTPServer(app, max_body_size=MAX_SEND_BODY_BYTES)
        sockets = bind_sockets(0, address="127.0.0.1")
        server.add_sockets(sockets)
        stop = asyncio.Event()
        started.update(emu=emu, loop=asyncio.get_running_loop(), stop=stop,
                       url=f"http://127.0.0.1:{sockets[0].getsockname()[1]}")
        ready.set()
        await stop.wait()
        server.stop()
        await server.close_all_connections()
        emu.store.close()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield started["emu"], started["loop"], started["url"]
    finally:
        started["loop"].call_soon_threadsafe(started["stop"].set)
        thread.join(10)


def test_complete_after_every_part_was_hashed_hashes_nothing(tmp_path: Path) -> None:
    parts = three_parts(1)
    headers = {"Authorization": f"Bearer {DEFAULT_TOKEN}", "Notion-Version": NOTION_VERSION}
    with emulator_in_thread(tmp_path / "data") as (emu, loop, url):
        r = requests.post(f"{url}/v1/file_uploads", json={"mode": "multi_part", "filename": "a.txt",
                                                          "number_of_parts": 3}, headers=headers, timeout=10)
        assert r.status_code == 200, r.text
        upload_id = r.json()["id"]
        for n in (2, 1, 3):
            sent = send_form(f"{url}/v1/file_uploads/{upload_id}/send", headers, parts[n],
                             part_number=n, filename="a.txt")
            assert sent.status_code == 200, sent.text
        upload = emu.store.uploads[upload_id]
        # Wait (on the emulator's loop) until the background advance has caught up.
        asyncio.run_coroutine_threadsafe(settle(emu.store, upload), loop).result(30)
        assert emu.store.digest_bytes_at_complete == 0
        r = requests.post(f"{url}/v1/file_uploads/{upload_id}/complete", headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        assert emu.store.digest_bytes_at_complete == 0
        record = requests.get(f"{url}/_emulator/uploads/{upload_id}", timeout=10).json()
        assert record["sha256"] == sha(parts[1], parts[2], parts[3])
        assert record["size"] == sum(map(len, parts.values())) == r.json()["content_length"]



def test_deleted_files_leave_at_once_and_a_crash_midway_is_tidied_at_start(tmp_path: Path) -> None:
    """delete_files renames the directory away before its (slow) removal in a thread; a
    directory left renamed by a crash is removed when the store opens again."""

    async def scenario(store: UploadStore) -> Path:
        upload = new_upload(store, 2)
        put(store, upload, 1, pattern(1, PART_MIN_BYTES))
        await settle(store, upload)
        store.delete_files(upload)
        assert upload.files_deleted and not store.dir_for(upload.id).exists()
        return store.root

    root = run(tmp_path, scenario)
    leftover = root / ".deleting-0123456789abcdef"
    leftover.mkdir(exist_ok=True)
    (leftover / "part-000001.1").write_bytes(b"x")
    new_store(tmp_path).close()
    assert not leftover.exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".deleting-")]
