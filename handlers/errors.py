"""Every client-visible error, declared once in one table, and the one place that renders them.

The model is tusd's pkg/handler/error.go: each row is an HTTP status, a stable short `code` (one
per row) and a message. Handlers raise a row — `raise MISSING_HEADER(header="Upload-Offset")` —
or let an engine error (engine/errors.py) rise; `describe()` turns either into a status, headers
and the seeds' JSON body: {"error": "...", "code": "...", "retry_after": N, "can_resume": bool,
"offset": N, ...} with the fields that apply. BaseHandler.write_error answers with it, Tornado's
own errors included; answers given before any handler exists (431, 400, 413, 503 at the cap) are
the same rows as bytes (`http_answer`). Anything not in the table is a bug on our side: a 500 with
a plain message, never a stack trace.
"""
from __future__ import annotations

import http
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from engine import errors as e

log = logging.getLogger("relay.handlers")

ROWS: list[Row] = []  # every row, in the order declared below


@dataclass(frozen=True)
class Row:
    """One client-visible error. `message` is a template filled from the fields the row is
    raised with (empty: the engine error's own message); the fields named in `shown` also go
    into the body; `headers` are templates too. `raised_by`: the engine error it answers."""

    status: int
    code: str
    message: str = ""
    shown: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    raised_by: type[e.UploadError] | None = None
    listed: bool = True  # False: made up on the spot for a status of Tornado's we have no row for

    def __post_init__(self) -> None:
        if self.listed:
            if any(row.code == self.code for row in ROWS):
                raise ValueError(f"two rows with the code {self.code!r}")
            ROWS.append(self)

    def __call__(self, **fields: Any) -> RequestError:
        return RequestError(self, **fields)


class RequestError(e.UploadError):
    """A problem with the request itself, found by a handler or the HTTP layer: one row raised."""

    def __init__(self, row: Row, **fields: Any) -> None:
        super().__init__(row.message.format(**fields), **{name: fields[name] for name in row.shown})
        self.row = row
        self.fields = fields


OCTET_STREAM = "application/offset+octet-stream"

# --- the engine's errors (their message is the engine's own); first match wins: subclasses first
UNAUTHORIZED = Row(401, "unauthorized", raised_by=e.Unauthorized,
                   headers=(("WWW-Authenticate", 'Bearer realm="notion-upload-relay"'),))
FORBIDDEN = Row(403, "forbidden", raised_by=e.Forbidden)
QUOTA_EXCEEDED = Row(429, "quota_exceeded", raised_by=e.QuotaExceeded)
UNSUPPORTED_FILE_TYPE = Row(415, "unsupported_file_type", raised_by=e.UnsupportedFileType)
INVALID_UPLOAD = Row(400, "invalid_upload", raised_by=e.InvalidUpload)
TOO_LARGE = Row(413, "too_large", raised_by=e.UploadTooLarge)
NOT_FOUND = Row(404, "not_found", raised_by=e.UploadNotFound)
GONE = Row(410, "gone", raised_by=e.UploadGone)
OFFSET_MISMATCH = Row(409, "offset_mismatch", raised_by=e.OffsetMismatch)
CHECKSUM_MISMATCH = Row(460, "checksum_mismatch", raised_by=e.ChecksumMismatch)
LOCKED = Row(423, "locked", raised_by=e.UploadBusy)
# Resumable: Notion is having trouble, come back later (503). Otherwise the upload can never go
# on: 410 (see describe), so that every tus client starts over by itself (a 5xx is retried forever).
UPLOAD_FAILED = Row(503, "upload_failed", raised_by=e.UploadFailed)
REJECTED_BY_NOTION = Row(400, "rejected_by_notion", raised_by=e.NotionRejected)
INSUFFICIENT_STORAGE = Row(507, "insufficient_storage", raised_by=e.InsufficientStorage)
UNAVAILABLE = Row(503, "unavailable", raised_by=e.ServiceUnavailable)
INTERNAL = Row(500, "internal", "Internal error; the upload's data is kept, try again.")

# --- HTTP: the request as a whole
METHOD_NOT_ALLOWED = Row(405, "method_not_allowed", "{method} is not allowed on {target}",
                         headers=(("Allow", "{allow}"),))
HEADER_TOO_LARGE = Row(431, "header_too_large",
                       "the request's headers are larger than {limit} bytes (MAX_HEADER_BYTES)")
MALFORMED_REQUEST = Row(400, "malformed_request", "the request is malformed: {detail}")
UNKNOWN_ENDPOINT = Row(404, "unknown_endpoint", "no such endpoint")
REQUEST_TOO_LARGE = Row(413, "request_too_large", "the request body is larger than {limit} bytes")
URL_TOO_LONG = Row(414, "url_too_long", "the URL is longer than {limit} bytes")
MISSING_HEADER = Row(400, "missing_header", "{header} header is required")
NOT_A_NUMBER = Row(400, "not_a_number", "{header} must be a non-negative integer")

