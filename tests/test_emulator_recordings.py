"""The emulator answers like the real Notion.

Every request of `shared/notion-recordings/recordings.json` (recorded live from
api.notion.com at Notion-Version 2025-09-03 by notion-sdk-py's test suite) is replayed against
one emulator, cassette by cassette in the recorded order, and each answer is compared with
the recorded one field by field: the same status, content type, keys (recursively), JSON types
and nulls, and the same values — except where a value depends on when and where it was
recorded:

- ids: a recorded id seen for the first time maps to the emulator's id at the same place, and
  must map to the same emulator id everywhere after (a page's id, its blocks' parent, the bot
  user …); later requests have the mapped ids substituted in their path and body;
- times and request ids: the same format (digits aside);
- URLs: equal once the recorded ids are mapped and `https://api.notion.com` is the emulator;
- the workspace's name and id, and the bot's name;
- the items of a file upload list (they are the recorded workspace's whole history): each item
  the emulator lists must have the shape of an item with the same status in one of the
  recorded lists.

Two environment substitutions, like the ids: the 401 recordings are replayed with a bad token
(their token was redacted), and the external_url create imports from a file served on
127.0.0.1 (the emulator has no internet; the recorded file was a 13,264-byte PDF, so is ours).
Multipart sends stored as `<N bytes>` are rebuilt with N real bytes.
"""
from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from harness.emulator import EmulatorProcess, NotionClient, running_emulator
from harness.processes import wait_until

RECORDINGS = Path(__file__).resolve().parents[2] / "shared" / "notion-recordings" / "recordings.json"
NOTION = "https://api.notion.com"
BAD_TOKEN = "secret_redacted-by-the-recording"
PDF_SIZE = 13264  # the recorded import's content_length

UUID_RE = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")
ID_KEYS = {"id", "page_id", "block_id"}
URL_KEYS = {"url", "upload_url", "complete_url"}
FORMAT_ONLY_KEYS = {"created_time", "last_edited_time", "expiry_time", "imported_time", "request_id"}
WORKSPACE_KEYS = {"workspace_name", "workspace_id"}


def load() -> list[dict[str, Any]]:
    return json.loads(RECORDINGS.read_text()) if RECORDINGS.exists() else []


def cassettes() -> list[str]:
    return list(OrderedDict.fromkeys(e["cassette"] for e in load())) or ["(recordings.json not found)"]


def recorded_list_items() -> list[Any]:
    """Every file upload that a recorded list returned (the recorded workspace's uploads)."""
    return [
        item
        for e in load()
        if e["method"] == "GET" and urlsplit(e["uri"]).path == "/v1/file_uploads" and e["status"] == 200
        for item in e["response_body"]["results"]
    ]


# --- comparing -----------------------------------------------------------------------------------


