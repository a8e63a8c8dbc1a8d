"""The /v1 page and block endpoints: pages (create, retrieve, update), blocks (retrieve,
update, delete) and block children (append, list).

State: a page created through the API is kept as a `child_page` block of its parent (as
Notion lists it among the parent's children); appended blocks are kept per parent. Any other
well-formed id is a page the integration can see (it may receive and list children) but
cannot be retrieved. Trashing (DELETE, or `in_trash`/`archived: true`) keeps the block: it
can still be retrieved (with `in_trash: true`) and restored, but it leaves its parent's
children list. The request shapes are checked in blocks.py.
"""
from __future__ import annotations

import secrets
import uuid
from typing import Any

from . import blocks, errors, objects, rules
from .api import ApiHandler
from .errors import validation_error
from .store import Block, Upload


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
        if found is None or found.type != "child_page":
            raise errors.object_not_found("page", page_id)
        return found

    def has_children(self, b: Block) -> bool:
        return any(not child.in_trash for child in self.emu.store.blocks(b.id))

    def block_json(self, b: Block) -> dict[str, Any]:
        upload = self.emu.store.get(b.upload_id) if b.upload_id else None
        return objects.block(
            b, upload, self.base_url, self.version, self.emu.clock.now(), self.has_children(b)
        )

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
            for spec, upload in zip(specs, uploads)
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
        emu = self.emu
        spec = blocks.parse_page_create(self.json_body())
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
        page = Block(
            id=str(uuid.uuid4()),
            page_id=spec.parent_id,
            type="child_page",
            upload_id=None,
            created_at=now,
            creator_bot_id=objects.bot_id(self.token),
            caption=[],
            name=None,
            content={"title": spec.title, "icon": spec.icon, "cover": spec.cover},
        )
        emu.store.append_blocks(spec.parent_id, [page])
        self.append(page.id, "page_id", spec.children, uploads, now)
        self.reply(objects.page(page, self.version))


class PageHandler(ContentHandler):
    ENDPOINTS = {"GET": "retrieve_page", "PATCH": "update_page"}

    def get(self, raw_id: str) -> None:
        self.reply(objects.page(self.known_page(raw_id), self.version))

    def patch(self, raw_id: str) -> None:
        page = self.known_page(raw_id)
        update = blocks.parse_page_update(self.json_body())
        edits = update.title is not None or update.sets_icon or update.sets_cover
        if page.in_trash and edits and update.in_trash is not False:
            raise errors.archived_block(page.id)
        content = dict(page.content)
        if update.title is not None:
            content["title"] = update.title
        if update.sets_icon:
            content["icon"] = update.icon
        if update.sets_cover:
            content["cover"] = update.cover
        page.content = content  # replaced whole (the store journals field assignments)
        if update.in_trash is not None:
            page.in_trash = update.in_trash
        page.last_edited_at = self.emu.clock.now()
        self.reply(objects.page(page, self.version))


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

    def get(self, raw_id: str) -> None:
        parent_id = self.valid_id(raw_id, "block_id")
        live = [b for b in self.emu.store.blocks(parent_id) if not b.in_trash]
        page, cursor = rules.paginate(
            live,
            key=lambda b: b.id,
            start_cursor=self.get_query_argument("start_cursor", None),
            page_size=self.get_query_argument("page_size", None),
        )
        self.reply(objects.listing("block", [self.block_json(b) for b in page], cursor))
