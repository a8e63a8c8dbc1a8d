"""tus 1.0.0 protocol details: headers, extensions, and every error answer."""
from __future__ import annotations

import base64
import hashlib
from email.utils import parsedate_to_datetime

import pytest
import requests

from harness.relay import MIB
from tests.test_tus_uploads import assert_stored_in_notion

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}


def meta(**kv: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in kv.items())


def create(base: str, size: int, **headers: str) -> requests.Response:
    h = {**TUS, "Upload-Length": str(size), "Upload-Metadata": meta(filename="p.txt", filetype="text/plain"), **headers}
    return requests.post(f"{base}/files/", headers=h, timeout=30)


def patch(url: str, offset: int, data: bytes, **headers: str) -> requests.Response:
    return requests.patch(url, data=data, headers={**TUS, **OCTET, "Upload-Offset": str(offset), **headers}, timeout=60)


def test_options_advertises_version_extensions_and_checksums(stack):
    r = requests.options(f"{stack.relay.url}/files/", timeout=10)
    assert r.status_code == 204
    assert r.headers["Tus-Version"] == "1.0.0"
    assert set(r.headers["Tus-Extension"].split(",")) == {
        "creation", "creation-with-upload", "termination", "checksum", "expiration"}
    assert set(r.headers["Tus-Checksum-Algorithm"].split(",")) == {"sha1", "md5", "sha256"}


def test_cors_preflight_and_exposed_headers(stack):
    origin = stack.relay.url  # same-origin is always allowed; others need CORS_ORIGINS (test_security)
    r = requests.options(f"{stack.relay.url}/files/", headers={
        "Origin": origin, "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "upload-offset,tus-resumable"}, timeout=10)
    assert r.headers["Access-Control-Allow-Origin"] == origin
    assert "PATCH" in r.headers["Access-Control-Allow-Methods"]
    assert "Upload-Offset" in r.headers["Access-Control-Allow-Headers"]
    c = create(stack.relay.url, 10, Origin=origin)
    exposed = c.headers["Access-Control-Expose-Headers"]
    foreign = create(stack.relay.url, 10, Origin="http://elsewhere.example")
    assert "Access-Control-Allow-Origin" not in foreign.headers
    for name in ("Upload-Offset", "Location", "Upload-Length", "Upload-Expires", "Tus-Resumable"):
        assert name in exposed


def test_requests_without_tus_resumable_get_412(stack):
    r = requests.post(f"{stack.relay.url}/files/", headers={"Upload-Length": "10"}, timeout=10)
    assert r.status_code == 412 and r.headers["Tus-Version"] == "1.0.0"


@pytest.mark.parametrize("headers, status", [
    ({"Upload-Length": ""}, 400),
    ({"Upload-Length": "-5"}, 400),
    ({"Upload-Length": "abc"}, 400),
    ({"Upload-Length": "0"}, 400),
    ({"Upload-Length": str(6 * 2**30)}, 413),
    ({"Upload-Defer-Length": "1"}, 400),
    ({"Upload-Metadata": "filename !!!notbase64"}, 400),
])
def test_creation_errors(stack, headers, status):
    h = {**TUS, "Upload-Length": "10", **headers}
    if headers.get("Upload-Length") == "":
        del h["Upload-Length"]
    r = requests.post(f"{stack.relay.url}/files/", headers=h, timeout=10)
    assert r.status_code == status, r.text
    assert r.json()["error"]
    assert r.headers["Tus-Resumable"] == "1.0.0"


def test_creation_location_honours_forwarded_headers_and_sets_expiry(stack):
    r = create(stack.relay.url, 10, **{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "uploads.example.com"})
    assert r.status_code == 201
    assert r.headers["Location"].startswith("https://uploads.example.com/files/")
    expires = parsedate_to_datetime(r.headers["Upload-Expires"])
    assert expires.tzinfo is not None


def test_creation_with_upload_and_head(stack):
    data = b"hello notion, " * 1000
    r = requests.post(f"{stack.relay.url}/files/", data=data, headers={
        **TUS, **OCTET, "Upload-Length": str(len(data)), "Upload-Metadata": meta(filename="hello.txt")}, timeout=30)
    assert r.status_code == 201, r.text
    assert int(r.headers["Upload-Offset"]) == len(data)
    head = requests.head(r.headers["Location"], headers=TUS, timeout=10)
    assert head.status_code == 200
    assert int(head.headers["Upload-Offset"]) == len(data) and int(head.headers["Upload-Length"]) == len(data)
    assert head.headers["Cache-Control"] == "no-store"
    assert_stored_in_notion(stack, r.headers["Location"].rsplit("/", 1)[-1], hashlib.sha256(data).hexdigest(), len(data))


def test_patch_errors(stack):
    url = create(stack.relay.url, 100).headers["Location"]
    assert patch(url, 0, b"x" * 10, **{"Content-Type": "text/plain"}).status_code == 415
    r = requests.patch(url, data=b"x", headers={**TUS, **OCTET}, timeout=10)
    assert r.status_code == 400  # no Upload-Offset
    assert patch(url, 5, b"x" * 10).status_code == 409
    assert patch(url, 0, b"x" * 101).status_code == 413
    assert patch(url, 0, b"x" * 10).status_code == 204
    conflict = patch(url, 0, b"x" * 10)
    assert conflict.status_code == 409 and conflict.json()["offset"] == 10
    missing = patch(f"{stack.relay.url}/files/{'f' * 32}", 0, b"x")
    assert missing.status_code == 404
    assert requests.head(f"{stack.relay.url}/files/nope", headers=TUS, timeout=10).status_code == 404


@pytest.mark.parametrize("algorithm", ["sha1", "md5", "sha256"])
def test_checksum_accepts_a_matching_body_and_refuses_a_wrong_one(stack, algorithm):
    size = 6 * MIB + 3
    data = bytes(range(256)) * (size // 256) + b"abc"
    url = create(stack.relay.url, size).headers["Location"]
    first, second = data[: 3 * MIB], data[3 * MIB:]

    def header(chunk: bytes) -> str:
        return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, chunk).digest()).decode()}"

    bad = patch(url, 0, first, **{"Upload-Checksum": header(first[:-1] + b"!")})
    assert bad.status_code == 460
    head = requests.head(url, headers=TUS, timeout=10)
    assert head.headers["Upload-Offset"] == "0"  # nothing of the bad body was kept
    assert patch(url, 0, first, **{"Upload-Checksum": header(first)}).status_code == 204
    done = patch(url, len(first), second, **{"Upload-Checksum": header(second)})
    assert done.status_code == 204 and int(done.headers["Upload-Offset"]) == size
    assert done.headers["Upload-Status"] == "completed"
    assert_stored_in_notion(stack, url.rsplit("/", 1)[-1], hashlib.sha256(data).hexdigest(), size)


