"""NotionClient: Notion's File Upload API over libcurl (tornado.curl_httpclient), nothing else.

Every request has a connect timeout, a stall timeout (libcurl's low-speed limit) and a total
timeout. Every failure is classified into a Failure the retry policy and breaker understand.
Part bodies are never built in Python: libcurl reads the spool file itself (DESIGN.md,
"Proven technique").
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pycurl
from tornado.curl_httpclient import CurlAsyncHTTPClient, CurlError
from tornado.httpclient import HTTPRequest, HTTPResponse

from engine.clock import SystemClock
from engine.notion_answers import Failure, parse_retry_after, shape_problem

# Why a real floor: with 1 B/s a stalled transfer that trickles keep-alive bytes is never
# noticed; below 1 KiB/s for READ_TIMEOUT seconds a part send is hopeless anyway.
STALL_FLOOR_BYTES_PER_S = 1024
UPLOAD_BUFFER_BYTES = 512 * 1024

# libcurl error numbers we tell apart (curl/curl.h)
_CURLE_COULDNT_RESOLVE_HOST = 6
_CURLE_COULDNT_CONNECT = 7
_CURLE_OPERATION_TIMEDOUT = 28
_CURLE_ABORTED_BY_CALLBACK = 42


RELAY_VERSION = "1.4.0"
# Named like the official SDKs name themselves ("notionhq-client/<version>"), so Notion's logs
# (and an operator reading them) can tell the relay's requests apart.
USER_AGENT = f"notion-upload-relay/{RELAY_VERSION}"

@dataclass(frozen=True)
class Timeouts:
    connect_s: float
    stall_s: float
    total_s: float


class StallWatch:
    """libcurl's progress callback: abort when no byte went up or came down for `stall_s`."""

    __slots__ = ("stall_s", "last", "moved")

    def __init__(self, stall_s: float) -> None:
        self.stall_s = stall_s
        self.last = time.monotonic()
        self.moved = -1

    def __call__(self, dltotal: int, dlnow: int, ultotal: int, ulnow: int) -> int:
        now = time.monotonic()
        moved = dlnow + ulnow
        if moved != self.moved:
            self.moved, self.last = moved, now
            return 0
        return 1 if now - self.last >= self.stall_s else 0  # non-zero aborts the transfer


