"""Notion's error responses: one table of codes, one exception, one body shape.

Every client-visible error of the emulator is a `NotionError`; the handlers never pick a
status code themselves. The body is exactly Notion's:
`{"object": "error", "status": N, "code": "...", "message": "...", "request_id": "..."}`,
plus `additional_data` for the errors where Notion sends it (rate limits).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tornado.web import HTTPError

# The code Notion uses for each status when the emulator has no more specific one
# (outages and injected faults pick their code from here).
CODE_FOR_STATUS: dict[int, str] = {
    400: "validation_error",
    401: "unauthorized",
    403: "restricted_resource",
    404: "object_not_found",
    409: "conflict_error",
    429: "rate_limited",
    500: "internal_server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
    529: "service_overload",
}

MESSAGE_FOR_CODE: dict[str, str] = {
    "conflict_error": "Conflict occurred while saving. Please try again.",
    "rate_limited": "You have been rate limited. Please try again in a few minutes.",
    "internal_server_error": "Unexpected error occurred.",
    "bad_gateway": "Notion encountered an issue while attempting to complete this request. "
    "Please try again.",
    "service_unavailable": "Notion is unavailable. This can occur when the time to respond to a "
    "request takes longer than 60 seconds, the maximum request timeout. Please try again later.",
    "gateway_timeout": "Notion timed out while attempting to complete this request. "
    "Please try again later.",
    "service_overload": "Notion is overloaded. Please try again later.",
}

# Notion's own values for additional_data.rate_limit_reason (per-connection budget).
RATE_LIMIT_REASON = "public_api_request_rate_limit"


class NotionError(HTTPError):
    """An error answered in Notion's JSON shape.

    Subclasses tornado's HTTPError (without a log_message) so that raising it anywhere in a
    handler ends the request without an error log or a stack trace in the response.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        additional_data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status)
        # tornado only knows reason phrases for IANA codes; 529 is Notion's own.
        self.reason = "Site Overloaded" if status == 529 else None
        self.code = code
        self.message = message
        self.additional_data = dict(additional_data) if additional_data else None
        self.headers = dict(headers or {})

    def body(self, request_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "object": "error",
            "status": self.status_code,
            "code": self.code,
            "message": self.message,
            "request_id": request_id,
        }
        if self.additional_data is not None:
            out["additional_data"] = self.additional_data
        return out

    def __str__(self) -> str:
        return f"{self.status_code} {self.code}: {self.message}"


def validation_error(message: str) -> NotionError:
    return NotionError(400, "validation_error", message)


def invalid_json() -> NotionError:
    return NotionError(400, "invalid_json", "Error parsing JSON body.")


def invalid_request_url() -> NotionError:
    return NotionError(400, "invalid_request_url", "Invalid request URL.")


def missing_version() -> NotionError:
    return NotionError(
        400,
        "missing_version",
        "Notion-Version header failed validation: Notion-Version header should be defined, "
        "instead was `undefined`.",
    )


def unauthorized() -> NotionError:
    return NotionError(401, "unauthorized", "API token is invalid.")


def object_not_found(kind: str, object_id: str) -> NotionError:
    return NotionError(
        404,
        "object_not_found",
        f"Could not find {kind} with ID: {object_id}. Make sure the relevant pages and "
        "databases are shared with your integration.",
    )


def archived_block(block_id: str) -> NotionError:
    return NotionError(
        400,
        "validation_error",
        f"Can't edit block that is archived. You must unarchive the block before editing. "
        f"(block {block_id})",
    )


def rate_limited(
    retry_after_s: float, reason: str = RATE_LIMIT_REASON, status: int = 429
) -> NotionError:
    """A 429 (or 529) with Notion's integer Retry-After header (at least 1 s)."""
    seconds = max(1, math.ceil(retry_after_s))
    code = "rate_limited" if status == 429 else CODE_FOR_STATUS.get(status, "rate_limited")
    additional = {"retry_after": str(seconds)}
    if status == 429:
        additional["rate_limit_reason"] = reason
    return NotionError(
        status,
        code,
        MESSAGE_FOR_CODE[code],
        additional_data=additional,
        headers={"Retry-After": str(seconds)},
    )


def for_status(status: int, retry_after_s: float = 1.0, reason: str = RATE_LIMIT_REASON) -> NotionError:
    """The error Notion answers with for a bare status (outages and injected faults)."""
    if status in (429, 529):
        return rate_limited(retry_after_s, reason=reason, status=status)
    code = CODE_FOR_STATUS.get(status, "internal_server_error")
    return NotionError(status, code, MESSAGE_FOR_CODE.get(code, "Unexpected error occurred."))
