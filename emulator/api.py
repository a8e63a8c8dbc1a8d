"""The /v1 file upload and user endpoints: create, list, retrieve, send (streamed), complete;
users/me, users, a user. Pages and blocks are in pages.py, databases in databases.py; the gate
every request passes first is gate.py.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from tornado.web import stream_request_body

from . import errors, imports, objects, rules
from .errors import NotionError, validation_error
from .faults import STATUS_KINDS
from .gate import ApiHandler
from .multipart import FormError, FormStream, boundary_of
from .store import Upload

if TYPE_CHECKING:
    from .state import Emulator


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
            self.gate(count=not self.emu.config.count_sends_at_end)
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
        # A part's own sha256 is for inspection (/_emulator/uploads) and, in single_part mode,
        # the file's. With --discard-files nobody inspects parts, and complete hashes the file
        # anyway: hashing every byte twice would make the emulator, not the relay, what a
        # 5 GiB benchmark measures.
        hash_part = not (self.emu.config.discard_files and upload.mode == "multi_part")
        self.form = FormStream(boundary, "file", self._open_sink, rules.PART_MAX_BYTES, hash_file=hash_part)

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
        if self.emu.config.count_sends_at_end:
            self.count_request()
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
