"""Protection against clients that hold connections without sending: a body watch and a cap
on open connections. Tornado's body_timeout is a deadline for the whole body, not an idle
timeout (DESIGN.md quirks), so request bodies are watched here.
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Protocol

from tornado.iostream import IOStream

from engine.clock import Clock
from handlers.lingering import Linger, LingeringHTTPServer, answer_and_linger, json_response

log = logging.getLogger("relay.slowclients")


class WatchedBody(Protocol):
    bytes_in: int
    paused: bool

    def drop_slow_client(self) -> None: ...


class BodyWatch:
    """Every second: a body that delivered fewer than min_rate × window bytes during the last
    window is closed. Time the relay itself paused reading (back-pressure) does not count."""

    def __init__(self, clock: Clock, window_s: float, min_rate_bps: int) -> None:
        self.clock = clock
        self.window_s = window_s
        self.min_bytes = min_rate_bps * window_s
        self._marks: dict[WatchedBody, tuple[int, float]] = {}
        self.closed = 0

    def watch(self, body: WatchedBody) -> None:
        self._marks[body] = (body.bytes_in, self.clock.monotonic())

    def unwatch(self, body: WatchedBody) -> None:
        self._marks.pop(body, None)

    def tick(self) -> None:
        now = self.clock.monotonic()
        for body, (mark_bytes, mark_time) in list(self._marks.items()):
            if body.paused:
                self._marks[body] = (body.bytes_in, now)
            elif now - mark_time >= self.window_s:
                if body.bytes_in - mark_bytes < self.min_bytes:
                    self.closed += 1
                    self._marks.pop(body, None)
                    body.drop_slow_client()
                else:
                    self._marks[body] = (body.bytes_in, now)

    @property
    def watching(self) -> int:
        return len(self._marks)


_BUSY = json_response(503, "Service Unavailable", {
    "error": "Too many open connections; try again shortly", "code": "unavailable", "retry_after": 5},
    extra="Retry-After: 5\r\n")
# A refused connection is not counted while it lingers: keep its linger short.
BUSY_LINGER = Linger(seconds=2.0)


class CappedHTTPServer(LingeringHTTPServer):
    """An HTTPServer that answers 503 and hangs up beyond `max_connections` open connections
    (after reading what the client sends meanwhile, briefly, so that it reads the 503)."""

    # HTTPServer is a tornado Configurable: it is set up in initialize(), not __init__().
    def initialize(self, *args: Any, max_connections: int = 200, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(*args, **kwargs)
        self.max_connections = max_connections
        self.refused = 0

    def handle_stream(self, stream: IOStream, address: tuple) -> Awaitable[None] | None:  # type: ignore[override]
        # HTTPServer keeps its open connections in _connections; there is no public count.
        if len(self._connections) >= self.max_connections:
            self.refused += 1
            return answer_and_linger(stream, _BUSY, BUSY_LINGER)
        return super().handle_stream(stream, address)
