"""The /v1 page and block endpoints: pages (create, retrieve, update), blocks (retrieve,
update, delete) and block children (append, list).

State: a page created through the API is kept as a `child_page` block of its parent (as
Notion lists it among the parent's children); appended blocks are kept per parent. Any other
well-formed id is a page the integration can see (it may receive and list children) but
cannot be retrieved. Trashing (DELETE, or `in_trash`/`archived: true`) keeps the block: it
can still be retrieved (with `in_trash: true`) and restored, but it leaves its parent's
children list. The request shapes are checked in blocks.py.

A database row is a page too: a `child_page` block whose parent is its data source
(`parent_type` "data_source_id"), with its property values in `content["properties"]` (by
property id; the title in `content["title"]`), checked against the schema (properties.py).
A `files` value holds, per entry, the upload's id and an opaque blob id for its URL; the
upload is attached to the row as to a block.
"""
from __future__ import annotations

import secrets
import uuid
from typing import Any

from . import blocks, errors, objects, properties, rules
from .errors import validation_error
from .gate import ApiHandler
from .store import Block, DataSource, Upload


class ContentHandler(ApiHandler):
    """Shared lookups and shapes for pages and blocks."""

    def valid_id(self, raw_id: str, name: str) -> str:
        found = rules.normalize_uuid(raw_id)
        if found is None:
            raise validation_error(
                f"path failed validation: path.{name} should be a valid uuid, instead was `{raw_id}`."
            )
        return found

    def known_block(self, raw_id: str) -> Block:
        block_id = self.valid_id(raw_id, "block_id")
        found = self.emu.store.find_block(block_id)
        if found is None:
            raise errors.object_not_found("block", block_id)
        return found

    def known_page(self, raw_id: str) -> Block:
        page_id = self.valid_id(raw_id, "page_id")
        found = self.emu.store.find_block(page_id)
        if page_id in self.emu.store.databases:
            raise validation_error(
                f"Provided ID {page_id} is a database, not a page. Use the retrieve database "
                "API instead, `GET /databases/:id`."
            )
        if found is None or found.type != "child_page":
            raise errors.object_not_found("page", page_id)
        return found

    def has_children(self, b: Block) -> bool:
        return any(not child.in_trash for child in self.emu.store.blocks(b.id))

    def row_source(self, b: Block) -> DataSource | None:
        """The data source of a database row (None for other pages and blocks)."""
        if b.parent_type != "data_source_id":
            return None
        return self.emu.store.data_sources[b.page_id]

    def block_json(self, b: Block) -> dict[str, Any]:
        upload = self.emu.store.get(b.upload_id) if b.upload_id else None
        source = self.row_source(b)
        parent = objects.row_parent(source, self.version) if source else None
        return objects.block(
            b, upload, self.base_url, self.version, self.emu.clock.now(), self.has_children(b), parent
        )

    def page_json(self, b: Block) -> dict[str, Any]:
        source = self.row_source(b)
        if source is None:
            return objects.page(b, self.version)
        names: dict[str, str] = {}
        for value in b.content.get("properties", {}).values():
            if isinstance(value, list):
                for entry in value:
                    upload = self.emu.store.get(entry.get("upload_id") or "") if isinstance(entry, dict) else None
                    if upload is not None:
                        names[entry["blob_id"]] = upload.filename or entry["name"]
        return objects.page(b, self.version, source, self.base_url, self.emu.clock.now(), names)

    # --- database rows ---------------------------------------------------------------------

    def parent_source(self, kind: str, parent_id: str) -> DataSource:
        """The data source a new row goes to (`parent.data_source_id` or `database_id`)."""
        store = self.emu.store
        if kind == "data_source_id":
            source = store.data_sources.get(parent_id)
            if source is None:
                raise errors.object_not_found("data source", parent_id)
            database = store.databases[source.database_id]
        else:
            found = store.databases.get(parent_id)
            if found is None:
                raise errors.object_not_found("database", parent_id)
            database = found
            if len(database.data_source_ids) != 1:
                raise validation_error(
                    f"Database {parent_id} has {len(database.data_source_ids)} data sources; "
                    "create the page with parent.data_source_id."
                )
            source = store.data_sources[database.data_source_ids[0]]
        if store.database_in_trash(database):
            raise errors.archived_block(database.id)
        return source

    def row_values(
        self, raw: dict[str, Any], source: DataSource, now: float
    ) -> tuple[list[Any] | None, dict[str, Any], list[Upload]]:
        """A row's new values, checked against the schema: (title or None, other values by
        property id in their stored form, the uploads that `files` entries attach)."""
        values = properties.parse_values(raw, source)
        title = values.pop(source.title_property().id, None)
        attached: list[Upload] = []
        kinds = {p.id: p.type for p in source.properties}
        for prop_id, value in values.items():
            if kinds[prop_id] == "files":
                values[prop_id] = [self.file_entry(ref, now, attached) for ref in value]
        return title, values, attached

    def file_entry(self, ref: properties.FileRef, now: float, attached: list[Upload]) -> dict[str, Any]:
        store = self.emu.store
        if ref.external_url is not None:
            return {"name": ref.name, "external_url": ref.external_url}
        if ref.blob_id is not None:
            # A file already in this workspace (kept as it is when a files value is rewritten).
            upload_id = store.find_blob(ref.blob_id)
            if upload_id is None:
                raise validation_error(f"Could not find a file with the URL id {ref.blob_id}.")
            return {"name": ref.name, "upload_id": upload_id, "blob_id": ref.blob_id}
        assert ref.upload_id is not None
        # Like a media block: the token's own upload, status uploaded (any file type).
        upload = rules.attachable_upload("file", ref.upload_id, store, self.token, now)
        attached.append(upload)
        return {
            "name": ref.name or upload.filename or "file",
            "upload_id": upload.id,
            # An opaque id of this entry's own for its file URL (never the upload's id).
            "blob_id": secrets.token_hex(16),
        }

    def attach_uploads(self, page_id: str, uploads: list[Upload]) -> None:
        for upload in uploads:
            if page_id not in upload.attached_to:
                upload.attached_to.append(page_id)
            self.emu.store.touch(upload)

    def check_children(self, specs: list[blocks.ChildSpec], now: float) -> list[Upload | None]:
        """The upload each media child references; one bad child refuses the whole call."""
        return [
            rules.attachable_upload(c.block_type, c.upload_id, self.emu.store, self.token, now)
            if c.upload_id
            else None
            for c in specs
        ]

    def append(
        self,
        parent_id: str,
        parent_type: str,
        specs: list[blocks.ChildSpec],
        uploads: list[Upload | None],
        now: float,
    ) -> list[Block]:
        creator = objects.bot_id(self.token)
        made = [
            Block(
                id=str(uuid.uuid4()),
                page_id=parent_id,
                type=spec.block_type,
                upload_id=upload.id if upload else None,
                created_at=now,
                creator_bot_id=creator,
                caption=list(spec.caption),
                name=spec.name,
                content=dict(spec.content),
                parent_type=parent_type,
                # An opaque id of the block's own for its file URL: a block never reveals
                # which file upload it holds, as in Notion.
                blob_id=secrets.token_hex(16) if upload else None,
            )
            for spec, upload in zip(specs, uploads, strict=True)
        ]
        if made:
            self.emu.store.append_blocks(parent_id, made)
        for upload in uploads:
            if upload is not None:
                if parent_id not in upload.attached_to:
                    upload.attached_to.append(parent_id)
                self.emu.store.touch(upload)
        return made