class NotionClient:
    def __init__(self, http: CurlAsyncHTTPClient, api_base: str, token: str, version: str,
                 timeouts: Timeouts) -> None:
        self._http = http
        self._base = api_base.rstrip("/")
        self._token = token
        self._version = version
        self.timeouts = timeouts

    # --- the API -------------------------------------------------------------------------

    async def create_file_upload(self, *, mode: str, filename: str, content_type: str,
                                 number_of_parts: int | None, total_s: float | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"mode": mode, "filename": filename, "content_type": content_type}
        if mode == "multi_part":
            body["number_of_parts"] = number_of_parts
        return await self._json("create", "POST", "/v1/file_uploads", body, total_s=total_s)

    async def list_file_uploads(self, *, status: str | None = None, page_size: int = 100,
                                start_cursor: str | None = None, total_s: float | None = None) -> dict[str, Any]:
        """Newest first (NOTION_API.md, list)."""
        query = {"page_size": page_size, "status": status, "start_cursor": start_cursor}
        text = urlencode({k: v for k, v in query.items() if v is not None})
        return await self._json("list_uploads", "GET", f"/v1/file_uploads?{text}", total_s=total_s)

    async def send_part(self, file_upload_id: str, *, path: str, filename: str, content_type: str,
                        part_number: int | None, size: int) -> dict[str, Any]:
        def build_form(curl: pycurl.Curl) -> pycurl.CurlMime:
            mime = pycurl.CurlMime(curl)
            if part_number is not None:
                mime.add_field("part_number", str(part_number))
            # pycurl takes str arguments as ASCII only; Notion's names are UTF-8.
            mime.add_file("file", path, filename=filename.encode("utf-8"), content_type=content_type)
            return mime

        return await self._json("send", "POST", f"/v1/file_uploads/{file_upload_id}/send",
                                form=build_form, body_bytes=size)

    async def complete(self, file_upload_id: str) -> dict[str, Any]:
        # No body, as the official SDKs send it.
        return await self._json("complete", "POST", f"/v1/file_uploads/{file_upload_id}/complete", no_body=True)

    async def retrieve(self, file_upload_id: str) -> dict[str, Any]:
        return await self._json("retrieve", "GET", f"/v1/file_uploads/{file_upload_id}")

    async def users_me(self) -> dict[str, Any]:
        return await self._json("users_me", "GET", "/v1/users/me")

    async def append_children(self, page_id: str, children: list[dict[str, Any]]) -> dict[str, Any]:
        """Append blocks (≤ 100) to a page; Notion answers them, in order, in `results`."""
        return await self._json("attach", "PATCH", f"/v1/blocks/{page_id}/children", {"children": children})

    async def create_row(self, data_source_id: str, properties: dict[str, Any]) -> dict[str, Any]:
        """A new page in a database (at Notion-Version 2025-09-03: under its data source)."""
        body = {"parent": {"type": "data_source_id", "data_source_id": data_source_id}, "properties": properties}
        return await self._json("create_row", "POST", "/v1/pages", body)

    async def query_rows(self, data_source_id: str, filter_: dict[str, Any],
                         start_cursor: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"filter": filter_, "page_size": 100,
                                "sorts": [{"timestamp": "created_time", "direction": "descending"}]}
        if start_cursor:
            body["start_cursor"] = start_cursor
        return await self._json("query", "POST", f"/v1/data_sources/{data_source_id}/query", body)

    async def retrieve_page(self, page_id: str) -> dict[str, Any]:
        return await self._json("retrieve_page", "GET", f"/v1/pages/{page_id}")

    async def retrieve_database(self, database_id: str) -> dict[str, Any]:
        return await self._json("retrieve_database", "GET", f"/v1/databases/{database_id}")

    async def retrieve_data_source(self, data_source_id: str) -> dict[str, Any]:
        return await self._json("retrieve_data_source", "GET", f"/v1/data_sources/{data_source_id}")

    async def list_children(self, page_id: str, start_cursor: str | None = None) -> dict[str, Any]:
        query = "?page_size=100" + (f"&start_cursor={start_cursor}" if start_cursor else "")
        return await self._json("children", "GET", f"/v1/blocks/{page_id}/children{query}")

    # --- plumbing ------------------------------------------------------------------------

    async def _json(self, operation: str, method: str, path: str, body: Any = None,
                    form: Callable[[pycurl.Curl], pycurl.CurlMime] | None = None,
                    body_bytes: int = 0, no_body: bool = False, total_s: float | None = None) -> dict[str, Any]:
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Notion-Version": self._version,
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        payload: bytes | None = None
        if no_body:
            payload = b""  # tornado insists on a body for POST; an empty one is Content-Length: 0
            # An empty header value makes libcurl drop the x-www-form-urlencoded type it would
            # add to a POST: the official SDK sends complete with no Content-Type at all.
            headers["Content-Type"] = ""
        elif form is None and method in ("POST", "PATCH", "PUT"):
            headers["Content-Type"] = "application/json"
            payload = json.dumps(body if body is not None else {}).encode()
        elif form is not None:
            payload = b""  # tornado insists on a body for POST; MIMEPOST replaces it below

        timeouts = self.timeouts
        keep: list[pycurl.CurlMime] = []

        def prepare(curl: pycurl.Curl) -> None:
            # Why NOSIGNAL: without it libcurl saves and restores the SIGPIPE handler around
            # every call (tens of thousands of rt_sigaction per GiB); Python ignores SIGPIPE.
            curl.setopt(pycurl.NOSIGNAL, 1)
            # Bigger reads of the spool file and bigger socket writes: fewer system calls.
            curl.setopt(pycurl.UPLOAD_BUFFERSIZE, UPLOAD_BUFFER_BYTES)
            # Two stall guards. libcurl's low-speed check averages over its last few seconds,
            # so after a fast 10 MiB body a dead connection is noticed only READ_TIMEOUT + ~6 s
            # later; the progress callback sees "no byte moved for READ_TIMEOUT" exactly. The
            # low-speed floor still catches a connection that trickles.
            curl.setopt(pycurl.LOW_SPEED_LIMIT, STALL_FLOOR_BYTES_PER_S)
            curl.setopt(pycurl.LOW_SPEED_TIME, max(1, math.ceil(timeouts.stall_s)))
            curl.setopt(pycurl.NOPROGRESS, 0)
            curl.setopt(pycurl.XFERINFOFUNCTION, StallWatch(timeouts.stall_s))
            if form is not None:
                mime = form(curl)
                keep.append(mime)  # the tree must outlive the transfer
                curl.setopt(pycurl.MIMEPOST, mime)

        request = HTTPRequest(
            self._base + path,
            method=method,
            headers=headers,
            body=payload,
            connect_timeout=timeouts.connect_s,
            request_timeout=min(timeouts.total_s, total_s) if total_s is not None else timeouts.total_s,
            prepare_curl_callback=prepare,
            decompress_response=False,
            follow_redirects=False,
        )
        try:
            response = await self._http.fetch(request, raise_error=False)
        except CurlError as exc:
            # raise_error=False does not cover network errors (599): they still raise.
            raise self._network_failure(operation, exc.errno, str(exc)) from None
        finally:
            for mime in keep:
                mime.close()
        return self._decode(operation, response)

    def _decode(self, operation: str, response: HTTPResponse) -> dict[str, Any]:
        if response.code == 599:
            raise self._network_failure(operation, getattr(response.error, "errno", None), str(response.error))
        text = response.body or b""
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {}
        if 200 <= response.code < 300:
            problem = shape_problem(operation, data)
            if problem:
                raise Failure("junk", f"Notion answered {response.code} but {problem}", operation=operation)
            return data
        retry_after = parse_retry_after(response.headers.get("Retry-After"), SystemClock().wall())
        extra = data.get("additional_data") if isinstance(data, dict) else None
        reason = extra.get("rate_limit_reason") if isinstance(extra, dict) else None
        code = data.get("code") if isinstance(data, dict) else None
        message = data.get("message") if isinstance(data, dict) else None
        return_message = f"Notion answered {response.code} {code or ''}: {message or response.reason or ''}".strip()
        request_id = data.get("request_id") if isinstance(data, dict) else None
        raise Failure("http", return_message, status=response.code, code=code, retry_after_s=retry_after,
                      rate_limit_reason=reason, request_id=request_id, operation=operation)

    @staticmethod
    def _network_failure(operation: str, errno: int | None, text: str) -> Failure:
        if errno in (_CURLE_COULDNT_CONNECT, _CURLE_COULDNT_RESOLVE_HOST):
            return Failure("connect", "could not connect to Notion", operation=operation)
        if errno == _CURLE_ABORTED_BY_CALLBACK:
            return Failure("timeout", "the request to Notion stalled", operation=operation)
        if errno == _CURLE_OPERATION_TIMEDOUT:
            # libcurl uses one error number for every timeout; only its text tells a connect
            # timeout (nothing reached Notion) from a stalled or slow transfer (it may have).
            lowered = text.lower()
            if "connection timed out" in lowered or "failed to connect" in lowered or "resolving" in lowered:
                return Failure("connect", "connecting to Notion timed out", operation=operation)
            return Failure("timeout", "the request to Notion stalled or took too long", operation=operation)
        return Failure("transfer", f"the connection to Notion broke (curl error {errno})", operation=operation)


def rich_text(text: str) -> list[dict[str, Any]]:
    """Notion's rich text for plain text (at most 2,000 characters per text object)."""
    return [{"type": "text", "text": {"content": text[i:i + 2000]}} for i in range(0, len(text), 2000)]
