"""In-memory stand-ins for what the upload wing stands on: checkpoints, ownership, and a scripted
Notion that keeps a model of its file uploads and pages. With them the whole wing runs
in-process — no subprocess, no socket — on a fake clock (the middle tier of tests).

The fake Notion follows NOTION_API.md's rules where the wing depends on them (status moves,
content_length, number_of_parts, expiry_time cleared on attach, a second single_part send or
complete refused with 400) and can be told, per call, to fail in each way Notion can:

    notion.script("send", "ambiguous")        # stores the part, then answers 503
    notion.script("attach", "timeout")        # the append happens, the answer never comes
    notion.script("complete", "lost")         # 504 before anything happened
    notion.script("create", "junk")           # a 2xx whose body is not a file upload
"""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import uuid
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from engine.clock import FakeClock, iso8601
from engine.notion_answers import Failure
from engine.retry import RetryPolicy
from engine.store import StoreUnavailable
from engine.upload.scheduler import PartScheduler
from engine.upload.service import ServiceParts, UploadService

T = TypeVar("T")
PAGE = "00000000-0000-4000-8000-0000000000aa"
# What a scripted call does: "ok"; "ambiguous" (done, then 503); "timeout" (done, no answer);
# "lost" (not done, 504); "reset" (not done, connection broken); "junk" (done, unreadable 2xx);
# "refused" (not done, 400); "rate" (not done, 429).
OUTCOMES = ("ok", "ambiguous", "timeout", "lost", "reset", "junk", "refused", "rate")


class MemoryCheckpoints:
    """Checkpoints in a dict; `down = True` makes every call fail like an unreachable Redis."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.parts: dict[str, set[int]] = defaultdict(set)
        self.markers: dict[str, dict[str, Any]] = {}
        self.claims: dict[str, str] = {}
        self.epoch: str | None = None
        self.restoring = False
        self.amnesia_count = 0
        self.down = False
        self.saves = 0
        self.events: list[Any] = []  # webhook events written with records, in order

    def _up(self) -> None:
        if self.down:
            raise StoreUnavailable("checkpoint store unavailable (fake)")

    async def save_record(self, record: dict[str, Any], events: Sequence[Any] = ()) -> None:
        self._up()
        self.saves += 1
        self.records[record["id"]] = dict(record)
        self.events.extend(events)

    async def load(self, upload_id: str) -> tuple[dict[str, Any], set[int]] | None:
        self._up()
        record = self.records.get(upload_id)
        return (dict(record), set(self.parts[upload_id])) if record else None

    async def mark_part_done(self, upload_id: str, part_number: int) -> None:
        self._up()
        self.parts[upload_id].add(part_number)

    async def tombstone(self, upload_id: str, owner: str | None, ttl_s: int, state: str = "expired",
                        events: Sequence[Any] = ()) -> None:
        self._up()
        self.markers[upload_id] = {"state": state, "owner": owner}
        self.events.extend(events)
        self.records.pop(upload_id, None)
        self.parts.pop(upload_id, None)

    async def gone(self, upload_id: str) -> dict[str, Any] | None:
        self._up()
        return self.markers.get(upload_id)

    async def delete(self, upload_id: str) -> None:
        self._up()
        self.records.pop(upload_id, None)
        self.parts.pop(upload_id, None)

    async def claim_notion_upload(self, file_upload_id: str, upload_id: str, ttl_s: int) -> bool:
        self._up()
        return self.claims.setdefault(file_upload_id.replace("-", ""), upload_id) == upload_id

    async def forgot_us(self) -> bool:
        self._up()
        current = self.epoch = self.epoch or uuid.uuid4().hex
        seen, self._seen = getattr(self, "_seen", None), current
        return seen is not None and seen != current

    def forget_everything(self) -> None:
        """Redis restarted without persistence."""
        for table in (self.records, self.parts, self.markers, self.claims):
            table.clear()
        self.epoch = None

    async def restore(self, record: dict[str, Any], durable: set[int]) -> None:
        self._up()
        self.records[record["id"]] = dict(record)
        self.parts[record["id"]] |= durable

    async def upload_ids(self) -> AsyncIterator[str]:
        self._up()
        for upload_id in list(self.records):
            yield upload_id


class MemoryOwnership:
    """Locks; a second fake instance shares the first one's (`MemoryOwnership("b", first)`)."""

    def __init__(self, instance_id: str = "a", shared_with: "MemoryOwnership | None" = None) -> None:
        self.instance_id = instance_id
        self.table: dict[str, str] = shared_with.table if shared_with else {}
        self.handoffs: set[str] = shared_with.handoffs if shared_with else set()

    async def acquire(self, upload_id: str) -> float | None:
        holder = self.table.setdefault(upload_id, self.instance_id)
        return None if holder == self.instance_id else 1.0

    async def refresh(self, upload_ids: list[str]) -> dict[str, int]:
        out = {}
        for upload_id in upload_ids:
            holder = self.table.setdefault(upload_id, self.instance_id)
            out[upload_id] = -1 if holder != self.instance_id else int(upload_id in self.handoffs)
        return out

    async def release(self, upload_id: str) -> None:
        if self.table.get(upload_id) == self.instance_id:
            del self.table[upload_id]
        self.handoffs.discard(upload_id)

    async def held_elsewhere(self, upload_id: str) -> bool:
        return self.table.get(upload_id, self.instance_id) != self.instance_id

    async def request_handoff(self, upload_id: str) -> None:
        self.handoffs.add(upload_id)


