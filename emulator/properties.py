"""Notion's rules for database rows: data source schemas, page property values, query filters
and sorts, as pure parsers that raise NotionError (the handlers are in databases.py).

What the emulator keeps (anything else is refused with a message that says so):
- property types `title` (exactly one per data source), `rich_text`, `files`, `number`,
  `checkbox`, `url`, `email`, `phone_number`;
- values written as Notion's request shapes: `{"title": [rich text]}`, `{"rich_text": [...]}`
  (a bare rich text array is taken for those two), `{"files": [entries]}` where an entry is
  `{"type": "file_upload", "file_upload": {"id"}, "name"?}`, `{"type": "external",
  "external": {"url"}, "name"}` or an existing Notion-hosted file `{"type": "file", "file":
  {"url", "expiry_time"?}, "name"}` (a URL this emulator gave out), `{"number": n | null}`,
  `{"checkbox": bool}`, `{"url" | "email" | "phone_number": str | null}`;
- filters: property filters on those types (text: equals, does_not_equal, contains,
  does_not_contain, starts_with, ends_with, is_empty, is_not_empty; number: equals,
  does_not_equal, greater_than, less_than, greater_than_or_equal_to, less_than_or_equal_to,
  is_empty, is_not_empty; checkbox: equals, does_not_equal; files: is_empty, is_not_empty),
  timestamp filters on `created_time`/`last_edited_time` (before, after, on_or_before,
  on_or_after, equals: an ISO 8601 date or date-time), and `and`/`or` groups nested at most
  two levels deep;
- sorts: `{"property", "direction"}` and `{"timestamp": "created_time" | "last_edited_time",
  "direction"}`.

Property keys in a request are property names or ids, as in Notion. Text comparisons are
exact (case-sensitive) on the plain text.
"""
from __future__ import annotations

import datetime as dt
import json
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, unquote

from .blocks import _fail, _object, _only_keys, rich_text
from .errors import validation_error
from .rules import MAX_PAGE_SIZE, normalize_uuid
from .store import DataSource, PropertyDef

PROPERTY_TYPES = ("title", "rich_text", "files", "number", "checkbox", "url", "email", "phone_number")
TEXT_TYPES = ("title", "rich_text")
STRING_TYPES = ("url", "email", "phone_number")
MAX_FILES = 100  # assumed: Notion does not document a limit; the rich text one is 100
MAX_NAME_CHARS = 2000  # a property name (the emulator's own bound)
MAX_FILTER_DEPTH = 2

# Notion's property ids are short random strings, shown URL-encoded ("%3DdYt").
_ID_ALPHABET = string.ascii_letters + string.digits + "!#$&()*+,-./:;<=>?@[]^_`{|}~"


def _describe(value: Any) -> str:
    return json.dumps(value)[:100]


# --- schemas ---------------------------------------------------------------------------------


def new_property_id(taken: set[str]) -> str:
    while True:
        raw = "".join(secrets.choice(_ID_ALPHABET) for _ in range(4))
        encoded = quote(raw, safe="")
        if encoded not in taken and encoded != "title":
            return encoded


def parse_schema(raw: Any) -> list[tuple[str, str]]:
    """`{"Name": {"title": {}}, "Files": {"files": {}}, …}` (or `{"type": "files", "files": {}}`)
    as (name, type) pairs in the given order; exactly one title property. Raises ValueError
    with a message (the control API answers it as a 400)."""
    if raw is None:
        return [("Name", "title")]  # what Notion gives a database created without a schema
    if not isinstance(raw, dict) or not raw:
        raise ValueError("properties must be a non-empty object of name -> {type: {}}")
    out: list[tuple[str, str]] = []
    for name, config in raw.items():
        if not name.strip() or len(name) > MAX_NAME_CHARS:
            raise ValueError(f"property name {name!r} must be non-empty (at most {MAX_NAME_CHARS} characters)")
        if not isinstance(config, dict):
            raise ValueError(f"property {name!r} must be an object such as {{\"rich_text\": {{}}}}")
        kinds = [k for k in config if k != "type"]
        kind = config.get("type") or (kinds[0] if len(kinds) == 1 else None)
        if kind not in PROPERTY_TYPES or set(kinds) - {kind} or config.get(kind, {}) != {}:
            raise ValueError(
                f"property {name!r}: {json.dumps(config)} is not one of the types the emulator keeps "
                f"({', '.join(PROPERTY_TYPES)}), each written as {{\"<type>\": {{}}}}"
            )
        out.append((name, kind))
    titles = [n for n, t in out if t == "title"]
    if len(titles) != 1:
        raise ValueError(f"a data source has exactly one title property; these properties have {len(titles)}")
    return out


