"""Protection against clients that hold connections without sending: a body watch and a cap
on open connections. Tornado's body_timeout is a deadline for the whole body, not an idle
timeout (DESIGN.md quirks), so request bodies are watched here.

The cap (MAX_CONNECTIONS) makes room rather than shutting the door: at the cap, a new connection
closes the one that has been idle longest — one that has not sent a whole header block yet
(nothing at all, or a slowloris trickle) or a keep-alive between requests. A connection whose
request is in progress (an upload's body, an answer being written) is never closed for it.
Health and metrics are answered even when every slot holds a request in progress: a few
connections beyond the cap (the reserve, a tenth of it, at least 8) may ask for them. So a storm
of idle sockets costs the relay at most MAX_CONNECTIONS + 2 × reserve file descriptors (the
second reserve: 503s still lingering) and one accept + one close per new connection, and
neither starves the health check nor stops a new upload.

Cost per idle connection: a socket, its IOStream and the coroutine waiting for its headers, with
one timer (Tornado's header deadline, HEADER_TIMEOUT) that fires once; nothing here wakes per
connection. The bookkeeping is O(1) per event (an insertion-ordered dict of idle connections).
"""
from __future__ import annotations

import logging
import resource
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, Protocol, TypeVar

from tornado.iostream import IOStream, StreamClosedError

from engine.clock import Clock
from engine.errors import ServiceUnavailable
from handlers.errors import http_answer
from handlers.httpserver import EarlyAnswer, RelayHTTPServer, RelayServerConnection
from handlers.lingering import Linger, answer_and_linger

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


_BUSY = http_answer(ServiceUnavailable("Too many open connections; try again shortly", retry_after_s=5))
# A refused connection holds a descriptor while it lingers: keep its linger short.
BUSY_LINGER = Linger(seconds=2.0)
# Always answered, also beyond the cap: a platform restarts a dyno whose health check fails.
ALWAYS_ANSWERED = ("/api/system/health", "/metrics")
# The kernel's queue of connections not yet accepted. Why larger than Tornado's 128: when a burst
# fills it, the kernel drops new SYNs and a client tries again only after 1 s (then 3 s), so a
# health check behind a burst of connections would miss its deadline. The kernel caps it at
# net.core.somaxconn (4096 on current kernels).
LISTEN_BACKLOG = 1024
# Descriptors the process needs besides client connections: Redis, curl's connections to
# Notion, spool files, logs, the embedded redis-server's pipes, the event loop.
OTHER_FDS = 256

C = TypeVar("C", bound=Hashable)


