"""Destinations: where uploads may go, and what each one is in Notion.

The allowlist is NOTION_DESTINATIONS (`name=ID_OR_URL`, comma separated; a bare id or URL is
its own name) plus NOTION_PARENT_PAGE_ID, the default destination (named "default"). An
upload names its destination by name or id; anything else is refused before a byte is read:
an id or URL not on the list with 403, an unknown name with 400.

Whether a destination is a page or a database is asked of Notion (NOTION_API.md; at
Notion-Version 2025-09-03 a database holds data sources, and its rows are pages whose parent
is a data source): a page gets a block per file, a database a row per file. What Notion says
is cached, and concurrent lookups share one request (each spends the request budget).
"""
from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from engine.clock import Clock
from engine.errors import DestinationNotAllowed, InvalidUpload, ServiceUnavailable
from engine.notion_answers import Failure

DEFAULT_NAME = "default"
LOOKUP_TTL_S = 600.0
_ID_TAIL = re.compile(r"([0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})(?:[?#].*)?$")


def notion_id(text: str) -> str | None:
    """The dashed UUID in a Notion id or URL (`…/Deliverables-0123abcd…?v=…`), or None."""
    match = _ID_TAIL.search(text.strip())
    return str(uuid.UUID(hex=match.group(1).replace("-", ""))) if match else None


def parse_destinations(text: str) -> tuple[tuple[str, str], ...]:
    """`name=ID_OR_URL, …` → ((name, dashed id), …); raises ValueError with the bad entry."""
    found: list[tuple[str, str]] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, sep, target = entry.partition("=")
        if not sep:
            name, target = entry, entry
        name, target = name.strip(), target.strip()
        page = notion_id(target)
        if not name or page is None:
            raise ValueError(f"NOTION_DESTINATIONS: {entry!r} is not name=ID_OR_URL")
        if any(n == name for n, _ in found):
            raise ValueError(f"NOTION_DESTINATIONS: the name {name!r} is given twice")
        found.append((name, page))
    return tuple(found)


@dataclass(frozen=True)
class Destination:
    """An allowed destination as Notion describes it."""
    name: str
    id: str
    kind: str  # "page" | "database"
    title: str | None = None
    data_source_id: str | None = None
    title_property: str | None = None
    files_property: str | None = None
    caption_property: str | None = None

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.id, "kind": self.kind, "title": self.title}


class PagesAndDatabases(Protocol):
    async def retrieve_page(self, page_id: str) -> dict[str, Any]: ...

    async def retrieve_database(self, database_id: str) -> dict[str, Any]: ...

    async def retrieve_data_source(self, data_source_id: str) -> dict[str, Any]: ...


class Guarded(Protocol):
    async def run(self, call: Callable[[], Awaitable[Any]], deadline: float | None = None,
                  wait_if_open: bool = True) -> Any: ...


