"""Notion's rules for page and block requests, as pure parsers that raise NotionError.

What the emulator takes (and refuses everything else with a message that says so):
- blocks: `paragraph` (rich text and color) and the media blocks that hold a file upload
  (`file`, `image`, `pdf`, `audio`, `video`: `{"type": "file_upload", "file_upload": {"id"}}`,
  optional `caption` and, for `file`, `name`); at most 100 per request; no nested children;
- rich text: `text` items (`content` ≤ 2000 characters, optional `link` and `annotations`),
  returned in Notion's full shape (`type`, `text`, `annotations`, `plain_text`, `href`);
- pages: under a page (`parent.page_id`), with a `title` property, `children`, and an emoji or
  external `icon`/`cover`; or rows of a database (`parent.database_id`/`data_source_id`),
  whose properties are checked against the data source's schema (properties.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .errors import validation_error
from .rules import normalize_uuid

MEDIA_BLOCK_TYPES = ("file", "image", "pdf", "audio", "video")
TEXT_BLOCK_TYPES = ("paragraph",)
APPENDABLE_TYPES = TEXT_BLOCK_TYPES + MEDIA_BLOCK_TYPES
MAX_CHILDREN = 100
MAX_RICH_TEXT_ITEMS = 100
MAX_TEXT_CHARS = 2000

COLORS = tuple(
    c
    for base in ("gray", "brown", "orange", "yellow", "green", "blue", "purple", "pink", "red")
    for c in (base, f"{base}_background")
) + ("default",)
_ANNOTATION_FLAGS = ("bold", "italic", "strikethrough", "underline", "code")


def _describe(value: Any) -> str:
    return json.dumps(value)[:100]


def _fail(where: str, should: str, value: Any = ...) -> errors.NotionError:
    tail = "" if value is ... else f", instead was `{_describe(value)}`"
    return validation_error(f"body failed validation: {where} {should}{tail}.")


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, "should be an object", value)
    return value


def _only_keys(value: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise validation_error(
            f"body failed validation: {where} has unknown key(s) {', '.join(unknown)}; "
            f"the emulator takes {', '.join(sorted(allowed))}."
        )


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, "should be a boolean", value)
    return value


def _color(value: Any, where: str) -> str:
    if value not in COLORS:
        raise _fail(where, "should be a Notion color (default, gray, …, red_background)", value)
    return value


# --- rich text ---------------------------------------------------------------------------------


def rich_text(value: Any, where: str) -> list[dict[str, Any]]:
    """Validate a rich text array and return it in Notion's full response shape."""
    if not isinstance(value, list):
        raise _fail(where, "should be an array", value)
    if len(value) > MAX_RICH_TEXT_ITEMS:
        raise _fail(f"{where}.length", f"should be ≤ `{MAX_RICH_TEXT_ITEMS}`", len(value))
    return [_rich_text_item(item, f"{where}[{i}]") for i, item in enumerate(value)]


def _rich_text_item(item: Any, where: str) -> dict[str, Any]:
    item = _object(item, where)
    _only_keys(item, {"type", "text", "annotations", "plain_text", "href"}, where)
    if item.get("type", "text") != "text":
        raise _fail(f"{where}.type", "should be `text` (the emulator takes text rich text only)", item["type"])
    text = _object(item.get("text"), f"{where}.text")
    _only_keys(text, {"content", "link"}, f"{where}.text")
    content = text.get("content")
    if not isinstance(content, str):
        raise _fail(f"{where}.text.content", "should be a string", content)
    if len(content) > MAX_TEXT_CHARS:
        raise _fail(f"{where}.text.content.length", f"should be ≤ `{MAX_TEXT_CHARS}`", len(content))
    link = text.get("link")
    if link is not None:
        link = _object(link, f"{where}.text.link")
        _only_keys(link, {"url"}, f"{where}.text.link")
        if not isinstance(link.get("url"), str) or not link["url"]:
            raise _fail(f"{where}.text.link.url", "should be a non-empty string", link.get("url"))
        link = {"url": link["url"]}
    given = _object(item.get("annotations", {}), f"{where}.annotations")
    _only_keys(given, set(_ANNOTATION_FLAGS) | {"color"}, f"{where}.annotations")
    annotations: dict[str, Any] = {
        flag: _bool(given.get(flag, False), f"{where}.annotations.{flag}") for flag in _ANNOTATION_FLAGS
    }
    annotations["color"] = _color(given.get("color", "default"), f"{where}.annotations.color")
    return {
        "type": "text",
        "text": {"content": content, "link": link},
        "annotations": annotations,
        "plain_text": content,
        "href": link["url"] if link else None,
    }


# --- children (append, and page create) -------------------------------------------------------


@dataclass(frozen=True)
class ChildSpec:
    block_type: str
    upload_id: str | None = None  # media blocks
    caption: list[Any] = field(default_factory=list)
    name: str | None = None
    content: dict[str, Any] = field(default_factory=dict)  # paragraph: {rich_text, color}


