"""Notion's File Upload rules as pure checks: each raises a NotionError naming the broken rule.

Units: MiB = 2**20 bytes.
- create: mode single_part | multi_part | external_url; filename ≤ 900 bytes with a supported
  extension (or one derived from content_type); number_of_parts 1..1000 for multi_part only;
  multi_part needs a paid plan; unknown keys are refused.
- send: only while the upload is pending (not expired, not being completed); multi_part
  needs part_number "1".."number_of_parts"; single_part takes no part_number; every part
  but the last is 5..20 MiB, the last (and a single_part file) 1 B..20 MiB; the running total
  must stay within the plan's per-file limit; the part's Content-Type, when given, must be a
  supported type equal to the upload's content_type.
- complete: multi_part only, pending, all parts 1..N present, total within the plan limit.
- attach: media blocks reference uploads that are `uploaded` (the rest of the block rules:
  blocks.py).
"""
from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from . import errors, filetypes
from .errors import validation_error
from .multipart import FormStream
from .store import Upload, UploadStore

MIB = 2**20
PART_MIN_BYTES = 5 * MIB
PART_MAX_BYTES = 20 * MIB
MAX_PARTS = 1000
# A send body is the file part plus a few hundred bytes of multipart framing; the slack lets
# a slightly oversized part be read and refused with a clear message.
MAX_SEND_BODY_BYTES = PART_MAX_BYTES + MIB
MAX_PAGE_SIZE = 100

MODES = ("single_part", "multi_part", "external_url")
UPLOAD_STATUSES = ("pending", "uploaded", "expired", "failed")

# external_url: Notion imports https:// URLs. The emulator has no internet: it also takes
# http:// on the loopback interface, and imports only loopback URLs (imports.py).
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")
_PART_NUMBER_RE = re.compile(r"^[1-9][0-9]{0,3}$")

T = TypeVar("T")


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def is_loopback(url: str) -> bool:
    return url.startswith(("http://", "https://")) and _host(url) in LOOPBACK_HOSTS


def is_loopback_http(url: str) -> bool:
    return url.startswith("http://") and _host(url) in LOOPBACK_HOSTS


def normalize_uuid(text: str) -> str | None:
    """A Notion id with or without dashes, as the dashed lower-case form; None if malformed."""
    if not _UUID_RE.match(text):
        return None
    return str(uuid.UUID(text.replace("-", "")))


def _describe(value: Any) -> str:
    return json.dumps(value)[:100]


def _optional_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise validation_error(
            f"body failed validation: body.{key} should be a string, instead was `{_describe(value)}`."
        )
    return value


# --- create ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateSpec:
    mode: str
    filename: str | None
    content_type: str | None
    number_of_parts: int | None
    external_url: str | None


_CREATE_KEYS = {"mode", "filename", "content_type", "number_of_parts", "external_url"}


def parse_create(body: dict[str, Any], plan: str) -> CreateSpec:
    unknown = sorted(set(body) - _CREATE_KEYS)
    if unknown:
        raise validation_error(
            f"body failed validation: unknown key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(_CREATE_KEYS))}."
        )
    mode = body.get("mode", "single_part")
    if mode not in MODES:
        raise validation_error(
            "body failed validation: body.mode should be one of "
            f"{', '.join(repr(m) for m in MODES)}, instead was `{_describe(mode)}`."
        )
    filename = _optional_str(body, "filename")
    content_type = _optional_str(body, "content_type")
    external_url = _optional_str(body, "external_url")
    parts = body.get("number_of_parts")
    if mode == "multi_part":
        if plan != "paid":
            raise validation_error(
                "multi_part uploads are only available in paid workspaces; this workspace is on "
                "the free plan (5 MiB per file)."
            )
        if parts is None:
            raise validation_error(
                "body failed validation: body.number_of_parts should be defined for mode "
                "multi_part, instead was `undefined`."
            )
        if isinstance(parts, bool) or not isinstance(parts, int) or not 1 <= parts <= MAX_PARTS:
            raise validation_error(
                f"body failed validation: body.number_of_parts should be an integer from 1 to "
                f"{MAX_PARTS}, instead was `{_describe(parts)}`."
            )
        if filename is None:
            raise validation_error(
                "body failed validation: body.filename should be defined for mode multi_part, "
                "instead was `undefined`."
            )
    elif parts is not None:
        raise validation_error(
            f"body failed validation: body.number_of_parts is only allowed for mode multi_part, "
            f"not {mode}."
        )
    if mode == "external_url":
        if external_url is None or not (
            external_url.startswith("https://") or is_loopback_http(external_url)
        ):
            raise validation_error(
                "body failed validation: body.external_url should be an https:// URL for mode "
                f"external_url, instead was `{_describe(external_url)}`."
            )
        if filename is None:
            raise validation_error(
                "body failed validation: body.filename should be defined for mode external_url."
            )
    elif external_url is not None:
        raise validation_error(
            f"body failed validation: body.external_url is only allowed for mode external_url, "
            f"not {mode}."
        )
    resolved = filetypes.resolve(filename, content_type)
    return CreateSpec(mode, resolved.filename, resolved.content_type, parts, external_url)