# --- pages -------------------------------------------------------------------------------------


class PagesHandler(ContentHandler):
    ENDPOINTS = {"POST": "create_page"}

    def post(self) -> None:
        spec = blocks.parse_page_create(self.json_body())
        if spec.parent_kind != "page_id":
            self.create_row(spec)
            return
        emu = self.emu
        if spec.parent_id in emu.store.databases or spec.parent_id in emu.store.data_sources:
            raise validation_error(
                f"body failed validation: body.parent.page_id {spec.parent_id} is a database or "
                "data source; a row takes parent.data_source_id or parent.database_id."
            )
        parent = emu.store.find_block(spec.parent_id)
        if parent is not None:
            if parent.in_trash:
                raise errors.archived_block(parent.id)
            if parent.type != "child_page":
                raise validation_error(
                    f"body failed validation: body.parent.page_id should be the id of a page, "
                    f"not of a {parent.type} block."
                )
        now = emu.clock.now()
        uploads = self.check_children(spec.children, now)
        page = self.page_block(spec.parent_id, now, {"title": spec.title, "icon": spec.icon, "cover": spec.cover})
        emu.store.append_blocks(spec.parent_id, [page])
        self.append(page.id, "page_id", spec.children, uploads, now)
        self.reply(objects.page(page, self.version))

    def page_block(self, parent_id: str, now: float, content: dict[str, Any], **extra: Any) -> Block:
        """A page (a `child_page` block) under a page, or a row under a data source."""
        return Block(id=str(uuid.uuid4()), page_id=parent_id, type="child_page", upload_id=None, created_at=now,
                     creator_bot_id=objects.bot_id(self.token), caption=[], name=None, content=content, **extra)

    def create_row(self, spec: blocks.PageSpec) -> None:
        """A new row of a data source: every check first, then one journal line."""
        emu = self.emu
        now = emu.clock.now()
        source = self.parent_source(spec.parent_kind, spec.parent_id)
        title, values, attached = self.row_values(spec.properties, source, now)
        uploads = self.check_children(spec.children, now)
        row = self.page_block(source.id, now, {"title": title or [], "icon": spec.icon, "cover": spec.cover,
                                               "properties": values}, parent_type="data_source_id")
        with emu.store.journal.batch():
            emu.store.append_blocks(source.id, [row])
            self.attach_uploads(row.id, attached)
            self.append(row.id, "page_id", spec.children, uploads, now)
        self.reply(self.page_json(row))