class Destinations:
    def __init__(self, allowed: tuple[tuple[str, str], ...], default_id: str | None, notion: PagesAndDatabases,
                 guard: Guarded, clock: Clock, files_property: str | None = None,
                 caption_property: str | None = None) -> None:
        entries = list(allowed)
        if default_id is not None and all(page != default_id for _, page in entries):
            entries.insert(0, (DEFAULT_NAME, default_id))
        self.allowed = entries
        self.default_id = default_id
        # The default's name: "default", or the name NOTION_DESTINATIONS gives the same page.
        self.default_name = next((n for n, p in entries if p == default_id), None)
        self.notion = notion
        self.guard = guard
        self.clock = clock
        self.files_property = files_property
        self.caption_property = caption_property
        self._known: dict[str, tuple[float, Destination]] = {}
        self._lookups: dict[str, asyncio.Future[Destination]] = {}
        self._titles: dict[str, str | None] = {}  # the default page's title, once read for a listing

    def pick(self, value: str | None) -> tuple[str, str] | None:
        """The allowed (name, id) an upload asks for; None = no destination configured at all."""
        if not value:
            if self.default_id is None:
                if self.allowed:
                    raise InvalidUpload("name a destination: " + ", ".join(n for n, _ in self.allowed))
                return None
            return next((n, p) for n, p in self.allowed if p == self.default_id)
        for name, page in self.allowed:
            if value == name:
                return name, page
        asked = notion_id(value)
        if asked is not None:
            for name, page in self.allowed:
                if page == asked:
                    return name, page
            raise DestinationNotAllowed("that page or database is not one this relay uploads to")
        raise InvalidUpload(f"unknown destination {value!r}; choose one of: " + ", ".join(n for n, _ in self.allowed))

    async def describe(self, name: str, page: str, deadline: float | None = None) -> Destination:
        if page == self.default_id:
            # NOTION_PARENT_PAGE_ID is a page by its name (the seeds'): no need to ask Notion.
            return Destination(name, page, "page", self._titles.get(page))
        known = self._known.get(page)
        if known and self.clock.monotonic() - known[0] < LOOKUP_TTL_S:
            return known[1]
        lookup = self._lookups.get(page)
        if lookup is None or lookup.done():
            lookup = self._lookups[page] = asyncio.ensure_future(self._look_up(name, page))
        try:
            wait = None if deadline is None else max(0.1, deadline - self.clock.monotonic())
            return await asyncio.wait_for(asyncio.shield(lookup), timeout=wait)
        except TimeoutError:
            raise ServiceUnavailable("Notion did not say what this destination is; try again shortly",
                                     retry_after_s=5) from None

    async def listing(self) -> list[dict[str, Any]]:
        """Every allowed destination as Notion describes it (one that cannot be read: kind null)."""
        out = []
        if self.default_id is not None and self.default_id not in self._titles:
            try:
                found = await self.guard.run(lambda: self.notion.retrieve_page(self.default_id or ""))
                self._titles[self.default_id] = _plain(_title_of_page(found))
            except Failure:
                self._titles[self.default_id] = None  # a page the integration may append to but not read
        for name, page in self.allowed:
            try:
                out.append((await self.describe(name, page)).public())
            except (InvalidUpload, ServiceUnavailable):
                out.append({"name": name, "id": page, "kind": None, "title": None})
        return out

    async def _look_up(self, name: str, page: str) -> Destination:
        try:
            found = await self._ask_notion(name, page)
        except Failure as f:
            if f.retryable:
                raise ServiceUnavailable("Notion did not say what this destination is; try again shortly",
                                         retry_after_s=5) from None
            raise InvalidUpload(f"destination {name!r} cannot be used: {f.message}") from None
        self._known[page] = (self.clock.monotonic(), found)
        return found

    async def _ask_notion(self, name: str, page: str) -> Destination:
        try:
            found = await self.guard.run(lambda: self.notion.retrieve_page(page))
            return Destination(name, page, "page", _plain(_title_of_page(found)))
        except Failure as f:
            # A database's id is 400 ("is a database, not a page") at GET /v1/pages; 404 when shared
            # differently. Either way it may be a database.
            if not (f.kind == "http" and f.status in (400, 404)):
                raise
        database = await self.guard.run(lambda: self.notion.retrieve_database(page))
        sources = database.get("data_sources") or []
        if not sources:
            raise Failure("http", "the database has no data source (Notion-Version 2025-09-03 or later is needed)",
                          status=400)
        source_id = sources[0]["id"]
        source = await self.guard.run(lambda: self.notion.retrieve_data_source(source_id))
        schema: dict[str, Any] = source.get("properties") or {}
        title_prop = next((n for n, p in schema.items() if p.get("type") == "title"), None)
        files_prop = self._property(schema, self.files_property, "files")
        if files_prop is None:
            raise Failure("http", "the database has no property of type files", status=400)
        caption_prop = self._property(schema, self.caption_property, "rich_text") if self.caption_property else None
        return Destination(name, page, "database", _plain(database.get("title")), source_id, title_prop,
                           files_prop, caption_prop)

    @staticmethod
    def _property(schema: dict[str, Any], wanted: str | None, kind: str) -> str | None:
        if wanted:
            prop = schema.get(wanted)
            if not prop or prop.get("type") != kind:
                raise Failure("http", f"the database has no {kind} property named {wanted!r}", status=400)
            return wanted
        return next((n for n, p in schema.items() if p.get("type") == kind), None)


def _title_of_page(page: dict[str, Any]) -> Any:
    props = page.get("properties") or {}
    return next((p.get("title") for p in props.values() if isinstance(p, dict) and p.get("type") == "title"), None)


def _plain(rich: Any) -> str | None:
    if not isinstance(rich, list):
        return None
    return "".join(str(part.get("plain_text") or part.get("text", {}).get("content") or "") for part in rich) or None
