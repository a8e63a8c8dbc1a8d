"""Creation: from a client's "I have a file of N bytes" to a session with a Notion file upload.

Checks what can be checked before a byte is read (size against the workspace's limit, the part
plan, Notion's file types, the owner's quota), then creates the Notion file upload exactly once
within CREATE_DEADLINE_S — every wait counted, since the platform's router cuts at 30 s.
"""
from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Any

from engine.clock import Clock, parse_iso8601
from engine.destinations import Destinations
from engine.errors import InvalidUpload, NotionRejected, ServiceUnavailable, UnsupportedFileType, UploadTooLarge
from engine.filetypes import clean_filename, content_type_for, extension
from engine.guard import BreakerOpen
from engine.notion_answers import Failure
from engine.quotas import Quotas
from engine.redis import StoreUnavailable, store_away
from engine.redis.keys import NOTION_CLAIM_TTL_S
from engine.retry import RetryPolicy
from engine.upload.interfaces import Checkpoints, Guard, NotionFiles
from engine.upload.once import OnceRunner, Undecided
from engine.upload.partplan import PartPlan, PlanError, plan_parts
from engine.upload.session import CREATED, UploadRecord

NOTION_EXPIRY_S = 3600.0
CREATE_DEADLINE_S = 20.0
LIMIT_LOOKUP_S = 5.0
WORKSPACE_LIMIT_TTL_S = 600.0
DEFAULT_WORKSPACE_LIMIT = 5 * 2**30
# A create's answer that was lost is looked for among uploads Notion made this long before we
# asked (our clock and Notion's may disagree by that much).
CREATE_CLOCK_SKEW_S = 300.0


