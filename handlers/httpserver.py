"""The relay's HTTP/1 server: answers the connection gives before (or instead of) a handler.

Tornado answers what it cannot parse with a bare `400 Bad Request` (no body) and closes the
connection without a word when a header block is larger than its limit. Here every such answer
is a row of handlers/errors.py, rendered as JSON by the same describe() as a handler's errors,
and the connection then lingers (handlers/lingering.py) so that the client reads it:

- a header block (or one line of it) larger than MAX_HEADER_BYTES: 431. RelayIOStream stops
  reading at the limit instead of failing, so there is a connection left to answer on;
- a request Tornado would refuse as malformed (its line, a header line, Host, the query string,
  the body's framing): 400;
- a body larger than the request may have (the JSON API's limit, an upload's remaining bytes
  when chunked): 413;
- a request a ConnectionGate refuses as soon as its headers are read (EarlyAnswer: 503 at the
  cap on open connections, handlers/slowclients.py).

A ConnectionGate is also told where each connection is between requests.

This leans on Tornado's HTTP/1 internals (pinned in requirements.txt): HTTP1Connection's
_read_message, _read_body and _parse_headers, and HTTP1ServerConnection's request loop.
"""
from __future__ import annotations

import asyncio
import functools
import re
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from tornado import gen, httputil, iostream
from tornado.http1connection import HTTP1ConnectionParameters, HTTP1ServerConnection
from tornado.httpserver import HTTPServer, _HTTPRequestContext
from tornado.ioloop import IOLoop
from tornado.log import app_log, gen_log

from handlers.errors import HEADER_TOO_LARGE, MALFORMED_REQUEST, REQUEST_TOO_LARGE, http_answer
from handlers.lingering import Linger, LingeringConnection, answer_and_linger

# Tornado reads a request's header block with this pattern (http1connection._read_message_inner).
TORNADO_HEADER_END = b"\r?\n\r?\n"
# What Tornado says when a chunked body grows past the limit (http1connection._read_chunked_body).
TORNADO_CHUNKED_TOO_LARGE = "chunked body too large"


class EarlyAnswer(Exception):
    """A complete answer given instead of handling a request; the connection then lingers
    (bounded by `linger`, else the connection's own) and closes."""

    def __init__(self, response: bytes, linger: Linger | None = None) -> None:
        super().__init__()
        self.response = response
        self.linger = linger


class ConnectionGate(Protocol):
    """Told where each connection of a RelayHTTPServer is, between requests."""

    def waiting(self, conn: RelayServerConnection) -> None:
        """No request in progress: `conn` waits for (the rest of) a request's header block —
        before its first request, or as a keep-alive between two."""

    def started(self, conn: RelayServerConnection, start_line: str) -> EarlyAnswer | None:
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


class RelayConnection(LingeringConnection):
    """One request on a server connection; see the module docstring."""

    def __init__(self, stream: iostream.IOStream, params: HTTP1ConnectionParameters, context: object,
                 linger: Linger, started: Callable[[str], EarlyAnswer | None] | None = None) -> None:
        super().__init__(stream, params, context, linger)
        self.started = started

    def _parse_headers(self, data: bytes) -> tuple[str, httputil.HTTPHeaders]:
        if not (data.endswith(b"\n\n") or data.endswith(b"\n\r\n")):
            # RelayIOStream stopped at the limit, inside the block.
            raise EarlyAnswer(http_answer(HEADER_TOO_LARGE(limit=self.params.max_header_size)))
        try:
            start_line, headers = super()._parse_headers(data)
            # Why: Tornado checks the request line, Host and the query string later, where a
            # failure gets its bare 400; the same checks here answer in JSON.
            httputil.HTTPServerRequest(start_line=httputil.parse_request_start_line(start_line), headers=headers)
        except httputil.HTTPInputError as exc:
            raise self.refusal(exc) from None
        if self.started is not None:
            answer = self.started(start_line)
            if answer is not None:
                raise answer
        return start_line, headers

    def _read_body(self, code: int, headers: httputil.HTTPHeaders,
                   delegate: httputil.HTTPMessageDelegate) -> Awaitable[None] | None:
        if self._write_finished:
            return super()._read_body(code, headers, delegate)  # answered already: read to drop it
        length = headers.get("Content-Length", "").strip()
        if length.isdigit() and int(length) > self._max_body_size:
            raise EarlyAnswer(http_answer(REQUEST_TOO_LARGE(limit=self._max_body_size)))
        try:
            body = super()._read_body(code, headers, delegate)
        except httputil.HTTPInputError as exc:
            raise self.refusal(exc) from None
        return None if body is None else self._read_or_refuse(body)

    async def _read_or_refuse(self, body: Awaitable[None]) -> None:
        try:
            await body
        except httputil.HTTPInputError as exc:
            raise self.refusal(exc) from None

    def refusal(self, exc: httputil.HTTPInputError) -> Exception:
        """Tornado's complaint about the request, as our answer (unless one has begun)."""
        if self.answered:
            return exc  # Tornado closes the connection
        if str(exc) == TORNADO_CHUNKED_TOO_LARGE:
            return EarlyAnswer(http_answer(REQUEST_TOO_LARGE(limit=self._max_body_size)))
        return EarlyAnswer(http_answer(MALFORMED_REQUEST(detail=str(exc)[:200])))

    async def _read_message(self, delegate: httputil.HTTPMessageDelegate) -> bool:
        try:
            return await super()._read_message(delegate)
        except EarlyAnswer as answer:
            await answer_and_linger(self.stream, answer.response, answer.linger or self.linger)
            return False


class RelayServerConnection(HTTP1ServerConnection):
    def __init__(self, stream: iostream.IOStream, params: HTTP1ConnectionParameters, context: object,
                 linger: Linger, gate: ConnectionGate | None = None) -> None:
        super().__init__(stream, params, context)
        self.linger = linger
        self.gate = gate

    async def _server_request_loop(self, delegate: httputil.HTTPServerConnectionDelegate) -> None:
        # Tornado 6.6's loop, with a RelayConnection for each request.
        try:
            while True:
                started = None
                if self.gate is not None:
                    self.gate.waiting(self)
                    started = functools.partial(self.gate.started, self)
                conn = RelayConnection(self.stream, self.params, self.context, self.linger, started)
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


class RelayHTTPServer(HTTPServer):
    """An HTTPServer whose connections answer in JSON what Tornado would not, and linger after
    early answers."""

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

    def connection_for(self, stream: iostream.IOStream, address: tuple) -> RelayServerConnection:
        context = _HTTPRequestContext(stream, address, self.protocol, self.trusted_downstream)
        return RelayServerConnection(stream, self.conn_params, context, self.linger, self.gate)

    def serve(self, conn: RelayServerConnection) -> None:
        self._connections.add(conn)
        conn.start_serving(self)

    def handle_stream(self, stream: iostream.IOStream, address: tuple) -> Awaitable[None] | None:  # type: ignore[override]
        self.serve(self.connection_for(stream, address))
        return None