def jtype(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def pattern(text: str) -> str:
    """A time or request id with its digits and hex letters blurred: its format."""
    return re.sub(r"[0-9a-f]", "x", text)


def shape(value: Any, key: str = "") -> Any:
    """Keys, types and nulls of a value (and the `status` it has): what list items must share."""
    if isinstance(value, dict):
        return tuple(sorted((k, shape(v, k)) for k, v in value.items()))
    if isinstance(value, list):
        return ("array", tuple(sorted({repr(shape(v)) for v in value})))
    if key == "status":
        return ("status", value)
    return jtype(value)


@dataclass
class Replay:
    """One emulator replaying the cassettes in order, with the recorded → emulator id map."""

    emu: EmulatorProcess
    pdf_url: str
    ids: dict[str, str] = field(default_factory=dict)
    seen: dict[str, str] = field(default_factory=dict)  # emulator id -> recorded id

    # --- ids -----------------------------------------------------------------------------

    @staticmethod
    def norm(raw: str) -> str:
        compact = raw.replace("-", "").lower()
        return f"{compact[:8]}-{compact[8:12]}-{compact[12:16]}-{compact[16:20]}-{compact[20:]}"

    def check_id(self, recorded: str, got: Any, where: str, diffs: list[str]) -> None:
        if not isinstance(got, str) or not UUID_RE.fullmatch(got.lower()):
            diffs.append(f"{where}: recorded an id, emulator {short(got)}")
            return
        rec, mine = self.norm(recorded), self.norm(got)
        if rec in self.ids:
            if self.ids[rec] != mine:
                diffs.append(f"{where}: recorded id {rec} was emulator id {self.ids[rec]} before, now {mine}")
        elif mine in self.seen:
            diffs.append(f"{where}: emulator id {mine} stands for recorded {self.seen[mine]} and now also {rec}")
        else:
            self.ids[rec], self.seen[mine] = mine, rec

    def substitute(self, text: str) -> str:
        """Recorded ids (dashed or not) → the emulator's; api.notion.com → the emulator."""
        for rec, mine in self.ids.items():
            text = text.replace(rec, mine).replace(rec.replace("-", ""), mine.replace("-", ""))
        return text.replace(NOTION, self.emu.url)

    # --- values --------------------------------------------------------------------------

    def compare(self, rec: Any, got: Any, where: str, diffs: list[str], key: str = "",
                owner: dict[str, Any] | None = None, history: bool = False) -> None:
        if jtype(rec) != jtype(got):
            diffs.append(f"{where}: recorded {jtype(rec)} {short(rec)}, emulator {jtype(got)} {short(got)}")
            return
        if isinstance(rec, dict):
            for k in key_diffs(rec, got, where, diffs):
                self.compare(rec[k], got[k], f"{where}.{k}", diffs, k, rec, history)
            return
        if isinstance(rec, list):
            if history and key == "results":
                self.compare_history(rec, got, where, diffs)
                return
            if len(rec) != len(got):
                diffs.append(f"{where}: recorded {len(rec)} item(s), emulator {len(got)}")
            for i, (r, g) in enumerate(zip(rec, got)):
                self.compare(r, g, f"{where}[{i}]", diffs, key, owner, history)
            return
        if rec is None or not isinstance(rec, str):
            if rec != got:
                diffs.append(f"{where}: recorded {short(rec)}, emulator {short(got)}")
            return
        if key in WORKSPACE_KEYS or (key == "name" and owner is not None and owner.get("object") == "user"):
            return
        if key in ID_KEYS and UUID_RE.fullmatch(rec):
            self.check_id(rec, got, where, diffs)
        elif key == "next_cursor":
            if history:  # the id of an item of the recorded workspace's history
                if not UUID_RE.fullmatch(got):
                    diffs.append(f"{where}: recorded an id, emulator {short(got)}")
            else:
                self.check_id(rec, got, where, diffs)
        elif key in URL_KEYS:
            if self.substitute(rec) != got:
                diffs.append(f"{where}: recorded {short(rec)} (so {short(self.substitute(rec))}), emulator {short(got)}")
        elif key in FORMAT_ONLY_KEYS:
            if pattern(rec) != pattern(got):
                diffs.append(f"{where}: recorded format {pattern(rec)}, emulator {short(got)}")
        elif rec != got:
            diffs.append(f"{where}: recorded {short(rec)}, emulator {short(got)}")

    def compare_history(self, rec: list[Any], got: list[Any], where: str, diffs: list[str]) -> None:
        rec = recorded_list_items()
        shapes = {repr(shape(item)) for item in rec}
        for i, item in enumerate(got):
            if repr(shape(item)) in shapes:
                continue
            status = item.get("status") if isinstance(item, dict) else None
            like = [r for r in rec if isinstance(r, dict) and r.get("status") == status]
            if not like:
                diffs.append(f"{where}[{i}]: status {short(status)}, which no recorded item has")
            else:
                shape_diffs(like[0], item, f"{where}[{i}] (vs a recorded {status} item)", diffs)


def shape_diffs(rec: Any, got: Any, where: str, diffs: list[str]) -> None:
    """Keys, types and nulls that differ (values aside)."""
    if jtype(rec) != jtype(got):
        diffs.append(f"{where}: recorded {jtype(rec)} {short(rec)}, emulator {jtype(got)} {short(got)}")
    elif isinstance(rec, dict):
        for k in key_diffs(rec, got, where, diffs):
            shape_diffs(rec[k], got[k], f"{where}.{k}", diffs)


def key_diffs(rec: dict[str, Any], got: dict[str, Any], where: str, diffs: list[str]) -> list[str]:
    """Report the keys only one side has; return the keys both have, to compare further."""
    missing = [k for k in rec if k not in got]
    extra = [k for k in got if k not in rec]
    if missing:
        diffs.append(f"{where}: missing key(s) {', '.join(missing)}")
    if extra:
        diffs.append(f"{where}: extra key(s) {', '.join(extra)}")
    return [k for k in rec if k in got]


# --- replaying -----------------------------------------------------------------------------------


def rebuild_multipart(body: str) -> bytes:
    """A recorded multipart body with `<N bytes>` placeholders made real again."""
    out = b""
    for piece in re.split(r"(<\d+ bytes>)", body):
        size = re.fullmatch(r"<(\d+) bytes>", piece)
        if size:
            n = int(size.group(1))
            out += (b"Hello from the recordings replay! " * (n // 34 + 1))[:n]
        else:
            out += piece.encode("utf-8")
    return out


def replay_one(replay: Replay, entry: dict[str, Any], label: str, diffs: list[str]) -> None:
    emu = replay.emu
    url = urlsplit(replay.substitute(entry["uri"]))
    path = url.path + (f"?{url.query}" if url.query else "")
    token = BAD_TOKEN if entry["status"] == 401 else emu.token
    headers = {"Authorization": f"Bearer {token}"}
    headers["Notion-Version"] = entry["request_headers"]["notion-version"][0]
    content_type = (entry["request_headers"].get("content-type") or [None])[0]
    body: bytes | None = None
    if content_type:
        headers["Content-Type"] = content_type
    raw = entry["request_body"]
    if raw:
        if content_type and content_type.startswith("multipart/form-data"):
            body = rebuild_multipart(raw)
        else:
            data = json.loads(replay.substitute(raw))
            if data.get("mode") == "external_url":
                data["external_url"] = replay.pdf_url  # the emulator reaches loopback only
            body = json.dumps(data).encode()
    r = requests.request(entry["method"], f"{emu.url}{path}", data=body, headers=headers, timeout=30)
    where = f"{label} {entry['method']} {urlsplit(entry['uri']).path}"
    if r.status_code != entry["status"]:
        diffs.append(f"{where}: status recorded {entry['status']}, emulator {r.status_code}: {r.text[:200]}")
    recorded_type = (entry["response_headers"].get("content-type") or [None])[0]
    if r.headers.get("Content-Type") != recorded_type:
        diffs.append(f"{where}: Content-Type recorded {recorded_type!r}, emulator {r.headers.get('Content-Type')!r}")
    try:
        got = r.json()
    except ValueError:
        diffs.append(f"{where}: the answer is not JSON: {r.text[:200]!r}")
        return
    if isinstance(got, dict) and "request_id" in got and r.headers.get("x-notion-request-id") != got["request_id"]:
        diffs.append(f"{where}: x-notion-request-id header {r.headers.get('x-notion-request-id')!r} "
                     f"is not the body's request_id {got['request_id']!r}")
    history = entry["method"] == "GET" and url.path == "/v1/file_uploads"
    replay.compare(entry["response_body"], got, where, diffs, history=history)
    if isinstance(got, dict) and got.get("object") == "file_upload" and got.get("status") == "pending" \
            and body and b"external_url" in body:
        # The import runs after the answer; let it end before the next request lists it.
        wait_until(lambda: emu.upload(got["id"])["status"] != "pending", timeout_s=10)


class PdfHandler(BaseHTTPRequestHandler):
    payload = (b"%PDF-1.4\n" + b"0" * PDF_SIZE)[:PDF_SIZE]

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Type", "application/pdf")
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replay]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), PdfHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # The recorded workspace is on the free plan (users/me says 5 MiB per file).
        with running_emulator(tmp_path_factory.mktemp("recordings"), "--plan", "free",
                              "--rate-limit", "100000/60") as emu:
            # The recorded workspace had a history of uploads before the cassettes ran (its
            # lists hold 21-25 of them): give ours some, so a page of 5 has a next one too.
            client = NotionClient(emu)
            for i in range(6):
                client.create_ok(mode="single_part", filename=f"history_{i}.txt", content_type="text/plain")
            yield Replay(emu, f"http://127.0.0.1:{server.server_address[1]}/dummy.pdf")
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("cassette", cassettes())
def test_the_emulator_answers_like_the_recording(replay: Replay, cassette: str) -> None:
    entries = [e for e in load() if e["cassette"] == cassette]
    assert entries, f"no recordings at {RECORDINGS}"
    diffs: list[str] = []
    for n, entry in enumerate(entries, 1):
        if urlsplit(entry["uri"]).hostname != "api.notion.com":
            # notion-sdk-py's test of a non-Notion HTTP error (mock.httpstatus.io): not Notion.
            continue
        replay_one(replay, entry, f"{cassette} #{n}", diffs)
    assert not diffs, f"{len(diffs)} difference(s) from the live recording:\n" + "\n".join(diffs)
