"""`external_url` file uploads: Notion answers the create `pending`, imports the file later,
and then shows it `uploaded` (with `file_import_result: {"type": "success", …}`) or `failed`
(`{"type": "error", "error": {type, code, message, parameter, status_code}}`).

The emulator has no internet. It imports only http(s) URLs on the loopback interface
(127.0.0.1, ::1, localhost) — files a test serves itself — and fails every other import after
`FAIL_DELAY_S`, the way Notion reports a download that did not work. (Notion itself takes
https:// URLs only; plain http:// is accepted for loopback hosts so tests need no TLS.)
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import TYPE_CHECKING, Any, BinaryIO

from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.httputil import HTTPInputError

from .rules import is_loopback

if TYPE_CHECKING:
    from .state import Emulator
    from .store import Upload

log = logging.getLogger("emulator.imports")

FAIL_DELAY_S = 0.5
FETCH_TIMEOUT_S = 60.0

# Imports under way; a reference keeps each task alive until it ends.
_running: set[asyncio.Task[None]] = set()


def start(emu: Emulator, upload: Upload) -> None:
    """Begin importing `upload.external_url` in the background (create has answered)."""
    task = asyncio.get_running_loop().create_task(_run(emu, upload))
    _running.add(task)
    task.add_done_callback(_running.discard)


class ImportFailed(Exception):
    def __init__(self, kind: str, code: str, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.error: dict[str, Any] = {
            "type": kind,
            "code": code,
            "message": message,
            "parameter": "external_url",
            "status_code": status_code,
        }


async def _run(emu: Emulator, upload: Upload) -> None:
    url = upload.external_url or ""
    try:
        if not is_loopback(url):
            await asyncio.sleep(FAIL_DELAY_S)
            raise ImportFailed(
                "download_error",
                "download_failed",
                f"The file at {url} could not be downloaded (the emulator has no internet; "
                "it imports files from 127.0.0.1 or localhost only).",
            )
        size, sha256 = await _download(emu, upload, url)
    except ImportFailed as e:
        upload.stored_status = "failed"
        upload.file_import = {"type": "error", "imported_at": emu.clock.now(), "error": e.error}
        emu.store.touch(upload)
        return
    except Exception:  # an emulator bug: the import fails like Notion's internal errors do
        log.exception("import of %s failed", upload.id)
        upload.stored_status = "failed"
        upload.file_import = {
            "type": "error",
            "imported_at": emu.clock.now(),
            "error": ImportFailed("internal_system_error", "internal_error", "Unexpected error.").error,
        }
        emu.store.touch(upload)
        return
    upload.size, upload.sha256 = size, sha256
    upload.stored_status = "uploaded"
    upload.file_import = {"type": "success", "imported_at": emu.clock.now()}
    emu.store.touch(upload)
    if emu.config.discard_files:
        emu.store.delete_files(upload)


async def _download(emu: Emulator, upload: Upload, url: str) -> tuple[int, str]:
    """Stream the file into the upload's part 1; its size and sha256."""
    limit = emu.max_file_bytes
    emu.store.dir_for(upload.id).mkdir(parents=True, exist_ok=True)
    temp = emu.store.temp_path(upload.id)
    digest = hashlib.sha256()
    received = [0]
    declared = [0]
    sink: BinaryIO = open(temp, "wb")  # noqa: ASYNC230, SIM115 - a local file, closed below

    def on_header(line: str) -> None:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            declared[0] = int(value.strip())

    def on_chunk(chunk: bytes) -> None:
        received[0] += len(chunk)
        sink.write(chunk)
        digest.update(chunk)

    # Why a private client: its body cap is this workspace's per-file limit (Tornado refuses
    # a longer Content-Length, or a chunked body growing past it, and ends the fetch).
    client = AsyncHTTPClient(force_instance=True, max_body_size=limit)
    try:
        try:
            await client.fetch(url, streaming_callback=on_chunk, header_callback=on_header,
                               request_timeout=FETCH_TIMEOUT_S, follow_redirects=False)
        except Exception as e:  # an HTTP error, connection refused or reset, a body over the cap
            if declared[0] > limit or received[0] > limit or (
                isinstance(e, HTTPInputError) and "too" in str(e)
            ):
                raise ImportFailed(
                    "validation_error",
                    "file_too_large",
                    f"The file at {url} is over this workspace's limit of {limit} bytes per file.",
                ) from None
            if isinstance(e, HTTPClientError) and e.code != 599:
                raise ImportFailed("download_error", "download_failed",
                                   f"The file at {url} could not be downloaded: HTTP {e.code}.",
                                   status_code=e.code) from None
            raise ImportFailed("download_error", "download_failed",
                               f"The file at {url} could not be downloaded: {e}.") from None
        finally:
            sink.close()
        size = received[0]
        if size < 1:
            raise ImportFailed("validation_error", "empty_file", f"The file at {url} is empty.")
        emu.store.commit_part(upload, 1, temp, size, digest.hexdigest())
        return size, digest.hexdigest()
    finally:
        client.close()
        if temp.exists():
            temp.unlink(missing_ok=True)
