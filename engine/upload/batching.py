"""AppendBatcher: files finishing for the same page within a short window are appended in one
request (Notion takes up to 100 children per append: NOTION_API.md, attach).

A small file costs create, send and append; batching the appends spends the request budget —
shared by every user of the relay — on bytes instead. The first file of a batch waits at most
`window_s`, later ones less; a batch that reaches 100 children goes at once. What the request
does and how its unknown outcomes are decided is the sender's business (finishing.py): a
batch is one request, so it landed whole or not at all.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from engine.clock import Clock
from engine.upload.session import UploadSession

MAX_CHILDREN = 100

# send(page, sessions, children) → the block each child became (None when it cannot be told).
Send = Callable[[str, list[UploadSession], list[dict[str, Any]]], Awaitable[list[dict[str, Any] | None]]]


@dataclass
class _Batch:
    sessions: list[UploadSession] = field(default_factory=list)
    children: list[dict[str, Any]] = field(default_factory=list)
    done: asyncio.Future[list[dict[str, Any] | None]] | None = None
    full: asyncio.Event = field(default_factory=asyncio.Event)


class AppendBatcher:
    def __init__(self, clock: Clock, window_s: float, send: Send) -> None:
        self.clock = clock
        self.window_s = window_s
        self.send = send
        self._open: dict[str, _Batch] = {}  # page → the batch still taking children
        self.batches_sent = 0

    async def append(self, s: UploadSession, page: str, child: dict[str, Any]) -> dict[str, Any] | None:
        """Append `child` to `page` with whatever else goes there now; the block it became."""
        if self.window_s <= 0:
            return (await self.send(page, [s], [child]))[0]
        batch = self._open.get(page)
        if batch is None:
            batch = self._open[page] = _Batch(done=asyncio.get_running_loop().create_future())
            asyncio.ensure_future(self._flush_later(page, batch))
        index = len(batch.children)
        batch.sessions.append(s)
        batch.children.append(child)
        if len(batch.children) >= MAX_CHILDREN:
            batch.full.set()
        assert batch.done is not None
        results = await asyncio.shield(batch.done)
        return results[index] if index < len(results) else None

    async def _flush_later(self, page: str, batch: _Batch) -> None:
        assert batch.done is not None
        waits = {asyncio.ensure_future(self.clock.sleep(self.window_s)), asyncio.ensure_future(batch.full.wait())}
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if self._open.get(page) is batch:
            del self._open[page]  # later files start the next batch
        self.batches_sent += 1
        try:
            batch.done.set_result(await self.send(page, batch.sessions, batch.children))
        except BaseException as exc:  # every file of the batch gets the same answer
            batch.done.set_exception(exc)
            batch.done.exception()  # retrieved: each member re-raises it through shield
