"""The /v1 gate: `ApiHandler`, the base of every /v1 handler (api.py, pages.py, databases.py).

Every request goes through the same gate: an outage (which fails everything), then
Authorization (401, before routing: Notion answers an unknown path with a bad token 401),
route and method (400 invalid_request_url), Notion-Version (400 missing_version), the token's
request budget (429), then an injected fault, then the endpoint's own validation. Here too:
carrying out the faults, Notion-shaped replies and errors, request accounting. The rules
themselves live in `rules.py`, `blocks.py`, `properties.py` and `filetypes.py`.
"""
from __future__ import annotations

import asyncio
import json
import socket
import struct
import uuid
from typing import TYPE_CHECKING, Any, ClassVar

import tornado.web

from . import errors, objects, rules
from .errors import NotionError, validation_error
from .faults import STATUS_KINDS
from .store import Upload

if TYPE_CHECKING:
    from .state import Emulator

# Notion-Version values Notion has published; anything else is refused like Notion does.
KNOWN_VERSIONS = frozenset(
    {
        "2021-05-11",
        "2021-05-13",
        "2021-08-16",
        "2022-02-22",
        "2022-06-28",
        "2025-09-03",
        "2026-03-11",
    }
)


class ApiHandler(tornado.web.RequestHandler):
    """Common gate, fault handling, Notion-shaped replies and request accounting."""

    # HTTP method -> endpoint name (names used by faults and stats); other methods are 400.
    ENDPOINTS: ClassVar[dict[str, str]] = {}
    # The Notion-Versions that have this path: from SINCE_VERSION on, before UNTIL_VERSION
    # (the data source endpoints came with 2025-09-03, which retired database query).
    SINCE_VERSION: ClassVar[str | None] = None
    UNTIL_VERSION: ClassVar[str | None] = None
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")

    def initialize(self, emu: Emulator) -> None:
        self.emu = emu
        self.endpoint = self.ENDPOINTS.get(self.request.method or "", "unknown")
        self.token = ""
        self.version = ""
        self.fault: str | None = None
        self._outcome: str | None = None  # set when the request ends without a status
        self.close_after_answer = False  # answered before its body was read (send)
        self._ended = False
        # Resolved by on_connection_close; pauses (stall, slow) wait on it.
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        emu.stats.begin(self.endpoint)

    # --- plumbing ------------------------------------------------------------------------

    @property
    def request_id(self) -> str:
        rid = getattr(self, "_request_id", None)
        if rid is None:
            rid = self._request_id = str(uuid.uuid4())
        return rid

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        # Notion's header (the official SDKs read it); x-request-id is the emulator's older name.
        self.set_header("x-notion-request-id", self.request_id)
        self.set_header("x-request-id", self.request_id)

    def on_finish(self) -> None:
        self._end(self._outcome or str(self.get_status()))

    def on_connection_close(self) -> None:
        if not self._closed.done():
            self._closed.set_result(None)
        self._end(self._outcome or "disconnected")

    def _end(self, outcome: str) -> None:
        if not self._ended:
            self._ended = True
            self.emu.stats.end(self.endpoint, outcome)
            self.release()

    def release(self) -> None:
        """Free per-request resources (overridden by send)."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, NotionError):
            pass
        elif isinstance(exc, tornado.web.HTTPError) and exc.status_code < 500:
            # Tornado's own refusals (e.g. a path that is not UTF-8) in Notion's shape.
            code = errors.CODE_FOR_STATUS.get(exc.status_code, "invalid_request")
            exc = NotionError(exc.status_code, code, "Invalid request.")
        else:
            # An emulator bug: answer like Notion would, never with a stack trace.
            exc = NotionError(500, "internal_server_error", "Unexpected error occurred.")
        self.set_status(exc.status_code, reason=exc.reason)
        for name, value in exc.headers.items():
            self.set_header(name, value)
        if self.close_after_answer:
            # Tornado closes a connection whose request body was not read, but only after the
            # answer, whose headers would otherwise say nothing: a client would reuse the
            # connection and meet a reset.
            self.set_header("Connection", "close")
        self.finish(json.dumps(exc.body(self.request_id)))

    @property
    def base_url(self) -> str:
        return f"{self.request.protocol}://{self.request.host}"

    def reply(self, obj: dict[str, Any]) -> None:
        if self.fault == "ambiguous":
            # The work is done (stored, created, completed, attached) but the answer is lost.
            raise errors.for_status(self.emu.faults.ambiguous_status())
        body = dict(obj)
        body["request_id"] = self.request_id
        self.finish(json.dumps(body))

    def json_body(self) -> dict[str, Any]:
        raw = self.request.body
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise errors.invalid_json() from None
        if not isinstance(data, dict):
            raise validation_error(
                f"body failed validation: body should be an object, instead was `{json.dumps(data)[:100]}`."
            )
        return data

    # --- the gate ------------------------------------------------------------------------

    def gate(self, count: bool = True) -> None:
        """Notion's checks before an endpoint's work; `count` spends the token's rate limit
        here (a send may count later: count_request)."""
        emu = self.emu
        if emu.outage.active():
            raise errors.for_status(emu.outage.status, retry_after_s=emu.outage.remaining_s())
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or token not in emu.config.tokens:
            raise errors.unauthorized()
        self.token = token
        if self.request.method not in self.ENDPOINTS:
            raise errors.invalid_request_url()
        version = self.request.headers.get("Notion-Version", "").strip()
        if not version:
            raise errors.missing_version()
        if version not in KNOWN_VERSIONS:
            raise validation_error(
                f"Notion-Version header failed validation: Notion-Version header should be one "
                f"of {', '.join(sorted(KNOWN_VERSIONS))}, instead was `{version}`."
            )
        self.version = version
        if (self.SINCE_VERSION and version < self.SINCE_VERSION) or (
            self.UNTIL_VERSION and version >= self.UNTIL_VERSION
        ):
            raise errors.invalid_request_url()
        if count:
            self.count_request()

    def count_request(self) -> None:
        emu = self.emu
        retry_after_s = emu.limiter.check(self.token)
        if retry_after_s:
            emu.stats.rate_limited += 1
            raise errors.rate_limited(retry_after_s)

    async def prepare(self) -> None:
        self.emu.stats.bytes_received += len(self.request.body or b"")
        self.gate()
        self.fault = self.emu.faults.pick(self.endpoint)
        await self.apply_fault_before()

    async def apply_fault_before(self) -> None:
        """Carry out the chosen fault's part that happens before the endpoint's work."""
        kind = self.fault
        plan = self.emu.faults.plan
        if kind is None or kind == "ambiguous":
            return
        if kind in STATUS_KINDS:
            raise errors.for_status(int(kind), plan.retry_after_s, plan.rate_limit_reason)
        if kind == "reset":
            self.reset_connection()
            self.abandon()
        elif kind == "stall":
            await self.stall()
        elif kind == "slow":
            if not await self.pause(plan.slow_s):
                self.abandon()

    async def stall(self) -> None:
        """Answer nothing for stall_s; then, if the client is still there, a 504 (Notion's
        answer to a request that outlived its server-side time limit). The operation is not
        performed. Cut short (no answer) when the client leaves or the emulator stops."""
        if await self.pause(self.emu.faults.plan.stall_s):
            raise errors.for_status(504)
        self.abandon()

    async def pause(self, seconds: float) -> bool:
        """Wait; True when the time passed, False when the client left or the emulator stops.

        Why not asyncio.sleep: a stalled request must not outlive its client or the process.
        """
        if self._closed.done():
            return False
        done, _ = await asyncio.wait({self._closed, self.emu.stopping}, timeout=seconds)
        return not done

    def reset_connection(self) -> None:
        """Drop the TCP connection with a RST, as a crashed proxy or a cut network would."""
        self._outcome = "reset"
        stream = self.request.connection.stream  # type: ignore[union-attr]
        sock = stream.socket
        if sock is not None:
            # SO_LINGER with a zero timeout turns close() into a RST instead of a FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stream.close()

    def abandon(self) -> None:
        """End the request without an answer: close the connection (if still open) and mark
        the request finished. Callers return right after; Tornado skips the handler method
        when this happens in prepare()."""
        self._outcome = self._outcome or "disconnected"
        stream = self.request.connection.stream  # type: ignore[union-attr]
        if not stream.closed():
            stream.close()
        # Writing to a closed stream is a quiet no-op in Tornado; finish() still runs
        # on_finish and marks the request done.
        self.finish()

    # --- shared lookups ------------------------------------------------------------------

    def owned_upload(self, raw_id: str) -> Upload:
        upload_id = rules.normalize_uuid(raw_id)
        if upload_id is None:
            raise validation_error(
                "path failed validation: path.file_upload_id should be a valid uuid, "
                f"instead was `{raw_id}`."
            )
        upload = self.emu.store.get(upload_id)
        if upload is None or upload.owner != self.token:
            raise errors.object_not_found("file upload", upload_id)
        return upload

    def upload_json(self, upload: Upload) -> dict[str, Any]:
        return objects.file_upload(upload, self.emu.clock.now(), self.base_url, self.version)


class UnknownRouteHandler(ApiHandler):
    """Everything else: the gate answers 400 invalid_request_url (or the outage status)."""

    ENDPOINTS = {}
