"""Upload records (in memory) and their part files (on disk, under --data-dir).

Layout: `<data-dir>/uploads/<upload id>/part-000001 …`, one file per part number. A send
streams into a private temporary file beside them and is renamed over `part-N` only once
it was accepted, so re-sending a part number replaces the earlier bytes atomically and a
rejected or interrupted send leaves nothing behind.

The records are not persisted: a restarted emulator starts empty (like a fresh workspace).
"""
from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

HASH_CHUNK_BYTES = 1 << 20


class WallClock:
    """Emulator wall time: real time plus an offset that `POST /_emulator/clock` can move,
    so tests can reach an upload's expiry without waiting an hour."""

    def __init__(self) -> None:
        self.offset_s = 0.0

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
class Upload:
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
class Block:
    id: str
    page_id: str
    type: str  # file | image | pdf | audio | video
    upload_id: str
    created_at: float
    creator_bot_id: str
    caption: list[Any]
    name: str | None


class UploadStore:
    def __init__(self, data_dir: Path, clock: WallClock) -> None:
        self.root = data_dir / "uploads"
        self.root.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.uploads: dict[str, Upload] = {}
        self.blocks_by_page: dict[str, list[Block]] = {}
        self._seq = itertools.count(1)

    # --- records -------------------------------------------------------------------------

    def create(self, **fields: Any) -> Upload:
        now = self.clock.now()
        upload = Upload(id=str(uuid.uuid4()), created_at=now, seq=next(self._seq), **fields)
        upload.last_edited_at = now
        self.uploads[upload.id] = upload
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

    def part_path(self, upload_id: str, number: int) -> Path:
        return self.dir_for(upload_id) / f"part-{number:06d}"

    def temp_path(self, upload_id: str) -> Path:
        return self.dir_for(upload_id) / f".incoming-{uuid.uuid4().hex}"

    def commit_part(self, upload: Upload, number: int, temp: Path, size: int, sha256: str) -> None:
        """Make a received part the current bytes of part `number` (replacing any earlier)."""
        os.replace(temp, self.part_path(upload.id, number))
        previous = upload.parts.get(number)
        sends = previous.sends + 1 if previous else 1
        upload.parts[number] = PartInfo(size=size, sends=sends, sha256=sha256)
        self.touch(upload)

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
        """Size and sha256 of the assembled file, read from the part files.

        Why chunks with a yield between them: hashing 1 GiB takes about a second of CPU; done
        in one go it would freeze every other request (and the tests' timing) for that long.
        One 1 MiB chunk is about a millisecond, so the loop stays responsive. A worker
        thread would also work but adds a second execution context for little gain.
        """
        digest = hashlib.sha256()
        size = 0
        for chunk in self.iter_file(upload):
            digest.update(chunk)
            size += len(chunk)
            await asyncio.sleep(0)
        return size, digest.hexdigest()

    def delete_files(self, upload: Upload) -> None:
        shutil.rmtree(self.dir_for(upload.id), ignore_errors=True)
        upload.files_deleted = True

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
        self.blocks_by_page.setdefault(page_id, []).extend(blocks)

    def blocks(self, page_id: str) -> list[Block]:
        return self.blocks_by_page.get(page_id, [])
