"""The file types Notion's File Upload API accepts, and the filename/content-type rules.

The emulator is the project's oracle, so this table is its own, written from Notion's guide
"Working with files and media" (developers.notion.com, section "Supported file types"), and
shares nothing with the relay's copy in engine/. The guide lists, per category, the accepted
extensions and the accepted MIME types without pairing them:

- Audio: .aac .adts .mid .midi .mp3 .mpga .m4a .m4b .mp4 .oga .ogg .wav .wma;
  audio/aac audio/midi audio/mpeg audio/mp4 audio/ogg audio/wav audio/x-ms-wma
- Document: .pdf .txt .json .doc .dot .docx .dotx .xls .xlt .xla .xlsx .xltx .ppt .pot .pps .ppa
  .pptx .potx; application/pdf text/plain application/json application/msword, the four OOXML
  word/sheet types, application/vnd.ms-excel, application/vnd.ms-powerpoint, the two OOXML
  presentation types
- Image: .gif .heic .jpeg .jpg .png .svg .tif .tiff .webp .ico; image/gif image/heic image/jpeg
  image/png image/svg+xml image/tiff image/webp image/vnd.microsoft.icon
- Video: .amv .asf .wmv .avi .f4v .flv .gifv .m4v .mp4 .mkv .webm .mov .qt .mpeg; video/x-amv
  video/x-ms-asf video/x-msvideo video/x-f4v video/x-flv video/mp4 application/mp4 video/webm
  video/quicktime video/mpeg

The pairing below (which types fit which extension) is the emulator's reading of the
table: each extension takes the type(s) of its format; .flv also takes video/x-f4v (both Flash
video); .mp4 is listed as audio and as video, so it takes video/mp4, application/mp4 and
audio/mp4; .mkv and .gifv have no type of their own in the table, so any video type of the
table fits them.

Rules (create, and send for a single_part upload created without filename/content_type):
- a content type must be one of the table's MIME types (parameters such as `; charset=` are
  ignored): `audio/x-wav` and `application/octet-stream`, for example, are refused;
- a filename's extension (case-insensitive, after the last dot) must be in the table;
- given both, the content type must fit the extension;
- a filename without an extension gets the content type's default extension;
- given only a filename, the content type is the extension's first (default) type.
The bytes are never sniffed.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import validation_error

MAX_FILENAME_BYTES = 900

_WORD = "application/vnd.openxmlformats-officedocument.wordprocessingml"
_SHEET = "application/vnd.openxmlformats-officedocument.spreadsheetml"
_SLIDES = "application/vnd.openxmlformats-officedocument.presentationml"

# (extensions, the MIME types that fit them; the first is the default) per format.
_AUDIO: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("aac", "adts"), ("audio/aac",)),
    (("mid", "midi"), ("audio/midi",)),
    (("mp3", "mpga"), ("audio/mpeg",)),
    (("m4a", "m4b"), ("audio/mp4",)),
    (("oga", "ogg"), ("audio/ogg",)),
    (("wav",), ("audio/wav",)),
    (("wma",), ("audio/x-ms-wma",)),
)
_DOCUMENT: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("pdf",), ("application/pdf",)),
    (("txt",), ("text/plain",)),
    (("json",), ("application/json",)),
    (("doc", "dot"), ("application/msword",)),
    (("docx",), (f"{_WORD}.document",)),
    (("dotx",), (f"{_WORD}.template",)),
    (("xls", "xlt", "xla"), ("application/vnd.ms-excel",)),
    (("xlsx",), (f"{_SHEET}.sheet",)),
    (("xltx",), (f"{_SHEET}.template",)),
    (("ppt", "pot", "pps", "ppa"), ("application/vnd.ms-powerpoint",)),
    (("pptx",), (f"{_SLIDES}.presentation",)),
    (("potx",), (f"{_SLIDES}.template",)),
)
_IMAGE: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("gif",), ("image/gif",)),
    (("heic",), ("image/heic",)),
    (("jpg", "jpeg"), ("image/jpeg",)),
    (("png",), ("image/png",)),
    (("svg",), ("image/svg+xml",)),
    (("tif", "tiff"), ("image/tiff",)),
    (("webp",), ("image/webp",)),
    (("ico",), ("image/vnd.microsoft.icon",)),
)
VIDEO_TYPES: tuple[str, ...] = (
    "video/x-amv",
    "video/x-ms-asf",
    "video/x-msvideo",
    "video/x-f4v",
    "video/x-flv",
    "video/mp4",
    "application/mp4",
    "video/webm",
    "video/quicktime",
    "video/mpeg",
)
_VIDEO: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("amv",), ("video/x-amv",)),
    (("asf", "wmv"), ("video/x-ms-asf",)),
    (("avi",), ("video/x-msvideo",)),
    (("f4v",), ("video/x-f4v",)),
    (("flv",), ("video/x-flv", "video/x-f4v")),
    (("mp4",), ("video/mp4", "application/mp4", "audio/mp4")),
    (("m4v",), ("video/mp4",)),
    (("webm",), ("video/webm",)),
    (("mov", "qt"), ("video/quicktime",)),
    (("mpeg",), ("video/mpeg",)),
    (("mkv",), ("video/webm",) + tuple(t for t in VIDEO_TYPES if t != "video/webm")),
    (("gifv",), ("video/mp4",) + tuple(t for t in VIDEO_TYPES if t != "video/mp4")),
)

# extension -> the MIME types that fit it (the first is what an absent content_type becomes)
EXTENSIONS: dict[str, tuple[str, ...]] = {
    ext: types for table in (_AUDIO, _DOCUMENT, _IMAGE, _VIDEO) for exts, types in table for ext in exts
}

# MIME type -> the extension a filename without one gets (the first format that lists the
# type as its default, else the first that accepts it).
DEFAULT_EXTENSION: dict[str, str] = {}
for _table in (_AUDIO, _DOCUMENT, _IMAGE, _VIDEO):
    for _exts, _types in _table:
        DEFAULT_EXTENSION.setdefault(_types[0], _exts[0])
for _ext, _types in EXTENSIONS.items():
    for _t in _types:
        DEFAULT_EXTENSION.setdefault(_t, _ext)

SUPPORTED_TYPES: frozenset[str] = frozenset(DEFAULT_EXTENSION)

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
    """The lower-cased text after the last dot, or None (no dot, nothing before or after it)."""
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
