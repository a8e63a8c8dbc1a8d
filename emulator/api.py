"""The /v1 endpoints: Notion's File Upload API and users; pages and blocks are in pages.py.

Every request goes through the same gate: an outage (which fails everything), then
Authorization (401, before routing: Notion answers an unknown path with a bad token 401),
route and method (400 invalid_request_url), Notion-Version (400 missing_version), the token's
request budget (429), then an injected fault, then the endpoint's own validation. The rules
themselves live in `rules.py`, `blocks.py` and `filetypes.py`.
"""
from __future__ import annotations

import asyncio
import json
import socket
import struct
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

import tornado.web
from tornado.web import stream_request_body

from . import errors, imports, objects, rules
from .errors import NotionError, validation_error
from .faults import STATUS_KINDS
from .multipart import FormError, FormStream, boundary_of
from .store import Upload

if TYPE_CHECKING:
    from .app import Emulator

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

    def gate(self) -> None:
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
        retry_after_s = emu.limiter.check(token)
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


# --- file uploads ----------------------------------------------------------------------------


class FileUploadsHandler(ApiHandler):
    ENDPOINTS = {"POST": "create", "GET": "list"}

    def post(self) -> None:
        emu = self.emu
        spec = rules.parse_create(self.json_body(), emu.plan)
        now = emu.clock.now()
        upload = emu.store.create(
            owner=self.token,
            mode=spec.mode,
            filename=spec.filename,
            content_type=spec.content_type,
            total_parts=spec.number_of_parts,
            expires_at=now + emu.config.expiry_s,
            external_url=spec.external_url,
        )
        if spec.mode == "external_url":
            # Notion answers `pending` and imports the file afterwards (imports.py).
            imports.start(emu, upload)
        self.reply(self.upload_json(upload))

    def get(self) -> None:
        status = self.get_query_argument("status", None)
        if status is not None and status not in rules.UPLOAD_STATUSES:
            raise validation_error(
                "query failed validation: status should be one of "
                f"{', '.join(rules.UPLOAD_STATUSES)}, instead was `{status}`."
            )
        now = self.emu.clock.now()
        uploads = [
            u
            for u in self.emu.store.newest_first(owner=self.token)
            if status is None or u.status(now) == status
        ]
        page, cursor = rules.paginate(
            uploads,
            key=lambda u: u.id,
            start_cursor=self.get_query_argument("start_cursor", None),
            page_size=self.get_query_argument("page_size", None),
        )
        results = [self.upload_json(u) for u in page]
        self.reply(objects.listing("file_upload", results, cursor))


class RetrieveHandler(ApiHandler):
    ENDPOINTS = {"GET": "retrieve"}

    def get(self, raw_id: str) -> None:
        self.reply(self.upload_json(self.owned_upload(raw_id)))


class CompleteHandler(ApiHandler):
    ENDPOINTS = {"POST": "complete"}

    async def post(self, raw_id: str) -> None:
        emu = self.emu
        upload = self.owned_upload(raw_id)
        self.json_body()  # no parameters, but a body that is there must be JSON
        rules.check_completable(upload, emu.clock.now(), emu.max_file_bytes)
        upload.completing = True
        try:
            size, sha256 = await emu.store.file_digest(upload)
        finally:
            upload.completing = False
        upload.size, upload.sha256 = size, sha256
        upload.stored_status = "uploaded"
        emu.store.touch(upload)
        if emu.config.discard_files:
            emu.store.delete_files(upload)
        self.reply(self.upload_json(upload))


