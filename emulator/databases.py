"""The /v1 database and data source endpoints: retrieve a database, retrieve a data source,
query a data source (and, before Notion-Version 2025-09-03, query a database).

Databases are made through the control API (`POST /_emulator/databases`, one data source
each) and shared by every token, like pages. Rows are created, read and updated through the
page endpoints (pages.py); the rules for schemas, values, filters and sorts are in
properties.py.
"""
from __future__ import annotations

from typing import Any

from . import errors, objects, properties, rules
from .blocks import _only_keys
from .errors import validation_error
from .pages import ContentHandler
from .store import Block, Database, DataSource, PropertyDef

_QUERY_KEYS = {"filter", "sorts", "start_cursor", "page_size", "result_type"}


class DatabaseContentHandler(ContentHandler):
    def known_database(self, raw_id: str) -> Database:
        database_id = self.valid_id(raw_id, "database_id")
        store = self.emu.store
        found = store.databases.get(database_id)
        if found is not None:
            return found
        block = store.find_block(database_id)
        if block is not None and block.type == "child_page":
            raise validation_error(
                f"Provided ID {database_id} is a page, not a database. Use the retrieve page "
                "API instead, `GET /pages/:id`."
            )
        raise errors.object_not_found("database", database_id)

    def known_source(self, raw_id: str) -> DataSource:
        source_id = self.valid_id(raw_id, "data_source_id")
        found = self.emu.store.data_sources.get(source_id)
        if found is None:
            raise errors.object_not_found("data source", source_id)
        return found

    def sources_of(self, database: Database) -> list[DataSource]:
        return [self.emu.store.data_sources[i] for i in database.data_source_ids]

    def query(self, source: DataSource, body: dict[str, Any], list_type: str, keys: set[str] = _QUERY_KEYS) -> None:
        """Filter, sort and page the rows of a data source (live ones: not in the trash)."""
        _only_keys(body, keys, "body")
        result_type = body.get("result_type", "page")
        if result_type not in ("page", "data_source"):
            raise validation_error(
                "body failed validation: body.result_type should be `page` or `data_source`, "
                f"instead was `{result_type}`."
            )
        keep = properties.parse_filter(body["filter"], source) if "filter" in body else None
        sorts = properties.parse_sorts(body["sorts"], source) if "sorts" in body else []
        cursor, size = properties.page_args(body)
        rows = [
            b
            for b in self.emu.store.blocks(source.id)
            if b.type == "child_page" and not b.in_trash and result_type == "page"
        ]
        if keep is not None:
            rows = [b for b in rows if keep(_View(b))]
        rows = _sorted(rows, sorts)
        page, next_cursor = rules.paginate(rows, key=lambda b: b.id, start_cursor=cursor, page_size=size)
        self.reply(objects.listing(list_type, [self.page_json(b) for b in page], next_cursor))


class _View:
    """A row as filters and sorts read it."""

    def __init__(self, row: Block) -> None:
        self.row = row
        self.created_at = row.created_at
        self.edited_at = row.last_edited_at or row.created_at

    def value(self, prop: PropertyDef) -> Any:
        if prop.type == "title":
            return self.row.content.get("title", [])
        return self.row.content.get("properties", {}).get(prop.id)


def _sorted(rows: list[Block], sorts: list[properties.Sort]) -> list[Block]:
    """Rows in the sorts' order; without sorts, newest first (assumed: Notion does not
    document its default order). Empty values go last whatever the direction."""
    rows = sorted(rows, key=lambda b: b.created_at, reverse=True)
    for sort in reversed(sorts):  # stable sorts, least significant first
        if sort.prop is None:
            field = "created_at" if sort.timestamp == "created_time" else "last_edited_at"
            rows.sort(key=lambda b: getattr(b, field) or b.created_at, reverse=sort.descending)
            continue
        prop = sort.prop
        keys = {b.id: properties.sort_key(prop.type, _View(b).value(prop)) for b in rows}
        rows.sort(key=lambda b: keys[b.id][1], reverse=sort.descending)
        rows.sort(key=lambda b: keys[b.id][0])
    return rows


class DatabaseHandler(DatabaseContentHandler):
    ENDPOINTS = {"GET": "retrieve_database"}

    def get(self, raw_id: str) -> None:
        database = self.known_database(raw_id)
        in_trash = self.emu.store.database_in_trash(database)
        self.reply(objects.database(database, self.sources_of(database), in_trash, self.version))


class DatabaseQueryHandler(DatabaseContentHandler):
    """POST /v1/databases/{id}/query: the query of Notion-Versions before 2025-09-03."""

    ENDPOINTS = {"POST": "query_database"}
    UNTIL_VERSION = objects.DATA_SOURCES_SINCE

    def post(self, raw_id: str) -> None:
        database = self.known_database(raw_id)
        keys = _QUERY_KEYS - {"result_type"}
        self.query(self.sources_of(database)[0], self.json_body(), "page_or_database", keys)


class DataSourceHandler(DatabaseContentHandler):
    ENDPOINTS = {"GET": "retrieve_data_source"}
    SINCE_VERSION = objects.DATA_SOURCES_SINCE

    def get(self, raw_id: str) -> None:
        source = self.known_source(raw_id)
        database = self.emu.store.databases[source.database_id]
        in_trash = self.emu.store.database_in_trash(database)
        self.reply(objects.data_source(source, database, in_trash, self.version))


class DataSourceQueryHandler(DatabaseContentHandler):
    ENDPOINTS = {"POST": "query_data_source"}
    SINCE_VERSION = objects.DATA_SOURCES_SINCE

    def post(self, raw_id: str) -> None:
        source = self.known_source(raw_id)
        self.query(source, self.json_body(), "page_or_data_source")
