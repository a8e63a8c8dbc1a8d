"""A small blocking HTTP client on one pycurl handle, for the benchmark and its libcurl baseline.

One handle is reused so connections stay alive between requests, as they do in the relay.
"""
from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pycurl

CONNECT_TIMEOUT_S = 10
# A transfer slower than this for STALL_TIME_S is stuck: the benchmark must stop by itself.
STALL_BYTES_PER_S = 1
STALL_TIME_S = 120


class HttpError(Exception):
    """A request that did not get a usable answer (network failure or unexpected status)."""


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise HttpError(f"HTTP {self.status}: not JSON: {self.body[:300]!r}") from exc


class Http:
    def __init__(self, default_headers: Mapping[str, str] | None = None) -> None:
        self._curl = pycurl.Curl()
        self._default_headers = dict(default_headers or {})

    def close(self) -> None:
        self._curl.close()

    def __enter__(self) -> Http:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def json(self, method: str, url: str, body: Any = None, timeout_s: float = 60) -> Response:
        """Send an optional JSON body; the answer is returned whatever its status."""
        c = self._prepare(method, url, timeout_s)
        if body is not None:
            c.setopt(pycurl.POSTFIELDS, json.dumps(body))
            return self._perform({"Content-Type": "application/json"})
        if method != "GET":
            # Without a body libcurl would send no Content-Length; an empty value for
            # Content-Type removes the form type libcurl otherwise adds.
            c.setopt(pycurl.POSTFIELDS, "")
            return self._perform({"Content-Type": ""})
        return self._perform({})

    def empty(self, method: str, url: str, headers: Mapping[str, str], timeout_s: float = 60) -> Response:
        """A request with no body (HEAD, or a POST such as tus's creation); any status is returned."""
        c = self._prepare(method, url, timeout_s)
        if method == "HEAD":
            c.setopt(pycurl.NOBODY, 1)
        elif method != "GET":
            c.setopt(pycurl.POSTFIELDS, "")
            headers = {"Content-Type": "", **headers}
        return self._perform(headers)

    def send_file_part(
        self, url: str, path: Path, filename: str, content_type: str,
        fields: Mapping[str, str], timeout_s: float = 300,
    ) -> Response:
        """POST multipart/form-data with `file` read by libcurl from path (no copy in Python)."""
        c = self._prepare("POST", url, timeout_s)
        mime = pycurl.CurlMime(c)
        for name, value in fields.items():
            mime.add_field(name, value)
        mime.add_file("file", str(path), filename=filename, content_type=content_type)
        c.setopt(pycurl.MIMEPOST, mime)
        try:
            return self._perform({})
        finally:
            mime.close()

    def put_file(self, url: str, path: Path, size_bytes: int, timeout_s: float) -> Response:
        """PUT path as the raw body with a Content-Length, streamed from disk."""
        c = self._prepare("PUT", url, timeout_s)
        with open(path, "rb") as f:
            c.setopt(pycurl.UPLOAD, 1)
            c.setopt(pycurl.READDATA, f)
            c.setopt(pycurl.INFILESIZE_LARGE, size_bytes)
            return self._perform({"Content-Type": "application/octet-stream"})

    def send_body(
        self, method: str, url: str, path: Path, *, offset: int = 0, length: int | None = None,
        headers: Mapping[str, str] | None = None, chunked: bool = False, timeout_s: float = 3600,
        max_bytes_per_s: int | None = None, progress: Callable[[int], None] | None = None,
    ) -> Response:
        """Stream `length` bytes of path from `offset` as the body of one request.

        chunked: Transfer-Encoding: chunked instead of a Content-Length. max_bytes_per_s holds
        the link to that rate (libcurl's own pacing). progress(n) is told the bytes sent so far.
        """
        size = path.stat().st_size - offset if length is None else length
        c = self._prepare(method, url, timeout_s)
        with open(path, "rb") as f:
            f.seek(offset)
            c.setopt(pycurl.UPLOAD, 1)
            c.setopt(pycurl.READFUNCTION, _RangeReader(f, size).read)
            # Bigger reads from the file and bigger socket writes: the client's CPU stays small.
            c.setopt(pycurl.UPLOAD_BUFFERSIZE, 512 * 1024)
            if not chunked:
                c.setopt(pycurl.INFILESIZE_LARGE, size)
            if max_bytes_per_s:
                c.setopt(pycurl.MAX_SEND_SPEED_LARGE, int(max_bytes_per_s))
            if progress is not None:
                c.setopt(pycurl.NOPROGRESS, 0)

                def xferinfo(_dltotal: int, _dlnow: int, _ultotal: int, ulnow: int) -> int:
                    progress(ulnow)
                    return 0  # go on

                c.setopt(pycurl.XFERINFOFUNCTION, xferinfo)
            extra = {"Content-Type": "application/octet-stream", **(headers or {})}
            if chunked:
                extra["Transfer-Encoding"] = "chunked"
            return self._perform(extra)

    def _prepare(self, method: str, url: str, timeout_s: float) -> pycurl.Curl:
        c = self._curl
        # reset() clears every option from the previous request but keeps the connection cache.
        c.reset()
        c.setopt(pycurl.URL, url)
        c.setopt(pycurl.CUSTOMREQUEST, method)
        if method == "GET":
            c.setopt(pycurl.HTTPGET, 1)
        c.setopt(pycurl.NOSIGNAL, 1)
        c.setopt(pycurl.CONNECTTIMEOUT, CONNECT_TIMEOUT_S)
        c.setopt(pycurl.TIMEOUT, max(1, int(timeout_s)))
        c.setopt(pycurl.LOW_SPEED_LIMIT, STALL_BYTES_PER_S)
        c.setopt(pycurl.LOW_SPEED_TIME, STALL_TIME_S)
        return c

    def _perform(self, extra_headers: Mapping[str, str]) -> Response:
        c = self._curl
        headers = {**self._default_headers, **extra_headers}
        # An empty Expect: stops libcurl from waiting for "100 Continue" before big bodies; any
        # header given as "Name:" with no value is removed from the request by libcurl.
        headers.setdefault("Expect", "")
        c.setopt(pycurl.HTTPHEADER, [f"{k}: {v}" if v else f"{k}:" for k, v in headers.items()])
        body = io.BytesIO()
        answer_headers: dict[str, str] = {}
        c.setopt(pycurl.WRITEDATA, body)
        c.setopt(pycurl.HEADERFUNCTION, lambda line: _parse_header(line, answer_headers))
        try:
            c.perform()
        except pycurl.error as exc:
            raise HttpError(f"{c.getinfo(pycurl.EFFECTIVE_URL)}: {exc.args[-1]}") from exc
        return Response(c.getinfo(pycurl.RESPONSE_CODE), body.getvalue(), answer_headers)


class _RangeReader:
    """libcurl's READFUNCTION over `remaining` bytes of an open file."""

    def __init__(self, f: BinaryIO, remaining: int) -> None:
        self._f = f
        self._remaining = remaining

    def read(self, size: int) -> bytes:
        data = self._f.read(min(size, self._remaining))
        self._remaining -= len(data)
        return data


def _parse_header(raw: bytes, into: dict[str, str]) -> None:
    line = raw.decode("latin-1").strip()
    if line.startswith("HTTP/"):
        into.clear()  # a new status line (e.g. after 100 Continue) starts a new header block
    elif ":" in line:
        name, value = line.split(":", 1)
        into[name.strip().lower()] = value.strip()
