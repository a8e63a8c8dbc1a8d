"""The invariants of DESIGN.md, proven on the upload wing in-process (the middle tier): in-memory
checkpoints and ownership, a scripted Notion, a clock that moves only when someone waits. No
subprocess, no socket; each test takes milliseconds."""
from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from engine.errors import (
    ChecksumMismatch,
    InsufficientStorage,
    OffsetMismatch,
    ServiceUnavailable,
    UploadBusy,
    UploadFailed,
    UploadGone,
)
from engine.notion_answers import Failure
from engine.upload.session import COMPLETED, EXPIRED, FAILED, RECEIVING
from tests.support.fakes import PAGE, MemoryOwnership, Wing, build_wing

pytestmark = pytest.mark.inprocess

MIB = 2**20
PART = 5 * MIB
BIG = 4 * PART + 3  # over 20,000,000 bytes: multi_part, 5 parts of 5 MiB (the fakes' part size)


def payload(size: int, seed: int = 1) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * (MIB // 32)
    return (block * (size // len(block) + 1))[:size]


async def send(wing: Wing, upload_id: str, data: bytes, offset: int = 0, chunk: int = 256 * 1024,
               hold: bool = False) -> None:
    service = wing.service
    s = await service.claim(upload_id)
    writer = service.begin_write(s, offset, hold=hold)
    for start in range(0, len(data), chunk):
        pause = writer.write(data[start:start + chunk])
        if pause is not None:
            await pause
    await writer.finish()


async def upload(wing: Wing, data: bytes, name: str = "a.txt", content_type: str = "text/plain") -> str:
    s = await wing.service.create(filename=name, size=len(data), content_type=content_type)
    await send(wing, s.id, data)
    return s.id


async def until(condition, turns: int = 1000) -> None:
    """Let the event loop run until `condition` holds (no real time passes)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    assert condition()


def stored(wing: Wing, upload_id: str) -> str:
    fid = wing.service.live[upload_id].record.notion_file_upload_id
    return wing.notion.sha256(fid)


@pytest.fixture
def wing(tmp_path: Path) -> Wing:
    return build_wing(tmp_path / "spool")


# --- the ordinary path ----------------------------------------------------------------------

@pytest.mark.parametrize("size", [1, 1000, PART, 20_000_000, 20_000_001, 3 * PART + 7])
async def test_an_upload_ends_completed_with_notion_holding_every_byte(wing, size):
    data = payload(size)
    upload_id = await upload(wing, data)
    s = wing.service.live[upload_id]
    assert s.state == COMPLETED and s.client_offset == size
    assert stored(wing, upload_id) == hashlib.sha256(data).hexdigest()
    assert len(wing.notion.blocks[PAGE]) == 1 and s.record.block_id == wing.notion.blocks[PAGE][0]["id"]
    assert wing.notion.uploads[s.record.notion_file_upload_id].mode == (
        "single_part" if size <= 20_000_000 else "multi_part")


async def test_a_wrong_offset_is_a_409_that_changes_nothing(wing):
    s = await wing.service.create(filename="a.txt", size=3 * PART, content_type="text/plain")
    await send(wing, s.id, payload(PART + 10))
    saves, received, state = wing.store.saves, s.assembler.received, s.state
    with pytest.raises(OffsetMismatch) as refused:
        wing.service.begin_write(s, PART + 11)
    assert refused.value.details["offset"] == PART + 10
    assert (wing.store.saves, s.assembler.received, s.state, s.writer) == (saves, received, state, None)


async def test_the_last_byte_is_not_reported_until_notion_holds_the_file(wing):
    data = payload(BIG)
    s = await wing.service.create(filename="a.txt", size=len(data), content_type="text/plain")
    gate = asyncio.Event()
    original = wing.notion.complete

    async def slow_complete(fid: str):
        await gate.wait()
        return await original(fid)

    wing.notion.complete = slow_complete  # type: ignore[method-assign]
    finishing = asyncio.ensure_future(send(wing, s.id, data))
    for _ in range(200):
        await asyncio.sleep(0)
        if wing.notion.calls["send"] == 5 and s.finalizing is not None:
            break
    assert s.assembler.received == len(data) and s.client_offset == len(data) - 1 and not finishing.done()
    gate.set()
    await finishing
    assert s.client_offset == len(data) and s.state == COMPLETED


async def test_at_most_two_parts_per_upload_wait_or_fly(wing):
    data = payload(6 * PART)
    s = await wing.service.create(filename="a.txt", size=len(data), content_type="text/plain")
    gate = asyncio.Event()
    original = wing.notion.send_part
    most = 0

    async def held_send(*args, **kwargs):
        nonlocal most
        most = max(most, wing.service.pipeline.scheduler.pending(s.id))
        await gate.wait()
        return await original(*args, **kwargs)

    wing.notion.send_part = held_send  # type: ignore[method-assign]
    writing = asyncio.ensure_future(send(wing, s.id, data))
    for _ in range(200):
        await asyncio.sleep(0)
    assert wing.service.pipeline.scheduler.pending(s.id) == 2 and not writing.done()
    assert s.assembler.received <= 3 * PART + 256 * 1024  # the socket is paused, not buffered
    gate.set()
    await writing
    assert most <= 2 and s.state == COMPLETED


async def test_a_fast_client_leaves_at_most_two_parts_to_send_at_its_last_byte(wing):
    """The next part is read only once a send slot frees, so the spool leads the sends by one
    part at most, and the time from the last byte to "completed" is two part sends, not three."""
    data = payload(6 * PART + 11)
    s = await wing.service.create(filename="a.txt", size=len(data), content_type="text/plain")
    release = asyncio.Semaphore(0)
    original = wing.notion.send_part
    left_at_last_byte: list[int] = []

    async def one_at_a_time(*args, **kwargs):
        await release.acquire()
        return await original(*args, **kwargs)

    wing.notion.send_part = one_at_a_time  # type: ignore[method-assign]
    writing = asyncio.ensure_future(send(wing, s.id, data))
    await until(lambda: wing.service.pipeline.scheduler.pending(s.id) == 2)
    for _ in range(100):
        await asyncio.sleep(0)
    assert s.assembler.received == 2 * PART  # paused at the part's boundary, not one part on
    while not writing.done():
        if s.assembler.received == len(data) and not left_at_last_byte:
            left_at_last_byte.append(s.plan.number_of_parts - len(s.durable))
        release.release()
        for _ in range(50):
            await asyncio.sleep(0)
    await writing
    assert left_at_last_byte == [2] and s.state == COMPLETED


# --- ambiguity, decided from Notion's state -----------------------------------------------------

@pytest.mark.parametrize("operation", ["create", "send", "complete", "attach"])
@pytest.mark.parametrize("outcome", ["ambiguous", "junk", "timeout"])
async def test_a_call_notion_did_is_never_done_twice(wing, operation, outcome):
    wing.notion.script(operation, outcome)
    data = payload(BIG)
    upload_id = await upload(wing, data)
    s = wing.service.live[upload_id]
    assert s.state == COMPLETED
    assert len(wing.notion.uploads) == 1, "a second Notion upload was created"
    assert len(wing.notion.blocks[PAGE]) == 1, "a second block was appended"
    assert wing.notion.calls["complete"] == 1 and stored(wing, upload_id) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("outcome", ["ambiguous", "timeout", "reset", "lost"])
async def test_a_single_part_send_is_decided_from_notions_state(wing, outcome):
    wing.notion.script("send", outcome)
    data = payload(1000)
    upload_id = await upload(wing, data)
    assert wing.service.live[upload_id].state == COMPLETED
    done_at_first = outcome in ("ambiguous", "timeout")
    assert wing.notion.calls["send"] == (1 if done_at_first else 2)


@pytest.mark.parametrize("operation", ["create", "complete", "attach"])
async def test_a_call_notion_did_not_do_is_done_again(wing, operation):
    wing.notion.script(operation, "lost", "reset")
    upload_id = await upload(wing, payload(BIG))
    assert wing.service.live[upload_id].state == COMPLETED
    assert wing.notion.calls[operation] == 3
    assert len(wing.notion.uploads) == 1 and len(wing.notion.blocks[PAGE]) == 1


async def test_an_append_whose_request_may_still_land_waits_for_notion_to_settle(tmp_path):
    wing = build_wing(tmp_path / "spool", settle_s=60)
    original = wing.notion.append_children
    landing: list[asyncio.Task] = []

    async def lands_late(page: str, children: list):
        wing.notion.calls["attach"] += 1
        landing.append(asyncio.ensure_future(lands_after(page, children)))
        raise Failure("timeout", "stalled", operation="attach")

    async def lands_after(page: str, children: list):
        await wing.clock.sleep(20)  # Notion finishes it 20 s later
        wing.notion.append_children = original  # type: ignore[method-assign]
        await original(page, children)

    wing.notion.append_children = lands_late  # type: ignore[method-assign]
    upload_id = await upload(wing, payload(100))
    await asyncio.gather(*landing)
    assert wing.service.live[upload_id].state == COMPLETED
    assert len(wing.notion.blocks[PAGE]) == 1


async def test_an_unreadable_state_leaves_the_upload_resumable_and_a_resume_finishes_it(wing):
    wing.notion.script("complete", "ambiguous")
    wing.notion.script("retrieve", *["lost"] * 20)
    data = payload(BIG)
    s = await wing.service.create(filename="a.txt", size=len(data), content_type="text/plain")
    with pytest.raises(UploadFailed) as failed:
        await send(wing, s.id, data)
    assert failed.value.details["can_resume"] is True and s.state == FAILED and s.record.can_resume
    wing.notion.scripts["retrieve"].clear()
    await send(wing, s.id, data[-1:], offset=len(data) - 1)  # the client re-sends the last byte
    assert s.state == COMPLETED and wing.notion.calls["complete"] == 2  # the second was refused, then checked
    assert len(wing.notion.blocks[PAGE]) == 1


async def test_notion_holding_other_bytes_is_never_completed(wing):
    original = wing.notion.complete

    async def truncating_complete(fid: str):
        wing.notion.uploads[fid].parts[1] = wing.notion.uploads[fid].parts[1][:-1]
        return await original(fid)

    wing.notion.complete = truncating_complete  # type: ignore[method-assign]
    s = await wing.service.create(filename="a.txt", size=BIG, content_type="text/plain")
    with pytest.raises(UploadFailed) as failed:
        await send(wing, s.id, payload(BIG))
    assert failed.value.details["can_resume"] is False and "does not hold the file" in s.record.error
    assert s.state == FAILED and not wing.notion.blocks[PAGE]


# --- failing, resuming, expiring ----------------------------------------------------------------

async def test_a_part_that_runs_out_of_retries_is_resumed_by_the_next_request(wing):
    wing.notion.script("send", *["lost"] * 7)  # one try and six retries
    data = payload(1000)
    s = await wing.service.create(filename="a.txt", size=len(data), content_type="text/plain")
    with pytest.raises(UploadFailed):
        await send(wing, s.id, data)
    assert s.state == FAILED and s.record.can_resume and s.failed_parts
    await send(wing, s.id, data[-1:], offset=len(data) - 1)
    assert s.state == COMPLETED and stored(wing, s.id) == hashlib.sha256(data).hexdigest()


async def test_a_refusal_for_good_is_final(wing):
    wing.notion.script("send", "refused")
    s = await wing.service.create(filename="a.txt", size=100, content_type="text/plain")
    with pytest.raises(UploadFailed) as failed:
        await send(wing, s.id, payload(100))
    assert failed.value.details["can_resume"] is False
    with pytest.raises(UploadFailed):
        wing.service.begin_write(s, 99)


async def test_expiry_is_notions_word_not_our_clock(wing):
    s = await wing.service.create(filename="a.txt", size=2 * PART, content_type="text/plain")
    await send(wing, s.id, payload(PART))
    wing.clock.advance(4 * 3600)  # our clock says long expired; Notion still says pending
    await wing.service.sweep()
    assert s.state == RECEIVING
    wing.notion.uploads[s.record.notion_file_upload_id].status = "expired"
    await wing.service.sweep()
    assert s.state == EXPIRED and s.id not in wing.service.live
    with pytest.raises(UploadGone):
        await wing.service.get(s.id)


async def test_reading_an_upload_never_writes_its_state(wing):
    s = await wing.service.create(filename="a.txt", size=2 * PART, content_type="text/plain")
    wing.clock.advance(4 * 3600)
    saves = wing.store.saves
    got = await wing.service.get(s.id)
    wing.service.check_expiry(got)
    assert wing.store.saves == saves and got.state == s.state


async def test_terminate_makes_the_upload_gone(wing):
    s = await wing.service.create(filename="a.txt", size=2 * PART, content_type="text/plain")
    await wing.service.terminate(s)
    assert s.id not in wing.service.live and not wing.store.records
    with pytest.raises(UploadGone):
        wing.service.begin_write(s, 0)


# --- stores, instances, disks ----------------------------------------------------------------------

async def test_a_part_is_durable_only_once_its_checkpoint_is_stored(wing):
    s = await wing.service.create(filename="a.txt", size=BIG, content_type="text/plain")
    wing.store.down = True
    writing = asyncio.ensure_future(send(wing, s.id, payload(BIG)))
    for _ in range(300):
        await asyncio.sleep(0)
    assert wing.notion.calls["send"] >= 1 and not s.durable and s.durable_offset == 0
    wing.store.down = False
    await writing
    assert s.durable == {1, 2, 3, 4, 5} and s.state == COMPLETED


async def test_redis_that_forgot_everything_gets_our_uploads_back(wing):
    s = await wing.service.create(filename="a.txt", size=BIG, content_type="text/plain")
    await send(wing, s.id, payload(2 * PART))
    await until(lambda: s.durable == {1, 2})
    await wing.service.maintain()
    wing.store.forget_everything()
    await wing.service.maintain()
    assert wing.store.records[s.id]["state"] == "receiving" and wing.store.parts[s.id] == {1, 2}
    assert ("STORE_AMNESIA", {"uploads": 1}) in wing.events and not wing.store.restoring


async def test_an_upload_held_by_another_instance_is_busy(tmp_path, wing):
    s = await wing.service.create(filename="a.txt", size=2 * PART, content_type="text/plain")
    other = build_wing(tmp_path / "other", clock=wing.clock, notion=wing.notion, store=wing.store,
                       locks=MemoryOwnership("b", wing.locks))
    with pytest.raises(UploadBusy):
        await other.service.claim(s.id)
    assert s.id in wing.locks.handoffs


async def test_a_full_disk_keeps_what_was_counted(wing, monkeypatch):
    s = await wing.service.create(filename="a.txt", size=2 * PART, content_type="text/plain")
    writer = wing.service.begin_write(await wing.service.claim(s.id), 0)
    writer.write(payload(1000))
    real_write = os.write

    def full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    writer.write(payload(5000))
    monkeypatch.setattr(os, "write", real_write)
    with pytest.raises(InsufficientStorage) as refused:
        await writer.finish()
    assert refused.value.details["can_resume"] and s.assembler.received == 1000
    await send(wing, s.id, payload(2 * PART)[1000:], offset=1000)
    assert s.state == COMPLETED and stored(wing, s.id) == hashlib.sha256(payload(2 * PART)).hexdigest()


async def test_a_checksum_mismatch_keeps_nothing_of_the_request(wing):
    s = await wing.service.create(filename="a.txt", size=2 * PART, content_type="text/plain")
    writer = wing.service.begin_write(await wing.service.claim(s.id), 0, hold=True)
    writer.write(payload(PART + 100))
    with pytest.raises(ChecksumMismatch):
        await writer.finish(checksum_ok=False)
    assert s.assembler.received == 0 and wing.notion.calls["send"] == 0


async def test_a_completed_upload_accepts_only_its_final_offset(wing):
    upload_id = await upload(wing, payload(100))
    s = wing.service.live[upload_id]
    await wing.service.begin_write(s, 100).finish()
    with pytest.raises(OffsetMismatch):
        wing.service.begin_write(s, 50)


# --- webhooks: what a state announces, written with the record --------------------------------

async def test_an_upload_announces_completed_once_and_only_when_notion_holds_it(tmp_path):
    from engine.webhooks import state_events

    wing = build_wing(tmp_path / "spool")
    wing.service.saver.announce = state_events
    seen_before_complete: list[str] = []
    original = wing.notion.append_children

    async def attach(*args, **kwargs):
        seen_before_complete.extend(e.type for e in wing.store.events)
        return await original(*args, **kwargs)

    wing.notion.append_children = attach  # type: ignore[method-assign]
    upload_id = await upload(wing, payload(BIG))
    await until(lambda: not wing.service.live[upload_id].saving)
    assert seen_before_complete == []
    kinds = [e.type for e in wing.store.events]
    assert set(kinds) == {"upload.completed"} and len({e.id for e in wing.store.events}) == 1


async def test_a_resumable_failure_announces_nothing_a_final_one_does(tmp_path):
    from engine.webhooks import state_events

    wing = build_wing(tmp_path / "spool")
    wing.service.saver.announce = state_events
    wing.notion.script("send", *["lost"] * 7)
    s = await wing.service.create(filename="a.txt", size=100, content_type="text/plain")
    with pytest.raises(UploadFailed):
        await send(wing, s.id, payload(100))
    await until(lambda: not s.saving)
    assert wing.store.events == []
    wing.notion.script("send", "refused")
    with pytest.raises(UploadFailed):
        await send(wing, s.id, payload(100)[-1:], offset=99)
    await until(lambda: not s.saving)
    assert [e.type for e in wing.store.events][-1] == "upload.failed"
    other = await wing.service.create(filename="b.txt", size=100, content_type="text/plain")
    await wing.service.terminate(other)
    assert [e.type for e in wing.store.events][-1] == "upload.terminated"
    with pytest.raises(UploadGone):
        await wing.service.get(other.id)


# --- batched appends ----------------------------------------------------------------------------

async def batched_uploads(tmp_path: Path, names: list[str], outcomes: tuple[str, ...] = ()) -> tuple[Wing, list[str]]:
    """Upload files whose appends meet in one batch: the batch's window is held open (a clock of
    its own) until every file waits in it."""
    from engine.clock import FakeClock

    wing = build_wing(tmp_path / "spool", append_window_s=0.2)
    batcher = wing.service.pipeline.finisher.batcher
    batcher.clock = FakeClock()
    wing.notion.script("attach", *outcomes)
    sessions = [await wing.service.create(filename=n, size=1000 + i, content_type="text/plain")
                for i, n in enumerate(names)]
    running = [asyncio.ensure_future(send(wing, s.id, payload(1000 + i, seed=i))) for i, s in enumerate(sessions)]
    await until(lambda: PAGE in batcher._open and len(batcher._open[PAGE].children) == len(names))
    batcher.clock.advance(0.2)
    await asyncio.gather(*running)
    return wing, [s.id for s in sessions]


async def test_files_finishing_together_share_one_append(tmp_path):
    wing, ids = await batched_uploads(tmp_path, [f"f{i}.txt" for i in range(8)])
    assert wing.notion.calls["attach"] == 1
    blocks = wing.notion.blocks[PAGE]
    assert len(blocks) == 8
    for upload_id, block in zip(ids, blocks, strict=True):
        s = wing.service.live[upload_id]
        assert s.state == COMPLETED and s.record.block_id == block["id"]
        assert block["image" if block["type"] == "image" else "file"]["file"]["url"].endswith(s.record.filename)


@pytest.mark.parametrize("outcome", ["ambiguous", "timeout", "junk"])
async def test_a_batch_notion_did_is_not_appended_again_and_each_file_knows_its_block(tmp_path, outcome):
    names = ["same.txt", "same.txt", "other.txt", "same.txt"]
    wing, ids = await batched_uploads(tmp_path, names, (outcome,))
    blocks = wing.notion.blocks[PAGE]
    assert wing.notion.calls["attach"] == 1 and len(blocks) == 4
    assert sorted(wing.service.live[i].record.block_id for i in ids) == sorted(b["id"] for b in blocks)


async def test_a_batch_notion_did_not_do_is_sent_again_whole(tmp_path):
    wing, ids = await batched_uploads(tmp_path, [f"g{i}.txt" for i in range(3)], ("lost",))
    assert wing.notion.calls["attach"] == 2 and len(wing.notion.blocks[PAGE]) == 3
    assert all(wing.service.live[i].state == COMPLETED for i in ids)


async def test_a_create_that_ended_undecided_is_adopted_by_the_clients_retry(wing):
    wing.notion.script("create", "ambiguous")
    wing.notion.script("list", *["lost"] * 10)  # Notion cannot be read: the client is told 503
    with pytest.raises(ServiceUnavailable):
        await wing.service.create(filename="a.txt", size=100, content_type="text/plain")
    wing.notion.scripts["list"].clear()
    s = await wing.service.create(filename="a.txt", size=100, content_type="text/plain")
    assert len(wing.notion.uploads) == 1 and s.record.notion_file_upload_id in wing.notion.uploads


async def test_files_finishing_while_the_append_waits_for_the_budget_join_it(tmp_path):
    from engine.clock import FakeClock

    wing = build_wing(tmp_path / "spool", append_window_s=0.2)
    finisher = wing.service.pipeline.finisher
    finisher.batcher.clock = FakeClock()
    budget = asyncio.Event()
    passing = finisher.once.guard

    class WaitsForBudget:
        async def run(self, call, deadline=None, wait_if_open=True):
            await budget.wait()
            return await passing.run(call, deadline, wait_if_open)

    sessions = [await wing.service.create(filename=f"b{i}.txt", size=500 + i, content_type="text/plain")
                for i in range(5)]
    finisher.once.guard = WaitsForBudget()  # appends (and only they, from here on) wait for a token
    first = [asyncio.ensure_future(send(wing, s.id, payload(500 + i, seed=i))) for i, s in enumerate(sessions[:3])]
    await until(lambda: PAGE in finisher.batcher._open and len(finisher.batcher._open[PAGE].children) == 3)
    finisher.batcher.clock.advance(0.2)  # the window is over: the batch now waits for a token
    later = [asyncio.ensure_future(send(wing, s.id, payload(503 + i, seed=3 + i))) for i, s in enumerate(sessions[3:])]
    await until(lambda: len(finisher.batcher._open.get(PAGE, AppendBatchStub).children) == 5)
    budget.set()
    await asyncio.gather(*first, *later)
    assert wing.notion.calls["attach"] == 1 and len(wing.notion.blocks[PAGE]) == 5
    assert all(s.state == COMPLETED and s.record.block_id for s in sessions)


class AppendBatchStub:
    children: list = []


@pytest.mark.parametrize("fill, attaches", [(1.0, 2), (0.0, 1)])
async def test_the_window_stretches_as_the_budget_empties(tmp_path, fill, attaches):
    """Two files finishing 1 s apart: on a full budget (a 0.2 s window) each goes alone; on an
    empty one the window is 2 s and the second joins the first's append."""
    from engine.clock import FakeClock
    from engine.upload.batching import Window

    wing = build_wing(tmp_path / "spool", append_window_s=0.2)
    batcher = wing.service.pipeline.finisher.batcher
    batcher.clock = FakeClock()
    batcher.window = Window(0.2, 2.0, lambda: fill)
    first = await wing.service.create(filename="a.txt", size=1000, content_type="text/plain")
    second = await wing.service.create(filename="b.txt", size=1001, content_type="text/plain")
    a = asyncio.ensure_future(send(wing, first.id, payload(1000)))
    await until(lambda: PAGE in batcher._open and batcher.clock._sleepers)  # the window is running
    batcher.clock.advance(1.0)
    await until(lambda: PAGE not in batcher._open or fill < 1)
    b = asyncio.ensure_future(send(wing, second.id, payload(1001, seed=2)))
    await until(lambda: PAGE in batcher._open and any(s is second for s in batcher._open[PAGE].sessions)
                and batcher.clock._sleepers)
    batcher.clock.advance(2.0)
    await asyncio.gather(a, b)
    assert wing.notion.calls["attach"] == attaches and len(wing.notion.blocks[PAGE]) == 2
    assert first.state == second.state == COMPLETED


def test_a_window_is_its_base_on_a_full_budget_and_its_most_on_an_empty_one():
    from engine.upload.batching import Window

    assert Window(0.4, 2.0, lambda: 1.0).seconds() == 0.4
    assert Window(0.4, 2.0, lambda: 0.5).seconds() == pytest.approx(1.2)
    assert Window(0.4, 2.0, lambda: -3.0).seconds() == 2.0  # a bucket paused by a 429 reads below 0
    assert Window(0.4, 2.0, None).seconds() == Window(0.4, 0.0, lambda: 0.0).seconds() == 0.4
    assert Window(0.0, 2.0, lambda: 0.0).seconds() == 0.0  # batching off stays off


def test_a_file_alone_is_not_held_for_company_that_cannot_come():
    from engine.upload.batching import Window

    others = {"page-a": 0, "page-b": 3}
    window = Window(0.4, 3.0, lambda: 0.0, company=lambda page: others[page])
    assert window.seconds("page-a") == 0.0  # nobody else can join: the append goes at once
    assert window.seconds("page-b") == 3.0
    others["page-a"] = 1
    assert Window(0.4, 3.0, lambda: 1.0, company=lambda page: others[page]).seconds("page-a") == 0.4


async def test_an_append_waits_only_when_another_file_could_join_it(tmp_path):
    """A file alone goes at once (no clock advance needed); a second upload on its way to the
    same page holds the batch open for its window; one on its way elsewhere does not."""
    from engine.clock import FakeClock

    wing = build_wing(tmp_path / "spool", append_window_s=0.2)
    batcher = wing.service.pipeline.finisher.batcher
    batcher.clock = FakeClock()
    alone = await wing.service.create(filename="alone.txt", size=1000, content_type="text/plain")
    await asyncio.wait_for(send(wing, alone.id, payload(1000)), 5)
    assert alone.state == COMPLETED and not batcher.clock._sleepers

    elsewhere = await wing.service.create(filename="e.txt", size=1001, content_type="text/plain")
    elsewhere.record.page_id = "another-page"
    second = await wing.service.create(filename="s.txt", size=1002, content_type="text/plain")
    await asyncio.wait_for(send(wing, second.id, payload(1002, seed=2)), 5)
    assert second.state == COMPLETED and not batcher.clock._sleepers  # `elsewhere` cannot join

    same = await wing.service.create(filename="t.txt", size=1003, content_type="text/plain")
    third = await wing.service.create(filename="u.txt", size=1004, content_type="text/plain")
    going = asyncio.ensure_future(send(wing, third.id, payload(1004, seed=4)))
    await until(lambda: PAGE in batcher._open and batcher.clock._sleepers)  # held for `same`
    await until(lambda: len(batcher._open[PAGE].children) == 1)
    assert not going.done()
    batcher.clock.advance(0.2)
    await asyncio.wait_for(going, 5)
    assert third.state == COMPLETED and same.state != COMPLETED
    assert wing.notion.calls["attach"] == 3
