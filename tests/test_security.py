"""Who may upload (tokens, owners), the loopback-only rule, quotas, CORS, and input limits."""
from __future__ import annotations

import base64
import socket
import subprocess

import pytest
import requests

from harness.processes import PYTHON, ROOT
from tests.test_tus_protocol import OCTET, TUS

ALICE = "alice-secret-0123456789"
BOB = "bob-secret-9876543210abc"
TOKENS = f"alice:{ALICE},bob:{BOB}"


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def meta(name: str) -> str:
    return f"filename {base64.b64encode(name.encode()).decode()}"


@pytest.fixture
def secured(relay_factory):
    return relay_factory(UPLOAD_TOKENS=TOKENS, QUOTA_CONCURRENT_UPLOADS="3", QUOTA_MB_PER_HOUR="60",
                         CORS_ORIGINS="http://app.example")


def create(base: str, token: str | None, size: int = 10, name: str = "a.txt") -> requests.Response:
    return requests.post(f"{base}/files/", headers={**TUS, **auth(token), "Upload-Length": str(size),
                                                    "Upload-Metadata": meta(name)}, timeout=30)


def test_every_upload_endpoint_needs_a_valid_token_and_the_right_owner(secured):
    base = secured.url
    for token in (None, "wrong-token-000000000000"):
        r = create(base, token)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        assert r.json()["error"]
    alice_upload = create(base, ALICE)
    assert alice_upload.status_code == 201
    url = alice_upload.headers["Location"]
    upload_id = url.rsplit("/", 1)[-1]

    def head(token):
        return requests.head(url, headers={**TUS, **auth(token)}, timeout=10).status_code

    def patch(token):
        return requests.patch(url, data=b"x" * 10, headers={**TUS, **OCTET, **auth(token), "Upload-Offset": "0"},
                              timeout=30).status_code

    def delete(token):
        return requests.delete(url, headers={**TUS, **auth(token)}, timeout=10).status_code

    def status(token):
        return requests.get(f"{base}/api/upload/status/{upload_id}", headers=auth(token), timeout=10).status_code

    def put(token):
        return requests.put(f"{base}/api/upload/{upload_id}", data=b"x" * 10, headers=auth(token), timeout=30).status_code

    def create_session(token):
        return requests.post(f"{base}/api/upload/create-session", json={"filename": "s.txt", "fileSize": 5},
                             headers=auth(token), timeout=30).status_code

    for call in (head, patch, delete, status, put):
        assert call(None) == 401, call.__name__
        assert call("not-a-real-token-000000") == 401, call.__name__
        assert call(BOB) == 404, call.__name__  # another user's upload does not exist for them
    assert create_session(None) == 401 and create_session(BOB) == 201
    assert head(ALICE) == 200
    assert status(ALICE) == 200
    assert patch(ALICE) == 204
    assert requests.options(url, timeout=10).status_code == 204  # CORS preflights carry no token


def test_health_is_public_but_its_details_need_a_token(secured):
    public = requests.get(f"{secured.url}/api/system/health", timeout=10).json()
    assert set(public) == {"timestamp", "status"}
    detailed = requests.get(f"{secured.url}/api/system/health", headers=auth(ALICE), timeout=10).json()
    assert "components" in detailed


def test_without_tokens_the_relay_refuses_to_serve_beyond_loopback(tmp_path):
    env = {"HOST": "0.0.0.0", "PORT": "0", "DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([PYTHON, str(ROOT / "server.py")], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "UPLOAD_TOKENS" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_with_tokens_it_may_serve_on_all_interfaces(relay_factory):
    relay = relay_factory(name="public", HOST="0.0.0.0", UPLOAD_TOKENS=TOKENS)
    port = int(relay.url.rsplit(":", 1)[-1])
    r = requests.get(f"http://127.0.0.1:{port}/api/system/health", timeout=10)
    assert r.status_code == 200


def test_quotas_per_token(secured):
    ids = [create(secured.url, ALICE, size=5 * 2**20) for _ in range(3)]
    assert all(r.status_code == 201 for r in ids)
    over = create(secured.url, ALICE)
    assert over.status_code == 429 and int(over.headers["Retry-After"]) >= 1
    assert over.json()["reason"] == "concurrent_uploads"
    assert create(secured.url, BOB, size=50 * 2**20).status_code == 201  # bob has his own quota
    too_many_bytes = create(secured.url, BOB, size=20 * 2**20)
    assert too_many_bytes.status_code == 429 and too_many_bytes.json()["reason"] == "bytes_per_hour"
    # A cancelled upload frees its place.
    requests.delete(ids[0].headers["Location"], headers={**TUS, **auth(ALICE)}, timeout=10)
    assert create(secured.url, ALICE).status_code == 201


def test_cors_allowlist(secured):
    allowed = requests.options(f"{secured.url}/files/", headers={"Origin": "http://app.example",
                                                                 "Access-Control-Request-Method": "POST"}, timeout=10)
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://app.example"
    other = requests.options(f"{secured.url}/files/", headers={"Origin": "http://evil.example",
                                                               "Access-Control-Request-Method": "POST"}, timeout=10)
    assert "Access-Control-Allow-Origin" not in other.headers


def test_filenames_are_sanitised_and_unsupported_types_refused(stack):
    def upload_name(name: str) -> str:
        r = requests.post(f"{stack.relay.url}/files/", data=b"hello", headers={
            **TUS, **OCTET, "Upload-Length": "5", "Upload-Metadata": meta(name)}, timeout=30)
        assert r.status_code == 201, r.text
        status = stack.relay.status(r.headers["Location"].rsplit("/", 1)[-1])
        return stack.emulator.upload(status["notion"]["file_upload_id"])["filename"]

    assert upload_name("résumé 2026 ✓.txt") == "résumé 2026 ✓.txt"  # UTF-8 names arrive intact
    assert "/" not in upload_name("../../etc/passwd.txt")
    assert "\\" not in upload_name("..\\windows\\evil.txt")
    assert not any(ord(c) < 32 for c in upload_name("line\nbreak\x00.txt"))
    long_name = upload_name("é" * 700 + ".txt")
    assert len(long_name.encode()) <= 900 and long_name.endswith(".txt")
    for name in ("tool.exe", "archive.zip", "noextension"):
        r = requests.post(f"{stack.relay.url}/files/", headers={**TUS, "Upload-Length": "5",
                                                                "Upload-Metadata": meta(name)}, timeout=30)
        assert r.status_code == 415 and "Notion does not accept" in r.json()["error"]


def test_url_and_header_limits(stack):
    r = requests.get(f"{stack.relay.url}/api/upload/status/{'a' * 5000}", timeout=10)
    assert r.status_code in (404, 414)
    r = requests.head(f"{stack.relay.url}/files/{'b' * 5000}", headers=TUS, timeout=10)
    assert r.status_code in (404, 414)
    host, port = stack.relay.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"GET /api/system/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
        reply = s.recv(100)
    assert not reply.startswith(b"HTTP/1.1 5")
    assert requests.get(f"{stack.relay.url}/api/system/health", timeout=10).status_code == 200


def test_upload_ids_are_unguessable(stack):
    ids = [requests.post(f"{stack.relay.url}/files/", headers={**TUS, "Upload-Length": "5", "Upload-Metadata": meta("u.txt")},
                         timeout=30).headers["Location"].rsplit("/", 1)[-1] for _ in range(20)]
    assert len(set(ids)) == 20
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)  # 128 random bits each
