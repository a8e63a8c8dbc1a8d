"""The one place that turns an engine error into an HTTP status, headers and a JSON body.

Bodies follow the seeds' shape: {"error": "...", "retry_after": N, "can_resume": bool,
"checkpoint_key": ..., "progress_percent": ...} with the fields that apply. Anything not in
the table is a bug on our side: a 500 with a plain message, never a stack trace.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from engine import errors as e

log = logging.getLogger("relay.handlers")

# (exception class, HTTP status, short code); first match wins, so subclasses come first.
ERROR_TABLE: list[tuple[type[e.UploadError], int, str]] = [
    (e.Unauthorized, 401, "unauthorized"),
    (e.Forbidden, 403, "forbidden"),
    (e.QuotaExceeded, 429, "quota_exceeded"),
    (e.UnsupportedFileType, 415, "unsupported_file_type"),
    (e.InvalidUpload, 400, "invalid_upload"),
    (e.UploadTooLarge, 413, "too_large"),
    (e.UploadNotFound, 404, "not_found"),
    (e.UploadGone, 410, "gone"),
    (e.OffsetMismatch, 409, "offset_mismatch"),
    (e.ChecksumMismatch, 460, "checksum_mismatch"),
    (e.UploadBusy, 423, "locked"),
    (e.NotionRejected, 400, "rejected_by_notion"),
    (e.InsufficientStorage, 507, "insufficient_storage"),
    (e.ServiceUnavailable, 503, "unavailable"),
]

# Protocol-level problems the handlers detect themselves (not engine errors).
class RequestError(e.UploadError):
    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.status = status


STATUS_REASONS = {460: "Checksum Mismatch", 507: "Insufficient Storage"}


@dataclass(frozen=True)
class ErrorResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def describe(exc: BaseException) -> ErrorResponse:
    if isinstance(exc, RequestError):
        status, code = exc.status, "bad_request"
    elif isinstance(exc, e.UploadFailed):
        # Resumable: Notion is having trouble, come back later. Otherwise the upload can never go
        # on: 410, so that every tus client starts over by itself (a 5xx would be retried forever).
        status, code = (503, "upload_failed") if exc.details.get("can_resume") else (410, "upload_failed")
    elif isinstance(exc, e.UploadError):
        status, code = next(((s, c) for cls, s, c in ERROR_TABLE if isinstance(exc, cls)), (500, "internal"))
    else:
        log.error("unexpected error: %s", type(exc).__name__, exc_info=exc)
        return ErrorResponse(500, {"error": "Internal error; the upload's data is kept, try again.", "code": "internal"}, {})
    body: dict[str, Any] = {"error": exc.message, "code": code}
    headers: dict[str, str] = {}
    if isinstance(exc, e.Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="notion-upload-relay"'
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
