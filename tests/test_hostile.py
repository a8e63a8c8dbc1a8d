"""A hostile-input battery: hundreds of generated malformed requests against the tus and JSON
endpoints. None may cause a 5xx, a crash, or a leaked secret; afterwards the relay is healthy
and uploads correctly."""
from __future__ import annotations

import base64
import http.client
import json
import socket

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.embedded_redis import EmbeddedRedis, free_tcp_port
from harness.emulator import start_emulator
from harness.relay import MIB, make_file, start_relay
from harness.tusclient import upload

NOTION_SECRET = "secret_notion_XYZ_0123456789abcdef"
ALICE = "alice-hostile-secret-000111222"
SECRETS = (NOTION_SECRET, ALICE)
SEEN: dict[str, int] = {"requests": 0}


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    emulator = start_emulator(folder / "emulator", "--token", NOTION_SECRET)
    redis = EmbeddedRedis(folder / "redis", tcp_port=free_tcp_port())
    redis.start()
    relay = start_relay(folder / "relay", emulator.url, redis.url, NOTION_TOKEN=NOTION_SECRET,
                        UPLOAD_TOKENS=f"alice:{ALICE}", MAX_CONCURRENT_UPLOADS="1000", QUOTA_CONCURRENT_UPLOADS="1000",
                        BODY_IDLE_TIMEOUT="2")
    host, port = relay.url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", "/files/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(30 * MIB),
                                             "Authorization": f"Bearer {ALICE}",
                                             "Upload-Metadata": "filename " + base64.b64encode(b"h.txt").decode()})
    created = conn.getresponse()
    created.read()
    upload_path = "/files/" + created.getheader("Location").rsplit("/", 1)[-1]
    yield {"host": host, "port": int(port), "upload": upload_path, "relay": relay, "emulator": emulator,
           "folder": folder}
    relay.stop()
    redis.stop()
    emulator.stop()


ints = st.one_of(st.integers(-10, 10), st.integers(-2**70, 2**70), st.just(30 * MIB), st.just(30 * MIB - 1),
                 st.just(30 * MIB + 1))
texts = st.text(max_size=40)
header_values = st.one_of(ints.map(str), texts.filter(lambda t: "\r" not in t and "\n" not in t and "\x00" not in t),
                          st.sampled_from(["", " ", "1.0.0", "0.2.2", "sha1 AAAA", "md5 !!!", "sha256 " + "A" * 44,
                                           "filename", "filename !!!", "filename aGk=,filename aGk=", "a b c",
                                           "application/offset+octet-stream", "application/json", "text/plain",
                                           "chunked", "gzip", "Bearer " + "x" * 30, "Bearer", "Basic Zm9vOmJhcg=="]))
header_names = st.sampled_from(["Tus-Resumable", "Upload-Length", "Upload-Offset", "Upload-Metadata", "Upload-Checksum",
                                "Upload-Defer-Length", "Upload-Concat", "Content-Type", "X-HTTP-Method-Override",
                                "Authorization", "Origin", "Content-Encoding", "Expect", "Upload-Expires"])
methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "BREW"])
json_values = st.recursive(st.one_of(st.none(), st.booleans(), ints, texts),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(texts, inner, max_size=3)), max_leaves=8)


@st.composite
def hostile_requests(draw):
    path = draw(st.sampled_from([
        "/files/", "/files", "{upload}", "{upload}/extra", "/files/" + "0" * 32, "/files/../../etc/passwd",
        "/files/%00", "/api/upload/create-session", "/api/upload/{id}", "/api/upload/status/{id}",
        "/api/upload/status/" + "f" * 32, "/api/system/health", "/api/upload/", "/nope", "/files/" + "a" * 3000]))
    headers = draw(st.lists(st.tuples(header_names, header_values), max_size=6))
    if draw(st.booleans()):
        headers.append(("Tus-Resumable", "1.0.0"))
    if draw(st.booleans()):
        headers.append(("Authorization", f"Bearer {ALICE}"))
    kind = draw(st.sampled_from(["none", "bytes", "json", "truncated", "oversized"]))
    body = b""
    if kind == "bytes":
        body = draw(st.binary(max_size=2048))
    elif kind == "json":
        body = json.dumps(draw(json_values)).encode()
    elif kind in ("truncated", "oversized"):
        body = draw(st.binary(min_size=1, max_size=512))
    return draw(methods), path, headers, kind, body


def send_raw(target, method: str, path: str, headers, kind: str, body: bytes) -> tuple[int | None, bytes]:
    path = path.replace("{upload}", target["upload"]).replace("{id}", target["upload"].rsplit("/", 1)[-1])
    lines = [f"{method} {path} HTTP/1.1", f"Host: {target['host']}:{target['port']}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if kind == "truncated":
        lines.append(f"Content-Length: {len(body) + 1000}")  # promise more than is sent, then hang up
    elif kind == "oversized":
        lines.append(f"Content-Length: {len(body)}")
        body = body + b"EXTRA BYTES BEYOND THE DECLARED LENGTH"
    elif body:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "replace") + body
    with socket.create_connection((target["host"], target["port"]), timeout=30) as s:
        s.sendall(raw)
        if kind == "truncated":
            s.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except (TimeoutError, ConnectionResetError):
            pass
    reply = b"".join(chunks)
    if not reply.startswith(b"HTTP/1."):
        return None, reply
    return int(reply.split(b" ", 2)[1]), reply


@settings(max_examples=260, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(request=hostile_requests())
def test_hostile_requests_get_clear_answers(target, request):
    method, path, headers, kind, body = request
    status, reply = send_raw(target, method, path, headers, kind, body)
    SEEN["requests"] += 1
    assert target["relay"].alive(), "the relay crashed"
    if status is not None:
        assert status < 500, (method, path, headers, kind, reply[:500])
    for secret in SECRETS:
        assert secret.encode() not in reply, "a secret leaked into a response"


def test_afterwards_the_relay_is_healthy_and_uploads_correctly(target, tmp_path):
    assert SEEN["requests"] >= 200
    relay, emulator = target["relay"], target["emulator"]
    conn = http.client.HTTPConnection(target["host"], target["port"], timeout=10)
    conn.request("GET", "/api/system/health", headers={"Authorization": f"Bearer {ALICE}"})
    health = json.loads(conn.getresponse().read())
    assert health["status"] == "healthy"
    path = tmp_path / "after.txt"
    sha = make_file(path, 12 * MIB)

    token = {"Authorization": f"Bearer {ALICE}"}
    result = upload(relay.url, path, 4 * MIB, deadline_s=60, headers=token)
    status = requests.get(f"{relay.url}/api/upload/status/{result.url.rsplit('/', 1)[-1]}", headers=token,
                          timeout=10).json()
    assert status["status"] == "completed"
    assert emulator.upload(status["notion"]["file_upload_id"])["sha256"] == sha
    log = relay.output()
    for secret in SECRETS:
        assert secret not in log, "a secret leaked into the log"
    assert "Traceback" not in log
