"""What a grant may create: destinations, size, type, and how many uploads (counted in Redis)."""
from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from engine.clock import Clock
from engine.errors import Forbidden, InvalidUpload, Unauthorized
from engine.filetypes import base_type, clean_filename, content_type_for
from engine.grants.verify import DEFAULT_DESTINATION, DEFAULT_LEEWAY_S, Grant, GrantVerifier
from engine.redis import RedisSource, StoreUnavailable, connection_of, keys, store_away

# --- scope checks at creation ----------------------------------------------------------------

def _page_key(text: str) -> str | None:
    """A Notion id with or without dashes, or a page URL ending in one → 32 lowercase hex digits."""
    tail = text.strip().split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    if len(tail) > 36:
        tail = tail.rsplit("-", 1)[-1]
    hexes = re.sub(r"[^0-9a-fA-F]", "", tail)
    return hexes.lower() if len(hexes) == 32 else None


def _same_id(a: str, b: str) -> bool:
    ka = _page_key(a)
    return ka is not None and ka == _page_key(b)


def resolve_destination(requested: str | None, known: Mapping[str, str | None]) -> tuple[str, str | None]:
    """The destination an upload asks for (a name or an id; None = the default) → (name, id),
    from `known` (name → Notion id; today only "default" → NOTION_PARENT_PAGE_ID). Unknown → 400."""
    wanted = (requested or "").strip() or DEFAULT_DESTINATION
    if wanted in known:
        return wanted, known[wanted]
    for name, page_id in known.items():
        if page_id is not None and _same_id(wanted, page_id):
            return name, page_id
    raise InvalidUpload(f"there is no destination {wanted!r} on this relay", reason="unknown_destination")


def check_destination(grant: Grant, name: str, page_id: str | None) -> None:
    """Refuse (403) a destination the grant does not name, by name or by id. A grant without
    `destinations` allows the default destination only. The one place this rule lives: issue 14
    (destinations) resolves more names with resolve_destination and calls this as it is."""
    allowed = grant.destinations
    if allowed is None:
        if name == DEFAULT_DESTINATION:
            return
        raise Forbidden("this upload grant allows only the default destination", reason="grant_destination")
    if name in allowed or (page_id is not None and any(_same_id(a, page_id) for a in allowed)):
        return
    shown = "the default destination" if name == DEFAULT_DESTINATION else f"the destination {name!r}"
    raise Forbidden(f"this upload grant does not allow {shown}; it allows: {', '.join(allowed) or 'none'}",
                    reason="grant_destination")


def type_allowed(content_type: str, allowed: Iterable[str]) -> bool:
    kind = base_type(content_type)
    major = kind.split("/", 1)[0]
    return any(a == "*/*" or a == kind or (a.endswith("/*") and a[:-2] == major) for a in allowed)


def check_creation(grant: Grant, *, size: int, filename: str | None, content_type: str | None,
                   destination: tuple[str, str | None]) -> None:
    """Everything a grant limits about one new upload, except max_uploads (GrantUsage counts it).
    The type checked is the one the upload will be sent as (from the filename and the declared
    type, as the relay decides it); a type Notion does not take is refused later anyway (415)."""
    if grant.expired:
        raise Unauthorized("the upload grant has expired; it may finish the uploads it started, but start "
                           "no new one", reason="grant_expired")
    if grant.max_bytes is not None and size > grant.max_bytes:
        raise Forbidden(f"the file is {size} bytes; this upload grant allows at most {grant.max_bytes}",
                        reason="grant_max_bytes", limit=grant.max_bytes)
    if grant.content_types is not None:
        effective = content_type_for(clean_filename(filename or "upload", content_type), content_type)
        if effective is not None and not type_allowed(effective, grant.content_types):
            raise Forbidden(f"this upload grant does not allow files of type {effective}; it allows: "
                            f"{', '.join(grant.content_types)}", reason="grant_content_type")
    check_destination(grant, *destination)


class GrantUsage:
    """How many uploads each grant created, in Redis (shared by every instance), kept until
    the grant could no longer create anything."""

    def __init__(self, redis: RedisSource, clock: Clock, leeway_s: float = DEFAULT_LEEWAY_S) -> None:
        self.connection = connection_of(redis)
        self.clock = clock
        self.leeway_s = leeway_s

    async def reserve(self, grant: Grant) -> bool:
        """Count one more upload of `grant`; Forbidden when it already created max_uploads.
        True when something was counted (release() it if the creation then fails)."""
        if grant.max_uploads is None:
            return False
        key = keys.grant_uploads(grant.grant_id)
        ttl = max(60, int(grant.expires_at + self.leeway_s - self.clock.wall()) + 60)
        client = self.connection.client

        async def incr() -> list[Any]:
            async with client.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, ttl)
                return await pipe.execute()

        try:
            used = int((await self.connection.run(incr))[0])
            if used > grant.max_uploads:
                await self.connection.run(lambda: client.decr(key))
                raise Forbidden(f"this upload grant allows {grant.max_uploads} upload"
                                f"{'' if grant.max_uploads == 1 else 's'} and has created them all",
                                reason="grant_max_uploads", limit=grant.max_uploads)
        except StoreUnavailable:
            raise store_away() from None
        return True

    async def release(self, grant: Grant) -> None:
        """The creation that reserve() counted did not happen after all."""
        try:
            key = keys.grant_uploads(grant.grant_id)
            await self.connection.run(lambda: self.connection.client.decr(key))
        except StoreUnavailable:
            pass  # one upload fewer for this grant: errs on the safe side


async def _nothing() -> None:
    return None


class GrantScope:
    """What a grant may create, checked at creation before a byte is read: the claims
    (check_creation) and how many uploads the grant already created (GrantUsage)."""

    def __init__(self, usage: GrantUsage, destinations: Mapping[str, str | None]) -> None:
        self.usage = usage
        self.destinations = dict(destinations)  # name → Notion id; "default" is NOTION_PARENT_PAGE_ID

    async def admit(self, grant: Grant, *, size: int, filename: str | None, content_type: str | None,
                    destination: str | None) -> Callable[[], Awaitable[None]]:
        """Raise Unauthorized/Forbidden (or InvalidUpload for an unknown destination) when the grant
        does not allow this upload; else count it and return what undoes the count, for a
        creation that then fails."""
        resolved = resolve_destination(destination, self.destinations)
        check_creation(grant, size=size, filename=filename, content_type=content_type, destination=resolved)
        if not await self.usage.reserve(grant):
            return _nothing

        async def release() -> None:
            await self.usage.release(grant)
        return release


def grant_access(settings: Any, redis: RedisSource, clock: Clock) -> dict[str, Any]:
    """Access's grant fields (engine.access.Access(..., **grant_access(...))): empty without grants."""
    if not settings.grants_enabled:
        return {}
    verifier = GrantVerifier(clock, secret=settings.upload_grant_secret, public_key=settings.upload_grant_public_key,
                             audience=settings.upload_grant_audience, leeway_s=settings.upload_grant_leeway_s)
    known: dict[str, str | None] = {DEFAULT_DESTINATION: settings.notion_parent_page_id}
    known.update(dict(settings.notion_destinations))  # the relay's allowlist (engine/destinations.py)
    scope = GrantScope(GrantUsage(redis, clock, settings.upload_grant_leeway_s), known)
    return {"grants": verifier, "grant_scope": scope}