def parse_append(body: dict[str, Any]) -> list[ChildSpec]:
    """PATCH /v1/blocks/{id}/children: `children` (1..100); `after`/`position` are ignored."""
    _only_keys(body, {"children", "after", "position"}, "body")
    if "children" not in body:
        raise validation_error("body failed validation: body.children should be defined, instead was `undefined`.")
    specs = parse_children(body["children"], "body.children")
    if not specs:
        raise validation_error("body failed validation: body.children should not be empty.")
    return specs


def parse_children(children: Any, where: str) -> list[ChildSpec]:
    if not isinstance(children, list):
        raise _fail(where, "should be an array", children)
    if len(children) > MAX_CHILDREN:
        raise _fail(f"{where}.length", f"should be ≤ `{MAX_CHILDREN}`", len(children))
    return [_parse_child(child, f"{where}[{i}]") for i, child in enumerate(children)]


def _parse_child(child: Any, where: str) -> ChildSpec:
    child = _object(child, where)
    block_type = child.get("type")
    if block_type is None:  # Notion lets the type key stand in for "type"
        present = [t for t in APPENDABLE_TYPES if t in child]
        block_type = present[0] if len(present) == 1 else None
    if block_type not in APPENDABLE_TYPES:
        raise _fail(
            f"{where}.type",
            f"should be one of {', '.join(APPENDABLE_TYPES)} (the block types the emulator appends)",
            child.get("type"),
        )
    _only_keys(child, {"object", "type", block_type}, where)
    payload = _object(child.get(block_type), f"{where}.{block_type}")
    where = f"{where}.{block_type}"
    if block_type == "paragraph":
        _only_keys(payload, {"rich_text", "color", "icon"}, where)
        if payload.get("icon") is not None:
            raise _fail(f"{where}.icon", "should be null (the emulator keeps no paragraph icons)", payload["icon"])
        if "rich_text" not in payload:
            raise _fail(f"{where}.rich_text", "should be defined, instead was `undefined`")
        return ChildSpec(
            "paragraph",
            content={
                "rich_text": rich_text(payload["rich_text"], f"{where}.rich_text"),
                "color": _color(payload.get("color", "default"), f"{where}.color"),
            },
        )
    allowed = {"type", "file_upload", "caption"} | ({"name"} if block_type == "file" else set())
    _only_keys(payload, allowed, where)
    if payload.get("type", "file_upload") != "file_upload" or not isinstance(payload.get("file_upload"), dict):
        raise validation_error(
            f"body failed validation: {where} should reference a file upload: "
            '{"type": "file_upload", "file_upload": {"id": "..."}} (the emulator has no external files).'
        )
    raw_id = payload["file_upload"].get("id")
    upload_id = normalize_uuid(raw_id) if isinstance(raw_id, str) else None
    if upload_id is None:
        raise _fail(f"{where}.file_upload.id", "should be a valid uuid", raw_id)
    name = payload.get("name")
    if name is not None and not isinstance(name, str):
        raise _fail(f"{where}.name", "should be a string", name)
    caption = rich_text(payload.get("caption", []), f"{where}.caption")
    return ChildSpec(block_type, upload_id=upload_id, caption=caption, name=name)


# --- pages -------------------------------------------------------------------------------------

_PAGE_CREATE_KEYS = {"parent", "properties", "children", "icon", "cover"}
_PAGE_UPDATE_KEYS = {"properties", "icon", "cover", "in_trash", "archived"}


@dataclass(frozen=True)
class PageSpec:
    parent_kind: str  # page_id | database_id | data_source_id
    parent_id: str
    title: list[dict[str, Any]]  # under a page; a row's title is among `properties`
    properties: dict[str, Any]  # as given (a row's: checked against its schema)
    children: list[ChildSpec]
    icon: dict[str, Any] | None
    cover: dict[str, Any] | None


def parse_page_create(body: dict[str, Any]) -> PageSpec:
    _only_keys(body, _PAGE_CREATE_KEYS, "body")
    parent = _object(body.get("parent"), "body.parent")
    kinds = [k for k in ("page_id", "database_id", "data_source_id", "workspace") if k in parent]
    if len(kinds) != 1 or parent.get("type", kinds[0]) != kinds[0]:
        raise _fail("body.parent", "should hold exactly one of page_id, database_id, data_source_id", parent)
    kind = kinds[0]
    if kind == "workspace":
        raise validation_error(
            "body failed validation: the emulator creates pages under a page only (parent.page_id)."
        )
    _only_keys(parent, {"type", kind}, "body.parent")
    parent_id = normalize_uuid(parent[kind]) if isinstance(parent[kind], str) else None
    if parent_id is None:
        raise _fail(f"body.parent.{kind}", "should be a valid uuid", parent[kind])
    properties = _object(body.get("properties", {}), "body.properties")
    title = _title(properties) if kind == "page_id" else None
    children = parse_children(body.get("children", []), "body.children")
    return PageSpec(kind, parent_id, title or [], properties, children,
                    _icon(body.get("icon"), "body.icon"), _cover(body.get("cover"), "body.cover"))


