"""Answers that reach the client: a lingering close after an early answer, and 431 for
oversized request headers.

Why: when a server closes a socket whose receive buffer still holds unread bytes, the kernel
sends a reset (RFC 1122, 4.2.2.13), and a reset makes the client's kernel throw away what it
had received but not yet read: our answer. Tornado closes at once when a handler answers before
the body was read (a refusal in prepare(), or a request detached mid-body), so an ordinary
client that sends its whole body before reading (Python's http.client, curl) saw a reset
instead of 409/401/413/423... And an oversized header block made Tornado close the connection
without a word.

So, for a request answered before its body ended: the answer goes out with `Connection: close`,
the rest of the body is read and thrown away — at most LINGER_BYTES, for at most
LINGER_SECONDS — and only then is the connection closed. Requests that are answered after their
body (every accepted upload) do no extra work: the counting reader is swapped in per connection,
only once an early answer was given.

A server may also watch where each connection is between requests (a ConnectionGate: the cap on
open connections in handlers/slowclients.py) and answer a request as soon as its headers are
read (EarlyAnswer), with the same lingering close.

This leans on Tornado's HTTP/1 internals (pinned in requirements.txt): HTTP1Connection's
_read_message, _read_body, _deliver_body, _parse_headers and _finish_request, and
HTTP1ServerConnection's request loop.
"""
from __future__ import annotations

import asyncio
import functools
import json
import re
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from tornado import gen, httputil, iostream
from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters, HTTP1ServerConnection
from tornado.httpserver import HTTPServer, _HTTPRequestContext
from tornado.ioloop import IOLoop
from tornado.log import app_log, gen_log

# The largest part Notion takes (20 MiB): a client's chunk is no larger (the page sends 8 MiB).
LINGER_BYTES = 20 * 2**20
LINGER_SECONDS = 5.0
# Tornado reads a request's header block with this pattern (http1connection._read_message_inner).
TORNADO_HEADER_END = b"\r?\n\r?\n"


@dataclass(frozen=True)
class Linger:
    """How much of an unwanted body is read (and dropped) after an early answer, and how long."""
    max_bytes: int = LINGER_BYTES
    seconds: float = LINGER_SECONDS


def json_response(status: int, reason: str, body: dict[str, Any], extra: str = "") -> bytes:
    """A complete HTTP/1.1 answer for the places that have no handler to write one."""
    data = json.dumps(body, separators=(",", ":")).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n"
            f"Cache-Control: no-store\r\n{extra}Connection: close\r\nContent-Length: {len(data)}\r\n\r\n")
    return head.encode("latin1") + data


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


class HeadersTooLarge(Exception):
    """The request's header block (or one of its lines) is larger than MAX_HEADER_BYTES."""


class EarlyAnswer(Exception):
    """A complete answer given instead of handling a request whose headers were just read; the
    connection then lingers (bounded by `linger`, else the connection's own) and closes."""

    def __init__(self, response: bytes, linger: Linger | None = None) -> None:
        super().__init__()
        self.response = response
        self.linger = linger


class ConnectionGate(Protocol):
    """Told where each connection of a LingeringHTTPServer is, between requests."""

    def waiting(self, conn: LingeringServerConnection) -> None:
        """No request in progress: `conn` waits for (the rest of) a request's header block —
        before its first request, or as a keep-alive between two."""

    def started(self, conn: LingeringServerConnection, start_line: str) -> EarlyAnswer | None:
        """A request's header block arrived on `conn`: None lets the request go on."""


@functools.lru_cache(maxsize=8)
def header_block_pattern(limit: int) -> re.Pattern[bytes]:
    """The end of a header block, or the first `limit` bytes when no block ends within them.

    Tornado's own read would close the connection at the limit (UnsatisfiableReadError) before
    anybody could answer; this read stops there instead, so the connection can answer 431."""
    return re.compile(rb"\r?\n\r?\n|\A(?:(?!\r?\n\r?\n)[\s\S]){%d}" % limit)


class RelayIOStream(iostream.IOStream):
    def read_until_regex(self, regex: bytes, max_bytes: int | None = None) -> Awaitable[bytes]:
        if max_bytes is not None and regex == TORNADO_HEADER_END:
            return super().read_until_regex(header_block_pattern(max_bytes), max_bytes)  # type: ignore[arg-type]
        return super().read_until_regex(regex, max_bytes)


