"""A small, persistent tus client for load and fault tests: it behaves like a patient browser
client (retries with backoff, re-reads the offset with HEAD after any failure) and records
what the server claimed, so tests can check the claims against Notion's side."""
from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

TUS = {"Tus-Resumable": "1.0.0"}


@dataclass
class UploadResult:
    url: str = ""
    completed_at: float = 0.0
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    refusals: list[tuple[int, dict]] = field(default_factory=list)  # (status, JSON body) of failed PATCHes


def _meta(**kv: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in kv.items())


def _wait(response: requests.Response | None, failures: int) -> float:
    if response is not None and response.headers.get("Retry-After", "").isdigit():
        return min(float(response.headers["Retry-After"]), 10.0)
    return min(0.2 * 2 ** min(failures, 5), 5.0)


def upload(base_url: str | Callable[[], str], path: Path, chunk_size: int, deadline_s: float = 600.0,
           on_complete=None, filetype: str = "text/plain", url: str | None = None,
           on_created=None, headers: dict[str, str] | None = None,
           metadata: dict[str, str] | None = None) -> UploadResult:
    """Upload `path` through tus, persisting through errors until `deadline_s` passes.

    `base_url` may be a function, asked before every request (a client behind a router that
    may send it to another instance). `url` continues an existing upload. `on_created(url)` and
    `on_complete(url)` are called when the server creates the upload and first claims completion."""
    base = base_url if callable(base_url) else (lambda: base_url)
    result = UploadResult(url=url or "")
    upload_path = "/files/" + url.rsplit("/", 1)[-1] if url else ""
    size = path.stat().st_size
    end = time.monotonic() + deadline_s
    failures = 0
    session = requests.Session()
    session.headers.update(headers or {})  # e.g. Authorization: Bearer <upload token>
    while not result.url:
        r = None
        try:
            meta = _meta(filename=path.name, filetype=filetype, **(metadata or {}))
            r = session.post(f"{base()}/files/", headers={
                **TUS, "Upload-Length": str(size), "Upload-Metadata": meta}, timeout=60)
            if r.status_code == 201:
                result.url = r.headers["Location"]
                upload_path = "/files/" + result.url.rsplit("/", 1)[-1]
                if on_created:
                    on_created(result.url)
                break
            result.errors.append(f"create {r.status_code}")
        except requests.RequestException as exc:
            result.errors.append(f"create {type(exc).__name__}")
        failures += 1
        if time.monotonic() > end:
            raise AssertionError(f"could not create an upload: {result.errors[-5:]}")
        time.sleep(_wait(r, failures))
    offset = (_head(session, base() + upload_path, result) or 0) if url else 0
    with open(path, "rb") as f:
        while True:
            if time.monotonic() > end:
                raise AssertionError(f"upload did not finish in time: {result.errors[-10:]}")
            r = None
            try:
                f.seek(offset)
                chunk = f.read(chunk_size)
                result.attempts += 1
                r = session.patch(base() + upload_path, data=chunk, timeout=120, headers={
                    **TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(offset)})
                if r.status_code == 204:
                    offset = int(r.headers["Upload-Offset"])
                    failures = 0
                    if offset == size:
                        result.completed_at = time.monotonic()
                        if on_complete:
                            on_complete(result.url)
                        return result
                    continue
                result.errors.append(f"patch {r.status_code} {r.text[:120]}")
                try:
                    result.refusals.append((r.status_code, r.json()))
                except ValueError:
                    result.refusals.append((r.status_code, {}))
                if r.status_code in (404, 410):
                    raise AssertionError(f"the upload is gone: {result.errors[-5:]}")
            except requests.RequestException as exc:
                result.errors.append(f"patch {type(exc).__name__}")
            failures += 1
            time.sleep(_wait(r, failures))
            head = _head(session, base() + upload_path, result)
            if head is not None:
                offset = head
                if offset == size:  # the server says it is done: it must hold in Notion
                    result.completed_at = time.monotonic()
                    if on_complete:
                        on_complete(result.url)
                    return result


def _head(session: requests.Session, url: str, result: UploadResult) -> int | None:
    try:
        head = session.head(url, headers=TUS, timeout=30)
    except requests.RequestException as exc:
        result.errors.append(f"head {type(exc).__name__}")
        return None
    if head.status_code != 200:
        result.errors.append(f"head {head.status_code}")
        return None
    return int(head.headers["Upload-Offset"])
