"""Start the Notion emulator as a child process, drive its control API, and talk to its /v1 API.

    with running_emulator(tmp_path, "--plan", "free") as emu:
        client = NotionClient(emu)
        ...  # emu.url, emu.token, emu.upload(id), emu.set_faults({...})

The pytest fixture `emulator` is in tests/support/emulator.py.
"""
from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import psutil
import pycurl
import requests

from harness.processes import ManagedProcess

READY_PATTERN = r"emulator listening on (http://\S+)"
DEFAULT_TOKEN = "emulator-token"
NOTION_VERSION = "2025-09-03"


class EmulatorProcess:
    """A running `python -m emulator` on an ephemeral port."""

    def __init__(self, data_dir: Path, extra_args: tuple[str, ...] = (), log_path: Path | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = list(extra_args)
        self.token = args[args.index("--token") + 1] if "--token" in args else DEFAULT_TOKEN
        argv = [
            sys.executable,
            "-m",
            "emulator",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(self.data_dir),
            *args,
        ]
        self.process = ManagedProcess(
            argv,
            READY_PATTERN,
            log_path or self.data_dir.parent / f"{self.data_dir.name}.log",
        )
        assert self.process.match is not None
        self.url: str = self.process.match.group(1)
        self._session = requests.Session()

    # --- talking to the Notion API ---------------------------------------------------------

    def headers(self, token: str | None = None, version: str | None = NOTION_VERSION) -> dict[str, str]:
        """Authorization and Notion-Version headers for /v1 requests."""
        out = {"Authorization": f"Bearer {token or self.token}"}
        if version is not None:
            out["Notion-Version"] = version
        return out

    # --- control API -----------------------------------------------------------------------

    def _control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._session.request(method, f"{self.url}/_emulator/{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def upload(self, upload_id: str) -> dict[str, Any]:
        """The emulator's record of an upload: status, parts, size, sha256, attached_to …"""
        return self._control("GET", f"uploads/{upload_id}")

    def uploads(self) -> list[dict[str, Any]]:
        return self._control("GET", "uploads")["uploads"]

    def stats(self) -> dict[str, Any]:
        return self._control("GET", "stats")

    def reset_stats(self) -> None:
        self._control("POST", "stats/reset")

    def set_faults(self, plan: dict[str, Any]) -> dict[str, Any]:
        return self._control("POST", "faults", plan)

    def clear_faults(self) -> None:
        self._control("POST", "faults", {"rate": 0})

    def outage(self, seconds: float, status: int = 503) -> None:
        self._control("POST", "outage", {"seconds": seconds, "status": status})

    def set_plan(self, plan: str | None = None, max_file_bytes: int | None = None) -> dict[str, Any]:
        """Change the workspace plan ("free"/"paid") and/or its per-file limit at run time."""
        body: dict[str, Any] = {}
        if plan is not None:
            body["plan"] = plan
        if max_file_bytes is not None:
            body["max_file_bytes"] = max_file_bytes
        return self._control("POST", "plan", body)

    def create_database(self, title: str, properties: dict[str, Any]) -> dict[str, Any]:
        """A database with one data source: `{id, data_source_id, properties}`."""
        return self._control("POST", "databases", {"title": title, "properties": properties})

    def rows(self, database_id: str) -> list[dict[str, Any]]:
        """A database's rows as plain values (each file with the upload behind it)."""
        return self._control("GET", f"databases/{database_id}/rows")["rows"]

    def advance_clock(self, seconds: float) -> None:
        """Move the emulator's wall clock forward (reaches expiry without waiting)."""
        self._control("POST", "clock", {"advance_s": seconds})

    # --- the process -----------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_bytes(self) -> int:
        return psutil.Process(self.process.pid).memory_info().rss

    def output(self) -> str:
        return self.process.output()

    def stop(self) -> int | None:
        self._session.close()
        return self.process.stop()


@contextmanager
def running_emulator(tmp_path: Path, *extra_args: str) -> Iterator[EmulatorProcess]:
    """`with running_emulator(tmp_path, "--plan", "free") as emu:` — stopped on the way out,
    and checked for stack traces in its output."""
    emu = start_emulator(tmp_path, *extra_args)
    try:
        yield emu
    finally:
        emu.stop()
    assert "Traceback" not in emu.output(), emu.output()[-4000:]


def start_emulator(tmp_path: Path, *extra_args: str) -> EmulatorProcess:
    """Start an emulator whose data lives under tmp_path (a fresh directory per call)."""
    tmp_path = Path(tmp_path)
    n = 0
    while (tmp_path / f"emulator-data-{n}").exists():
        n += 1
    return EmulatorProcess(tmp_path / f"emulator-data-{n}", tuple(extra_args))


@dataclass
class SendResponse:
    """What a send answered (looks enough like requests.Response for the tests)."""

    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    text: str = ""

    def json(self) -> Any:
        return json.loads(self.text)


class NotionClient:
    """A minimal Notion File Upload client for tests: JSON calls through requests, sends
    through pycurl's MIME API so a 20 MiB part streams from a file range, never held whole."""

    def __init__(self, emu: EmulatorProcess, token: str | None = None, version: str | None = NOTION_VERSION) -> None:
        self.emu = emu
        self.token = token or emu.token
        self.version = version
        self.session = requests.Session()

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
                data: bytes | None = None, timeout: float = 30) -> requests.Response:
        all_headers = self.emu.headers(self.token, self.version)
        all_headers.update(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        return self.session.request(method, f"{self.emu.url}{path}", data=data, headers=all_headers,
                                    timeout=timeout)

    def create(self, **body: Any) -> requests.Response:
        return self.request("POST", "/v1/file_uploads", body)

    def create_ok(self, **body: Any) -> dict[str, Any]:
        response = self.create(**body)
        assert response.status_code == 200, response.text
        return response.json()

    def retrieve(self, upload_id: str) -> requests.Response:
        return self.request("GET", f"/v1/file_uploads/{upload_id}")

    def complete(self, upload_id: str) -> requests.Response:
        return self.request("POST", f"/v1/file_uploads/{upload_id}/complete")

    def attach(self, page_id: str, upload_ids: list[str], block_type: str = "file") -> requests.Response:
        children = [
            {"type": block_type, block_type: {"type": "file_upload", "file_upload": {"id": uid}}}
            for uid in upload_ids
        ]
        return self.request("PATCH", f"/v1/blocks/{page_id}/children", {"children": children})

    def send(self, upload_id: str, source: bytes | Path, headers: dict[str, str] | None = None,
             **options: Any) -> SendResponse:
        """POST a part; `options` are send_form's (part_number, filename, content_type, …)."""
        return send_form(
            f"{self.emu.url}/v1/file_uploads/{upload_id}/send",
            {**self.emu.headers(self.token, self.version), **(headers or {})},
            source,
            **options,
        )


def send_form(
    url: str,
    headers: dict[str, str],
    source: bytes | Path,
    *,
    part_number: int | str | None = None,
    filename: str | None = "file.txt",
    content_type: str | None = "text/plain",
    offset: int = 0,
    length: int | None = None,
    fields: dict[str, str] | None = None,
    timeout_s: float = 60,
) -> SendResponse:
    """POST a multipart/form-data send. `source` is bytes, or a file of which `length` bytes
    from `offset` are streamed by libcurl (a 20 MiB part is never held in memory)."""
    curl = pycurl.Curl()
    mime = pycurl.CurlMime(curl)
    handle: BinaryIO | None = None
    try:
        if part_number is not None:
            mime.add_field("part_number", str(part_number))
        for name, value in (fields or {}).items():
            mime.add_field(name, value)
        part = mime.addpart()
        part.name("file")
        if filename is not None:
            part.filename(filename)
        if content_type is not None:
            part.type(content_type)
        if isinstance(source, (bytes, bytearray)):
            part.data(bytes(source))
        else:
            handle = open(source, "rb")
            handle.seek(offset)
            size = length if length is not None else Path(source).stat().st_size - offset
            left = [size]

            def read(_userdata: Any, max_bytes: int) -> bytes:
                chunk = handle.read(min(max_bytes, left[0]))  # type: ignore[union-attr]
                left[0] -= len(chunk)
                return chunk

            part.data_cb(size, read)
        body = io.BytesIO()
        response_headers: dict[str, str] = {}

        def on_header(line: bytes) -> None:
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                response_headers[name.strip().lower()] = value.strip()

        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.MIMEPOST, mime)
        # Why "Expect:": libcurl otherwise waits for 100-continue before a big body.
        curl.setopt(pycurl.HTTPHEADER, [f"{k}: {v}" for k, v in headers.items()] + ["Expect:"])
        curl.setopt(pycurl.UPLOAD_BUFFERSIZE, 2 * 2**20)
        curl.setopt(pycurl.WRITEDATA, body)
        curl.setopt(pycurl.HEADERFUNCTION, on_header)
        curl.setopt(pycurl.TIMEOUT_MS, int(timeout_s * 1000))
        curl.setopt(pycurl.NOSIGNAL, 1)
        curl.perform()
        return SendResponse(curl.getinfo(pycurl.RESPONSE_CODE), response_headers,
                            body.getvalue().decode("utf-8", "replace"))
    finally:
        mime.close()
        curl.close()
        if handle is not None:
            handle.close()
