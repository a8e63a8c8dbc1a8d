"""The file types Notion's File Upload API accepts: its documented table, as data.

Source: the "Supported file types" table of Notion's guide "Working with files and media"
(developers.notion.com). The table lists extensions and MIME types per category (Audio,
Document, Image, Video) without pairing them; the pairing is ours. Where no MIME type of the
table obviously fits an extension (.flv, .gifv, .mkv), any video type of the table is accepted.
The relay uses it to refuse what Notion would refuse before a byte is sent; the emulator uses
it to be as strict as Notion.
"""
from __future__ import annotations

import re

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


def base_type(content_type: str) -> str:
    """`text/plain; charset=utf-8` -> `text/plain`."""
    return content_type.split(";", 1)[0].strip().lower()


def extension(filename: str) -> str | None:
    """The lower-cased extension after the last dot, or None when there is none."""
    stem, dot, ext = filename.rpartition(".")
    if not dot or not stem or not ext:
        return None
    return ext.lower()


def content_type_for(filename: str, declared: str | None) -> str | None:
    """The content type to send for `filename`: the declared one when it fits the extension,
    else the table's type for the extension; None when Notion does not take the extension."""
    accepted = EXTENSIONS.get(extension(filename) or "")
    if accepted is None:
        return None
    kind = base_type(declared or "")
    return kind if kind in accepted else accepted[0]


MAX_FILENAME_BYTES = 900
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


def clean_filename(name: str, content_type: str | None) -> str:
    """A filename Notion will take as it is: no path, no control characters, an extension,
    at most 900 bytes of UTF-8 (the extension kept)."""
    # A JSON string may hold lone surrogates, which are not UTF-8: they become U+FFFD.
    name = name.encode("utf-8", "replace").decode("utf-8")
    name = _UNSAFE_NAME.sub("_", name).strip().strip(".") or "upload"
    if extension(name) is None:
        ext = DEFAULT_EXTENSION.get(base_type(content_type or ""))
        if ext:
            name = f"{name}.{ext}"
    if len(name.encode("utf-8")) > MAX_FILENAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        keep = MAX_FILENAME_BYTES - len(ext.encode()) - len(dot)
        stem = stem.encode("utf-8")[:keep].decode("utf-8", "ignore")
        name = f"{stem}{dot}{ext}"
    return name


def block_type_for(content_type: str) -> str:
    """The Notion block that shows a file of this type best (NOTION_API.md, attach)."""
    major = content_type.split("/", 1)[0].lower()
    if content_type.lower() == "application/pdf":
        return "pdf"
    if major in ("image", "audio", "video"):
        return major
    return "file"