@stream_request_body
class SendHandler(ApiHandler):
    """POST /v1/file_uploads/{id}/send: the multipart body is parsed as it streams in and
    the file part goes to disk; the part is validated and committed once the body is read."""

    ENDPOINTS = {"POST": "send"}

    def initialize(self, emu: Emulator) -> None:
        super().initialize(emu)
        self.upload: Upload | None = None
        self.form: FormStream | None = None
        self.form_error: FormError | None = None
        self.deferred: NotionError | None = None
        self.temp: Path | None = None
        self.sink: BinaryIO | None = None
        self.body_bytes = 0
        self.reset_after: int | None = None
        self._counted_in_flight = False

    async def prepare(self) -> None:
        self.request.connection.set_max_body_size(rules.MAX_SEND_BODY_BYTES)  # type: ignore[union-attr]
        length = self.request.headers.get("Content-Length")
        too_big = length is not None and length.isdigit() and int(length) > rules.MAX_SEND_BODY_BYTES
        # Errors found before the body are answered after it was read (and discarded), like
        # a proxy that buffers the request would: the client sees a clean response, not a
        # connection closed in the middle of its upload. Only a body that is too big to be
        # worth reading is refused at once (Tornado then closes the connection).
        try:
            self.gate()
        except NotionError as e:
            if self.request.method != "POST" or too_big:
                self.close_after_answer = True
                raise
            self.deferred = e
            return
        if too_big:
            self.close_after_answer = True
            raise validation_error(
                f"The request body is {length} bytes; a send may carry at most 20 MiB of file "
                "data (use multi_part for larger files)."
            )
        self.fault = self.emu.faults.pick(self.endpoint)
        if self.fault == "reset":
            # Close the socket once about half of the body has arrived.
            self.reset_after = max(1, int(length) // 2) if length and length.isdigit() else 1
            return
        if self.fault in STATUS_KINDS or self.fault == "stall":
            return  # the body is read and thrown away
        try:
            upload = self.owned_upload(self.path_args[0])
            rules.check_sendable(upload, self.emu.clock.now())
            boundary = boundary_of(self.request.headers.get("Content-Type"))
        except NotionError as e:
            self.deferred = e
            return
        except FormError as e:
            self.deferred = validation_error(str(e))
            return
        self.upload = upload
        upload.sends_in_flight += 1
        upload.max_sends_in_flight = max(upload.max_sends_in_flight, upload.sends_in_flight)
        self._counted_in_flight = True
        self.form = FormStream(boundary, "file", self._open_sink, rules.PART_MAX_BYTES)

    def _open_sink(self) -> BinaryIO:
        assert self.upload is not None
        self.emu.store.dir_for(self.upload.id).mkdir(parents=True, exist_ok=True)
        self.temp = self.emu.store.temp_path(self.upload.id)
        self.sink = open(self.temp, "wb")  # noqa: SIM115 - closed by the form or release()
        return self.sink

    def data_received(self, chunk: bytes) -> None:
        # Writes go to the page cache and take microseconds per chunk, so they are done
        # inline rather than in a thread: the emulator is not the system under test.
        if self._outcome == "reset":
            return
        self.body_bytes += len(chunk)
        self.emu.stats.bytes_received += len(chunk)
        if self.reset_after is not None and self.body_bytes >= self.reset_after:
            self.reset_connection()
            return
        if self.form is None or self.form_error is not None:
            return
        try:
            self.form.feed(chunk)
        except FormError as e:
            self.form_error = e
            self.form.close()

    async def post(self, raw_id: str) -> None:
        plan = self.emu.faults.plan
        if self.deferred is not None:
            raise self.deferred
        if self.fault in STATUS_KINDS:
            raise errors.for_status(int(self.fault), plan.retry_after_s, plan.rate_limit_reason)
        if self.fault == "stall":
            await self.stall()
            return
        assert self.form is not None and self.upload is not None
        if self.form_error is None:
            try:
                self.form.finish()
            except FormError as e:
                self.form_error = e
        if self.form_error is not None:
            raise validation_error(str(self.form_error))
        if self.fault == "slow" and not await self.pause(plan.slow_s):
            self.abandon()
            return
        self.commit()
        self.reply(self.upload_json(self.upload))

    def commit(self) -> None:
        upload, form = self.upload, self.form
        assert upload is not None and form is not None
        emu = self.emu
        accepted = rules.check_part(upload, form, emu.clock.now(), emu.max_file_bytes)
        assert self.temp is not None
        emu.store.commit_part(upload, accepted.number, self.temp, accepted.size, accepted.sha256)
        self.temp = None
        if upload.mode == "single_part":
            upload.filename = accepted.filename
            upload.content_type = accepted.content_type
            upload.size, upload.sha256 = accepted.size, accepted.sha256
            upload.stored_status = "uploaded"
            if emu.config.discard_files:
                emu.store.delete_files(upload)

    def release(self) -> None:
        if self.form is not None:
            self.form.close()
        if self.sink is not None:
            self.sink.close()
            self.sink = None
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)
            self.temp = None
        if self._counted_in_flight and self.upload is not None:
            self._counted_in_flight = False
            self.upload.sends_in_flight -= 1


# --- users and blocks ------------------------------------------------------------------------


class UsersMeHandler(ApiHandler):
    ENDPOINTS = {"GET": "users_me"}

    def get(self) -> None:
        self.reply(objects.bot_user(self.token, self.emu.max_file_bytes))


class UsersHandler(ApiHandler):
    """GET /v1/users: the workspace's users the integration can see (here: its bot)."""

    ENDPOINTS = {"GET": "list_users"}

    def get(self) -> None:
        page, cursor = rules.paginate(
            [objects.bot_user(self.token, self.emu.max_file_bytes)],
            key=lambda u: u["id"],
            start_cursor=self.get_query_argument("start_cursor", None),
            page_size=self.get_query_argument("page_size", None),
        )
        self.reply(objects.listing("user", page, cursor))


class UserHandler(ApiHandler):
    ENDPOINTS = {"GET": "retrieve_user"}

    def get(self, raw_id: str) -> None:
        user_id = rules.normalize_uuid(raw_id)
        if user_id is None:
            raise validation_error(
                f"path failed validation: path.user_id should be a valid uuid, instead was `{raw_id}`."
            )
        if user_id != objects.bot_id(self.token):
            raise errors.object_not_found("user", user_id)
        self.reply(objects.bot_user(self.token, self.emu.max_file_bytes))