# --- the JSON API
INVALID_JSON = Row(400, "invalid_json", "the request body is not valid JSON")
NOT_AN_OBJECT = Row(400, "not_an_object", "the request body must be a JSON object")
MISSING_FILENAME = Row(400, "missing_filename", "filename (a non-empty string) is required")
MISSING_FILE_SIZE = Row(400, "missing_file_size", "fileSize (a non-negative integer, in bytes) is required")
NOT_A_STRING = Row(400, "not_a_string", "{field} must be a string")
BAD_DESTINATION = Row(400, "bad_destination", "destination must be a string (a destination's name or id)")

# --- the tus protocol
TUS_VERSION_UNSUPPORTED = Row(412, "unsupported_version", "Tus-Resumable: {version} is required")
NO_DEFER_LENGTH = Row(400, "no_defer_length", "Upload-Defer-Length is not supported: Notion needs the length up front")
NO_CONCATENATION = Row(400, "no_concatenation", "the concatenation extension is not supported")
MALFORMED_METADATA = Row(400, "malformed_metadata", "Upload-Metadata is malformed")
REPEATED_METADATA_KEY = Row(400, "repeated_metadata_key", "Upload-Metadata repeats the key {key!r}")
METADATA_NOT_BASE64 = Row(400, "metadata_not_base64", "Upload-Metadata value of {key!r} is not valid base64 UTF-8")
BAD_ALGORITHM = Row(400, "unknown_algorithm", "unsupported checksum algorithm {algorithm!r}; use sha1, md5 or sha256")
CHECKSUM_NOT_BASE64 = Row(400, "checksum_not_base64", "Upload-Checksum is not valid base64")
CHECKSUM_WRONG_LENGTH = Row(400, "checksum_wrong_length", "Upload-Checksum has the wrong length for {algorithm}")
WRONG_CONTENT_TYPE = Row(415, "wrong_content_type", "{request} must use Content-Type: " + OCTET_STREAM)

# --- a streamed body (tus PATCH/POST, the JSON API's PUT)
BODY_TOO_LARGE = Row(413, "body_too_large", "the body is {length} bytes but only {remaining} remain after offset "
                     "{offset}", shown=("offset",))
BODY_INCOMPLETE = Row(400, "body_incomplete", "the body ended after byte {got} of {size}; continue with "
                      "Upload-Offset: {offset}", shown=("offset", "can_resume"))

STATUS_REASONS = {460: "Checksum Mismatch", 507: "Insufficient Storage"}


def tornado_error(status: int, reason: str, **fields: Any) -> RequestError:
    """Tornado's own errors (web.HTTPError) as rows: 405 with `method`, `target` and `allow`."""
    if status == 405:
        return METHOD_NOT_ALLOWED(**fields)
    if status == 400:
        return MALFORMED_REQUEST(detail=reason)
    return Row(status, f"http_{status}", "{reason}", listed=False)(reason=reason)


def row_of(exc: BaseException) -> Row | None:
    """A request error's row, or the first row that answers an engine error of this class."""
    if isinstance(exc, RequestError):
        return exc.row
    return next((row for row in ROWS if row.raised_by is not None and isinstance(exc, row.raised_by)), None)


@dataclass(frozen=True)
class ErrorResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def describe(exc: BaseException) -> ErrorResponse:
    """The answer to `exc`: its row's status and code, the message, and the fields that apply."""
    row = row_of(exc)
    if not isinstance(exc, e.UploadError):
        log.error("unexpected error: %s", type(exc).__name__, exc_info=exc)
        exc = INTERNAL()
    if row is None:
        row = INTERNAL
    status = row.status
    if row is UPLOAD_FAILED and not exc.details.get("can_resume"):
        status = 410
    fields = exc.fields if isinstance(exc, RequestError) else {}
    body: dict[str, Any] = {"error": exc.message, "code": row.code}
    headers = {name: value.format(**fields) for name, value in row.headers}
    if exc.retry_after_s is not None:
        retry_after = max(1, math.ceil(exc.retry_after_s))
        body["retry_after"] = retry_after
        headers["Retry-After"] = str(retry_after)
    for key, value in exc.details.items():
        if value is not None:
            body[key] = value
    if status == 410:
        body["can_resume"] = False
    return ErrorResponse(status, body, headers)


def json_bytes(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def reason_phrase(status: int) -> str:
    if status in STATUS_REASONS:
        return STATUS_REASONS[status]
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def http_answer(exc: BaseException) -> bytes:
    """A complete HTTP/1.1 answer that closes the connection, for the places that have no handler
    to write one (the connection itself, before or instead of a request)."""
    response = describe(exc)
    data = json_bytes(response.body)
    extra = "".join(f"{name}: {value}\r\n" for name, value in response.headers.items())
    head = (f"HTTP/1.1 {response.status} {reason_phrase(response.status)}\r\n"
            f"Content-Type: application/json; charset=utf-8\r\nCache-Control: no-store\r\n{extra}"
            f"Connection: close\r\nContent-Length: {len(data)}\r\n\r\n")
    return head.encode("latin1") + data