def page_title(properties: Any) -> list[dict[str, Any]] | None:
    """The title of a page under a page (None when `properties` does not set it)."""
    return _title(properties)


def _title(properties: Any) -> list[dict[str, Any]] | None:
    """The title of a page under a page: `{"title": [...]}` or `{"title": {"title": [...]}}`."""
    properties = _object(properties, "body.properties")
    others = sorted(set(properties) - {"title"})
    if others:
        raise validation_error(
            f"body failed validation: a page under a page has only the title property; "
            f"{', '.join(others)} is not a property that exists."
        )
    if "title" not in properties:
        return None
    value = properties["title"]
    if isinstance(value, dict):
        _only_keys(value, {"title", "type", "id"}, "body.properties.title")
        if value.get("type", "title") != "title" or value.get("id", "title") != "title":
            raise _fail("body.properties.title.type", "should be `title`", value.get("type"))
        value = value.get("title")
    return rich_text(value, "body.properties.title.title")


def _icon(value: Any, where: str) -> dict[str, Any] | None:
    return _file_or_emoji(value, where, ("emoji", "external"))


def _cover(value: Any, where: str) -> dict[str, Any] | None:
    return _file_or_emoji(value, where, ("external",))


def _file_or_emoji(value: Any, where: str, kinds: tuple[str, ...]) -> dict[str, Any] | None:
    if value is None:
        return None
    value = _object(value, where)
    kind = value.get("type") or next((k for k in kinds if k in value), None)
    if kind not in kinds:
        raise _fail(
            f"{where}.type", f"should be one of {', '.join(kinds)} (what the emulator keeps)", value.get("type")
        )
    _only_keys(value, {"type", kind}, where)
    if kind == "emoji":
        if not isinstance(value.get("emoji"), str) or not value["emoji"]:
            raise _fail(f"{where}.emoji", "should be an emoji", value.get("emoji"))
        return {"type": "emoji", "emoji": value["emoji"]}
    external = _object(value.get("external"), f"{where}.external")
    _only_keys(external, {"url"}, f"{where}.external")
    if not isinstance(external.get("url"), str) or not external["url"]:
        raise _fail(f"{where}.external.url", "should be a URL", external.get("url"))
    return {"type": "external", "external": {"url": external["url"]}}


def parse_trash(body: dict[str, Any]) -> bool | None:
    """`in_trash` and its deprecated alias `archived`: None when neither is given."""
    values = {k: _bool(body[k], f"body.{k}") for k in ("in_trash", "archived") if k in body}
    if len(set(values.values())) > 1:
        raise validation_error("body failed validation: body.in_trash and body.archived disagree.")
    return next(iter(values.values()), None)


@dataclass(frozen=True)
class PageUpdate:
    in_trash: bool | None
    properties: dict[str, Any] | None  # as given: checked by the page's kind (page, or row)
    icon: dict[str, Any] | None
    cover: dict[str, Any] | None
    sets_icon: bool
    sets_cover: bool


def parse_page_update(body: dict[str, Any]) -> PageUpdate:
    _only_keys(body, _PAGE_UPDATE_KEYS, "body")
    properties = _object(body["properties"], "body.properties") if "properties" in body else None
    return PageUpdate(
        in_trash=parse_trash(body),
        properties=properties,
        icon=_icon(body.get("icon"), "body.icon"),
        cover=_cover(body.get("cover"), "body.cover"),
        sets_icon="icon" in body,
        sets_cover="cover" in body,
    )


@dataclass(frozen=True)
class BlockUpdate:
    in_trash: bool | None
    content: dict[str, Any] | None  # the new paragraph payload, when given


def parse_block_update(body: dict[str, Any], block_type: str) -> BlockUpdate:
    """PATCH /v1/blocks/{id}: `in_trash`/`archived`, and for a paragraph its rich text/color."""
    _only_keys(body, {"in_trash", "archived", block_type}, "body")
    content = None
    if block_type in body:
        if block_type != "paragraph":
            raise validation_error(
                f"body failed validation: the emulator updates the content of paragraph blocks "
                f"only, not of {block_type} blocks."
            )
        payload = _object(body[block_type], f"body.{block_type}")
        _only_keys(payload, {"rich_text", "color"}, f"body.{block_type}")
        content = {}
        if "rich_text" in payload:
            content["rich_text"] = rich_text(payload["rich_text"], "body.paragraph.rich_text")
        if "color" in payload:
            content["color"] = _color(payload["color"], "body.paragraph.color")
    return BlockUpdate(parse_trash(body), content)
