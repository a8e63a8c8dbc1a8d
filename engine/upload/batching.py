"""AppendBatcher: files finishing for the same page within a short window are appended in one
request (Notion takes up to 100 children per append: NOTION_API.md, attach).

A small file costs create, send and append; batching the appends spends the request budget —
shared by every user of the relay — on bytes instead. A batch waits its `Window` for company
(short while the budget is full, longer as it empties; a batch of 100 goes at once), then asks
to be sent; it stays open to later files until its
request actually leaves — after the breaker and the budget let it — and is sealed then, so a
budget that makes requests wait makes batches larger instead of more numerous. What the request
does and how its unknown outcomes are decided is the sender's business (finishing.py): a batch
is one request, so it landed whole or not at all.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from engine.clock import Clock
from engine.upload.session import UploadSession

MAX_CHILDREN = 100



@dataclass(frozen=True)
class Window:
    """How long a new batch for `page` waits for company: `base_s` while Notion's request budget
    is full, stretched toward `max_s` as it empties (`fill`: the bucket's level, 0..1). With
    tokens to spare an append costs nothing anyone waits for; with none, every request saved is
    a token for bytes, and requests wait for tokens anyway. `company(page)` counts the uploads
    that could still join; with none, the batch goes at once: a file alone has nobody to wait
    for (and a client that uploads one file at a time gets its answer to the last byte only
    after the append, so its next file cannot come either)."""
    base_s: float
    max_s: float = 0.0
    fill: Callable[[], float] | None = None
    company: Callable[[str], int] | None = None

    def seconds(self, page: str = "") -> float:
        if self.base_s <= 0:
            return 0.0
        if self.company is not None and self.company(page) <= 0:
            return 0.0
        if self.fill is None or self.max_s <= self.base_s:
            return self.base_s
        empty = 1.0 - min(1.0, max(0.0, self.fill()))
        return self.base_s + empty * (self.max_s - self.base_s)


@dataclass
class AppendBatch:
    """Files waiting to be appended to one page in one request."""
    page: str
    sessions: list[UploadSession] = field(default_factory=list)
    children: list[dict[str, Any]] = field(default_factory=list)
    done: asyncio.Future[list[dict[str, Any] | None]] | None = None
    full: asyncio.Event = field(default_factory=asyncio.Event)
    sealed: bool = False
    on_seal: Callable[[AppendBatch], None] | None = None

    def seal(self) -> list[dict[str, Any]]:
        """No more files join: the request is leaving with these children."""
        if not self.sealed:
            self.sealed = True
            if self.on_seal is not None:
                self.on_seal(self)
        return self.children


# send(batch) → the block each child became (None when it cannot be told); it calls
# batch.seal() when its request leaves.
Send = Callable[[AppendBatch], Awaitable[list[dict[str, Any] | None]]]


class AppendBatcher:
    def __init__(self, clock: Clock, window: Window, send: Send) -> None:
        self.clock = clock
        self.window = window
        self.send = send
        self._open: dict[str, AppendBatch] = {}  # page → the batch still taking children
        self.holding: set[str] = set()  # the uploads whose append is in a batch, open or leaving
        self.batches_sent = 0

    async def append(self, s: UploadSession, page: str, child: dict[str, Any]) -> dict[str, Any] | None:
        """Append `child` to `page` with whatever else goes there now; the block it became."""
        self.holding.add(s.id)
        try:
            return await self._append(s, page, child)
        finally:
            self.holding.discard(s.id)

    async def _append(self, s: UploadSession, page: str, child: dict[str, Any]) -> dict[str, Any] | None:
        if self.window.base_s <= 0:
            return (await self.send(AppendBatch(page, [s], [child])))[0]
        batch = self._open.get(page)
        if batch is None:
            batch = self._open[page] = AppendBatch(page, done=asyncio.get_running_loop().create_future(),
                                                   on_seal=self._closed)
            asyncio.ensure_future(self._flush_later(batch))
        index = len(batch.children)
        batch.sessions.append(s)
        batch.children.append(child)
        if len(batch.children) >= MAX_CHILDREN:
            self._closed(batch)  # later files start the next batch
            batch.full.set()
        assert batch.done is not None
        results = await asyncio.shield(batch.done)
        return results[index] if index < len(results) else None

    def _closed(self, batch: AppendBatch) -> None:
        if self._open.get(batch.page) is batch:
            del self._open[batch.page]

    async def _flush_later(self, batch: AppendBatch) -> None:
        assert batch.done is not None
        waits = {asyncio.ensure_future(self.clock.sleep(self.window.seconds(batch.page))),
                 asyncio.ensure_future(batch.full.wait())}
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        self.batches_sent += 1
        try:
            batch.done.set_result(await self.send(batch))
        except BaseException as exc:  # every file of the batch gets the same answer
            batch.done.set_exception(exc)
            batch.done.exception()  # retrieved: each member re-raises it through shield
        finally:
            self._closed(batch)