@dataclass
class FakeUpload:
    id: str
    mode: str
    filename: str
    content_type: str
    total: int | None
    created: float
    parts: dict[int, bytes] = field(default_factory=dict)
    status: str = "pending"
    attached: int = 0

    @property
    def length(self) -> int | None:
        return sum(len(p) for p in self.parts.values()) if self.parts else None


class ScriptedNotion:
    """A model of Notion's file uploads and pages, failing on demand (see the module docstring)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.uploads: dict[str, FakeUpload] = {}
        self.blocks: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.rows: dict[str, list[dict[str, Any]]] = defaultdict(list)  # per data source, newest first
        self.scripts: dict[str, deque[str]] = defaultdict(deque)
        self.calls: dict[str, int] = defaultdict(int)
        self.limit = 5 * 2**30
        self._ids = itertools.count(1)

    def script(self, operation: str, *outcomes: str) -> None:
        assert all(o in OUTCOMES for o in outcomes), outcomes
        self.scripts[operation].extend(outcomes)

    async def _do(self, operation: str, act: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        self.calls[operation] += 1
        await asyncio.sleep(0)
        outcome = self.scripts[operation].popleft() if self.scripts[operation] else "ok"
        if outcome == "lost":
            raise Failure("http", "gateway timeout", status=504, operation=operation)
        if outcome == "reset":
            raise Failure("transfer", "connection reset", operation=operation)
        if outcome == "rate":
            raise Failure("http", "rate limited", status=429, retry_after_s=0.01, operation=operation)
        if outcome == "refused":
            raise Failure("http", "validation_error", status=400, code="validation_error", operation=operation)
        result = act()  # raises Failure for Notion's own refusals
        if outcome == "ambiguous":
            raise Failure("http", "service unavailable", status=503, operation=operation)
        if outcome == "timeout":
            raise Failure("timeout", "stalled", operation=operation)
        if outcome == "junk":
            raise Failure("junk", "an HTML page with status 200", operation=operation)
        return result

    def view(self, u: FakeUpload) -> dict[str, Any]:
        out: dict[str, Any] = {
            "object": "file_upload", "id": u.id, "status": u.status, "filename": u.filename,
            "content_type": u.content_type, "content_length": u.length, "created_time": iso8601(u.created),
            "expiry_time": None if u.attached or u.status == "expired" else iso8601(u.created + 3600),
        }
        if u.mode == "multi_part":
            out["number_of_parts"] = {"total": u.total, "sent": len(u.parts)}
        return out

    def _upload(self, file_upload_id: str) -> FakeUpload:
        u = self.uploads.get(file_upload_id)
        if u is None:
            raise Failure("http", "object_not_found", status=404, code="object_not_found")
        return u

    def _pending(self, u: FakeUpload) -> None:
        if u.status != "pending":
            raise Failure("http", f"is not in the pending status (its status is {u.status})", status=400,
                          code="validation_error")

    async def create_file_upload(self, *, mode: str, filename: str, content_type: str,
                                 number_of_parts: int | None, total_s: float | None = None) -> dict[str, Any]:
        def act() -> dict[str, Any]:
            u = FakeUpload(str(uuid.UUID(int=next(self._ids))), mode, filename, content_type, number_of_parts,
                           self.clock.wall())
            self.uploads[u.id] = u
            return self.view(u)
        return await self._do("create", act)

    async def send_part(self, file_upload_id: str, *, path: str, filename: str, content_type: str,
                        part_number: int | None, size: int) -> dict[str, Any]:
        data = Path(path).read_bytes()  # noqa: ASYNC240 - a test fake reading a small spool file

        def act() -> dict[str, Any]:
            u = self._upload(file_upload_id)
            self._pending(u)
            u.parts[part_number or 1] = data
            if u.mode == "single_part":
                u.status = "uploaded"
            return self.view(u)
        return await self._do("send", act)

    async def complete(self, file_upload_id: str) -> dict[str, Any]:
        def act() -> dict[str, Any]:
            u = self._upload(file_upload_id)
            self._pending(u)
            if sorted(u.parts) != list(range(1, (u.total or 1) + 1)):
                raise Failure("http", "missing parts", status=400, code="validation_error")
            u.status = "uploaded"
            return self.view(u)
        return await self._do("complete", act)

    async def retrieve(self, file_upload_id: str) -> dict[str, Any]:
        return await self._do("retrieve", lambda: self.view(self._upload(file_upload_id)))

    async def list_file_uploads(self, *, status: str | None = None, page_size: int = 100,
                                start_cursor: str | None = None, total_s: float | None = None) -> dict[str, Any]:
        def act() -> dict[str, Any]:
            found = [self.view(u) for u in reversed(self.uploads.values()) if status in (None, u.status)]
            return {"object": "list", "results": found[:page_size], "has_more": False, "next_cursor": None}
        return await self._do("list", act)

    async def users_me(self) -> dict[str, Any]:
        return await self._do("users_me", lambda: {
            "object": "user", "id": "bot", "bot": {"workspace_limits": {"max_file_upload_size_in_bytes": self.limit}}})

    async def create_row(self, data_source_id: str, properties: dict[str, Any]) -> dict[str, Any]:
        def act() -> dict[str, Any]:
            entries = next(p["files"] for p in properties.values() if "files" in p)
            u = self._upload(entries[0]["file_upload"]["id"])
            if u.status != "uploaded":
                raise Failure("http", "not uploaded", status=400, code="validation_error")
            u.attached += 1
            row = {"object": "page", "id": str(uuid.uuid4()), "properties": {
                name: ({"type": "files", "files": [{"name": e.get("name"), "type": "file",
                                                    "file": {"url": "https://files.example/r"}} for e in p["files"]]}
                       if "files" in p else {"type": "title", "title": p.get("title") or p.get("rich_text")})
                for name, p in properties.items()}}
            self.rows[data_source_id].insert(0, row)
            return row
        return await self._do("create_row", act)

    async def query_rows(self, data_source_id: str, filter_: dict[str, Any],
                         start_cursor: str | None = None) -> dict[str, Any]:
        return await self._do("query", lambda: {"object": "list", "results": list(self.rows[data_source_id]),
                                                "has_more": False, "next_cursor": None})

    async def append_children(self, page_id: str, children: list[dict[str, Any]]) -> dict[str, Any]:
        def act() -> dict[str, Any]:
            uploads = []
            for child in children:
                u = self._upload(child[child["type"]]["file_upload"]["id"])
                if u.status != "uploaded":
                    raise Failure("http", "not uploaded", status=400, code="validation_error")
                uploads.append((child["type"], u))
            appended = []
            for block_type, u in uploads:  # all or nothing, as one request
                u.attached += 1
                appended.append({"object": "block", "id": str(uuid.uuid4()), "type": block_type, "in_trash": False,
                                 block_type: {"type": "file", "file": {"url": f"https://files.example/x/{u.filename}",
                                                                       "expiry_time": None}}})
            self.blocks[page_id].extend(appended)
            return {"object": "list", "results": appended}
        return await self._do("attach", act)

    async def list_children(self, page_id: str, start_cursor: str | None = None) -> dict[str, Any]:
        return await self._do("children", lambda: {"object": "list", "results": list(self.blocks[page_id]),
                                                   "has_more": False, "next_cursor": None})

    def sha256(self, file_upload_id: str) -> str:
        u = self.uploads[file_upload_id]
        return hashlib.sha256(b"".join(u.parts[n] for n in sorted(u.parts))).hexdigest()


class QuickClock(FakeClock):
    """A fake clock whose sleepers move time forward themselves: waits take no real time, and
    the order of events is still that of their deadlines."""

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)
        await asyncio.sleep(0)


class PassGuard:
    """No breaker, no budget: every call goes at once."""

    async def run(self, call: Callable[[], Awaitable[T]], deadline: float | None = None,
                  wait_if_open: bool = True) -> T:
        return await call()


FAST_RETRY = RetryPolicy(retries=6, initial_delay_s=0.001, max_delay_s=0.005, jitter_percent=0)


@dataclass
class Wing:
    """The upload wing, built on fakes."""
    service: UploadService
    notion: ScriptedNotion
    store: MemoryCheckpoints
    locks: MemoryOwnership
    clock: FakeClock
    events: list[tuple[str, dict[str, Any]]]


def build_wing(spool: Path, *, clock: FakeClock | None = None, notion: ScriptedNotion | None = None,
               store: MemoryCheckpoints | None = None, locks: MemoryOwnership | None = None,
               part_size: int = 5 * 2**20, workers: int = 2, settle_s: float = 0.0,
               append_window_s: float = 0.0) -> Wing:
    clock = clock or QuickClock()
    notion = notion or ScriptedNotion(clock)
    store = store or MemoryCheckpoints()
    locks = locks or MemoryOwnership()
    events: list[tuple[str, dict[str, Any]]] = []
    service = UploadService(ServiceParts(
        clock=clock, notion=notion, guard=PassGuard(), store=store, scheduler=PartScheduler(lambda: workers),
        retry=FAST_RETRY, spool_dir=spool, part_size_bytes=part_size, parent_page_id=PAGE, locks=locks,
        notion_settle_s=settle_s, append_window_s=append_window_s,
        listeners=[lambda e, f: events.append((e, f))]))
    return Wing(service, notion, store, locks, clock, events)
