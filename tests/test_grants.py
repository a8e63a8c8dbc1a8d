"""Upload grants: JWTs an app mints (here with PyJWT, HS256 and EdDSA) that scope what their
holder may upload, checked at creation before any byte is read or Notion is asked; an expired
grant still finishes the uploads it started. And no grant secret, webhook secret or grant token
in any response, log line or metric.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import redis as redis_sync
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from engine.clock import FakeClock
from engine.errors import Forbidden, InvalidUpload, Unauthorized
from engine.grants import (
    Grant,
    GrantVerifier,
    check_creation,
    parse_grant_secret,
    parse_public_key,
    resolve_destination,
)
from harness.processes import PYTHON, ROOT, wait_until
from harness.relay import MIB, PAGE_ID
from harness.stacks import unthrottled_stack

HS_SECRET = "grant-secret-for-tests-7d2e9b4c1a6f8e3d5b0c2a4f6e8d1b3c"
UPLOAD_TOKEN = "alice-static-token-5e7a9c1b3d5f7a9c"
AUD = "notion-upload-relay"
TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}

ED_KEY = ed25519.Ed25519PrivateKey.generate()
ED_PUBLIC_PEM = ED_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo).decode()
ED_PRIVATE_PEM = ED_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()).decode()
OTHER_ED_KEY = ed25519.Ed25519PrivateKey.generate()


def mint(sub: str = "user-42", *, key: Any = HS_SECRET, alg: str = "HS256", exp_in: float = 600,
         **claims: Any) -> str:
    now = time.time()
    payload = {"sub": sub, "aud": AUD, "iat": int(now), "exp": int(now + exp_in), **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm=alg)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def meta(**kv: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in kv.items())


def tus_create(base: str, token: str, size: int, name: str = "report.pdf", body: bytes | None = None,
               **extra_meta: str) -> requests.Response:
    headers = {**TUS, **bearer(token), "Upload-Length": str(size), "Upload-Metadata": meta(filename=name, **extra_meta),
               "Connection": "close"}
    if body is not None:
        headers.update(OCTET)
    return requests.post(f"{base}/files/", headers=headers, data=body, timeout=30)


def api_create(base: str, token: str, size: int, name: str = "report.pdf", **extra: Any) -> requests.Response:
    return requests.post(f"{base}/api/upload/create-session", json={"filename": name, "fileSize": size, **extra},
                         headers={**bearer(token), "Connection": "close"}, timeout=30)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Any]:
    s = unthrottled_stack(
        tmp_path_factory.mktemp("grants"), UPLOAD_TOKENS=f"alice:{UPLOAD_TOKEN}", UPLOAD_GRANT_SECRET=HS_SECRET,
        UPLOAD_GRANT_PUBLIC_KEY=ED_PUBLIC_PEM, UPLOAD_GRANT_LEEWAY="1", QUOTA_CONCURRENT_UPLOADS="1000")
    yield s
    s.close()


def record_of(stack, upload_id: str) -> dict[str, Any]:
    client = redis_sync.Redis.from_url(stack.redis.url)
    try:
        return json.loads(client.get(f"relay:upload:{upload_id}"))
    finally:
        client.close()


# --- within its limits -----------------------------------------------------------------------

def test_an_hs256_grant_uploads_within_its_limits_and_the_upload_belongs_to_sub(stack):
    base = stack.relay.url
    data = bytes(range(256)) * 4096  # 1 MiB
    grant = mint("user-42", max_bytes=2 * MIB, content_types=["application/pdf", "image/*"],
                 destinations=["default"], max_uploads=5)
    r = tus_create(base, grant, len(data))
    assert r.status_code == 201, r.text
    url = r.headers["Location"]
    upload_id = url.rsplit("/", 1)[-1]
    r = requests.patch(url, data=data, headers={**TUS, **OCTET, **bearer(grant), "Upload-Offset": "0"}, timeout=60)
    assert r.status_code == 204 and r.headers.get("Upload-Status") == "completed", r.text
    assert record_of(stack, upload_id)["owner"] == "user-42"
    status = requests.get(f"{base}/api/upload/status/{upload_id}", headers=bearer(grant), timeout=10)
    assert status.status_code == 200 and status.json()["status"] == "completed"
    held = stack.emulator.upload(status.json()["notion"]["file_upload_id"])
    assert held["sha256"] == hashlib.sha256(data).hexdigest()
    # Another owner does not see it: a grant for someone else, or the static token of alice.
    for other in (mint("user-43"), UPLOAD_TOKEN):
        assert requests.head(url, headers={**TUS, **bearer(other)}, timeout=10).status_code == 404
    # A grant of the same sub (a fresh one, the app minted again) does.
    assert requests.head(url, headers={**TUS, **bearer(mint("user-42"))}, timeout=10).status_code == 200


def test_an_eddsa_grant_uploads_through_the_json_api_to_its_destination_by_id(stack):
    base = stack.relay.url
    grant = mint("app-user@example.com", key=ED_PRIVATE_PEM, alg="EdDSA",
                 destinations=[PAGE_ID.replace("-", "")], max_bytes=MIB)
    r = api_create(base, grant, 300_000, name="notes.txt")
    assert r.status_code == 201, r.text
    upload_id = r.json()["upload_id"]
    r = requests.put(f"{base}/api/upload/{upload_id}", data=b"n" * 300_000, headers=bearer(grant), timeout=60)
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text
    assert record_of(stack, upload_id)["owner"] == "app-user@example.com"


def test_the_limits_the_page_reads_are_narrowed_to_the_grant(stack):
    base = stack.relay.url
    public = requests.get(f"{base}/api/limits", timeout=10).json()
    grant = mint(max_bytes=MIB, content_types=["image/*"], max_uploads=3)
    narrowed = requests.get(f"{base}/api/limits", headers=bearer(grant), timeout=10).json()
    assert narrowed["max_file_bytes"] == MIB < public["max_file_bytes"]
    assert narrowed["content_types"] and all(t.startswith("image/") for t in narrowed["content_types"])
    assert "png" in narrowed["extensions"] and "pdf" not in narrowed["extensions"]
    assert narrowed["grant"]["max_uploads"] == 3 and "grant" not in public
    # An invalid grant changes nothing here (creation refuses it).
    assert requests.get(f"{base}/api/limits", headers=bearer(_tampered()), timeout=10).json() == public


def test_static_upload_tokens_keep_working_beside_grants(stack):
    r = api_create(stack.relay.url, UPLOAD_TOKEN, 1000, name="a.txt")
    assert r.status_code == 201, r.text
    assert record_of(stack, r.json()["upload_id"])["owner"] == "alice"


# --- refused at creation, before any byte ----------------------------------------------------

def _tampered() -> str:
    header, payload, signature = mint(max_bytes=10).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["max_bytes"] = 10**12
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _hs256_with_the_public_key() -> str:
    """The classic algorithm confusion: HS256 "signed" with the (public) EdDSA key's PEM text."""
    import hmac
    signing = _b64(b'{"alg":"HS256","typ":"JWT"}') + "." + _b64(json.dumps(
        {"sub": "x", "aud": AUD, "exp": int(time.time()) + 600}).encode())
    mac = hmac.new(ED_PUBLIC_PEM.encode(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{_b64(mac)}"


REFUSALS = [
    # (what, grant, size, name, extra metadata, status, reason)
    ("expired", lambda: mint(exp_in=-60), 1000, "a.pdf", {}, 401, "grant_expired"),
    ("not yet valid", lambda: mint(nbf=int(time.time()) + 120), 1000, "a.pdf", {}, 401, "grant_not_yet_valid"),
    ("wrong audience", lambda: mint(aud="another-service"), 1000, "a.pdf", {}, 401, "grant_audience"),
    ("tampered", _tampered, 1000, "a.pdf", {}, 401, "grant_signature"),
    ("another key", lambda: mint(key=OTHER_ED_KEY, alg="EdDSA"), 1000, "a.pdf", {}, 401, "grant_signature"),
    ("the public key as an HMAC secret", lambda: _hs256_with_the_public_key(), 1000, "a.pdf", {}, 401,
     "grant_signature"),
    ("no signature", lambda: jwt.encode({"sub": "x", "aud": AUD, "exp": int(time.time()) + 600}, None,
                                        algorithm="none"), 1000, "a.pdf", {}, 401, "grant_algorithm"),
    ("no sub", lambda: mint(sub=None), 1000, "a.pdf", {}, 401, "grant_invalid"),
    ("another destination", lambda: mint(destinations=["Invoices", "0123456789abcdef0123456789abcdef"]),
     1000, "a.pdf", {}, 403, "grant_destination"),
    ("no destinations but asks for one", lambda: mint(), 1000, "a.pdf", {"destination": "Invoices"}, 400,
     "unknown_destination"),
    ("too large", lambda: mint(max_bytes=5000), 5001, "a.pdf", {}, 403, "grant_max_bytes"),
    ("wrong type", lambda: mint(content_types=["image/*", "video/mp4"]), 1000, "a.pdf", {}, 403,
     "grant_content_type"),
    ("wrong type by extension", lambda: mint(content_types=["application/pdf"]), 1000, "song.mp3",
     {"filetype": "application/pdf"}, 403, "grant_content_type"),
]


@pytest.mark.parametrize("what,make,size,name,extra,status,reason", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_a_grant_outside_its_limits_is_refused_before_any_byte(stack, what, make, size, name, extra, status, reason):
    base = stack.relay.url
    before = len(stack.emulator.uploads())
    grant = make()
    # With the first bytes in the creation request (tus creation-with-upload)...
    r = tus_create(base, grant, size, name=name, body=b"x" * min(size, 4096), **extra)
    assert r.status_code == status, r.text
    body = r.json()
    assert body.get("reason") == reason and body["error"], body
    assert grant not in r.text and HS_SECRET not in r.text
    # ... and through the JSON API (which takes the destination in its body).
    r = api_create(base, grant, size, name=name,
                   **({"destination": extra["destination"]} if "destination" in extra else {}),
                   **({"contentType": extra["filetype"]} if "filetype" in extra else {}))
    assert r.status_code == status and r.json().get("reason") == reason, r.text
    if status == 401:
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert len(stack.emulator.uploads()) == before  # Notion was never asked


def test_a_grant_creates_at_most_max_uploads(stack):
    base = stack.relay.url
    grant = mint("counted", max_uploads=2)
    assert tus_create(base, grant, 1000).status_code == 201
    assert api_create(base, grant, 1000).status_code == 201
    before = len(stack.emulator.uploads())
    for r in (tus_create(base, grant, 1000), api_create(base, grant, 1000)):
        assert r.status_code == 403 and r.json()["reason"] == "grant_max_uploads", r.text
        assert "2 uploads" in r.json()["error"]
    assert len(stack.emulator.uploads()) == before
    # Counted per grant: a new grant for the same user may create again.
    assert tus_create(base, mint("counted", max_uploads=1), 1000).status_code == 201
    # A creation refused for another reason does not use up the count.
    one = mint("counted-2", max_uploads=1)
    assert tus_create(base, one, 1000, name="tool.exe").status_code == 415
    assert tus_create(base, one, 1000).status_code == 201


def test_an_upload_started_under_a_grant_that_then_expires_can_be_finished(stack):
    base = stack.relay.url
    grant = mint("finisher", exp_in=3, max_bytes=MIB)
    data = b"f" * (600 * 1024)
    r = tus_create(base, grant, len(data), name="late.pdf")
    assert r.status_code == 201, r.text
    url = r.headers["Location"]
    r = requests.patch(url, data=data[:200_000], headers={**TUS, **OCTET, **bearer(grant), "Upload-Offset": "0"},
                       timeout=60)
    assert r.status_code == 204, r.text

    # Wait until the grant has expired (leeway 1 s): it can no longer start an upload.
    def expired() -> bool:
        refused = tus_create(base, grant, 1000)
        return refused.status_code == 401 and refused.json()["reason"] == "grant_expired"
    wait_until(expired, timeout_s=15, interval_s=0.5, message="the grant expired")

    head = requests.head(url, headers={**TUS, **bearer(grant)}, timeout=10)
    assert head.status_code == 200 and head.headers["Upload-Offset"] == "200000"
    r = requests.patch(url, data=data[200_000:], headers={**TUS, **OCTET, **bearer(grant), "Upload-Offset": "200000"},
                       timeout=60)
    assert r.status_code == 204 and r.headers.get("Upload-Status") == "completed", r.text
    upload_id = url.rsplit("/", 1)[-1]
    status = requests.get(f"{base}/api/upload/status/{upload_id}", headers=bearer(grant), timeout=10)
    assert status.status_code == 200 and status.json()["status"] == "completed"


# --- in-process: the verifier and the scope checks -------------------------------------------

def grant_of(**claims: Any) -> Grant:
    clock = FakeClock(wall_start=time.time())
    return GrantVerifier(clock, secret=HS_SECRET, leeway_s=30).verify(mint(**claims))


def test_leeway_on_exp_and_nbf_and_an_expired_grant_identifies_for_a_day():
    clock = FakeClock(wall_start=time.time())
    verifier = GrantVerifier(clock, secret=HS_SECRET, leeway_s=30)
    assert not verifier.verify(mint(exp_in=-20)).expired  # within the leeway
    assert verifier.verify(mint(exp_in=-40)).expired
    verifier.verify(mint(nbf=int(time.time()) + 20))  # within the leeway
    with pytest.raises(Unauthorized, match="expired"):
        verifier.verify(mint(exp_in=-(24 * 3600 + 60)))
    with pytest.raises(Unauthorized, match="exp claim"):
        verifier.verify(jwt.encode({"sub": "x", "aud": AUD}, HS_SECRET, algorithm="HS256"))


def test_scope_checks():
    default = ("default", PAGE_ID)
    check_creation(grant_of(), size=10, filename="a.pdf", content_type=None, destination=default)
    with pytest.raises(Forbidden):
        check_creation(grant_of(), size=10, filename="a.pdf", content_type=None, destination=("Invoices", "x" * 32))
    by_url = f"https://www.notion.so/My-Page-{PAGE_ID.replace('-', '')}"
    check_creation(grant_of(destinations=[by_url]), size=10, filename="a.pdf", content_type=None, destination=default)
    check_creation(grant_of(content_types=["*/*"]), size=10, filename="a.mp3", content_type=None, destination=default)
    check_creation(grant_of(content_types="audio/*"), size=10, filename="a.mp3", content_type=None,
                   destination=default)
    assert resolve_destination(PAGE_ID.replace("-", ""), {"default": PAGE_ID}) == default
    assert resolve_destination(None, {"default": PAGE_ID}) == default
    with pytest.raises(InvalidUpload):
        resolve_destination("elsewhere", {"default": PAGE_ID})
    for bad in ({"max_bytes": "big"}, {"destinations": [1]}, {"content_types": ["pdf"]}, {"max_uploads": -1},
                {"sub": ""}):
        with pytest.raises(Unauthorized, match="claim is invalid"):
            grant_of(**bad)


def test_keys_in_the_settings():
    assert parse_public_key(ED_PUBLIC_PEM).algorithm == "EdDSA"
    assert parse_public_key(ED_PUBLIC_PEM.replace("\n", "\\n")).algorithm == "EdDSA"
    with pytest.raises(ValueError, match="PUBLIC key") as info:
        parse_public_key(ED_PRIVATE_PEM)
    assert ED_PRIVATE_PEM.splitlines()[1] not in str(info.value)
    with pytest.raises(ValueError):
        parse_grant_secret("too-short")


def test_a_private_key_or_short_secret_in_the_settings_is_refused_without_echo():
    for name, value in (("UPLOAD_GRANT_PUBLIC_KEY", ED_PRIVATE_PEM), ("UPLOAD_GRANT_SECRET", "short-secret-1")):
        env = {"PATH": "/usr/bin:/bin", name: value}
        result = subprocess.run([PYTHON, str(ROOT / "server.py")], env=env, capture_output=True, text=True,
                                timeout=30)
        assert result.returncode == 2 and name in result.stderr, result.stderr
        shown = value.splitlines()[1] if "PRIVATE" in value else value
        assert shown not in result.stdout + result.stderr


# --- secrets stay secret ---------------------------------------------------------------------

def test_no_grant_or_webhook_secret_in_responses_logs_or_metrics(tmp_path):
    from engine.clock import SystemClock
    from engine.store import CheckpointStore
    from engine.webhooks import Outbox, upload_event
    from tests.support.webhook_receiver import Receiver

    webhook_secret = "whsec_" + base64.b64encode(b"webhook-key-material-0123456789ab").decode()
    receiver = Receiver(webhook_secret).start()
    receiver.mode = lambda count, _id: 500 if count < 2 else 204
    s = unthrottled_stack(
        tmp_path, UPLOAD_GRANT_SECRET=HS_SECRET, UPLOAD_GRANT_PUBLIC_KEY=ED_PUBLIC_PEM, UPLOAD_GRANT_LEEWAY="1",
        WEBHOOK_URL=receiver.url, WEBHOOK_SECRET=webhook_secret, WEBHOOK_RETRY_INITIAL="0.1",
        WEBHOOK_RETRY_MAX="0.2", WEBHOOK_POLL_INTERVAL="0.1", OBSERVABILITY_ACCESS="public")
    seen: list[str] = []
    grants = [mint(max_bytes=MIB), mint(exp_in=-60), _tampered(), mint(aud="x"), mint(max_bytes=10)]
    try:
        base = s.relay.url
        for grant in grants:
            for r in (tus_create(base, grant, 1000), api_create(base, grant, 1000),
                      requests.get(f"{base}/api/upload/status/{'0' * 32}", headers=bearer(grant), timeout=10),
                      requests.get(f"{base}/api/upload/status/{'0' * 32}?grant={grant}", timeout=10)):
                seen.append("\n".join(f"{k}: {v}" for k, v in r.headers.items()) + "\n" + r.text)

        async def enqueue() -> None:
            store = CheckpointStore(s.redis.url, SystemClock(), ttl_s=3600)
            try:
                await Outbox(store).add(upload_event("upload.completed", {"id": "a" * 32, "owner": "user-42",
                                                                          "created_at": time.time()}, time.time()))
            finally:
                await store.close()
        asyncio.run(enqueue())
        receiver.wait_for(lambda r: r.accepted(), timeout_s=20)
        for path in ("/api/system/health", "/metrics", "/api/openapi.json"):
            seen.append(requests.get(f"{base}{path}", timeout=10).text)
    finally:
        s.close()
        receiver.stop()
    log = s.relay.output()
    assert "event=WEBHOOK_RETRY" in log and "event=WEBHOOK_DELIVERED" in log
    assert "?grant=***" in log  # the grant in a query string reached the access log, masked
    secrets = [HS_SECRET, webhook_secret, webhook_secret[6:], "receiver-query-token-7c1f", *grants]
    for text in [*seen, log]:
        for secret in secrets:
            assert secret not in text, f"a secret shows in:\n{text[:1500]}"
