"""Sending one file through the relay as a benchmark client does (pycurl, streamed from disk),
and watching the end of the upload from the relay's side.

    run = send_file(stack, payload.path, size, protocol="tus", chunk_bytes=8 * MiB)
    run.wall_s, run.tail_s, run.parts_left_at_last_byte …

`protocol`: "tus" (POST /files/, then PATCHes of chunk_bytes, the last one answered once Notion
holds the file), "put" (create-session, then one PUT with a Content-Length) or "put-chunked"
(the same PUT with Transfer-Encoding: chunked).

The tail: once the client has sent all but the last few parts, a watcher polls the upload's
status every TAIL_POLL_S until it completes. The first poll that shows every byte received
(`bytes_uploaded == file_size`) marks the last byte received and how many parts Notion did not
yet hold then; the first that shows every part confirmed marks the end of the sends. Polling
only the tail keeps the watcher's own cost on the relay to a few dozen requests.
"""
from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.client import Http, HttpError, Response
from bench.payload import MiB
from bench.stack import RelayStack

TUS = {"Tus-Resumable": "1.0.0"}
TAIL_POLL_S = 0.05
# Start watching when this many parts (of the upload's part size) are left to send.
TAIL_PARTS = 4
PATCH_RETRIES = 5


@dataclass
class Tail:
    """What the watcher saw at the end of an upload (monotonic seconds)."""
    last_byte_at: float | None = None
    parts_left_at_last_byte: int | None = None
    parts_done_at: float | None = None
    completed_at: float | None = None
    polls: int = 0
    error: str | None = None


@dataclass
class ClientRun:
    protocol: str
    size_bytes: int
    upload_id: str = ""
    started_at: float = 0.0  # just before the first request (creation)
    ended_at: float = 0.0  # the final answer arrived
    requests: int = 0  # requests the client made (creation included)
    answer_status: int | None = None
    answer: dict[str, Any] = field(default_factory=dict)
    part_size: int = 0
    total_parts: int = 0
    tail: Tail = field(default_factory=Tail)

    @property
    def wall_s(self) -> float:
        return self.ended_at - self.started_at

    @property
    def tail_s(self) -> float | None:
        """From the last byte received to the answer that says the file is in Notion."""
        t = self.tail
        return self.ended_at - t.last_byte_at if t.last_byte_at is not None else None

    def json(self) -> dict[str, Any]:
        t = self.tail

        def at(moment: float | None) -> float | None:
            return None if moment is None else moment - self.started_at

        return {
            "protocol": self.protocol, "size_bytes": self.size_bytes, "upload_id": self.upload_id,
            "wall_s": self.wall_s, "client_requests": self.requests, "answer_status": self.answer_status,
            "part_size": self.part_size, "total_parts": self.total_parts,
            "tail": {
                "last_byte_received_s": at(t.last_byte_at), "parts_left_at_last_byte": t.parts_left_at_last_byte,
                "all_parts_in_notion_s": at(t.parts_done_at), "completed_s": self.wall_s,
                "last_byte_to_completed_s": self.tail_s,
                "sends_after_last_byte_s": (t.parts_done_at - t.last_byte_at
                                            if t.parts_done_at is not None and t.last_byte_at is not None else None),
                "finishing_s": self.ended_at - t.parts_done_at if t.parts_done_at is not None else None,
                "polls": t.polls, "error": t.error,
            },
        }


class TailWatch:
    """Polls the upload's status once the client is near the end (see the module docstring)."""

    def __init__(self, stack: RelayStack, run: ClientRun) -> None:
        self.stack = stack
        self.run = run
        self.sent = 0
        self.start_at_bytes = 0
        self._near_end = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tail-watch", daemon=True)

    def begin(self, upload_id: str, part_size: int, total_parts: int) -> None:
        self.run.upload_id, self.run.part_size, self.run.total_parts = upload_id, part_size, total_parts
        self.start_at_bytes = max(0, self.run.size_bytes - TAIL_PARTS * part_size)
        self._thread.start()

    def progress(self, sent: int) -> None:
        self.sent = sent
        if sent >= self.start_at_bytes:
            self._near_end.set()

    def end(self) -> None:
        self._near_end.set()
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _loop(self) -> None:
        t = self.run.tail
        self._near_end.wait()
        with Http() as http:
            while True:
                try:
                    status = self.stack.status(self.run.upload_id, http)
                except (HttpError, ValueError) as exc:
                    t.error = f"{type(exc).__name__}: {exc}"
                    status = {}
                now = time.monotonic()
                t.polls += 1
                if t.last_byte_at is None and status.get("bytes_uploaded") == self.run.size_bytes:
                    t.last_byte_at = now
                    t.parts_left_at_last_byte = status["total_parts"] - status["parts_confirmed"]
                if (t.parts_done_at is None and status.get("total_parts")
                        and status.get("parts_confirmed") == status.get("total_parts")):
                    t.parts_done_at = now
                if status.get("status") == "completed":
                    t.completed_at = now
                    return
                if self._stop.wait(TAIL_POLL_S):
                    return


