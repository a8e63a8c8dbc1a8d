"""The filename/content-type rules of Notion's File Upload API.

The table of accepted extensions and MIME types is Notion's documented one, kept as data in
engine/filetypes.py (one copy for the relay and the emulator).

Rules the emulator applies (create, and send for a single_part upload created without a
filename or content_type):
- a content type must be one of the table's MIME types (parameters such as `; charset=`
  are ignored), e.g. `audio/x-wav` and `application/octet-stream` are refused;
- a filename's extension (case-insensitive, the text after the last dot) must be in the table;
- given both, the content type must be one that fits the extension;
- a filename without an extension gets one derived from the content type;
- given only a filename, the content type is derived from its extension.
The bytes are never sniffed.
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.filetypes import DEFAULT_EXTENSION, EXTENSIONS, SUPPORTED_TYPES, base_type, extension

from .errors import validation_error

MAX_FILENAME_BYTES = 900

# Which uploads a media block may reference (a `file` block takes any).
BLOCK_TYPE_PREFIXES: dict[str, tuple[str, ...]] = {
    "file": ("",),
    "image": ("image/",),
    "pdf": ("application/pdf",),
    "audio": ("audio/", "application/mp4"),
    "video": ("video/", "application/mp4"),
}


def check_content_type(content_type: str) -> str:
    """The base MIME type, or a validation_error when Notion does not accept it."""
    kind = base_type(content_type)
    if kind not in SUPPORTED_TYPES:
        raise validation_error(
            f"The content type {kind or content_type!r} is not supported for the File Upload API."
        )
    return kind


@dataclass(frozen=True)
class FileType:
    filename: str | None
    content_type: str | None


def resolve(filename: str | None, content_type: str | None) -> FileType:
    """Apply the filename/content-type rules; raise NotionError when they are broken."""
    kind = check_content_type(content_type) if content_type is not None else None
    if filename is None:
        return FileType(None, kind)
    if not filename.strip():
        raise validation_error("body failed validation: body.filename should not be empty.")
    ext = extension(filename)
    if ext is None:
        if kind is None:
            raise validation_error(
                f"The filename {filename!r} has no extension and no content_type was given "
                "to infer one from."
            )
        filename = f"{filename}.{DEFAULT_EXTENSION[kind]}"
    else:
        accepted = EXTENSIONS.get(ext)
        if accepted is None:
            raise validation_error(
                f"The file extension .{ext} is not supported for the File Upload API."
            )
        if kind is None:
            kind = accepted[0]
        elif kind not in accepted:
            raise validation_error(
                f"The content type {kind} does not match the file extension .{ext} "
                f"(expected one of: {', '.join(accepted)})."
            )
    if len(filename.encode("utf-8")) > MAX_FILENAME_BYTES:
        raise validation_error(
            f"body failed validation: body.filename.length should be ≤ {MAX_FILENAME_BYTES} "
            "bytes, including any extension inferred from content_type."
        )
    return FileType(filename, kind)


def fits_block(block_type: str, content_type: str | None) -> bool:
    prefixes = BLOCK_TYPE_PREFIXES[block_type]
    kind = content_type or ""
    return any(kind.startswith(p) for p in prefixes)


__all__ = [
    "EXTENSIONS",
    "SUPPORTED_TYPES",
    "FileType",
    "base_type",
    "check_content_type",
    "extension",
    "fits_block",
    "resolve",
]
