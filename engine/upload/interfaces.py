"""The small interfaces between the upload wing and what it stands on (as tusd's DataStore,
Upload and Locker sit between its protocol handler and its storage).

Production implements them with Redis (engine/store.py, engine/locks.py) and libcurl
(engine/notion.py); the middle tier of tests with in-memory fakes (tests/fakes.py).
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

Emit = Callable[..., None]
# What a record (as a dict) announces in its state, at a wall time: webhook events, or nothing.
Announce = Callable[[dict[str, Any], float], list[Any]]
Spawn = Callable[[Coroutine[Any, Any, Any]], None]


class ActiveRequest(Protocol):
    """The request currently writing an upload (intake's Writer), as the session sees it."""
    start: int
    hold: bool
    closed: bool
    accepted: int
    tallied: bool

    def supersede(self, reason: Any = None) -> None: ...


class Checkpoints(Protocol):
    """Upload records and durable parts, shared by every instance."""
    restoring: bool  # the store lost its data; this instance is writing back what it holds
    amnesia_count: int

    async def save_record(self, record: dict[str, Any], events: Sequence[Any] = ()) -> None: ...

    async def load(self, upload_id: str) -> tuple[dict[str, Any], set[int]] | None: ...

    async def mark_part_done(self, upload_id: str, part_number: int) -> None: ...

    async def tombstone(self, upload_id: str, owner: str | None, ttl_s: int, state: str = "expired",
                        events: Sequence[Any] = ()) -> None: ...

    async def gone(self, upload_id: str) -> dict[str, Any] | None: ...

    async def delete(self, upload_id: str) -> None: ...

    async def claim_notion_upload(self, file_upload_id: str, upload_id: str, ttl_s: int) -> bool: ...

    async def forgot_us(self) -> bool: ...

    async def restore(self, record: dict[str, Any], durable: set[int]) -> None: ...

    def upload_ids(self) -> AsyncIterator[str]: ...


class Ownership(Protocol):
    """Which instance may write an upload (a lock with a TTL, and hand-off requests)."""

    async def acquire(self, upload_id: str) -> float | None: ...

    async def refresh(self, upload_ids: list[str]) -> dict[str, int]: ...

    async def release(self, upload_id: str) -> None: ...

    async def held_elsewhere(self, upload_id: str) -> bool: ...

    async def request_handoff(self, upload_id: str) -> None: ...


class NotionFiles(Protocol):
    """Notion's File Upload API, as engine/notion.py speaks it."""

    async def create_file_upload(self, *, mode: str, filename: str, content_type: str,
                                 number_of_parts: int | None, total_s: float | None = None) -> dict[str, Any]: ...

    async def send_part(self, file_upload_id: str, *, path: str, filename: str, content_type: str,
                        part_number: int | None, size: int) -> dict[str, Any]: ...

    async def complete(self, file_upload_id: str) -> dict[str, Any]: ...

    async def retrieve(self, file_upload_id: str) -> dict[str, Any]: ...

    async def list_file_uploads(self, *, status: str | None = None, page_size: int = 100,
                                start_cursor: str | None = None, total_s: float | None = None) -> dict[str, Any]: ...

    async def users_me(self) -> dict[str, Any]: ...

    async def append_children(self, page_id: str, children: list[dict[str, Any]]) -> dict[str, Any]: ...

    async def create_row(self, data_source_id: str, properties: dict[str, Any]) -> dict[str, Any]: ...

    async def query_rows(self, data_source_id: str, filter_: dict[str, Any],
                         start_cursor: str | None = None) -> dict[str, Any]: ...

    async def list_children(self, page_id: str, start_cursor: str | None = None) -> dict[str, Any]: ...


class Guard(Protocol):
    """What every Notion call passes: the breaker and the request budget (engine/guard.py)."""

    async def run(self, call: Callable[[], Awaitable[T]], deadline: float | None = None,
                  wait_if_open: bool = True) -> T: ...