def test_checksum_header_errors(stack):
    url = create(stack.relay.url, 10).headers["Location"]
    assert patch(url, 0, b"x" * 10, **{"Upload-Checksum": "crc32 AAAA"}).status_code == 400
    assert patch(url, 0, b"x" * 10, **{"Upload-Checksum": "sha1 not-base64!"}).status_code == 400


def test_termination(stack):
    url = create(stack.relay.url, 30 * MIB).headers["Location"]
    assert patch(url, 0, b"y" * (12 * MIB)).status_code == 204
    r = requests.delete(url, headers=TUS, timeout=10)
    assert r.status_code == 204
    assert requests.head(url, headers=TUS, timeout=10).status_code in (404, 410)
    assert patch(url, 12 * MIB, b"y").status_code in (404, 410)
    upload_id = url.rsplit("/", 1)[-1]
    assert not (stack.folder / "relay" / "data" / "spool" / upload_id).exists()


def test_method_override_for_limited_clients(stack):
    url = create(stack.relay.url, 5).headers["Location"]
    r = requests.post(url, data=b"12345", headers={**TUS, **OCTET, "Upload-Offset": "0",
                                                   "X-HTTP-Method-Override": "PATCH"}, timeout=30)
    assert r.status_code == 204 and r.headers["Upload-Offset"] == "5"


def test_a_refused_request_tells_the_client_to_reconnect(stack):
    """Answers given before the body is read end the connection: they must say Connection: close
    so a client that keeps its connection alive is not met by a reset."""
    import http.client

    url = create(stack.relay.url, 100).headers["Location"]
    path = "/files/" + url.rsplit("/", 1)[-1]
    host, port = stack.relay.url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    for method, p, headers, expected in [
        ("PATCH", path, {**TUS, **OCTET, "Upload-Offset": "7", "Content-Length": "3"}, 409),
        ("HEAD", "/files/" + "0" * 32, TUS, 404),
        ("HEAD", path, TUS, 200),
        ("HEAD", "/files/" + "1" * 32, TUS, 404),
        ("HEAD", path, TUS, 200),
    ]:
        conn.request(method, p, body=b"abc" if method == "PATCH" else None, headers=headers)
        response = conn.getresponse()
        response.read()
        assert response.status == expected
    conn.close()


def test_lone_surrogates_in_a_filename_are_a_clear_answer(stack):
    r = requests.post(f"{stack.relay.url}/api/upload/create-session",
                      data=b'{"filename": "a\\ud800b.txt", "fileSize": 1}', timeout=10)
    assert r.status_code < 500