# --- send -----------------------------------------------------------------------------------


def _not_pending(upload: Upload, status: str) -> errors.NotionError:
    return validation_error(
        f"File upload {upload.id} is not in the pending status (its status is {status})."
    )


def check_sendable(upload: Upload, now: float) -> None:
    status = upload.status(now)
    if upload.mode == "external_url":
        raise validation_error("external_url file uploads do not accept sends.")
    if status != "pending":
        raise _not_pending(upload, status)
    if upload.completing:
        raise _not_pending(upload, "being completed")


@dataclass(frozen=True)
class AcceptedPart:
    number: int
    size: int
    sha256: str
    filename: str | None
    content_type: str | None


def check_part(upload: Upload, form: FormStream, now: float, max_file_bytes: int) -> AcceptedPart:
    """Validate a fully received send against the upload as it is now."""
    check_sendable(upload, now)  # again: it may have expired or started completing meanwhile
    file = form.file
    if file is None:
        raise validation_error(
            "body failed validation: body.file should be defined, instead was `undefined`."
        )
    unknown = sorted(set(form.fields) - {"part_number"})
    if unknown:
        raise validation_error(
            f"body failed validation: unknown form field(s) {', '.join(unknown)}; "
            "a send takes `file` and, for multi_part, `part_number`."
        )
    part_type = None
    if file.content_type is not None:
        part_type = filetypes.check_content_type(file.content_type)
        if upload.content_type is not None and part_type != upload.content_type:
            raise validation_error(
                f"The content type of the file part ({part_type}) does not match the content "
                f"type of the file upload ({upload.content_type})."
            )
    part_text = form.fields.get("part_number")
    size = file.size
    filename, content_type = upload.filename, upload.content_type
    if upload.mode == "single_part":
        if part_text is not None:
            raise validation_error(
                "body failed validation: part_number is only accepted for multi_part file "
                "uploads; this one is single_part."
            )
        number = 1
        if filename is None or content_type is None:
            resolved = filetypes.resolve(filename or file.filename, content_type or part_type)
            filename, content_type = resolved.filename, resolved.content_type
            if content_type is None:
                raise validation_error(
                    "The file's content type could not be determined: give content_type or a "
                    "filename with an extension at create, or a Content-Type on the file part."
                )
        limit = min(PART_MAX_BYTES, max_file_bytes)
        if size < 1:
            raise validation_error("The file is empty; a file upload needs at least 1 byte.")
        if size > limit:
            why = (
                "use multi_part for larger files"
                if limit == PART_MAX_BYTES
                else "this workspace's per-file limit"
            )
            raise validation_error(
                f"The file is {size} bytes; a single_part upload takes at most {limit} bytes "
                f"({why})."
            )
    else:
        total = upload.total_parts
        assert total is not None
        if part_text is None:
            raise validation_error(
                "body failed validation: body.part_number should be defined for multi_part "
                "file uploads, instead was `undefined`."
            )
        if not _PART_NUMBER_RE.match(part_text.strip()):
            raise validation_error(
                "body failed validation: body.part_number should be a string holding an integer "
                f"from 1 to {MAX_PARTS}, instead was `{part_text[:20]}`."
            )
        number = int(part_text)
        if number > total:
            raise validation_error(
                f"part_number {number} is greater than the number_of_parts of this file upload "
                f"({total})."
            )
        minimum = 1 if number == total else PART_MIN_BYTES
        if size < minimum or size > PART_MAX_BYTES:
            which = "the last part" if number == total else "every part except the last"
            raise validation_error(
                f"Part {number} of {total} is {size} bytes; {which} must be "
                f"{minimum} to {PART_MAX_BYTES} bytes"
                + (" (5 MiB to 20 MiB)." if minimum == PART_MIN_BYTES else " (at most 20 MiB).")
            )
        previous = upload.parts.get(number)
        running = upload.content_length - (previous.size if previous else 0) + size
        if running > max_file_bytes:
            raise validation_error(
                f"The file upload would hold {running} bytes, over this workspace's limit of "
                f"{max_file_bytes} bytes per file."
            )
    return AcceptedPart(number, size, file.sha256, filename, content_type)