class LingeringConnection(HTTP1Connection):
    """One request on a server connection; see the module docstring."""

    def __init__(self, stream: iostream.IOStream, params: HTTP1ConnectionParameters, context: object,
                 linger: Linger, started: Callable[[str], EarlyAnswer | None] | None = None) -> None:
        super().__init__(stream, False, params, context)
        self.linger = linger
        self.started = started
        self.lingering = False
        self.drained = 0
        self._linger_timer: object | None = None

    # --- headers ---------------------------------------------------------------------------

    def _parse_headers(self, data: bytes) -> tuple[str, httputil.HTTPHeaders]:
        if not (data.endswith(b"\n\n") or data.endswith(b"\n\r\n")):
            raise HeadersTooLarge()  # RelayIOStream stopped at the limit, inside the block
        start_line, headers = super()._parse_headers(data)
        if self.started is not None:
            answer = self.started(start_line)
            if answer is not None:
                raise answer
        return start_line, headers

    def _headers_too_large(self) -> bytes:
        limit = self.params.max_header_size
        return json_response(431, "Request Header Fields Too Large", {
            "error": f"the request's headers are larger than {limit} bytes (MAX_HEADER_BYTES)",
            "code": "header_too_large"})

    # --- answering early -------------------------------------------------------------------

    def write_headers(self, start_line: Any, headers: httputil.HTTPHeaders, chunk: bytes | None = None):
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
        except HeadersTooLarge:
            await answer_and_linger(self.stream, self._headers_too_large(), self.linger)
            return False
        except EarlyAnswer as answer:
            await answer_and_linger(self.stream, answer.response, answer.linger or self.linger)
            return False
        finally:
            if self._linger_timer is not None:
                self.stream.io_loop.remove_timeout(self._linger_timer)  # type: ignore[arg-type]
                self._linger_timer = None
        if self.lingering:
            self.close()  # the body has been read: this close sends no reset
            return False
        return keep_alive


class LingeringServerConnection(HTTP1ServerConnection):
    def __init__(self, stream: iostream.IOStream, params: HTTP1ConnectionParameters, context: object,
                 linger: Linger, gate: ConnectionGate | None = None) -> None:
        super().__init__(stream, params, context)
        self.linger = linger
        self.gate = gate

    async def _server_request_loop(self, delegate: httputil.HTTPServerConnectionDelegate) -> None:
        # Tornado 6.6's loop, with a LingeringConnection for each request.
        try:
            while True:
                started = None
                if self.gate is not None:
                    self.gate.waiting(self)
                    started = functools.partial(self.gate.started, self)
                conn = LingeringConnection(self.stream, self.params, self.context, self.linger, started)
                request_delegate = delegate.start_request(self, conn)
                try:
                    ret = await conn.read_response(request_delegate)
                except (iostream.StreamClosedError, iostream.UnsatisfiableReadError, asyncio.CancelledError):
                    return
                except Exception:
                    gen_log.error("Uncaught exception", exc_info=True)
                    conn.close()
                    return
                if not ret:
                    return
                await asyncio.sleep(0)
        finally:
            delegate.on_close(self)


class LingeringHTTPServer(HTTPServer):
    """An HTTPServer whose connections linger after early answers and answer 431."""

    # HTTPServer is a tornado Configurable: it is set up in initialize(), not __init__().
    def initialize(self, *args: Any, linger: Linger = Linger(), **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(*args, **kwargs)
        self.linger = linger
        self.gate: ConnectionGate | None = None

    def _handle_connection(self, connection: socket.socket, address: Any) -> None:
        if self.ssl_options is not None:
            # TLS ends at the platform's router; a TLS server keeps Tornado's streams (and its
            # silent close for oversized headers).
            super()._handle_connection(connection, address)
            return
        try:
            stream = RelayIOStream(connection, max_buffer_size=self.max_buffer_size,
                                   read_chunk_size=self.read_chunk_size)
            future = self.handle_stream(stream, address)
            if future is not None:
                IOLoop.current().add_future(gen.convert_yielded(future), lambda f: f.result())
        except Exception:
            app_log.error("Error in connection callback", exc_info=True)

    def connection_for(self, stream: iostream.IOStream, address: tuple) -> LingeringServerConnection:
        context = _HTTPRequestContext(stream, address, self.protocol, self.trusted_downstream)
        return LingeringServerConnection(stream, self.conn_params, context, self.linger, self.gate)

    def serve(self, conn: LingeringServerConnection) -> None:
        self._connections.add(conn)
        conn.start_serving(self)

    def handle_stream(self, stream: iostream.IOStream, address: tuple) -> Awaitable[None] | None:  # type: ignore[override]
        self.serve(self.connection_for(stream, address))
        return None