def _metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def send_file(stack: RelayStack, path: Path, size: int, *, protocol: str, filename: str = "big.txt",
              content_type: str = "text/plain", chunk_bytes: int = 8 * MiB, max_bytes_per_s: int | None = None,
              timeout_s: float = 3600) -> ClientRun:
    """Upload path through the relay; returns when the relay answered the final request."""
    run = ClientRun(protocol, size)
    watch = TailWatch(stack, run)
    try:
        with Http() as http:
            run.started_at = time.monotonic()
            if protocol == "tus":
                _send_tus(http, stack, path, run, watch, filename, content_type, chunk_bytes, max_bytes_per_s,
                          timeout_s)
            elif protocol in ("put", "put-chunked"):
                _send_put(http, stack, path, run, watch, filename, content_type, protocol == "put-chunked",
                          max_bytes_per_s, timeout_s)
            else:
                raise ValueError(f"unknown protocol {protocol!r}")
            run.ended_at = time.monotonic()
    finally:
        watch.end()
    return run


def _begin_watch(http: Http, stack: RelayStack, watch: TailWatch, upload_id: str) -> None:
    status = stack.status(upload_id, http)
    watch.begin(upload_id, int(status["part_size"]), int(status["total_parts"]))


def _send_tus(http: Http, stack: RelayStack, path: Path, run: ClientRun, watch: TailWatch, filename: str,
              content_type: str, chunk_bytes: int, max_bytes_per_s: int | None, timeout_s: float) -> None:
    created = http.empty("POST", f"{stack.url}/files/", {
        **TUS, "Upload-Length": str(run.size_bytes),
        "Upload-Metadata": _metadata(filename=filename, filetype=content_type)})
    run.requests += 1
    if created.status != 201:
        raise HttpError(f"POST /files/: HTTP {created.status}: {created.body[:300]!r}")
    location = created.headers["location"]
    upload_url = location if location.startswith("http") else stack.url + location
    _begin_watch(http, stack, watch, upload_url.rsplit("/", 1)[-1])
    offset, failures = 0, 0
    deadline = time.monotonic() + timeout_s
    while offset < run.size_bytes:
        length = min(chunk_bytes, run.size_bytes - offset)
        run.requests += 1
        try:
            answer = http.send_body(
                "PATCH", upload_url, path, offset=offset, length=length, timeout_s=timeout_s,
                headers={**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"},
                max_bytes_per_s=max_bytes_per_s, progress=lambda n, base=offset: watch.progress(base + n))
        except HttpError as exc:
            answer = Response(599, str(exc).encode())
        if answer.status == 204:
            offset = int(answer.headers["upload-offset"])
            run.answer_status = 204
            continue
        failures += 1
        if failures > PATCH_RETRIES or time.monotonic() > deadline:
            raise HttpError(f"PATCH at {offset}: HTTP {answer.status}: {answer.body[:300]!r}")
        time.sleep(min(2.0, 0.2 * 2 ** failures))
        try:
            head = http.empty("HEAD", upload_url, TUS, timeout_s=30)
        except HttpError:
            continue
        if head.status == 200:
            offset = int(head.headers["upload-offset"])
    run.answer = stack.status(run.upload_id, http)


def _send_put(http: Http, stack: RelayStack, path: Path, run: ClientRun, watch: TailWatch, filename: str,
              content_type: str, chunked: bool, max_bytes_per_s: int | None, timeout_s: float) -> None:
    body = {"filename": filename, "fileSize": run.size_bytes, "contentType": content_type}
    created = http.json("POST", f"{stack.url}/api/upload/create-session", body)
    run.requests += 1
    if created.status not in (200, 201):
        raise HttpError(f"create-session: HTTP {created.status}: {created.body[:300]!r}")
    upload_id = str(created.json()["upload_id"])
    _begin_watch(http, stack, watch, upload_id)
    run.requests += 1
    answer = http.send_body("PUT", f"{stack.url}/api/upload/{upload_id}", path, chunked=chunked,
                            timeout_s=timeout_s, max_bytes_per_s=max_bytes_per_s, progress=watch.progress)
    run.answer_status = answer.status
    if answer.status != 200:
        raise HttpError(f"PUT /api/upload/{upload_id}: HTTP {answer.status}: {answer.body[:500]!r}")
    run.answer = answer.json()


def verify_in_emulator(stack: RelayStack, run: ClientRun, sha256: str) -> dict[str, Any]:
    """The relay says completed; the emulator must hold exactly these bytes, uploaded, attached."""
    status = run.answer if run.answer.get("notion") else stack.status(run.upload_id)
    if status.get("status") != "completed":
        raise AssertionError(f"the relay says {status.get('status')!r}: {status.get('error')}")
    file_upload_id = status["notion"]["file_upload_id"]
    stored = stack.emulator.upload(file_upload_id)
    if stored.get("sha256") != sha256 or stored.get("size") != run.size_bytes:
        raise AssertionError(f"SHA256 MISMATCH: the emulator holds {stored.get('size')} bytes with sha256 "
                             f"{stored.get('sha256')}; sent {run.size_bytes} bytes with sha256 {sha256}")
    if stored.get("status") != "uploaded" or not stored.get("attached_to"):
        raise AssertionError(f"the emulator's upload is {stored.get('status')}, "
                             f"attached to {stored.get('attached_to')}")
    return {"file_upload_id": file_upload_id, "sha256": stored["sha256"], "size": stored["size"],
            "number_of_parts": stored.get("number_of_parts"), "attached_to": stored.get("attached_to")}