def find_property(source: DataSource, key: str) -> PropertyDef | None:
    """A property by its name or its id (as shown, URL-encoded, or decoded)."""
    for prop in source.properties:
        if prop.name == key:
            return prop
    for prop in source.properties:
        if key in (prop.id, unquote(prop.id)):
            return prop
    return None


# --- values ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileRef:
    """A `files` entry as written: exactly one of upload_id, external_url, blob_id is set."""

    name: str | None
    upload_id: str | None = None
    external_url: str | None = None
    blob_id: str | None = None  # a Notion-hosted file this emulator already serves


def parse_values(raw: Any, source: DataSource, where: str = "body.properties") -> dict[str, Any]:
    """Property values of a row, by property id: title and rich_text as rich text (response
    shape), files as lists of FileRef (resolved by the handler), the others as given."""
    raw = _object(raw, where)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        prop = find_property(source, key)
        if prop is None:
            raise validation_error(f"{key} is not a property that exists.")
        if prop.id in out:
            raise validation_error(f"body failed validation: {where} names property {prop.name} twice.")
        out[prop.id] = _value(prop, value, f"{where}.{key}")
    return out


def _value(prop: PropertyDef, value: Any, where: str) -> Any:
    kind = prop.type
    if isinstance(value, list) and kind in TEXT_TYPES:
        return rich_text(value, f"{where}.{kind}")  # Notion's shorthand: the bare array
    if not isinstance(value, dict):
        raise _fail(where, f"should be an object such as {{\"{kind}\": …}}", value)
    given = value.get("type") or next((k for k in value if k in PROPERTY_TYPES or k in _OTHER_TYPES), None)
    if given != kind:
        raise validation_error(f"{prop.name} is expected to be {kind}.")
    _only_keys(value, {"type", "id", kind}, where)
    if kind not in value:
        raise _fail(f"{where}.{kind}", "should be defined, instead was `undefined`")
    payload = value[kind]
    where = f"{where}.{kind}"
    if kind in TEXT_TYPES:
        return rich_text(payload, where)
    if kind == "files":
        return _files(payload, where)
    if kind == "number":
        if payload is not None and (isinstance(payload, bool) or not isinstance(payload, (int, float))):
            raise _fail(where, "should be a number or `null`", payload)
        return payload
    if kind == "checkbox":
        if not isinstance(payload, bool):
            raise _fail(where, "should be a boolean", payload)
        return payload
    # url, email, phone_number
    if payload is not None and not isinstance(payload, str):
        raise _fail(where, "should be a string or `null`", payload)
    if isinstance(payload, str) and len(payload) > MAX_NAME_CHARS:
        raise _fail(f"{where}.length", f"should be ≤ `{MAX_NAME_CHARS}`", len(payload))
    return payload


# Property types Notion has and the emulator does not keep: a value of one of these types is
# "expected to be <the property's type>", not an unknown shape.
_OTHER_TYPES = (
    "select", "multi_select", "status", "date", "people", "relation", "formula", "rollup",
    "created_time", "created_by", "last_edited_time", "last_edited_by", "unique_id",
    "verification", "place", "button",
)


def _files(payload: Any, where: str) -> list[FileRef]:
    if not isinstance(payload, list):
        raise _fail(where, "should be an array", payload)
    if len(payload) > MAX_FILES:
        raise _fail(f"{where}.length", f"should be ≤ `{MAX_FILES}`", len(payload))
    return [_file_entry(entry, f"{where}[{i}]") for i, entry in enumerate(payload)]