class PageHandler(ContentHandler):
    ENDPOINTS = {"GET": "retrieve_page", "PATCH": "update_page"}

    def get(self, raw_id: str) -> None:
        self.reply(self.page_json(self.known_page(raw_id)))

    def patch(self, raw_id: str) -> None:
        page = self.known_page(raw_id)
        update = blocks.parse_page_update(self.json_body())
        source = self.row_source(page)
        now = self.emu.clock.now()
        title: list[Any] | None = None
        values: dict[str, Any] = {}
        attached: list[Upload] = []
        if update.properties is not None:
            if source is None:
                title = blocks.page_title(update.properties)
            else:
                title, values, attached = self.row_values(update.properties, source, now)
        edits = title is not None or bool(values) or update.sets_icon or update.sets_cover
        if page.in_trash and edits and update.in_trash is not False:
            raise errors.archived_block(page.id)
        content = dict(page.content)
        if title is not None:
            content["title"] = title
        if values:
            content["properties"] = {**content.get("properties", {}), **values}
        if update.sets_icon:
            content["icon"] = update.icon
        if update.sets_cover:
            content["cover"] = update.cover
        with self.emu.store.journal.batch():
            page.content = content  # replaced whole (the store journals field assignments)
            if update.in_trash is not None:
                page.in_trash = update.in_trash
            page.last_edited_at = now
            self.attach_uploads(page.id, attached)
        self.reply(self.page_json(page))


# --- blocks ------------------------------------------------------------------------------------


class BlockHandler(ContentHandler):
    ENDPOINTS = {"GET": "retrieve_block", "PATCH": "update_block", "DELETE": "delete_block"}

    def get(self, raw_id: str) -> None:
        self.reply(self.block_json(self.known_block(raw_id)))

    def patch(self, raw_id: str) -> None:
        b = self.known_block(raw_id)
        update = blocks.parse_block_update(self.json_body(), b.type)
        if b.in_trash and update.content is not None and update.in_trash is not False:
            raise errors.archived_block(b.id)
        if update.content is not None:
            b.content = {**b.content, **update.content}
        if update.in_trash is not None:
            b.in_trash = update.in_trash
        b.last_edited_at = self.emu.clock.now()
        self.reply(self.block_json(b))

    def delete(self, raw_id: str) -> None:
        b = self.known_block(raw_id)
        if b.in_trash:
            raise errors.archived_block(b.id)
        b.in_trash = True
        b.last_edited_at = self.emu.clock.now()
        self.reply(self.block_json(b))


class BlockChildrenHandler(ContentHandler):
    ENDPOINTS = {"PATCH": "attach", "GET": "children"}

    def _parent(self, raw_id: str) -> tuple[str, str]:
        """The id children hang from and the parent type they show."""
        parent_id = self.valid_id(raw_id, "block_id")
        self._not_a_database(parent_id)
        known = self.emu.store.find_block(parent_id)
        if known is None or known.type == "child_page":
            return parent_id, "page_id"  # any other well-formed id is a visible page
        if known.type != "paragraph":
            raise validation_error(f"Block type {known.type} does not support children.")
        return parent_id, "block_id"

    def patch(self, raw_id: str) -> None:
        emu = self.emu
        parent_id, parent_type = self._parent(raw_id)
        known = emu.store.find_block(parent_id)
        if known is not None and known.in_trash:
            raise errors.archived_block(known.id)
        now = emu.clock.now()
        specs = blocks.parse_append(self.json_body())
        uploads = self.check_children(specs, now)
        made = self.append(parent_id, parent_type, specs, uploads, now)
        self.reply(objects.listing("block", [self.block_json(b) for b in made], None))

    def _not_a_database(self, block_id: str) -> None:
        """A database or data source holds rows, not block children."""
        store = self.emu.store
        if block_id in store.data_sources:
            raise errors.object_not_found("block", block_id)
        if block_id in store.databases:
            raise validation_error(
                f"Block {block_id} is a database (child_database): it has rows, not children; "
                "query its data source instead."
            )

    def get(self, raw_id: str) -> None:
        parent_id = self.valid_id(raw_id, "block_id")
        self._not_a_database(parent_id)
        live = [b for b in self.emu.store.blocks(parent_id) if not b.in_trash]
        page, cursor = rules.paginate(
            live,
            key=lambda b: b.id,
            start_cursor=self.get_query_argument("start_cursor", None),
            page_size=self.get_query_argument("page_size", None),
        )
        self.reply(objects.listing("block", [self.block_json(b) for b in page], cursor))