def new_upload_id() -> str:
    """128 random bits, hex: unguessable and URL-safe."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class NewUpload:
    filename: str | None
    size: int
    content_type: str | None
    metadata: str | None = None
    owner: str | None = None
    destination: str | None = None  # a name or id from the allowlist; None: the default
    title: str | None = None  # a database row's title (default: the filename)
    caption: str | None = None


class Creator:
    def __init__(self, clock: Clock, notion: NotionFiles, guard: Guard, once: OnceRunner, store: Checkpoints,
                 retry: RetryPolicy, part_size_bytes: int, parent_page_id: str | None,
                 quotas: Quotas | None, destinations: Destinations | None = None) -> None:
        self.clock = clock
        self.notion = notion
        self.guard = guard
        self.once = once
        self.store = store
        self.retry = retry
        self.part_size_bytes = part_size_bytes
        self.parent_page_id = parent_page_id
        self.quotas = quotas
        self.destinations = destinations
        self._workspace_limit: tuple[float, int] | None = None
        self._limit_lookup: asyncio.Future[int] | None = None
        # (filename, type, parts) → when a create of it ended undecided (its Notion upload may exist)
        self._undecided: dict[tuple[str, str, int | None], float] = {}

    async def record_for(self, new: NewUpload) -> tuple[UploadRecord, PartPlan]:
        """Validate, then create the Notion file upload; the new record is saved already."""
        deadline = self.clock.monotonic() + CREATE_DEADLINE_S
        if new.size <= 0:
            raise InvalidUpload("the upload length must be at least 1 byte (Notion stores no empty files)")
        picked = self.destinations.pick(new.destination) if self.destinations else None
        limit = await self._workspace_limit_by(deadline)
        if new.size > limit:
            raise UploadTooLarge(f"the file is {new.size} bytes; this Notion workspace accepts at most {limit} bytes",
                                 limit=limit)
        try:
            plan = plan_parts(new.size, self.part_size_bytes)
        except PlanError as exc:
            raise UploadTooLarge(str(exc)) from None
        name = clean_filename(new.filename or "upload", new.content_type)
        ctype = content_type_for(name, new.content_type)
        if ctype is None:
            kind = f".{extension(name)} files" if extension(name) else "files without an extension"
            raise UnsupportedFileType(f"Notion does not accept {kind}; see the supported file types in the README")
        if new.owner is not None and self.quotas is not None:
            await self.quotas.admit(new.owner, new.size)
        target = await self.destinations.describe(*picked, deadline=deadline) if self.destinations and picked else None
        upload_id = new_upload_id()
        created = await self._create_in_notion(plan, name, ctype, upload_id, deadline)
        now = self.clock.wall()
        expiry = created.get("expiry_time")
        record = UploadRecord(
            id=upload_id, filename=name, content_type=ctype, size=new.size,
            part_size=plan.part_size, number_of_parts=plan.number_of_parts, mode=plan.mode,
            created_at=now, updated_at=now, state=CREATED,
            notion_file_upload_id=created["id"], notion_status=created.get("status", "pending"),
            expires_at=parse_iso8601(expiry) if expiry else now + NOTION_EXPIRY_S,
            page_id=self.parent_page_id if self.destinations is None else None,
            metadata=new.metadata, owner=new.owner, title=new.title or name, caption=new.caption,
        )
        if target is not None:
            record.destination, record.destination_kind, record.destination_id = target.name, target.kind, target.id
            if target.kind == "page":
                record.page_id = target.id
            else:
                record.data_source_id = target.data_source_id
                record.title_property = target.title_property
                record.files_property = target.files_property
                record.caption_property = target.caption_property
        try:
            await self.store.save_record(record.to_dict())
        except StoreUnavailable:
            raise store_away() from None
        return record, plan

    # --- the workspace's limit -----------------------------------------------------------------

    async def workspace_limit(self) -> int:
        now = self.clock.monotonic()
        if self._workspace_limit and now - self._workspace_limit[0] < WORKSPACE_LIMIT_TTL_S:
            return self._workspace_limit[1]
        # Concurrent creations share one lookup: each users_me call spends request budget.
        if self._limit_lookup is None or self._limit_lookup.done():
            self._limit_lookup = asyncio.ensure_future(self._fetch_workspace_limit())
        return await asyncio.shield(self._limit_lookup)

    def _known_limit(self) -> int:
        return self._workspace_limit[1] if self._workspace_limit else DEFAULT_WORKSPACE_LIMIT

    async def _workspace_limit_by(self, deadline: float) -> int:
        """The workspace's limit, without letting a slow lookup eat the create's deadline: past a
        few seconds the last known (or default) limit stands; Notion's own checks still apply."""
        wait_s = min(LIMIT_LOOKUP_S, max(0.1, deadline - self.clock.monotonic()))
        try:
            return await asyncio.wait_for(self.workspace_limit(), timeout=wait_s)
        except TimeoutError:
            return self._known_limit()

    async def _fetch_workspace_limit(self) -> int:
        now = self.clock.monotonic()
        try:
            me = await self.guard.run(self.notion.users_me)
            limit = int(me["bot"]["workspace_limits"]["max_file_upload_size_in_bytes"])
        except (Failure, KeyError, TypeError, ValueError):
            return self._known_limit()  # unknown for now: Notion's own checks at create/send still apply
        self._workspace_limit = (now, limit)
        return limit

    # --- the Notion file upload, exactly once ----------------------------------------------------

    async def _create_in_notion(self, plan: PartPlan, filename: str, content_type: str,
                                upload_id: str, deadline: float) -> dict[str, Any]:
        parts = plan.number_of_parts if plan.is_multipart else None
        asked_at = self.clock.wall()
        key = (filename, content_type, parts)
        # A create of the same file that ended undecided here (its client was told 503 and came
        # back): it may have happened, so look for it before making another.
        earlier = self._undecided.get(key)
        if earlier is not None and asked_at - earlier < NOTION_EXPIRY_S:
            try:
                found = await self._find_created(plan, filename, content_type, upload_id, earlier, deadline)
            except Failure:
                found = None
            if found is not None:
                del self._undecided[key]
                return found

        async def create() -> dict[str, Any]:
            left = max(1.0, deadline - self.clock.monotonic())
            created = await self.notion.create_file_upload(
                mode=plan.mode, filename=filename, content_type=content_type, number_of_parts=parts, total_s=left)
            if not await self.store.claim_notion_upload(created["id"], upload_id, NOTION_CLAIM_TTL_S):
                raise Failure("junk", "Notion answered with a file upload another upload owns", operation="create")
            return created

        async def created_anyway() -> dict[str, Any] | None:
            return await self._find_created(plan, filename, content_type, upload_id, asked_at, deadline)

        try:
            return await self.once.run("create", create, created_anyway, deadline=deadline, wait_if_open=False)
        except BreakerOpen as closed:
            raise ServiceUnavailable("Upload service temporarily unavailable. Please try again later.",
                                     retry_after_s=max(1.0, closed.retry_after_s or 1.0),
                                     circuit_breaker_state="OPEN") from None
        except StoreUnavailable:
            raise store_away() from None
        except Undecided as exc:
            self._undecided[key] = min(asked_at, self._undecided.get(key, asked_at))
            raise ServiceUnavailable("Notion is not answering; try again shortly",
                                     retry_after_s=max(1, round(exc.retry_after_s or 5))) from None
        except Failure as f:
            if not f.retryable:
                raise NotionRejected(f"Notion refused the upload: {f.message}", status=f.status) from None
            raise ServiceUnavailable("Notion is not answering; try again shortly",
                                     retry_after_s=max(1, round(self.retry.delay_s(1, f.retry_after_s)))) from None

    async def _find_created(self, plan: PartPlan, filename: str, content_type: str, upload_id: str,
                            asked_at: float, deadline: float) -> dict[str, Any] | None:
        """A create whose answer was lost: Notion lists pending uploads newest first; ours has our
        name, type and part count, no byte yet, was made after we asked (give or take clock skew),
        and no other upload has claimed it."""
        listing = await self.guard.run(lambda: self.notion.list_file_uploads(
            status="pending", total_s=max(1.0, deadline - self.clock.monotonic())), deadline=deadline,
            wait_if_open=False)
        for candidate in reversed(listing.get("results") or []):  # oldest first: the first one we made
            if not _may_be_our_create(candidate, plan, filename, content_type, asked_at):
                continue
            if await self.store.claim_notion_upload(candidate["id"], upload_id, NOTION_CLAIM_TTL_S):
                adopted: dict[str, Any] = candidate
                return adopted
        return None


def _may_be_our_create(candidate: Any, plan: PartPlan, filename: str, content_type: str, asked_at: float) -> bool:
    if not isinstance(candidate, dict) or not isinstance(candidate.get("id"), str):
        return False
    if candidate.get("filename") != filename or candidate.get("content_length") not in (None, 0):
        return False
    if (candidate.get("content_type") or "").split(";")[0].strip().lower() != content_type.lower():
        return False
    parts = candidate.get("number_of_parts")
    total = parts.get("total") if isinstance(parts, dict) else None
    if total != (plan.number_of_parts if plan.is_multipart else None):
        return False
    try:
        created = parse_iso8601(candidate.get("created_time") or "")
    except ValueError:
        return False
    return created >= asked_at - CREATE_CLOCK_SKEW_S
