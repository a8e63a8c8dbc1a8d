"""Every refusal reaches the client, also when it comes before the body was read.

Ordinary clients send their whole body before they read the answer (Python's http.client,
curl without `Expect`). The relay refuses a PATCH as soon as its headers say so (409, 400, 401,
413, 415, 423); it must then read the rest of the body into nothing (bounded) before it closes,
or the client meets a connection reset instead of the answer. Oversized headers get 431.
Real processes: an emulator, a private Redis and two relays sharing it (for 423).
"""
from __future__ import annotations

import base64
import http.client
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from engine.embedded_redis import EmbeddedRedis, free_tcp_port
from handlers.lingering import LINGER_BYTES, LINGER_SECONDS
from harness.emulator import start_emulator
from harness.processes import wait_until
from harness.relay import MIB, make_file, start_relay
from harness.tusclient import upload

TOKEN = "early-refusals-secret-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TUS = {"Tus-Resumable": "1.0.0"}
OCTET = "application/offset+octet-stream"
BODY_BYTES = 8 * MIB


class Relays:
    def __init__(self, folder: Path) -> None:
        self.emulator = start_emulator(folder / "emulator")
        self.redis = EmbeddedRedis(folder / "redis", tcp_port=free_tcp_port())
        self.redis.start()
        env = {"UPLOAD_TOKENS": f"tester:{TOKEN}", "NOTION_RATE_LIMIT": "100000/60", "QUOTA_CONCURRENT_UPLOADS": "1000",
               "MAX_CONCURRENT_UPLOADS": "1000"}
        self.a = start_relay(folder / "a", self.emulator.url, self.redis.url, **env)
        self.b = start_relay(folder / "b", self.emulator.url, self.redis.url, **env)
        self.body = folder / "body.bin"
        self.body.write_bytes(b"r" * BODY_BYTES)

    def close(self) -> None:
        for relay in (self.a, self.b):
            relay.stop()
        self.redis.stop()
        self.emulator.stop()


@pytest.fixture(scope="module")
def relays(tmp_path_factory) -> Iterator[Relays]:
    r = Relays(tmp_path_factory.mktemp("early"))
    yield r
    r.close()


def create(base: str, size: int) -> str:
    meta = "filename " + base64.b64encode(b"early.txt").decode()
    r = requests.post(f"{base}/files/", headers={**TUS, **AUTH, "Upload-Length": str(size), "Upload-Metadata": meta},
                      timeout=30)
    assert r.status_code == 201, r.text
    return urlsplit(r.headers["Location"]).path


