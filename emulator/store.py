"""Upload records, blocks, databases and the wall clock (in memory, journaled) and part files
(on disk).

Everything lives under --data-dir and survives a restart, a crash (SIGKILL) included:

    <data-dir>/journal.jsonl                  the records (journal.py: append-only JSON lines)
    <data-dir>/uploads/<upload id>/part-000001.1 …   part 1 as received by its 1st send

A send streams into a private temporary file beside the parts and is renamed to
`part-<N>.<send count>` only once it was accepted; then the record (one journal line) points
at it and the previous file of that part number is removed. A crash between those steps leaves
the record pointing at a complete file; files no record points at (interrupted sends, replaced
parts) are removed at the next start. So a rejected, interrupted or repeated send never
leaves the record and the bytes out of step.

Adding a kind of record: make it a dataclass inheriting `Persistent` with a `KIND` and an `id`,
register it with `self.journal.collection(Cls)` in UploadStore.__init__ (before load), and keep
new records with `self.journal.add(record)`. Field changes are then journaled by themselves.
"""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .journal import DEFAULT_COMPACT_BYTES, Journal, Persistent

HASH_CHUNK_BYTES = 1 << 20
UPLOAD_DIR = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DOOMED_PREFIX = ".deleting-"  # an upload's directory, renamed on its way out


@dataclass
class WallClock(Persistent):
    """Emulator wall time: real time plus an offset that `POST /_emulator/clock` can move,
    so tests can reach an upload's expiry without waiting an hour.

    Journaled like the records: the emulated time never goes back across a restart, so an
    upload expired by a clock advance stays expired."""

    KIND = "clock"
    id: str = "wall"
    offset_s: float = 0.0

    def now(self) -> float:
        return time.time() + self.offset_s

    def advance(self, seconds: float) -> None:
        self.offset_s += seconds


@dataclass
class PartInfo:
    size: int
    sends: int
    sha256: str


@dataclass
class Upload(Persistent):
    KIND = "upload"
    # Per process: a restarted emulator has no send or complete running.
    TRANSIENT = frozenset({"completing", "sends_in_flight", "max_sends_in_flight"})

    id: str
    owner: str  # the Authorization token that created it
    mode: str  # single_part | multi_part | external_url
    filename: str | None
    content_type: str | None
    total_parts: int | None  # multi_part only
    created_at: float
    expires_at: float
    seq: int  # creation order, for "newest first"
    external_url: str | None = None
    # external_url only, once the import ended: {"type": "success"|"error", "imported_at": ts,
    # "error": {type, code, message, parameter, status_code}} (replaced whole, never mutated)
    file_import: dict[str, Any] | None = None
    stored_status: str = "pending"  # pending | uploaded | failed; "expired" is derived
    last_edited_at: float = 0.0
    parts: dict[int, PartInfo] = field(default_factory=dict)
    size: int | None = None  # recorded once uploaded
    sha256: str | None = None  # recorded once uploaded
    attached_to: list[str] = field(default_factory=list)
    completing: bool = False  # a complete is hashing the parts right now
    files_deleted: bool = False
    sends_in_flight: int = 0
    max_sends_in_flight: int = 0

    def status(self, now: float) -> str:
        """Notion's status: an upload not attached by its expiry time is expired."""
        if self.stored_status in ("pending", "uploaded") and not self.attached_to:
            if now >= self.expires_at:
                return "expired"
        return self.stored_status

    @property
    def content_length(self) -> int:
        """Bytes received so far: the sum of the distinct parts' sizes."""
        return sum(p.size for p in self.parts.values())

    def missing_parts(self) -> list[int]:
        assert self.total_parts is not None
        return [n for n in range(1, self.total_parts + 1) if n not in self.parts]


@dataclass
class Block(Persistent):
    KIND = "block"

    id: str
    page_id: str  # the parent: a page id, or a block id when parent_type is "block_id"
    type: str  # file | image | pdf | audio | video | paragraph | child_page (a page)
    upload_id: str | None  # media blocks only; never shown to clients
    created_at: float
    creator_bot_id: str
    caption: list[Any]
    name: str | None
    # The type's payload (paragraph: {rich_text, color}; child_page: {title, icon, cover}),
    # replaced whole on update, never mutated in place.
    content: dict[str, Any] = field(default_factory=dict)
    parent_type: str = "page_id"  # page_id | block_id
    in_trash: bool = False
    last_edited_at: float | None = None
    blob_id: str | None = None  # media blocks: the opaque id in their file URL


