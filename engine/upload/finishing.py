"""Finishing an upload at Notion: the single_part send's outcome, complete, attach, and
Notion's word on expiry.

None of these calls is idempotent, so each runs through OnceRunner: after an outcome we cannot
know, Notion's own state decides (engine/once.py). What each decision rests on, in Notion's
documented words (NOTION_API.md, "The File Upload object"):

- `status` goes `pending` → `uploaded` on a single_part send, or on complete for multi_part;
  a send or complete to an upload that is no longer pending is refused with 400.
- `content_length` is the bytes Notion holds; `number_of_parts.sent` the parts it holds.
- `expiry_time` is cleared (null) once the file upload is attached to a block or page.
- Blocks never carry the file_upload id: an appended block reads
  `{"type": "file", "file": {"url": …, "expiry_time": …}}` (live recordings), so which block
  is ours is told by its type and the file name in its `name` or URL, newest last.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any
from urllib.parse import unquote, urlsplit

from engine.clock import Clock
from engine.errors import UploadFailed, UploadGone
from engine.filetypes import block_type_for
from engine.notion import rich_text
from engine.notion_answers import Failure
from engine.upload.batching import AppendBatch, AppendBatcher, Window
from engine.upload.interfaces import Guard, NotionFiles
from engine.upload.once import Check, OnceRunner, Undecided
from engine.upload.session import NOTION_WINDOW_PASSED, UploadSession

MAX_CHILDREN_PAGES = 50  # at most 5,000 blocks scanned to find our block again


class Finisher:
    def __init__(self, notion: NotionFiles, guard: Guard, once: OnceRunner, clock: Clock,
                 append_window: Window | None = None) -> None:
        self.notion = notion
        self.guard = guard
        self.once = once
        self.batcher = AppendBatcher(clock, append_window or Window(0.0), self.append_batch)

    # --- what Notion holds ---------------------------------------------------------------

    async def _retrieve(self, s: UploadSession) -> dict[str, Any]:
        fid = s.record.notion_file_upload_id or ""
        current = await self.guard.run(lambda: self.notion.retrieve(fid))
        if current.get("status") == "expired":
            raise UploadGone(NOTION_WINDOW_PASSED, status="expired", can_resume=False)
        return current

    async def says_expired(self, s: UploadSession) -> bool:
        """Notion's own word on expiry (NOTION_API.md: `status` "expired" once the window passed;
        an upload it no longer knows at all is gone too)."""
        try:
            current = await self.guard.run(lambda: self.notion.retrieve(s.record.notion_file_upload_id or ""))
        except Failure as f:
            return f.kind == "http" and f.status == 404
        return current.get("status") == "expired"

    def verify_holds_file(self, s: UploadSession, obj: dict[str, Any]) -> None:
        """Invariant 1: "uploaded" counts only when Notion holds exactly the upload's bytes."""
        problem = holding_problem(obj, s.plan.size, s.plan.number_of_parts if s.plan.is_multipart else None)
        if problem:
            raise UploadFailed(f"Notion does not hold the file as sent ({problem}); start the upload again",
                               can_resume=False, integrity_error=True)

    async def sent_whole_file(self, s: UploadSession) -> dict[str, Any] | None:
        """Did a single_part send land? Notion's object says `uploaded` once it has."""
        current = await self._retrieve(s)
        if current.get("status") != "uploaded":
            return None
        self.verify_holds_file(s, current)
        return current

    # --- complete ------------------------------------------------------------------------

    async def complete(self, s: UploadSession) -> None:
        fid = s.record.notion_file_upload_id

        async def completed() -> dict[str, Any] | None:
            current = await self._retrieve(s)
            return current if current.get("status") == "uploaded" else None

        result = await self._once("complete", s, lambda: self.notion.complete(fid or ""), completed)
        if result.get("status") != "uploaded":
            raise UploadFailed(f"Notion did not mark the upload as uploaded (status {result.get('status')!r})",
                               can_resume=True)
        self.verify_holds_file(s, result)

    # --- attach --------------------------------------------------------------------------

    async def attach(self, s: UploadSession) -> None:
        """Put the file where it belongs: a block on a page, or a new row of a database."""
        if s.record.data_source_id:
            await self._add_row(s)
        else:
            await self._append_block(s)

    async def _append_block(self, s: UploadSession) -> None:
        media: dict[str, Any] = {"type": "file_upload", "file_upload": {"id": s.record.notion_file_upload_id}}
        if s.record.caption:
            media["caption"] = rich_text(s.record.caption)
        block_type = block_type_for(s.record.content_type)
        block = await self.batcher.append(s, s.record.page_id or "", {"type": block_type, block_type: media})
        s.record.block_id = block.get("id") if isinstance(block, dict) else None

    async def append_batch(self, batch: AppendBatch) -> list[dict[str, Any] | None]:
        """One append of several files' blocks, exactly once: the request landed whole or not at
        all, so the first file's state tells for every one; each file's block is then found by
        its type and name (blocks never carry the file_upload id)."""
        page = batch.page

        async def request() -> dict[str, Any]:
            return await self.notion.append_children(page, batch.seal())  # sealed as it leaves

        async def attached() -> dict[str, Any] | None:
            if not await self._is_attached(batch.sessions[0]):
                return None
            return {"object": "list", "results": await self._find_blocks(page, batch.sessions)}

        result = await self._once("attach", batch.sessions[0], request, attached, settle=True)
        results = result.get("results") or []
        if len(results) == len(batch.children):  # Notion answers the appended blocks in order
            return list(results)
        return await self._find_blocks(page, batch.sessions) if results else [None] * len(batch.sessions)

    async def _find_blocks(self, page: str, sessions: list[UploadSession]) -> list[dict[str, Any] | None]:
        """The newest block on the page showing each file (type and name), each block used once."""
        wanted = [(s.record.filename, block_type_for(s.record.content_type)) for s in sessions]
        matches: dict[tuple[str, str], list[dict[str, Any]]] = {key: [] for key in wanted}
        cursor = None
        for _ in range(MAX_CHILDREN_PAGES):
            listing = await self.guard.run(partial(self.notion.list_children, page, cursor))
            for block in listing.get("results") or []:
                for name, kind in matches:
                    if shows_file(block, name, kind):
                        matches[(name, kind)].append(block)
            if not listing.get("has_more"):
                break
            cursor = listing.get("next_cursor")
        # Blocks come oldest first and a batch's blocks in its order: the files of one name get
        # the newest blocks of that name, in turn.
        found: list[dict[str, Any] | None] = []
        for i, key in enumerate(wanted):
            same = [j for j, other in enumerate(wanted) if other == key]
            blocks = matches[key][-len(same):] if matches[key] else []
            position = same.index(i) - (len(same) - len(blocks))
            found.append(blocks[position] if position >= 0 else None)
        return found

    async def _add_row(self, s: UploadSession) -> None:
        r = s.record
        source = r.data_source_id or ""
        entry_name = r.caption if r.caption and not r.caption_property else r.filename
        properties: dict[str, Any] = {r.files_property or "Files": {"files": [
            {"type": "file_upload", "file_upload": {"id": r.notion_file_upload_id}, "name": entry_name}]}}
        if r.title_property:
            properties[r.title_property] = {"title": rich_text(r.title or r.filename)}
        if r.caption and r.caption_property:
            properties[r.caption_property] = {"rich_text": rich_text(r.caption)}

        async def added() -> dict[str, Any] | None:
            if not await self._is_attached(s):
                return None
            return await self._find_row(s, source, entry_name) or {"object": "page", "id": None}

        row = await self._once("create_row", s, lambda: self.notion.create_row(source, properties), added,
                               settle=True)
        r.row_id = row.get("id")

    async def _is_attached(self, s: UploadSession) -> bool:
        """Notion clears a file upload's `expiry_time` once it is attached (to a block or a row)."""
        return (await self._retrieve(s)).get("expiry_time") is None

    async def _find_row(self, s: UploadSession, source: str, entry_name: str) -> dict[str, Any] | None:
        """The newest row with our title whose files hold an entry of our name (rows never carry
        the file_upload id either: a files entry reads {name, type: "file", file: {url, …}})."""
        r = s.record
        where: dict[str, Any] = {"property": r.files_property, "files": {"is_not_empty": True}}
        if r.title_property:
            where = {"and": [where, {"property": r.title_property,
                                     "title": {"equals": r.title or r.filename}}]}
        listing = await self.guard.run(lambda: self.notion.query_rows(source, where))
        for row in listing.get("results") or []:  # newest first
            files = ((row.get("properties") or {}).get(r.files_property or "") or {}).get("files") or []
            if isinstance(row, dict) and any(isinstance(f, dict) and f.get("name") == entry_name for f in files):
                found: dict[str, Any] = row
                return found
        return None

    async def _once(self, operation: str, s: UploadSession, call: Callable[[], Awaitable[dict[str, Any]]],
                    check: Check, settle: bool = False) -> dict[str, Any]:
        try:
            return await self.once.run(operation, call, check, settle=settle, upload_id=s.id)
        except Undecided:
            raise UploadFailed(f"Notion did not answer whether the {operation} happened; it is checked again "
                               "when the upload resumes", can_resume=True, retry_after_s=30) from None
        except Failure as f:
            raise UploadFailed(f"Notion could not {operation} the upload: {f.message}",
                               can_resume=f.retryable) from None


def holding_problem(obj: dict[str, Any], size: int, parts_total: int | None) -> str | None:
    """Why a file upload object does not show exactly `size` bytes in `parts_total` parts."""
    length = obj.get("content_length")
    if length != size:
        return f"Notion holds {length} bytes of {size}"
    if parts_total is not None:
        parts = obj.get("number_of_parts")
        if not isinstance(parts, dict) or parts.get("sent") != parts_total or parts.get("total") != parts_total:
            return f"Notion holds parts {parts!r} of {parts_total}"
    return None


def shows_file(block: Any, filename: str, block_type: str) -> bool:
    """A block of `block_type` whose file carries `filename` (its `name`, or its URL's last segment)."""
    if not isinstance(block, dict) or block.get("type") != block_type or block.get("in_trash") or block.get("archived"):
        return False
    media = block.get(block_type)
    if not isinstance(media, dict):
        return False
    if media.get("name") == filename:
        return True
    hosted = media.get(media.get("type") or "file")
    url = hosted.get("url") if isinstance(hosted, dict) else None
    if not isinstance(url, str):
        return False
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1]) == filename