# --- complete -------------------------------------------------------------------------------


def compact_ranges(numbers: Sequence[int]) -> str:
    """[1, 2, 3, 7] -> "1-3, 7"."""
    out: list[str] = []
    i = 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append(str(numbers[i]) if i == j else f"{numbers[i]}-{numbers[j]}")
        i = j + 1
    return ", ".join(out)


def check_completable(upload: Upload, now: float, max_file_bytes: int) -> None:
    if upload.mode != "multi_part":
        raise validation_error(
            f"Only multi_part file uploads can be completed; file upload {upload.id} is "
            f"{upload.mode}."
        )
    status = upload.status(now)
    if status != "pending":
        raise _not_pending(upload, status)
    if upload.completing:
        raise _not_pending(upload, "being completed")
    missing = upload.missing_parts()
    if missing:
        raise validation_error(
            f"File upload {upload.id} is missing part(s) {compact_ranges(missing)} of "
            f"{upload.total_parts}; send every part from 1 to {upload.total_parts} before "
            "completing it."
        )
    if upload.content_length > max_file_bytes:
        raise validation_error(
            f"The file upload holds {upload.content_length} bytes, over this workspace's limit "
            f"of {max_file_bytes} bytes per file."
        )


# --- attach ---------------------------------------------------------------------------------


def attachable_upload(block_type: str, upload_id: str, store: UploadStore, token: str, now: float) -> Upload:
    """The upload a media block references: the token's own, `uploaded`, of a fitting type."""
    upload = store.get(upload_id)
    if upload is None or upload.owner != token:
        raise validation_error(f"Could not find file upload with ID: {upload_id}.")
    status = upload.status(now)
    if status != "uploaded":
        raise validation_error(
            f"File upload {upload.id} cannot be attached: its status is {status}, and only "
            "file uploads with status uploaded can be attached."
        )
    if not filetypes.fits_block(block_type, upload.content_type):
        raise validation_error(
            f"A {block_type} block cannot hold file upload {upload.id} of type "
            f"{upload.content_type}."
        )
    return upload


# --- lists ----------------------------------------------------------------------------------


def paginate(
    items: Sequence[T], key: Callable[[T], str], start_cursor: str | None, page_size: str | None
) -> tuple[list[T], str | None]:
    """Notion's cursor pagination: the cursor is the id of the first item of the next page."""
    size = MAX_PAGE_SIZE
    if page_size is not None:
        if not page_size.isdigit() or not 1 <= int(page_size) <= MAX_PAGE_SIZE:
            raise validation_error(
                f"query failed validation: page_size should be an integer from 1 to "
                f"{MAX_PAGE_SIZE}, instead was `{page_size}`."
            )
        size = int(page_size)
    start = 0
    if start_cursor is not None:
        ids = [key(item) for item in items]
        if start_cursor not in ids:
            raise validation_error(
                f"query failed validation: start_cursor `{start_cursor}` is not a valid cursor."
            )
        start = ids.index(start_cursor)
    page = list(items[start : start + size])
    more = start + size < len(items)
    return page, key(items[start + size]) if more else None