@dataclass
class PropertyDef:
    """One property of a data source's schema (a column)."""

    id: str  # Notion's short id, URL-encoded as Notion shows it; "title" for the title
    name: str
    type: str  # title | rich_text | files | number | checkbox | url | email | phone_number


@dataclass
class Database(Persistent):
    """A database: a container of data sources (here: made by `POST /_emulator/databases`).

    Under a page it is also a `child_database` block of that page (a Block with its id), as
    Notion lists it among the page's children; that block's `in_trash` is the database's."""

    KIND = "database"

    id: str
    title: list[Any]  # rich text, response shape
    parent_page_id: str | None  # None: a workspace-level database
    created_at: float
    creator_id: str  # the workspace member who made it (a user id, not a bot)
    data_source_ids: list[str] = field(default_factory=list)
    last_edited_at: float | None = None


@dataclass
class DataSource(Persistent):
    """A data source (a table) of a database: its property schema. Its rows are pages kept as
    `child_page` Blocks with `parent_type` "data_source_id" and `page_id` = this id."""

    KIND = "data_source"

    id: str
    database_id: str
    title: list[Any]  # rich text, response shape
    properties: list[PropertyDef]  # in schema order
    created_at: float
    creator_id: str
    last_edited_at: float | None = None

    def title_property(self) -> PropertyDef:
        return next(p for p in self.properties if p.type == "title")


@dataclass
class RunningDigest:
    """The sha256 of an upload's leading parts 1, 2, … k, fed while the parts arrive, so that
    complete only hashes what is left (Notion answers complete quickly, even for 5 GiB).

    In memory only: after a restart the next advance starts again from part 1, and a complete
    before that hashes everything. `fed` holds each part's record as it was hashed, so a part
    replaced since (a re-send, whatever else changes a record) no longer matches."""

    hasher: Any = field(default_factory=hashlib.sha256)
    size: int = 0
    fed: list[tuple[int, PartInfo]] = field(default_factory=list)


