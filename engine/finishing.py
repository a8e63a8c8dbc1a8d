"""Finishing an upload at Notion: complete (multi_part) and attach to the page.

Both are not idempotent, so a failure that Notion may have acted on (a timeout, a 5xx) is
followed by a look at Notion's state before anything is sent again (NOTION_API.md).
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from engine.clock import Clock
from engine.errors import UploadFailed
from engine.guard import NotionGuard
from engine.notion import Failure, NotionClient, block_type_for
from engine.retry import RetryPolicy
from engine.session import UploadSession


class Finisher:
    def __init__(self, clock: Clock, notion: NotionClient, guard: NotionGuard, retry: RetryPolicy,
                 emit: Callable[..., None]) -> None:
        self.clock = clock
        self.notion = notion
        self.guard = guard
        self.retry = retry
        self.emit = emit

    async def _with_retries(self, operation: str, s: UploadSession,
                            call: Callable[[], Awaitable[dict[str, Any]]],
                            recover: Callable[[Failure], Awaitable[dict[str, Any] | None]]) -> dict[str, Any]:
        """Run a non-idempotent finishing call: after an ambiguous failure, `recover` looks at
        Notion's state and returns a result when the call turns out to have happened."""
        failures = 0
        while True:
            try:
                return await self.guard.run(call)
            except Failure as f:
                failures += 1
                self.emit("NOTION_RETRY", operation=operation, upload_id=s.id, reason=f.reason, attempt=failures)
                try:
                    found = await recover(f)
                except Failure:
                    found = None
                if found is not None:
                    return found
                if not (f.retryable and self.retry.may_retry(failures)):
                    raise UploadFailed(f"Notion could not {operation} the upload: {f.message}",
                                       can_resume=f.retryable) from None
                await self.clock.sleep(self.retry.delay_s(failures, f.retry_after_s))

    async def complete(self, s: UploadSession) -> None:
        fid = s.record.notion_file_upload_id

        async def recover(f: Failure) -> dict[str, Any] | None:
            if not (f.may_have_applied or f.status == 400):
                return None
            current = await self.guard.run(lambda: self.notion.retrieve(fid))
            return current if current.get("status") == "uploaded" else None

        result = await self._with_retries("complete", s, lambda: self.notion.complete(fid), recover)
        if result.get("status") != "uploaded":
            raise UploadFailed(f"Notion did not mark the upload as uploaded (status {result.get('status')!r})",
                               can_resume=True)

    async def attach(self, s: UploadSession) -> None:
        fid = s.record.notion_file_upload_id
        page = s.record.page_id
        block_type = block_type_for(s.record.content_type)

        async def recover(f: Failure) -> dict[str, Any] | None:
            if not f.may_have_applied:
                return None
            return await self._find_block(page, fid)

        result = await self._with_retries(
            "attach", s, lambda: self.notion.append_file_block(page, fid, block_type), recover)
        results = result.get("results") or []
        block = next((b for b in results if _references(b, fid)), results[-1] if results else None)
        s.record.block_id = block.get("id") if isinstance(block, dict) else None

    async def _find_block(self, page: str, fid: str) -> dict[str, Any] | None:
        """Did an attach that failed ambiguously land? Look for our block on the page."""
        cursor = None
        for _ in range(50):  # at most 5000 blocks; a page with more is not worth scanning
            listing = await self.guard.run(lambda: self.notion.list_children(page, cursor))
            for block in listing.get("results") or []:
                if _references(block, fid):
                    return {"results": [block]}
            if not listing.get("has_more"):
                return None
            cursor = listing.get("next_cursor")
        return None


def _references(block: Any, file_upload_id: str) -> bool:
    if not isinstance(block, dict):
        return False
    body = block.get(block.get("type", ""), {})
    if not isinstance(body, dict):
        return False
    ref = body.get("file_upload") or {}
    return isinstance(ref, dict) and ref.get("id") == file_upload_id