def _file_entry(entry: Any, where: str) -> FileRef:
    entry = _object(entry, where)
    kinds = [k for k in ("file_upload", "external", "file") if k in entry]
    kind = entry.get("type") or (kinds[0] if len(kinds) == 1 else None)
    if kind not in ("file_upload", "external", "file"):
        raise _fail(f"{where}.type", "should be one of file_upload, external, file", entry.get("type"))
    _only_keys(entry, {"type", "name", kind}, where)
    name = entry.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise _fail(f"{where}.name", "should be a non-empty string", name)
    if name is not None and len(name) > MAX_NAME_CHARS:
        raise _fail(f"{where}.name.length", f"should be ≤ `{MAX_NAME_CHARS}`", len(name))
    payload = _object(entry.get(kind), f"{where}.{kind}")
    if kind == "file_upload":
        _only_keys(payload, {"id"}, f"{where}.file_upload")
        raw_id = payload.get("id")
        upload_id = normalize_uuid(raw_id) if isinstance(raw_id, str) else None
        if upload_id is None:
            raise _fail(f"{where}.file_upload.id", "should be a valid uuid", raw_id)
        return FileRef(name, upload_id=upload_id)
    if name is None:
        raise _fail(f"{where}.name", "should be defined, instead was `undefined`")
    if kind == "external":
        _only_keys(payload, {"url"}, f"{where}.external")
        url = payload.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise _fail(f"{where}.external.url", "should be an http(s) URL", url)
        return FileRef(name, external_url=url)
    _only_keys(payload, {"url", "expiry_time"}, f"{where}.file")
    url = payload.get("url")
    blob_id = _blob_id(url)
    if blob_id is None:
        raise validation_error(
            f"body failed validation: {where}.file.url should be the URL of a file Notion hosts "
            f"(one this emulator gave out, /_emulator/blobs/…), instead was `{_describe(url)}`."
        )
    return FileRef(name, blob_id=blob_id)


def _blob_id(url: Any) -> str | None:
    if not isinstance(url, str):
        return None
    _, marker, tail = url.partition("/_emulator/blobs/")
    blob_id = tail.split("/", 1)[0] if marker else ""
    return blob_id if blob_id and all(c in string.hexdigits for c in blob_id) else None


# --- reading a row's values ------------------------------------------------------------------


def plain(value: Any) -> str:
    """The plain text of a stored title/rich_text value, or a stored string."""
    if isinstance(value, list):
        return "".join(item.get("plain_text", "") for item in value if isinstance(item, dict))
    return value if isinstance(value, str) else ""


def is_empty(kind: str, value: Any) -> bool:
    if kind in TEXT_TYPES or kind in STRING_TYPES:
        return plain(value) == ""
    if kind == "files":
        return not value
    if kind == "checkbox":
        return False
    return value is None


# --- filters ---------------------------------------------------------------------------------

class Row(Protocol):
    """What a filter reads of a row."""

    created_at: float
    edited_at: float

    def value(self, prop: PropertyDef) -> Any: ...


Predicate = Callable[[Row], bool]

_TEXT_OPS: dict[str, Callable[[str, str], bool]] = {
    "equals": lambda have, want: have == want,
    "does_not_equal": lambda have, want: have != want,
    "contains": lambda have, want: want in have,
    "does_not_contain": lambda have, want: want not in have,
    "starts_with": lambda have, want: have.startswith(want),
    "ends_with": lambda have, want: have.endswith(want),
}
_NUMBER_OPS: dict[str, Callable[[float, float], bool]] = {
    "equals": lambda have, want: have == want,
    "does_not_equal": lambda have, want: have != want,
    "greater_than": lambda have, want: have > want,
    "less_than": lambda have, want: have < want,
    "greater_than_or_equal_to": lambda have, want: have >= want,
    "less_than_or_equal_to": lambda have, want: have <= want,
}
_CHECKBOX_OPS: dict[str, Callable[[bool, bool], bool]] = {
    "equals": lambda have, want: have == want,
    "does_not_equal": lambda have, want: have != want,
}
_FILTER_KEYS = {"property", "type"} | set(PROPERTY_TYPES) | set(_OTHER_TYPES)