class UploadStore:
    def __init__(self, data_dir: Path, clock: WallClock, compact_bytes: int = DEFAULT_COMPACT_BYTES) -> None:
        self.root = data_dir / "uploads"
        self.root.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.journal = Journal(data_dir, compact_bytes=compact_bytes)
        # Every kind of record, registered before load(): the journal fills these dicts.
        clocks = self.journal.collection(WallClock)
        self.uploads: dict[str, Upload] = self.journal.collection(Upload)
        self.blocks_by_id: dict[str, Block] = self.journal.collection(Block)
        self.databases: dict[str, Database] = self.journal.collection(Database)
        self.data_sources: dict[str, DataSource] = self.journal.collection(DataSource)
        self.journal.load()
        # Derived state, rebuilt from the records.
        saved = clocks.get(clock.id)
        if saved is not None:
            clock.offset_s = saved.offset_s
        self.journal.add(clock)  # from now on it is the clock the journal follows
        self.blocks_by_page: dict[str, list[Block]] = {}
        for block in self.blocks_by_id.values():  # journal order = append order
            self.blocks_by_page.setdefault(block.page_id, []).append(block)
        self._seq = itertools.count(max((u.seq for u in self.uploads.values()), default=0) + 1)
        self._tidy_files()
        # Per process, like Upload.TRANSIENT: see RunningDigest.
        self._digests: dict[str, RunningDigest] = {}
        self._advancing: dict[str, asyncio.Task[None]] = {}
        self._completing: set[str] = set()
        # Bytes hashed while a complete waited for them: what the running digest did not
        # spare it (the tests hold complete to "almost nothing" with it, no timing needed).
        self.digest_bytes_at_complete = 0

    def close(self) -> None:
        """Flush the journal to disk and release the data directory (a clean stop)."""
        self.journal.close()

    def _tidy_files(self) -> None:
        """Remove what a crash may have left: temporary files of sends that never finished,
        part files no record points at, the files of uploads whose files were deleted."""
        for entry in self.root.iterdir():
            upload = self.uploads.get(entry.name)
            if upload is None or upload.files_deleted:
                if UPLOAD_DIR.fullmatch(entry.name) or entry.name.startswith(DOOMED_PREFIX):
                    shutil.rmtree(entry, ignore_errors=True)
                continue
            if not entry.is_dir():
                continue
            wanted = {self.part_path(upload.id, n).name for n in upload.parts}
            for f in entry.iterdir():
                if f.name not in wanted:
                    f.unlink(missing_ok=True)

    # --- records -------------------------------------------------------------------------

    def create(self, **fields: Any) -> Upload:
        now = self.clock.now()
        upload = Upload(id=str(uuid.uuid4()), created_at=now, seq=next(self._seq), **fields)
        upload.last_edited_at = now
        self.journal.add(upload)
        self.dir_for(upload.id).mkdir(parents=True, exist_ok=True)
        return upload

    def get(self, upload_id: str) -> Upload | None:
        return self.uploads.get(upload_id)

    def newest_first(self, owner: str | None = None) -> list[Upload]:
        found = (u for u in self.uploads.values() if owner is None or u.owner == owner)
        return sorted(found, key=lambda u: u.seq, reverse=True)

    def touch(self, upload: Upload) -> None:
        upload.last_edited_at = self.clock.now()

    # --- part files ----------------------------------------------------------------------

    def dir_for(self, upload_id: str) -> Path:
        return self.root / upload_id

    def part_path(self, upload_id: str, number: int, sends: int | None = None) -> Path:
        """Part `number` as stored by its `sends`-th send (default: the current one)."""
        if sends is None:
            sends = self.uploads[upload_id].parts[number].sends
        return self.dir_for(upload_id) / f"part-{number:06d}.{sends}"

    def temp_path(self, upload_id: str) -> Path:
        return self.dir_for(upload_id) / f".incoming-{uuid.uuid4().hex}"

    def commit_part(self, upload: Upload, number: int, temp: Path, size: int, sha256: str) -> None:
        """Make a received part the current bytes of part `number` (replacing any earlier).

        Order for crash safety: the bytes get their final name, then the record points at
        them (one journal line), then the replaced file goes."""
        previous = upload.parts.get(number)
        sends = previous.sends + 1 if previous else 1
        os.replace(temp, self.part_path(upload.id, number, sends))
        with self.journal.batch():
            upload.parts[number] = PartInfo(size=size, sends=sends, sha256=sha256)
            self.touch(upload)
        if previous is not None:
            self.part_path(upload.id, number, previous.sends).unlink(missing_ok=True)
        state = self._digests.get(upload.id)
        if state is not None and number <= len(state.fed):
            # Bytes already in the running hash changed: it cannot be rewound, only redone.
            del self._digests[upload.id]
        self.advance_digest(upload)

    def iter_file(self, upload: Upload, chunk_bytes: int = HASH_CHUNK_BYTES) -> Iterator[bytes]:
        """The uploaded file's bytes in order, chunk by chunk (never the whole file)."""
        numbers = sorted(upload.parts)
        for n in numbers:
            with open(self.part_path(upload.id, n), "rb") as f:
                while True:
                    chunk = f.read(chunk_bytes)
                    if not chunk:
                        break
                    yield chunk

    async def file_digest(self, upload: Upload) -> tuple[int, str]:
        """Size and sha256 of the assembled file, read from the part files: the running digest
        finished (usually just nothing left to do), or else every part hashed again.

        Why chunks with a yield between them: hashing 1 GiB takes about a second of CPU; done
        in one go it would freeze every other request (and the tests' timing) for that long.
        One 1 MiB chunk is about a millisecond, so the loop stays responsive. This full hash
        is the rare fallback; the running digest, which does almost all the hashing, runs in
        a worker thread (`_feed`).
        """
        self._completing.add(upload.id)
        try:
            task = self.advance_digest(upload)
            if task is not None:
                await asyncio.wait([task])  # not cancelled with us: a cancel is a delete_files
            state = self._digests.pop(upload.id, None)
            # The running digest is trusted only if it covers exactly the parts as they are now.
            if state is not None and state.fed == sorted(upload.parts.items()):
                return state.size, state.hasher.hexdigest()
            digest = hashlib.sha256()
            size = 0
            for chunk in self.iter_file(upload):
                digest.update(chunk)
                size += len(chunk)
                self.digest_bytes_at_complete += len(chunk)
                await asyncio.sleep(0)
            return size, digest.hexdigest()
        finally:
            self._completing.discard(upload.id)

    def advance_digest(self, upload: Upload) -> asyncio.Task[None] | None:
        """Start feeding the running digest the parts that follow its prefix, in the
        background; one task per upload (the running one if there is one), which goes on
        until the next part is missing. None when there is nothing to run it on."""
        task = self._advancing.get(upload.id)
        if task is not None and not task.done():
            return task
        if upload.mode != "multi_part" or upload.files_deleted:
            return None  # single-part and imported uploads never complete
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None  # a store driven without a loop (tests): file_digest catches up
        task = loop.create_task(self._advance(upload))
        self._advancing[upload.id] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._advancing.get(upload.id) is done:
                del self._advancing[upload.id]

        task.add_done_callback(forget)
        return task

    async def _advance(self, upload: Upload) -> None:
        while not upload.files_deleted:
            state = self._digests.setdefault(upload.id, RunningDigest())
            number = len(state.fed) + 1
            part = upload.parts.get(number)
            if part is None:
                return
            # A copy: if the part changes while it is read, the bytes read must not count.
            hasher = state.hasher.copy()
            try:
                size = await self._feed(upload.id, hasher, self.part_path(upload.id, number, part.sends))
            except OSError:  # FileNotFoundError above all: replaced or deleted meanwhile
                size = None
            if (
                self._digests.get(upload.id) is not state
                or len(state.fed) != number - 1
                or upload.parts.get(number) != part
            ):
                continue  # changed under us: go on from what is current
            if size is None or size != part.size:
                # The file is not what its record says: leave it to complete's full hash.
                del self._digests[upload.id]
                return
            state.hasher = hasher
            state.size += size
            state.fed.append((number, part))

    async def _feed(self, upload_id: str, hasher: Any, path: Path) -> int:
        # In a worker thread: reads and sha256 release the GIL, so a 5 GiB upload's hashing
        # runs beside the event loop instead of taking turns with every request on it (the
        # loop was the emulator's bottleneck in bench big). Cancelling the await leaves the
        # thread to finish its part on a copy of the hasher nobody keeps.
        return await asyncio.to_thread(self._hash_file, upload_id, hasher, path)

    def _hash_file(self, upload_id: str, hasher: Any, path: Path) -> int:
        size = 0
        with open(path, "rb") as f:
            while chunk := f.read(HASH_CHUNK_BYTES):
                hasher.update(chunk)
                size += len(chunk)
                if upload_id in self._completing:
                    self.digest_bytes_at_complete += len(chunk)
        return size

    def delete_files(self, upload: Upload) -> None:
        # Flag first: after a crash in between, the start-up tidy removes the rest.
        upload.files_deleted = True
        self._digests.pop(upload.id, None)
        task = self._advancing.pop(upload.id, None)
        if task is not None:
            task.cancel()
        # Freeing 5 GiB of just-written parts takes seconds of kernel time (4.8 s measured),
        # which complete must not spend before answering: the directory is renamed away at
        # once and removed in a worker thread (the start-up tidy finishes what a crash left).
        path = self.dir_for(upload.id)
        doomed = path.with_name(f"{DOOMED_PREFIX}{uuid.uuid4().hex}")
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return
        except OSError:
            doomed = path
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a store driven without a loop (tests)
            shutil.rmtree(doomed, ignore_errors=True)
            return
        loop.run_in_executor(None, shutil.rmtree, doomed, True)

    def sweep_expired(self) -> int:
        """Delete the part files of expired uploads (their bytes can never be used again)."""
        now = self.clock.now()
        removed = 0
        for upload in self.uploads.values():
            if not upload.files_deleted and upload.status(now) == "expired":
                if upload.sends_in_flight == 0 and not upload.completing:
                    self.delete_files(upload)
                    removed += 1
        return removed

    # --- blocks --------------------------------------------------------------------------

    def append_blocks(self, page_id: str, blocks: list[Block]) -> None:
        with self.journal.batch():
            for block in blocks:
                self.journal.add(block)
        self.blocks_by_page.setdefault(page_id, []).extend(blocks)

    def blocks(self, page_id: str) -> list[Block]:
        return self.blocks_by_page.get(page_id, [])

    def find_block(self, block_id: str) -> Block | None:
        """A block (or a page created through the API) by its id."""
        return self.blocks_by_id.get(block_id)

    def find_blob(self, blob_id: str) -> str | None:
        """The id of the file upload behind a file URL's opaque blob id: a media block's, or
        an entry of a `files` property of a database row."""
        for b in self.blocks_by_id.values():
            if b.blob_id == blob_id:
                return b.upload_id
            for value in b.content.get("properties", {}).values():
                if isinstance(value, list):
                    for entry in value:
                        if isinstance(entry, dict) and entry.get("blob_id") == blob_id:
                            return entry.get("upload_id")
        return None

    # --- databases -----------------------------------------------------------------------

    def add_database(self, database: Database, sources: list[DataSource], block: Block | None) -> None:
        """A new database with its data sources (and its child_database block), as one line."""
        with self.journal.batch():
            for source in sources:
                self.journal.add(source)
            self.journal.add(database)
            if block is not None:
                self.journal.add(block)
        if block is not None:
            self.blocks_by_page.setdefault(block.page_id, []).append(block)

    def database_in_trash(self, database: Database) -> bool:
        block = self.blocks_by_id.get(database.id)
        return block is not None and block.in_trash
