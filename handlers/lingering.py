"""The lingering close: an answer given before the request's body ended still reaches the client.

Why: when a server closes a socket whose receive buffer still holds unread bytes, the kernel
sends a reset (RFC 1122, 4.2.2.13), and a reset makes the client's kernel throw away what it
had received but not yet read: our answer. Tornado closes at once when a handler answers before
the body was read (a refusal in prepare(), or a request detached mid-body), so an ordinary
client that sends its whole body before reading (Python's http.client, curl) saw a reset
instead of 409/401/413/423...

So, for a request answered before its body ended: the answer goes out with `Connection: close`,
the rest of the body is read and thrown away — at most LINGER_BYTES, for at most
LINGER_SECONDS — and only then is the connection closed. Requests that are answered after their
body (every accepted upload) do no extra work: the counting reader is swapped in per connection,
only once an early answer was given. Answers given with no request to answer (handlers/httpserver.py:
431, a malformed request, 503 at the cap) linger the same way (answer_and_linger).

This leans on Tornado's HTTP/1 internals (pinned in requirements.txt): HTTP1Connection's
_read_message, _read_body, _deliver_body and _finish_request.
"""
from __future__ import annotations

import socket
import sys
from asyncio import Future
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from tornado import gen, httputil, iostream
from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters

# The largest part Notion takes (20 MiB): a client's chunk is no larger (the page sends 8 MiB).
LINGER_BYTES = 20 * 2**20
LINGER_SECONDS = 5.0


@dataclass(frozen=True)
class Linger:
    """How much of an unwanted body is read (and dropped) after an early answer, and how long."""
    max_bytes: int = LINGER_BYTES
    seconds: float = LINGER_SECONDS


def half_close(stream: iostream.IOStream) -> None:
    """Our side is done: the client sees the end of the answer (FIN) while we keep reading."""
    try:
        stream.socket.shutdown(socket.SHUT_WR)
    except (OSError, AttributeError):
        pass


async def answer_and_linger(stream: iostream.IOStream, response: bytes, linger: Linger) -> None:
    """Write a complete answer, then read and drop what the client still sends (bounded by
    `linger`) before closing. For answers given before a request could be parsed: its length
    is unknown, so the drain ends when the client closes (it has read the answer) or at the bound."""
    try:
        await stream.write(response)
        half_close(stream)
        deadline = stream.io_loop.time() + linger.seconds
        drained = 0
        while drained < linger.max_bytes:
            chunk = await gen.with_timeout(deadline, stream.read_bytes(64 * 1024, partial=True),
                                           quiet_exceptions=iostream.StreamClosedError)
            drained += len(chunk)
    except (TimeoutError, iostream.StreamClosedError):
        pass
    finally:
        stream.close()


class LingeringConnection(HTTP1Connection):
    """One request on a server connection, that lingers after an early answer."""

    def __init__(self, stream: iostream.IOStream, params: HTTP1ConnectionParameters, context: object,
                 linger: Linger) -> None:
        super().__init__(stream, False, params, context)
        self.linger = linger
        self.answered = False  # the answer's headers went out
        self.lingering = False
        self.drained = 0
        self._linger_timer: object | None = None

    def write_headers(self, start_line: Any, headers: httputil.HTTPHeaders,
                      chunk: bytes | None = None) -> Future[None]:
        self.answered = True
        if not self._read_finished:
            # An answer before the body ended: this connection ends after the request (Tornado
            # decides that in finish(), after the headers went out); say so in the answer.
            self._disconnect_on_finish = True
        return super().write_headers(start_line, headers, chunk)

    def finish(self) -> None:
        if not self._read_finished and not self.lingering and self._body_expected():
            self._start_lingering()
        super().finish()

    def _body_expected(self) -> bool:
        headers = self._request_headers
        if headers is None:
            return False
        if "Transfer-Encoding" in headers:
            return True
        length = headers.get("Content-Length", "").strip()
        return bool(length) and length != "0"

    def _start_lingering(self) -> None:
        self.lingering = True
        # The handler's body limit no longer matters (nothing is kept); the linger's bound does.
        self._max_body_size = sys.maxsize
        # From now on Tornado's body reader hands chunks to _discard instead of the handler.
        self._deliver_body = self._discard  # type: ignore[method-assign]
        self._linger_timer = self.stream.io_loop.call_later(self.linger.seconds, self._stop_lingering)

    async def _discard(self, delegate: httputil.HTTPMessageDelegate, data: bytes) -> None:
        self.drained += len(data)
        if self.drained >= self.linger.max_bytes:
            self._stop_lingering()

    def _stop_lingering(self) -> None:
        """The bound is reached: close now, whatever is left unread."""
        self._linger_timer = None
        self.stream.close()

    def _finish_request(self, future: Any) -> None:
        if self.lingering and not self._read_finished and not self.stream.closed():
            # The answer is written; the body is still coming. Keep reading it (into _discard);
            # _read_message closes the connection when it has ended.
            self._clear_callbacks()
            half_close(self.stream)
            if not self._finish_future.done():
                self._finish_future.set_result(None)
            return
        super()._finish_request(future)

    def _read_body(self, code: int, headers: httputil.HTTPHeaders,
                   delegate: httputil.HTTPMessageDelegate) -> Awaitable[None] | None:
        if not self._write_finished:
            return super()._read_body(code, headers, delegate)  # every accepted request
        # Answered in prepare(), before the body: read it only to drop it.
        try:
            body = super()._read_body(code, headers, delegate)
        except httputil.HTTPInputError:
            self.stream.close()  # malformed framing after our answer: nothing more to read
            return None
        return None if body is None else self._drain_quietly(body)

    async def _drain_quietly(self, body: Awaitable[None]) -> None:
        try:
            await body
        except httputil.HTTPInputError:
            # Tornado would write "400 Bad Request" after the answer we already gave.
            self.stream.close()

    async def _read_message(self, delegate: httputil.HTTPMessageDelegate) -> bool:
        try:
            keep_alive = await super()._read_message(delegate)
        finally:
            if self._linger_timer is not None:
                self.stream.io_loop.remove_timeout(self._linger_timer)  # type: ignore[arg-type]
                self._linger_timer = None
        if self.lingering:
            self.close()  # the body has been read: this close sends no reset
            return False
        return keep_alive