def parse_filter(raw: Any, source: DataSource, where: str = "body.filter", depth: int = 0) -> Predicate:
    raw = _object(raw, where)
    groups = [k for k in ("and", "or") if k in raw]
    if groups:
        if len(raw) != 1:
            raise _fail(where, "should hold exactly one of and, or (or a property filter)", raw)
        if depth >= MAX_FILTER_DEPTH:
            raise validation_error(
                f"body failed validation: {where} nests and/or groups deeper than "
                f"{MAX_FILTER_DEPTH} levels."
            )
        group = groups[0]
        items = raw[group]
        if not isinstance(items, list):
            raise _fail(f"{where}.{group}", "should be an array", items)
        if len(items) > MAX_PAGE_SIZE:
            raise _fail(f"{where}.{group}.length", f"should be ≤ `{MAX_PAGE_SIZE}`", len(items))
        parts = [parse_filter(item, source, f"{where}.{group}[{i}]", depth + 1) for i, item in enumerate(items)]
        if group == "and":
            return lambda row: all(p(row) for p in parts)
        return lambda row: any(p(row) for p in parts)
    if "timestamp" in raw:
        return _timestamp_filter(raw, where)
    _only_keys(raw, _FILTER_KEYS, where)
    key = raw.get("property")
    if not isinstance(key, str):
        raise _fail(f"{where}.property", "should be a string", key)
    prop = find_property(source, key)
    if prop is None:
        raise validation_error(f"Could not find property with name or id: {key}")
    kinds = [k for k in raw if k not in ("property", "type")]
    if len(kinds) != 1:
        raise _fail(where, "should hold exactly one filter type (such as rich_text) besides property", raw)
    kind = kinds[0]
    if raw.get("type", kind) != kind:
        raise _fail(f"{where}.type", f"should be `{kind}`", raw["type"])
    if kind != prop.type:
        raise validation_error(f"database property {prop.type} does not match filter {kind}")
    condition = _object(raw[kind], f"{where}.{kind}")
    if len(condition) != 1:
        raise _fail(f"{where}.{kind}", "should hold exactly one condition", condition)
    ((op, operand),) = condition.items()
    return _condition(prop, op, operand, f"{where}.{kind}.{op}")


def _condition(prop: PropertyDef, op: str, operand: Any, where: str) -> Predicate:
    kind = prop.type
    if op in ("is_empty", "is_not_empty"):
        if operand is not True:
            raise _fail(where, "should be `true`", operand)
        want_empty = op == "is_empty"
        return lambda row: is_empty(kind, row.value(prop)) == want_empty
    if kind in TEXT_TYPES or kind in STRING_TYPES:
        text_op = _TEXT_OPS.get(op)
        if text_op is None:
            raise _unknown_op(where, kind, list(_TEXT_OPS) + ["is_empty", "is_not_empty"])
        if not isinstance(operand, str):
            raise _fail(where, "should be a string", operand)
        return lambda row: text_op(plain(row.value(prop)), operand)
    if kind == "number":
        number_op = _NUMBER_OPS.get(op)
        if number_op is None:
            raise _unknown_op(where, kind, list(_NUMBER_OPS) + ["is_empty", "is_not_empty"])
        if isinstance(operand, bool) or not isinstance(operand, (int, float)):
            raise _fail(where, "should be a number", operand)

        def number_test(row: Row) -> bool:
            have = row.value(prop)
            if have is None:
                return op == "does_not_equal"
            return number_op(have, operand)

        return number_test
    if kind == "checkbox":
        checkbox_op = _CHECKBOX_OPS.get(op)
        if checkbox_op is None:
            raise _unknown_op(where, kind, list(_CHECKBOX_OPS))
        if not isinstance(operand, bool):
            raise _fail(where, "should be a boolean", operand)
        return lambda row: checkbox_op(bool(row.value(prop)), operand)
    raise _unknown_op(where, kind, ["is_empty", "is_not_empty"])  # files


