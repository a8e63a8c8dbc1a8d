"""The file types Notion's File Upload API accepts, and the filename/content-type rules.

Source: the "Supported file types" table of Notion's guide "Working with files and media"
(developers.notion.com/docs/working-with-files-and-media). The table lists extensions and
MIME types per category (Audio, Document, Image, Video) without pairing them; the pairing
below is ours. Where the table has no MIME type that obviously fits an extension
(.flv, .gifv, .mkv) any video type of the table is accepted for it.

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

from .errors import validation_error

_WORD = "application/vnd.openxmlformats-officedocument.wordprocessingml"
_SHEET = "application/vnd.openxmlformats-officedocument.spreadsheetml"
_SLIDES = "application/vnd.openxmlformats-officedocument.presentationml"

VIDEO_TYPES: tuple[str, ...] = (
    "video/x-amv",
    "video/x-ms-asf",
    "video/x-msvideo",
    "video/x-f4v",
    "video/mp4",
    "application/mp4",
    "video/webm",
    "video/quicktime",
    "video/mpeg",
)

# extension -> accepted MIME types; the first one is what an absent content_type becomes.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    # Audio
    "aac": ("audio/aac",),
    "adts": ("audio/aac",),
    "mid": ("audio/midi",),
    "midi": ("audio/midi",),
    "mp3": ("audio/mpeg",),
    "mpga": ("audio/mpeg",),
    "m4a": ("audio/mp4",),
    "m4b": ("audio/mp4",),
    "oga": ("audio/ogg",),
    "ogg": ("audio/ogg",),
    "wav": ("audio/wav",),
    "wma": ("audio/x-ms-wma",),
    # Document
    "pdf": ("application/pdf",),
    "txt": ("text/plain",),
    "json": ("application/json",),
    "doc": ("application/msword",),
    "dot": ("application/msword",),
    "docx": (f"{_WORD}.document",),
    "dotx": (f"{_WORD}.template",),
    "xls": ("application/vnd.ms-excel",),
    "xlt": ("application/vnd.ms-excel",),
    "xla": ("application/vnd.ms-excel",),
    "xlsx": (f"{_SHEET}.sheet",),
    "xltx": (f"{_SHEET}.template",),
    "ppt": ("application/vnd.ms-powerpoint",),
    "pot": ("application/vnd.ms-powerpoint",),
    "pps": ("application/vnd.ms-powerpoint",),
    "ppa": ("application/vnd.ms-powerpoint",),
    "pptx": (f"{_SLIDES}.presentation",),
    "potx": (f"{_SLIDES}.template",),
    # Image
    "gif": ("image/gif",),
    "heic": ("image/heic",),
    "jpeg": ("image/jpeg",),
    "jpg": ("image/jpeg",),
    "png": ("image/png",),
    "svg": ("image/svg+xml",),
    "tif": ("image/tiff",),
    "tiff": ("image/tiff",),
    "webp": ("image/webp",),
    "ico": ("image/vnd.microsoft.icon",),
    # Video (.mp4 is listed under Audio and Video)
    "amv": ("video/x-amv",),
    "asf": ("video/x-ms-asf",),
    "wmv": ("video/x-ms-asf",),
    "avi": ("video/x-msvideo",),
    "f4v": ("video/x-f4v",),
    "flv": ("video/x-f4v",) + tuple(t for t in VIDEO_TYPES if t != "video/x-f4v"),
    "gifv": ("video/mp4",) + tuple(t for t in VIDEO_TYPES if t != "video/mp4"),
    "m4v": ("video/mp4",),
    "mp4": ("video/mp4", "application/mp4", "audio/mp4"),
    "mkv": ("video/webm",) + tuple(t for t in VIDEO_TYPES if t != "video/webm"),
    "webm": ("video/webm",),
    "mov": ("video/quicktime",),
    "qt": ("video/quicktime",),
    "mpeg": ("video/mpeg",),
}

# MIME type -> the extension a filename without one gets.
DEFAULT_EXTENSION: dict[str, str] = {}
for _ext, _types in EXTENSIONS.items():
    for _t in _types:
        DEFAULT_EXTENSION.setdefault(_t, _ext)

SUPPORTED_TYPES: frozenset[str] = frozenset(DEFAULT_EXTENSION)

MAX_FILENAME_BYTES = 900

# Which uploads a media block may reference (a `file` block takes any).
BLOCK_TYPE_PREFIXES: dict[str, tuple[str, ...]] = {
    "file": ("",),
    "image": ("image/",),
    "pdf": ("application/pdf",),
    "audio": ("audio/", "application/mp4"),
    "video": ("video/", "application/mp4"),
}


def base_type(content_type: str) -> str:
    """`text/plain; charset=utf-8` -> `text/plain`."""
    return content_type.split(";", 1)[0].strip().lower()


def extension(filename: str) -> str | None:
    """The lower-cased extension after the last dot, or None when there is none."""
    stem, dot, ext = filename.rpartition(".")
    if not dot or not stem or not ext:
        return None
    return ext.lower()


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
