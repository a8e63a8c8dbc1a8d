"""Reading Notion's answers: how a call failed (Failure, classified by what Notion may have
seen), what a 2xx body must look like to count as success, and Retry-After.

Pure functions and values: engine/notion.py does the I/O and hands its answers to these.
"""
from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import Any

_RETRYABLE_STATUS = {409, 429, 500, 502, 503, 504, 529}

# What a 2xx body must look like to count as the call's success (NOTION_API.md, "The File
# Upload object", and the live recordings): anything else is an answer we cannot trust, so
# the call's outcome is unknown (DESIGN.md invariant 1, "A 2xx counts only when ...").
_EXPECTED_OBJECT = {
    "create": "file_upload", "send": "file_upload", "complete": "file_upload", "retrieve": "file_upload",
    "list_uploads": "list", "users_me": "user", "attach": "list", "children": "list",
    "create_row": "page", "query": "list", "retrieve_page": "page", "retrieve_database": "database",
    "retrieve_data_source": "data_source",
}


class Failure(Exception):
    """A Notion request that did not succeed, described by what the server may have seen.

    kind: "connect" (nothing reached Notion), "timeout" (stalled or too slow; Notion may have
    acted), "transfer" (the connection broke mid-way), "http" (Notion answered an error), or
    "junk" (a 2xx whose body is not the object Notion documents: maybe a proxy's page, maybe a
    cut answer; Notion may have acted).
    """

    def __init__(self, kind: str, message: str, status: int | None = None, code: str | None = None,
                 retry_after_s: float | None = None, rate_limit_reason: str | None = None,
                 request_id: str | None = None, operation: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.code = code
        self.retry_after_s = retry_after_s
        self.rate_limit_reason = rate_limit_reason
        self.request_id = request_id
        self.operation = operation

    @property
    def retryable(self) -> bool:
        if self.kind != "http":
            return True
        if self.rate_limit_reason == "public_api_request_blocked":
            return False
        return self.status in _RETRYABLE_STATUS

    @property
    def rate_limited(self) -> bool:
        return self.kind == "http" and self.status in (429, 529)

    @property
    def may_have_applied(self) -> bool:
        """Notion may have carried the request out although we saw a failure (docs: a 503 write may be saved)."""
        return self.kind in ("timeout", "transfer", "junk") or (
            self.kind == "http" and self.status in (500, 502, 503, 504))

    @property
    def never_arrived(self) -> bool:
        """Nothing was carried out: the request never reached Notion, or Notion turned it away
        at the door (429/529 are answered before the request is looked at)."""
        return self.kind == "connect" or self.rate_limited

    @property
    def may_still_land(self) -> bool:
        """We stopped waiting, but Notion may still be working on it (up to its own 60 s limit)."""
        return self.kind in ("timeout", "transfer")

    @property
    def is_notion_failure(self) -> bool:
        """Counts against Notion's health (breaker): network trouble and 5xx, not our 4xx."""
        return self.kind != "http" or (self.status or 0) >= 500

    @property
    def reason(self) -> str:
        """A short label for logs and metrics (never contains secrets)."""
        if self.kind == "http":
            return f"http_{self.status}"
        return self.kind

    def __str__(self) -> str:
        return f"{self.operation or 'notion'}: {self.message}"


def shape_problem(operation: str, data: Any) -> str | None:
    """Why a 2xx body is not what Notion documents for `operation`, or None when it is."""
    if not isinstance(data, dict):
        return "the body is not a JSON object"
    expected = _EXPECTED_OBJECT.get(operation)
    if expected is None:
        return None
    if data.get("object") != expected:
        return f"the body is not a {expected} object"
    if expected == "list":
        results = data.get("results")
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            return "the list has no results"
        if operation == "attach" and not results:
            return "no block came back"
    elif not isinstance(data.get("id"), str):
        return "the object has no id"
    if expected == "file_upload" and not isinstance(data.get("status"), str):
        return "the file upload has no status"
    if operation == "users_me" and not isinstance(data.get("bot"), dict):
        return "the bot user has no bot details"
    return None


def parse_retry_after(value: str | None, now_wall_s: float) -> float | None:
    """Retry-After in seconds; Notion sends an integer, RFC 9110 also allows an HTTP date
    (the official JS SDK reads both)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_wall_s)