_TIME_OPS: dict[str, Callable[[float, float], bool]] = {
    "equals": lambda have, want: have == want,
    "before": lambda have, want: have < want,
    "after": lambda have, want: have > want,
    "on_or_before": lambda have, want: have <= want,
    "on_or_after": lambda have, want: have >= want,
}


def _timestamp_filter(raw: dict[str, Any], where: str) -> Predicate:
    """`{"timestamp": "created_time", "created_time": {"on_or_after": "2026-07-04T09:08:00Z"}}`;
    a date alone stands for its midnight UTC."""
    kind = raw["timestamp"]
    if kind not in ("created_time", "last_edited_time"):
        raise _fail(f"{where}.timestamp", "should be `created_time` or `last_edited_time`", kind)
    _only_keys(raw, {"timestamp", kind}, where)
    condition = _object(raw.get(kind), f"{where}.{kind}")
    if len(condition) != 1:
        raise _fail(f"{where}.{kind}", "should hold exactly one condition", condition)
    ((op, operand),) = condition.items()
    time_op = _TIME_OPS.get(op)
    if time_op is None:
        raise _unknown_op(f"{where}.{kind}.{op}", kind, list(_TIME_OPS))
    want = _instant(operand, f"{where}.{kind}.{op}")
    if kind == "created_time":
        return lambda row: time_op(row.created_at, want)
    return lambda row: time_op(row.edited_at, want)


def _instant(value: Any, where: str) -> float:
    try:
        if not isinstance(value, str):
            raise ValueError
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _fail(where, "should be an ISO 8601 date or date-time", value) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _unknown_op(where: str, kind: str, ops: list[str]) -> Exception:
    return validation_error(
        f"body failed validation: {where} is not a {kind} filter condition; "
        f"those are {', '.join(ops)}."
    )


# --- sorts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sort:
    prop: PropertyDef | None  # None: a timestamp sort
    timestamp: str | None
    descending: bool


def parse_sorts(raw: Any, source: DataSource, where: str = "body.sorts") -> list[Sort]:
    if not isinstance(raw, list):
        raise _fail(where, "should be an array", raw)
    out = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        item = _object(item, at)
        direction = item.get("direction", "ascending")
        if direction not in ("ascending", "descending"):
            raise _fail(f"{at}.direction", "should be `ascending` or `descending`", direction)
        if "timestamp" in item:
            _only_keys(item, {"timestamp", "direction"}, at)
            if item["timestamp"] not in ("created_time", "last_edited_time"):
                raise _fail(f"{at}.timestamp", "should be `created_time` or `last_edited_time`", item["timestamp"])
            out.append(Sort(None, item["timestamp"], direction == "descending"))
            continue
        _only_keys(item, {"property", "direction"}, at)
        key = item.get("property")
        if not isinstance(key, str):
            raise _fail(f"{at}.property", "should be a string", key)
        prop = find_property(source, key)
        if prop is None:
            raise validation_error(f"Could not find sort property with name or id: {key}")
        out.append(Sort(prop, None, direction == "descending"))
    return out


def sort_key(kind: str, value: Any) -> tuple[bool, Any]:
    """Empty values sort last whatever the direction (the caller flips only the second item)."""
    if kind == "files":
        return (not value, (value[0].get("name") or "") if value else "")
    if kind == "number":
        return (value is None, value if value is not None else 0)
    if kind == "checkbox":
        return (False, bool(value))
    text = plain(value)
    return (text == "", text.casefold())


# --- pagination in a body --------------------------------------------------------------------


def page_args(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """`start_cursor` and `page_size` of a query body, as rules.paginate takes them."""
    cursor = body.get("start_cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise _fail("body.start_cursor", "should be a string", cursor)
    size = body.get("page_size")
    if size is None:
        return cursor, None
    if isinstance(size, bool) or not isinstance(size, int):
        raise _fail("body.page_size", "should be an integer", size)
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise _fail("body.page_size", f"should be between 1 and {MAX_PAGE_SIZE}", size)
    return cursor, str(size)
