"""Streaming multipart/form-data parsing for the send endpoint.

python-multipart's low-level `MultipartParser` is fed the body chunk by chunk as Tornado
hands it over; the `file` part's bytes go straight to a sink file (and a running sha256)
while the small text fields are collected. Nothing larger than one network chunk is ever
held in memory, whatever the part size.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

MAX_FIELD_BYTES = 1024  # text fields (part_number) are tiny; anything bigger is abuse


class FormError(ValueError):
    """The body is not a well-formed form of the shape the endpoint takes."""


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a multipart/form-data Content-Type, or FormError."""
    kind, params = parse_options_header(content_type or "")
    if kind != b"multipart/form-data":
        raise FormError("Content-Type must be multipart/form-data with a boundary.")
    boundary = params.get(b"boundary")
    if not boundary:
        raise FormError("The multipart/form-data Content-Type has no boundary.")
    return boundary


@dataclass
class FilePart:
    filename: str | None
    content_type: str | None
    size: int = 0
    sha256: str = ""


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    is_file: bool = False
    text: bytearray = field(default_factory=bytearray)


class FormStream:
    """Feed a form body in; afterwards read `.file` and `.fields`.

    `open_sink()` is called once when the `file` part's data starts; it returns a binary
    file to write into, or None to count (and hash) the bytes without keeping them.
    `max_file_bytes`: beyond it bytes are still counted but no longer written (the caller
    rejects the request once the body has been read, without storing an oversized part).
    """

    def __init__(
        self,
        boundary: bytes,
        file_field: str,
        open_sink: Callable[[], BinaryIO | None],
        max_file_bytes: int,
        hash_file: bool = True,
    ) -> None:
        self._file_field = file_field
        self._open_sink = open_sink
        self._max_file_bytes = max_file_bytes
        self._sink: BinaryIO | None = None
        self._hash = hashlib.sha256() if hash_file else None
        self._part: _Part | None = None
        self._header_field = bytearray()
        self._header_value = bytearray()
        self.file: FilePart | None = None
        self.fields: dict[str, str] = {}
        self.ended = False
        self._parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
        )

    @property
    def oversized(self) -> bool:
        return self.file is not None and self.file.size > self._max_file_bytes

    def feed(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except MultipartParseError as e:
            raise FormError(f"The multipart/form-data body is malformed: {e}") from None

    def finish(self) -> None:
        """Call once the whole body was fed; raises FormError if it ended early."""
        try:
            self._parser.finalize()
        except MultipartParseError as e:
            raise FormError(f"The multipart/form-data body is malformed: {e}") from None
        if not self.ended:
            raise FormError("The multipart/form-data body ended before its closing boundary.")

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    # --- parser callbacks ----------------------------------------------------------------

    def _on_part_begin(self) -> None:
        self._part = _Part()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        assert self._part is not None
        name = self._header_field.decode("latin-1").strip().lower()
        # Kept as latin-1 text, i.e. the raw bytes: browsers and libcurl send UTF-8 filenames raw,
        # and parse_options_header re-encodes values as latin-1 before we decode them as UTF-8.
        self._part.headers[name] = self._header_value.decode("latin-1").strip()
        self._header_field.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        part = self._part
        assert part is not None
        disposition, params = parse_options_header(part.headers.get("content-disposition", ""))
        if disposition != b"form-data" or b"name" not in params:
            raise FormError("Every form part needs `Content-Disposition: form-data; name=...`.")
        part.name = params[b"name"].decode("utf-8", "replace")
        if part.name == self._file_field:
            if self.file is not None:
                raise FormError(f"The form has more than one `{self._file_field}` part.")
            raw_filename = params.get(b"filename")
            self.file = FilePart(
                filename=raw_filename.decode("utf-8", "replace") if raw_filename else None,
                content_type=part.headers.get("content-type") or None,
            )
            part.is_file = True
            self._sink = self._open_sink()
        elif part.name in self.fields:
            raise FormError(f"The form field `{part.name}` is given more than once.")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        assert part is not None
        if part.is_file:
            assert self.file is not None
            view = memoryview(data)[start:end]
            before = self.file.size
            self.file.size += len(view)
            if self.file.size <= self._max_file_bytes:
                if self._hash is not None:
                    self._hash.update(view)
                if self._sink is not None:
                    self._sink.write(view)
            elif before <= self._max_file_bytes and self._sink is not None:
                # Over the limit: stop storing; the request is rejected at its end.
                self._sink.close()
                self._sink = None
        else:
            part.text += data[start:end]
            if len(part.text) > MAX_FIELD_BYTES:
                raise FormError(f"The form field `{part.name}` is too long.")

    def _on_part_end(self) -> None:
        part = self._part
        assert part is not None and part.name is not None
        if part.is_file:
            assert self.file is not None
            self.file.sha256 = self._hash.hexdigest() if self._hash is not None else ""
            self.close()
        else:
            self.fields[part.name] = part.text.decode("utf-8", "replace")
        self._part = None

    def _on_end(self) -> None:
        self.ended = True
