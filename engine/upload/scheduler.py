"""PartScheduler: fair round-robin of part sends across uploads, under a concurrency limit.

Each upload may have at most `per_upload` parts waiting or in flight (DESIGN.md invariant 4);
a writer that wants to add one more awaits `wait_for_room`, which pauses its socket reads.
Uploads take turns (invariant 5): a 5 GiB upload cannot starve 24 small ones.
A job is one attempt; a job that must retry is put back after its delay, without holding a
concurrency slot while it waits.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

log = logging.getLogger("relay.scheduler")

# An attempt returns None when the part is finished (done or given up), or a delay in
# seconds after which it must run again.
Attempt = Callable[[], Awaitable[float | None]]


class PartScheduler:
    def __init__(self, limit: Callable[[], int], per_upload: int = 2) -> None:
        self._limit = limit
        self.per_upload = per_upload
        self._waiting: dict[str, deque[Attempt]] = {}
        self._turns: deque[str] = deque()  # uploads with waiting jobs, in round-robin order
        self._counts: dict[str, int] = {}  # waiting + in flight (+ retry delay) per upload
        self._room: dict[str, list[asyncio.Future[None]]] = {}
        self.running = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def pending(self, upload_id: str) -> int:
        return self._counts.get(upload_id, 0)

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    def has_room(self, upload_id: str) -> bool:
        return self._counts.get(upload_id, 0) < self.per_upload

    async def wait_for_room(self, upload_id: str) -> None:
        while not self.has_room(upload_id):
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._room.setdefault(upload_id, []).append(fut)
            await fut

    def submit(self, upload_id: str, attempt: Attempt) -> None:
        self._counts[upload_id] = self._counts.get(upload_id, 0) + 1
        self._enqueue(upload_id, attempt)

    def _enqueue(self, upload_id: str, attempt: Attempt) -> None:
        queue = self._waiting.setdefault(upload_id, deque())
        if not queue:
            self._turns.append(upload_id)
        queue.append(attempt)
        self.pump()

    def pump(self) -> None:
        """Start jobs while there are free slots; call again when the limit grows."""
        while self._turns and self.running < max(1, self._limit()):
            upload_id = self._turns.popleft()
            queue = self._waiting[upload_id]
            attempt = queue.popleft()
            if queue:
                self._turns.append(upload_id)
            else:
                del self._waiting[upload_id]
            self.running += 1
            task = asyncio.ensure_future(self._run(upload_id, attempt))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, upload_id: str, attempt: Attempt) -> None:
        retry_in: float | None = None
        try:
            retry_in = await attempt()
        except asyncio.CancelledError:
            retry_in = None
        except Exception:  # an attempt must not kill the scheduler; the job ends here
            log.exception("part attempt crashed upload=%s", upload_id)
            retry_in = None
        finally:
            self.running -= 1
        if retry_in is None:
            self._release(upload_id)
        else:
            asyncio.get_running_loop().call_later(retry_in, self._enqueue, upload_id, attempt)
        self.pump()

    def _release(self, upload_id: str) -> None:
        left = self._counts.get(upload_id, 1) - 1
        if left <= 0:
            self._counts.pop(upload_id, None)
        else:
            self._counts[upload_id] = left
        for fut in self._room.pop(upload_id, []):
            if not fut.done():
                fut.set_result(None)

    def snapshot(self) -> dict[str, int]:
        return {"running": self.running, "queued": self.queued, "uploads": len(self._counts)}
