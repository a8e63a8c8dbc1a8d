"""The per-token request budget: bursts up to N, then 429 rate_limited with an integer
Retry-After, and recovery after waiting it — over real HTTP against the emulator."""
from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

import requests

from harness.emulator import NotionClient, running_emulator
from tests.support.emulator import error_code


def test_a_burst_up_to_the_limit_then_429_with_retry_after(tmp_path: Path) -> None:
    with running_emulator(tmp_path, "--rate-limit", "5/2") as emu:
        client = NotionClient(emu)
        # the whole budget is available at once (bursts allowed)
        assert [client.request("GET", "/v1/users/me").status_code for _ in range(5)] == [200] * 5
        r = client.request("GET", "/v1/users/me")
        assert r.status_code == 429 and error_code(r) == "rate_limited"
        body = r.json()
        assert body["additional_data"]["rate_limit_reason"] == "public_api_request_rate_limit"
        retry_after = r.headers["Retry-After"]
        assert retry_after.isdigit() and int(retry_after) >= 1
        assert body["additional_data"]["retry_after"] == retry_after
        # every endpoint counts, sends included (the body is read, then refused cleanly)
        upload_id = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
        r = client.send(upload_id, b"x" * 100_000)
        assert r.status_code == 429 and r.headers["retry-after"].isdigit()
        # the control API is not rate limited
        for _ in range(20):
            emu.stats()
        stats = emu.stats()
        assert stats["rate_limited"] == 2
        assert stats["requests"]["users_me"] == {"200": 5, "429": 1}
        # waiting Retry-After is enough: a token has been refilled by then
        time.sleep(int(retry_after))
        assert client.request("GET", "/v1/users/me").status_code == 200


def test_retry_after_is_the_time_until_a_token_rounded_up(tmp_path: Path) -> None:
    # 2 requests per 10 s: an empty bucket refills one token in 5 s
    with running_emulator(tmp_path, "--rate-limit", "2/10") as emu:
        client = NotionClient(emu)
        assert client.request("GET", "/v1/users/me").status_code == 200
        assert client.request("GET", "/v1/users/me").status_code == 200
        r = client.request("GET", "/v1/users/me")
        assert r.status_code == 429 and r.headers["Retry-After"] == "5"


def test_the_refill_rate_is_n_per_window(tmp_path: Path) -> None:
    with running_emulator(tmp_path, "--rate-limit", "10/1") as emu:
        session = requests.Session()
        url, headers = f"{emu.url}/v1/users/me", emu.headers()
        started = time.monotonic()
        ok = limited = 0
        while time.monotonic() - started < 1.5:
            status = session.get(url, headers=headers, timeout=10).status_code
            ok += status == 200
            limited += status == 429
        elapsed = time.monotonic() - started
        # a burst of 10, then 10 per second: about 25 in 1.5 s, never more than the budget
        assert ok <= 10 + 10 * elapsed + 1
        assert ok >= 10 + 10 * 1.5 * 0.7
        assert limited > 0


def test_each_token_has_its_own_bucket(tmp_path: Path) -> None:
    with running_emulator(tmp_path, "--rate-limit", "2/60", "--token", "one", "--token", "two") as emu:
        one, two = NotionClient(emu, token="one"), NotionClient(emu, token="two")
        assert [one.request("GET", "/v1/users/me").status_code for _ in range(3)] == [200, 200, 429]
        assert [two.request("GET", "/v1/users/me").status_code for _ in range(2)] == [200, 200]
        # an unknown token is refused before it can spend anything
        assert NotionClient(emu, token="three").request("GET", "/v1/users/me").status_code == 401


def _held_send(emu, upload_id: str, data: bytes) -> tuple[http.client.HTTPConnection, bytes]:
    """A send whose headers and first bytes are out, the rest of its body held back."""
    boundary = "held-send-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
            f"Content-Type: text/plain\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    host, port = emu.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", f"/v1/file_uploads/{upload_id}/send")
    for name, value in emu.headers().items():
        conn.putheader(name, value)
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    half = len(body) // 2
    conn.send(body[:half])
    return conn, body[half:]


def test_a_send_counts_when_its_headers_arrive(tmp_path: Path) -> None:
    with running_emulator(tmp_path, "--rate-limit", "3/600") as emu:
        client = NotionClient(emu)
        upload_id = client.create_ok(filename="a.txt", content_type="text/plain")["id"]
        conn, rest = _held_send(emu, upload_id, b"x" * 50_000)
        assert client.request("GET", "/v1/users/me").status_code == 200
        assert client.request("GET", "/v1/users/me").status_code == 429  # the send took the 3rd
        conn.send(rest)
        assert conn.getresponse().status == 200


def test_with_count_sends_at_end_a_send_counts_when_its_body_has_arrived(tmp_path: Path) -> None:
    """The later moment Notion might pick: a client that paces by the moment it sends finds
    the bucket emptied under its feet (engine/budget.py holds requests in flight for this)."""
    with running_emulator(tmp_path, "--rate-limit", "3/600", "--count-sends-at-end") as emu:
        client = NotionClient(emu)
        upload_id = client.create_ok(filename="a.txt", content_type="text/plain")["id"]
        conn, rest = _held_send(emu, upload_id, b"x" * 50_000)
        assert client.request("GET", "/v1/users/me").status_code == 200
        assert client.request("GET", "/v1/users/me").status_code == 200
        conn.send(rest)
        answer = conn.getresponse()
        assert answer.status == 429 and answer.getheader("Retry-After", "").isdigit()
        assert json.loads(answer.read())["code"] == "rate_limited"
        assert emu.stats()["requests"]["send"] == {"429": 1}
        # refused, the send changed nothing: the upload still waits for its file
        upload = emu.upload(upload_id)
        assert upload["status"] == "pending" and upload["sha256"] is None, upload
