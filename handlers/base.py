"""Shared handler behaviour: JSON bodies, error answers, CORS for browser clients.

Handlers raise (a row of handlers/errors.py, or an engine error) and write_error answers, for
Tornado's own errors too; only an answer given outside the handler's own flow (a writer
detached mid-body) calls send_failure itself."""
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import tornado.web

from engine.access import Access
from engine.errors import ServiceUnavailable
from engine.grants import Grant
from handlers.errors import (
    INVALID_JSON,
    NOT_AN_OBJECT,
    UNKNOWN_ENDPOINT,
    URL_TOO_LONG,
    describe,
    json_bytes,
    reason_phrase,
    tornado_error,
)

TUS_VERSION = "1.0.0"
EXPOSED_HEADERS = ", ".join([
    "Upload-Offset", "Location", "Upload-Length", "Upload-Expires", "Upload-Metadata",
    "Tus-Version", "Tus-Resumable", "Tus-Max-Size", "Tus-Extension", "Tus-Checksum-Algorithm",
    "Upload-Status", "Notion-File-Upload-Id", "Retry-After",
])
ALLOWED_HEADERS = ", ".join([
    "Authorization", "Content-Type", "Upload-Offset", "Upload-Length", "Upload-Metadata",
    "Upload-Checksum", "Upload-Defer-Length", "Upload-Concat", "Tus-Resumable",
    "X-HTTP-Method-Override", "X-Requested-With",
])


async def _nothing() -> None:
    return None


_DECLARED: dict[type, frozenset[str]] = {}


def declared(cls: type) -> frozenset[str]:
    """The attributes a handler class (and its bases of ours) declares with a type."""
    if cls not in _DECLARED:
        _DECLARED[cls] = frozenset(name for klass in cls.__mro__ if klass.__module__.startswith("handlers.")
                                   for name in vars(klass).get("__annotations__", {}))
    return _DECLARED[cls]


class BaseHandler(tornado.web.RequestHandler):
    access: Access = Access()
    grant: Grant | None = None  # the request's upload grant, once owner() found one

    def initialize(self, **given: Any) -> None:
        """The route's arguments (server.py) become the handler's attributes: each one must be
        declared by the class (`service: UploadService`, ...), so that a misspelt one fails."""
        for name, value in given.items():
            if name not in declared(type(self)):
                raise TypeError(f"{type(self).__name__} declares no {name!r}")
            if value is not None:
                setattr(self, name, value)
        self.set_default_headers()  # Tornado set them before initialize(), without the access rules

    def set_default_headers(self) -> None:
        origin = self.request.headers.get("Origin")
        if origin and self.origin_allowed(origin):
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Vary", "Origin")
            self.set_header("Access-Control-Expose-Headers", EXPOSED_HEADERS)

    def origin_allowed(self, origin: str) -> bool:
        """CORS_ORIGINS lists who may call us from a browser; our own origin always may."""
        allowed = self.access.cors_origins
        if "*" in allowed or origin.rstrip("/") in allowed:
            return True
        return origin.rstrip("/") == self.own_origin()

    def own_origin(self) -> str:
        """scheme://host as the client sees us (behind a router: X-Forwarded-Proto/-Host)."""
        proto = (self.request.headers.get("X-Forwarded-Proto") or self.request.protocol).split(",")[0].strip()
        host = (self.request.headers.get("X-Forwarded-Host") or self.request.host).split(",")[0].strip()
        return f"{proto}://{host}"

    def owner(self, creating: bool = False) -> str | None:
        """The owner: an upload token's name, or an upload grant's `sub` (the grant is kept in
        self.grant). Raises Unauthorized (with the reason) when a token or grant is required and
        missing or not valid. An expired grant still identifies the owner of existing uploads;
        `creating` needs an unexpired one."""
        self.grant = None
        if not self.access.enabled:
            return None
        identity = self.access.authenticate(self.request.headers.get("Authorization"), creating=creating)
        self.grant = identity.grant
        return identity.owner

    async def admit_grant(self, *, size: int, filename: str | None, content_type: str | None,
                          destination: str | None) -> Callable[[], Awaitable[None]]:
        """At creation, before a byte is read: the request's grant (if any) must allow this
        upload (403 with the reason otherwise). Returns what undoes its count of uploads, for a
        creation that then fails."""
        grant: Grant | None = getattr(self, "grant", None)
        scope = self.access.grant_scope
        if grant is None or scope is None:
            return _nothing
        return await scope.admit(grant, size=size, filename=filename, content_type=content_type,
                                 destination=destination)

    def may_see_details(self) -> bool:
        """Detailed health and metrics: public, or only with an upload token (OBSERVABILITY_ACCESS)."""
        return self.access.observability_public or (
            self.access.identify(self.request.headers.get("Authorization")) is not None)

    def check_url_length(self) -> None:
        if len(self.request.uri or "") > self.access.max_url_bytes:
            raise URL_TOO_LONG(limit=self.access.max_url_bytes)

    def options(self, *args: Any) -> None:
        self.set_header("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
        self.set_header("Access-Control-Allow-Headers", ALLOWED_HEADERS)
        self.set_header("Access-Control-Max-Age", "86400")
        self.set_status(204)
        self.finish()

    def write_json(self, status: int, body: Any) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json_bytes(body))

    def json_body(self) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"null")
        except ValueError:
            raise INVALID_JSON() from None
        if not isinstance(data, dict):
            raise NOT_AN_OBJECT()
        return data

    def send_failure(self, exc: BaseException) -> None:
        if self._finished:
            return
        response = describe(exc)
        self.clear()
        self.set_default_headers()
        self.set_status(response.status, reason_phrase(response.status))
        for name, value in response.headers.items():
            self.set_header(name, value)
        self.extra_failure_headers()
        if self.request.method == "HEAD":
            self.finish()
            return
        self.write_json(response.status, response.body)

    def extra_failure_headers(self) -> None:
        """Headers a protocol adds to every error (tus: Tus-Resumable)."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The one answer to an error: what a handler raised, or Tornado's own (a method the
        handler lacks, a malformed body) as a row of the table. JSON, never a trace."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if exc is None or isinstance(exc, tornado.web.HTTPError):
            exc = tornado_error(status_code, self._reason, method=self.request.method,
                                target=self.request.path, allow=self.allowed_methods())
        self.send_failure(exc)

    def allowed_methods(self) -> str:
        """The methods this handler answers (the `Allow` of a 405)."""
        return ", ".join(m for m in self.SUPPORTED_METHODS
                         if getattr(type(self), m.lower()) is not getattr(tornado.web.RequestHandler, m.lower()))

    def log_exception(self, typ: type[BaseException] | None, value: BaseException | None,
                      tb: TracebackType | None) -> None:
        # Raised errors are answers, not crashes; an unexpected one is logged once, in describe().
        if isinstance(value, tornado.web.HTTPError):
            super().log_exception(typ, value, tb)


def refuse_while_draining(handler: BaseHandler, service) -> None:
    """A restarting server takes no new work; the client retries (elsewhere, behind a router)."""
    if service.draining:
        handler.set_header("Connection", "close")
        raise ServiceUnavailable("the server is restarting; retry shortly", retry_after_s=2)


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        raise UNKNOWN_ENDPOINT()