def reserve_for(max_connections: int) -> int:
    """Connections admitted beyond the cap when nothing is idle, for health and metrics."""
    return max(8, max_connections // 10)


class ConnectionCap(Generic[C]):
    """Which connection to close when a new one arrives at the cap; which request to refuse.

    A connection is *idle* from its arrival, and again from the end of each request, until a
    request's whole header block has arrived; it is then *serving* until that request ended
    (body read, answer written). A request refused for being over the cap leaves its
    connection *refused* while its 503 lingers.

    - A new connection at `limit` open ones closes the oldest idle one (else the oldest
      refused one); none serving is ever closed for it. With nothing to close it is admitted
      into `reserve` beyond the limit, and refused at once only when that is full too.
    - A request is served while fewer than `limit` requests are being served; beyond, only
      requests for `always_answered` paths are, and the others are refused (503)."""

    def __init__(self, limit: int, reserve: int, always_answered: Callable[[str], bool]) -> None:
        self.limit = limit
        self.reserve = reserve
        self.always_answered = always_answered
        # Insertion-ordered: the first key is the one that has been idle (or refused) longest.
        self._idle: dict[C, None] = {}
        self._refused: dict[C, None] = {}
        self._serving: set[C] = set()
        self.evicted = 0
        self.refused_at_arrival = 0
        self.refused_requests = 0

    @property
    def open(self) -> int:
        return len(self._idle) + len(self._refused) + len(self._serving)

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def serving(self) -> int:
        return len(self._serving)

    def arrive(self, conn: C) -> tuple[bool, C | None]:
        """A new connection: (admitted, the connection to close to make room, if any)."""
        victim = None
        if self.open >= self.limit:
            pool = self._idle or self._refused
            if pool:
                victim = next(iter(pool))
                self.forget(victim)
                self.evicted += 1
        if self.open >= self.limit + self.reserve:
            self.refused_at_arrival += 1
            return False, victim
        self._idle[conn] = None
        return True, victim

    def waiting(self, conn: C) -> None:
        """`conn` waits for a request's headers (its first, or the next on a keep-alive)."""
        if conn in self._idle or conn in self._serving:
            self._serving.discard(conn)
            self._idle.pop(conn, None)
            self._idle[conn] = None  # to the end: idle since now

    def started(self, conn: C, path: str) -> bool:
        """A request's headers arrived on `conn`: True to serve it, False to refuse it."""
        if conn not in self._idle:
            return True  # not (or no longer) counted: closed meanwhile
        del self._idle[conn]
        if len(self._serving) >= self.limit and not self.always_answered(path):
            self.refused_requests += 1
            self._refused[conn] = None
            return False
        self._serving.add(conn)
        return True

    def forget(self, conn: C) -> None:
        """`conn` is closed."""
        self._idle.pop(conn, None)
        self._refused.pop(conn, None)
        self._serving.discard(conn)


def request_path(start_line: str) -> str:
    """The path of a request line ("GET /metrics?x HTTP/1.1" → "/metrics"); "" when malformed."""
    parts = start_line.split(" ")
    return parts[1].split("?", 1)[0] if len(parts) == 3 else ""


def fit_fd_limit(max_connections: int) -> int:
    """Raise this process's soft limit on open files to the hard limit when it is too low for
    `max_connections`; returns the cap that fits the limit in force (logged when smaller).

    Why: every connection is a file descriptor. Many platforms start processes with a soft
    limit of 1024 below a much higher hard limit, and raising the soft limit needs no privilege.
    Past the limit accept() fails with EMFILE, and Tornado's accept handler then fails on every
    turn of the event loop while the connection stays queued: the loop spins and logs."""
    needed = max_connections + 2 * reserve_for(max_connections) + OTHER_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = hard if hard != resource.RLIM_INFINITY else max(needed, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            log.info("open files limit raised from %d to %d", soft, target)
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open files limit from %d: %s", soft, exc)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return max_connections
    fits = max(1, (soft - OTHER_FDS) * 10 // 12)  # limit + 2 × reserve (a tenth each) fit
    log.warning("MAX_CONNECTIONS=%d does not fit the open files limit (%d): capped at %d",
                max_connections, soft, fits)
    return min(max_connections, fits)


class CappedHTTPServer(RelayHTTPServer):
    """An HTTPServer with a cap on open connections that closes idle ones first (ConnectionCap);
    what it must refuse gets 503 + Retry-After and a short lingering close, so it is read."""

    # HTTPServer is a tornado Configurable: it is set up in initialize(), not __init__().
    def initialize(self, *args: Any, max_connections: int = 200,  # type: ignore[override]
                   always_answered: tuple[str, ...] = ALWAYS_ANSWERED, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.max_connections = max_connections
        self.cap: ConnectionCap[RelayServerConnection] = ConnectionCap(
            max_connections, reserve_for(max_connections), lambda path: path in always_answered)
        self.gate = self
        self.refusing = 0  # connections refused at arrival whose 503 still lingers
        self._warned_at: float | None = None

    @property
    def refused(self) -> int:
        return self.cap.refused_at_arrival + self.cap.refused_requests

    def handle_stream(self, stream: IOStream, address: tuple) -> Awaitable[None] | None:  # type: ignore[override]
        conn = self.connection_for(stream, address)
        admitted, victim = self.cap.arrive(conn)
        if victim is not None:
            victim.stream.close()  # frees its descriptor now; its request loop ends by itself
            self._warn(stream)
        if admitted:
            self.serve(conn)
            return None
        return self._refuse(stream)

    async def _refuse(self, stream: IOStream) -> None:
        # Nothing idle to close and the reserve full: every slot holds a request in progress.
        if self.refusing >= self.cap.reserve:
            # Enough 503s linger already: this one is written and the connection closed at once.
            try:
                stream.write(_BUSY).add_done_callback(lambda f: f.exception())
            except StreamClosedError:
                pass
            stream.close()
            return
        self.refusing += 1
        try:
            await answer_and_linger(stream, _BUSY, BUSY_LINGER)
        finally:
            self.refusing -= 1

    def _warn(self, stream: IOStream) -> None:
        now = stream.io_loop.time()
        if self._warned_at is None or now - self._warned_at >= 60:
            self._warned_at = now
            log.warning("connection cap reached (MAX_CONNECTIONS=%d): closing the longest idle connections "
                        "to make room (%d so far; %d open, %d serving)",
                        self.max_connections, self.cap.evicted, self.cap.open, self.cap.serving)

    # --- ConnectionGate ----------------------------------------------------------------------

    def waiting(self, conn: RelayServerConnection) -> None:
        self.cap.waiting(conn)

    def started(self, conn: RelayServerConnection, start_line: str) -> EarlyAnswer | None:
        if self.cap.started(conn, request_path(start_line)):
            return None
        return EarlyAnswer(_BUSY, BUSY_LINGER)

    def on_close(self, server_conn: object) -> None:
        self.cap.forget(server_conn)  # type: ignore[arg-type]
        super().on_close(server_conn)