def send_with_http_client(base: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, dict]:
    """The whole body first, then the answer: what http.client (and requests) do."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("PATCH", path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(data)
    finally:
        conn.close()


def send_with_curl(base: str, path: str, headers: dict[str, str], body: Path, tmp: Path) -> tuple[int, dict]:
    """curl with `Expect:` turned off, so that it sends the body without waiting for a go-ahead."""
    out = tmp / "curl-answer.json"
    args = ["curl", "-sS", "-X", "PATCH", "--data-binary", f"@{body}", "-o", str(out), "-w", "%{http_code}",
            "-H", "Expect:", "--max-time", "30"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    done = subprocess.run([*args, f"{base}{path}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"curl failed ({done.returncode}): {done.stderr}"
    return int(done.stdout), json.loads(out.read_bytes())


def patch_headers(offset: int, **extra: str) -> dict[str, str]:
    return {**TUS, **AUTH, "Content-Type": OCTET, "Upload-Offset": str(offset), **extra}


def refusals(relays: Relays) -> list[tuple[int, str, dict[str, str]]]:
    """(expected status, path, headers) for each early refusal of an 8 MiB PATCH."""
    base = relays.a.url
    upload = create(base, 16 * MIB)
    small = create(base, 4 * MIB)
    no_token = {k: v for k, v in patch_headers(0).items() if k != "Authorization"}
    return [
        (409, upload, patch_headers(5)),
        (400, upload, patch_headers(0, **{"Upload-Checksum": "sha1 not-base64!"})),
        (401, upload, no_token),
        (413, small, patch_headers(0)),
        (415, upload, {**patch_headers(0), "Content-Type": "application/json"}),
    ]


def held_by_b(relays: Relays) -> str:
    """An upload that relay B works on right now: a PATCH to A is answered 423 at once."""
    path = create(relays.b.url, 16 * MIB)
    r = requests.patch(f"{relays.b.url}{path}", data=b"", headers=patch_headers(0), timeout=30)
    assert r.status_code == 204, r.text
    return path


def test_refusals_before_the_body_reach_http_client(relays):
    body = b"r" * BODY_BYTES
    cases = refusals(relays) + [(423, held_by_b(relays), patch_headers(0))]
    for expected, path, headers in cases:
        status, answer_headers, answer = send_with_http_client(relays.a.url, path, headers, body)
        assert status == expected, (expected, answer)
        assert answer["error"] and answer["code"], answer
        assert answer_headers.get("connection") == "close"
        if expected == 423:
            assert int(answer_headers["retry-after"]) >= 1


def test_refusals_before_the_body_reach_curl(relays, tmp_path):
    cases = refusals(relays) + [(423, held_by_b(relays), patch_headers(0))]
    for expected, path, headers in cases:
        status, answer = send_with_curl(relays.a.url, path, headers, relays.body, tmp_path)
        assert status == expected, (expected, answer)
        assert answer["error"] and answer["code"], answer


def raw_request(base: str, head: bytes, body: bytes = b"") -> bytes:
    """Send a request (its whole body too), then read the answer to the end."""
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=30) as s:
        s.sendall(head + body)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def test_oversized_headers_are_answered_431(relays, tmp_path):
    base = relays.a.url
    one_line = b"GET /api/system/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n"
    many_lines = (b"GET /api/system/health HTTP/1.1\r\nHost: x\r\n"
                  + b"".join(b"X-Many-%d: %s\r\n" % (i, b"b" * 90) for i in range(400)) + b"\r\n")
    with_body = (b"PATCH /files/0123 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nX-Big: " % BODY_BYTES
                 + b"c" * 40000 + b"\r\n\r\n")
    for head, body in ((one_line, b""), (many_lines, b""), (with_body, b"r" * BODY_BYTES)):
        reply = raw_request(base, head, body)
        assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]
        answer = json.loads(reply.split(b"\r\n\r\n", 1)[1])
        assert answer["code"] == "header_too_large" and answer["error"]

    # http.client and curl read it too.
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("GET", "/api/system/health", headers={"X-Big": "d" * 40000})
        response = conn.getresponse()
        assert response.status == 431 and json.loads(response.read())["code"] == "header_too_large"
    finally:
        conn.close()
    out = tmp_path / "431.json"
    done = subprocess.run(["curl", "-sS", "-o", str(out), "-w", "%{http_code}", "-H", "X-Big: " + "e" * 40000,
                           f"{base}/api/system/health"], capture_output=True, text=True, timeout=60)
    assert done.stdout == "431", done.stderr
    assert json.loads(out.read_bytes())["code"] == "header_too_large"


def test_the_relay_is_healthy_and_uploads_after_the_refusals(relays, tmp_path):
    test_refusals_before_the_body_reach_http_client(relays)
    for relay in (relays.a, relays.b):
        assert requests.get(f"{relay.url}/api/system/health", timeout=10).status_code == 200
    path = tmp_path / "after.txt"
    sha = make_file(path, 12 * MIB)
    result = upload(relays.a.url, path, 8 * MIB, deadline_s=120, headers=AUTH)
    upload_id = result.url.rsplit("/", 1)[-1]
    status = requests.get(f"{relays.a.url}/api/upload/status/{upload_id}", headers=AUTH, timeout=10).json()
    assert status["status"] == "completed", status
    assert relays.emulator.upload(status["notion"]["file_upload_id"])["sha256"] == sha


def unauthorized_patch_head(base: str, length: int) -> bytes:
    return (f"PATCH /files/{'0' * 32} HTTP/1.1\r\nHost: {urlsplit(base).netloc}\r\nTus-Resumable: 1.0.0\r\n"
            f"Content-Type: {OCTET}\r\nUpload-Offset: 0\r\nContent-Length: {length}\r\n\r\n").encode()


def test_the_drain_is_bounded_in_bytes(relays):
    """A refused 1 GiB body is not read to its end: the relay closes after about LINGER_BYTES."""
    url = urlsplit(relays.a.url)
    sent = 0
    chunk = b"z" * MIB
    started = time.monotonic()
    with socket.create_connection((url.hostname, url.port), timeout=30) as s:
        s.sendall(unauthorized_patch_head(relays.a.url, 2**30))
        with pytest.raises(OSError):  # a reset or a broken pipe once the relay has had enough
            while sent < 200 * MIB:
                s.sendall(chunk)
                sent += len(chunk)
    # What the kernels buffer on both sides comes on top of what the relay read.
    assert LINGER_BYTES <= sent + 8 * MIB and sent < LINGER_BYTES + 32 * MIB, sent / MIB
    assert time.monotonic() - started < LINGER_SECONDS + 10
    assert requests.get(f"{relays.a.url}/api/system/health", timeout=10).status_code == 200


def test_the_answer_comes_at_once_and_the_drain_is_bounded_in_time(relays):
    """A client that stops sending mid-body reads the answer at once (the relay half-closes);
    the relay gives up on the rest after about LINGER_SECONDS."""
    url = urlsplit(relays.a.url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as s:
        s.sendall(unauthorized_patch_head(relays.a.url, BODY_BYTES) + b"z" * MIB)
        started = time.monotonic()
        reply = b""
        while not reply.endswith(b"}"):
            data = s.recv(65536)
            assert data, reply
            reply += data
        assert reply.startswith(b"HTTP/1.1 401 ") and b"Connection: close" in reply
        assert s.recv(65536) == b""  # the relay's side is done: its answer is complete
        assert time.monotonic() - started < 2
        # The relay still reads (and drops) what comes, until its time is up.
        deadline = started + LINGER_SECONDS + 5
        with pytest.raises(OSError):
            while time.monotonic() < deadline:
                s.sendall(b"z" * 1024)
                time.sleep(0.1)
        assert time.monotonic() - started >= LINGER_SECONDS - 1


def test_a_request_taken_over_mid_body_still_reads_its_423(relays):
    """A newer request for the same upload detaches an older one whose body is still coming: the
    older one is answered at once, and its client, which sends everything first, reads the 423."""
    import threading

    base = relays.a.url
    path = create(base, 16 * MIB)
    go_on = threading.Event()
    answer: dict = {}

    def body():
        yield b"o" * (2 * MIB)
        go_on.wait(30)
        for _ in range(6):
            yield b"o" * MIB

    def old_client() -> None:
        try:
            answer["reply"] = send_with_http_client(base, path, {**patch_headers(0), "Content-Length": str(BODY_BYTES)},
                                                    body())
        except BaseException as exc:  # reported below
            answer["error"] = exc

    thread = threading.Thread(target=old_client, daemon=True)
    thread.start()
    try:
        def offset() -> int:
            r = requests.head(f"{base}{path}", headers={**TUS, **AUTH}, timeout=10)
            return int(r.headers["Upload-Offset"])
        wait_until(lambda: offset() == 2 * MIB, timeout_s=30, message="the first 2 MiB to arrive")
        newer = requests.patch(f"{base}{path}", data=b"", headers=patch_headers(2 * MIB), timeout=30)
        assert newer.status_code == 204, newer.text
    finally:
        go_on.set()
        thread.join(60)
    assert "error" not in answer, answer.get("error")
    status, headers, body_json = answer["reply"]
    assert status == 423 and body_json["code"] == "locked", body_json
    assert headers.get("connection") == "close"
