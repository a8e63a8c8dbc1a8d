"""Injected faults and outages: every kind, over real HTTP against the emulator."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pycurl
import pytest
import requests

from harness.emulator import EmulatorProcess, NotionClient, running_emulator, start_emulator
from harness.processes import wait_until
from tests.support.emulator import error_code

MIB = 2**20


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with running_emulator(tmp_path_factory.mktemp("faults"), "--rate-limit", "100000/60") as process:
        yield process


@pytest.fixture
def client(emu: EmulatorProcess) -> Iterator[NotionClient]:
    emu.clear_faults()
    yield NotionClient(emu)
    emu.clear_faults()


def fail_next(emu: EmulatorProcess, kind: str, endpoint: str, **extra: Any) -> None:
    """Make exactly the next request to `endpoint` fail with `kind`."""
    emu.set_faults({"rate": 1, "kinds": {kind: 1}, "endpoints": [endpoint], "count": 1, **extra})


def in_flight(emu: EmulatorProcess) -> int:
    return emu.stats()["in_flight"]


@pytest.mark.parametrize(
    "status, code",
    [
        (500, "internal_server_error"),
        (502, "bad_gateway"),
        (503, "service_unavailable"),
        (504, "gateway_timeout"),
        (409, "conflict_error"),
        (429, "rate_limited"),
        (529, "service_overload"),
    ],
)
def test_status_faults_answer_notions_error_and_do_nothing(
    client: NotionClient, emu: EmulatorProcess, status: int, code: str
) -> None:
    upload_id = client.create_ok(filename="a.txt")["id"]
    fail_next(emu, str(status), "send")
    r = client.send(upload_id, b"x" * 100_000)
    assert r.status_code == status and error_code(r) == code
    if status in (429, 529):
        assert r.headers["retry-after"] == "1"
    if status == 429:
        assert r.json()["additional_data"]["rate_limit_reason"] == "public_api_request_rate_limit"
    assert emu.upload(upload_id)["parts"] == {}  # nothing was stored
    assert emu.stats()["faults_injected"].get(str(status), 0) >= 1
    # the fault was used up: the same send now succeeds
    assert client.send(upload_id, b"x" * 100_000).status_code == 200


def test_faults_hit_only_the_listed_endpoints(client: NotionClient, emu: EmulatorProcess) -> None:
    emu.set_faults({"rate": 1, "kinds": {"500": 1}, "endpoints": ["complete"]})
    upload_id = client.create_ok(mode="multi_part", filename="a.txt", number_of_parts=1)["id"]
    assert client.send(upload_id, b"abc", part_number=1).status_code == 200
    assert client.retrieve(upload_id).status_code == 200
    assert client.complete(upload_id).status_code == 500
    emu.clear_faults()
    assert client.complete(upload_id).status_code == 200


def test_rate_is_a_share_of_requests_and_the_seed_makes_it_repeatable(client: NotionClient, emu: EmulatorProcess) -> None:
    def pattern() -> list[int]:
        emu.set_faults({"rate": 0.5, "kinds": {"503": 1, "502": 1}, "endpoints": ["users_me"], "seed": 7})
        return [client.request("GET", "/v1/users/me").status_code for _ in range(60)]

    first = pattern()
    assert first == pattern()
    failed = sum(status != 200 for status in first)
    assert 15 <= failed <= 45
    assert {s for s in first if s != 200} == {502, 503}


def test_rate_limit_reason_and_retry_after_of_injected_429s(client: NotionClient, emu: EmulatorProcess) -> None:
    fail_next(emu, "429", "users_me", rate_limit_reason="public_api_request_blocked", retry_after_s=7)
    r = client.request("GET", "/v1/users/me")
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    assert r.json()["additional_data"]["rate_limit_reason"] == "public_api_request_blocked"


def test_reset_closes_the_connection_while_the_part_arrives(client: NotionClient, emu: EmulatorProcess, tmp_path: Path) -> None:
    upload_id = client.create_ok(filename="a.txt")["id"]
    data = tmp_path / "part.bin"
    data.write_bytes(b"y" * (4 * MIB))
    fail_next(emu, "reset", "send")
    before = emu.stats()["bytes_received"]
    with pytest.raises(pycurl.error):
        client.send(upload_id, data)
    stats = emu.stats()
    received = stats["bytes_received"] - before
    assert 0 < received < 4 * MIB  # cut while the body was still arriving
    assert stats["requests"]["send"].get("reset", 0) >= 1
    wait_until(lambda: emu.upload(upload_id)["sends_in_flight"] == 0, timeout_s=5)
    assert emu.upload(upload_id)["parts"] == {}
    assert not list((emu.data_dir / "uploads" / upload_id).iterdir())  # no leftover temp file
    assert client.send(upload_id, data).status_code == 200


def test_reset_on_a_json_endpoint_answers_nothing(client: NotionClient, emu: EmulatorProcess) -> None:
    before = len(emu.uploads())
    fail_next(emu, "reset", "create")
    with pytest.raises(requests.ConnectionError):
        client.create(filename="a.txt")
    assert len(emu.uploads()) == before  # nothing was created


def test_stall_answers_nothing_then_504_and_does_nothing(client: NotionClient, emu: EmulatorProcess) -> None:
    upload_id = client.create_ok(filename="a.txt")["id"]
    fail_next(emu, "stall", "send", stall_s=1.0)
    started = time.monotonic()
    r = client.send(upload_id, b"stalled")
    assert time.monotonic() - started >= 1.0
    assert r.status_code == 504 and error_code(r) == "gateway_timeout"
    assert emu.upload(upload_id)["parts"] == {}


def test_stall_does_not_block_other_requests_and_ends_when_the_client_leaves(
    client: NotionClient, emu: EmulatorProcess
) -> None:
    fail_next(emu, "stall", "create", stall_s=600)
    outcome: dict[str, Any] = {}

    def stalled_create() -> None:
        try:
            client.request("POST", "/v1/file_uploads", {"filename": "a.txt"}, timeout=1.0)
        except requests.Timeout as e:
            outcome["error"] = e

    worker = threading.Thread(target=stalled_create)
    worker.start()
    wait_until(lambda: in_flight(emu) == 1, timeout_s=5)
    # the loop is free while a request stalls
    other = NotionClient(emu)
    started = time.monotonic()
    assert other.request("GET", "/v1/users/me").status_code == 200
    assert time.monotonic() - started < 0.5
    worker.join(10)
    assert "error" in outcome  # the client gave up after 1 s …
    # … and the emulator notices and drops the stalled request instead of holding it 600 s
    wait_until(lambda: in_flight(emu) == 0, timeout_s=5)
    assert emu.stats()["requests"]["create"].get("disconnected", 0) >= 1


def test_stop_cuts_a_stall_short(tmp_path: Path) -> None:
    process = start_emulator(tmp_path, "--faults", '{"rate": 1, "kinds": {"stall": 1}, "stall_s": 600}')
    client = NotionClient(process)
    worker = threading.Thread(target=lambda: _swallow(lambda: client.request("GET", "/v1/users/me", timeout=30)))
    worker.start()
    wait_until(lambda: process.stats()["in_flight"] == 1, timeout_s=5)
    started = time.monotonic()
    assert process.stop() == 0
    assert time.monotonic() - started < 5
    worker.join(10)


def _swallow(call: Any) -> None:
    try:
        call()
    except requests.RequestException:
        pass


def test_slow_answers_correctly_after_slow_s(client: NotionClient, emu: EmulatorProcess) -> None:
    upload_id = client.create_ok(mode="multi_part", filename="a.txt", number_of_parts=1)["id"]
    fail_next(emu, "slow", "send", slow_s=0.5)
    started = time.monotonic()
    r = client.send(upload_id, b"slowly", part_number=1)
    assert time.monotonic() - started >= 0.5
    assert r.status_code == 200 and r.json()["number_of_parts"]["sent"] == 1
    assert emu.upload(upload_id)["parts"]["1"]["size"] == 6


def test_ambiguous_send_stores_the_part_but_answers_5xx(client: NotionClient, emu: EmulatorProcess) -> None:
    upload_id = client.create_ok(mode="multi_part", filename="a.txt", number_of_parts=1)["id"]
    fail_next(emu, "ambiguous", "send")
    r = client.send(upload_id, b"stored anyway", part_number=1)
    assert r.status_code in (503, 504) and error_code(r) in ("service_unavailable", "gateway_timeout")
    assert emu.upload(upload_id)["parts"]["1"]["size"] == len(b"stored anyway")
    # re-sending the part (what a client should do) replaces it
    assert client.send(upload_id, b"stored anyway", part_number=1).status_code == 200
    assert emu.upload(upload_id)["parts"]["1"]["sends"] == 2


def test_ambiguous_create_complete_and_attach_are_performed(client: NotionClient, emu: EmulatorProcess) -> None:
    before = {u["id"] for u in emu.uploads()}
    fail_next(emu, "ambiguous", "create")
    r = client.create(mode="multi_part", filename="a.txt", number_of_parts=1)
    assert r.status_code in (503, 504)
    (orphan,) = [u for u in emu.uploads() if u["id"] not in before]
    assert orphan["status"] == "pending"

    upload_id = orphan["id"]
    assert client.send(upload_id, b"abc", part_number=1).status_code == 200
    fail_next(emu, "ambiguous", "complete")
    assert client.complete(upload_id).status_code in (503, 504)
    assert client.retrieve(upload_id).json()["status"] == "uploaded"

    page_id = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
    fail_next(emu, "ambiguous", "attach")
    assert client.attach(page_id, [upload_id]).status_code in (503, 504)
    assert emu.upload(upload_id)["attached_to"] == [page_id]


def test_ambiguous_single_part_send_and_page_create_are_performed(client: NotionClient, emu: EmulatorProcess) -> None:
    upload_id = client.create_ok(filename="a.txt")["id"]
    fail_next(emu, "ambiguous", "send")
    r = client.send(upload_id, b"kept")
    assert r.status_code in (503, 504) and error_code(r) in ("service_unavailable", "gateway_timeout")
    after = client.retrieve(upload_id).json()
    assert after["status"] == "uploaded" and after["content_length"] == 4
    r = client.send(upload_id, b"kept")  # what a blind retry meets
    assert r.status_code == 400 and "not in the pending status" in r.json()["message"]

    parent = "3c90c3cc-0d44-4b50-8888-8dd25736052b"
    fail_next(emu, "ambiguous", "create_page")
    r = client.request("POST", "/v1/pages", {"parent": {"page_id": parent},
                                             "properties": {"title": [{"text": {"content": "Lost answer"}}]}})
    assert r.status_code in (503, 504)
    (child,) = client.request("GET", f"/v1/blocks/{parent}/children").json()["results"]
    assert child["type"] == "child_page" and child["child_page"] == {"title": "Lost answer"}
    assert client.request("GET", f"/v1/pages/{child['id']}").json()["object"] == "page"


def test_clearing_faults(client: NotionClient, emu: EmulatorProcess) -> None:
    emu.set_faults({"rate": 1, "kinds": {"500": 1}})
    assert client.request("GET", "/v1/users/me").status_code == 500
    emu.clear_faults()
    assert client.request("GET", "/v1/users/me").status_code == 200


def test_invalid_fault_plans_are_refused(emu: EmulatorProcess) -> None:
    for plan in ({"rate": 2}, {"rate": 0.5, "kinds": {"418": 1}}, {"endpoints": ["upload"]}, {"colour": 1}):
        r = requests.post(f"{emu.url}/_emulator/faults", json=plan, timeout=10)
        assert r.status_code == 400 and r.json()["error"], plan


def test_outage_fails_every_request_for_its_duration(client: NotionClient, emu: EmulatorProcess) -> None:
    emu.outage(1.0, status=503)
    for method, path in (("GET", "/v1/users/me"), ("POST", "/v1/file_uploads"), ("GET", "/v1/nothing")):
        r = client.request(method, path, {"filename": "a.txt"} if method == "POST" else None)
        assert r.status_code == 503 and error_code(r) == "service_unavailable"
    assert emu.stats()["outage_remaining_s"] > 0  # the control API keeps working
    wait_until(lambda: client.request("GET", "/v1/users/me").status_code == 200, timeout_s=5)


def test_outage_with_429_carries_retry_after(client: NotionClient, emu: EmulatorProcess) -> None:
    emu.outage(3, status=429)
    try:
        r = client.request("GET", "/v1/users/me")
        assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 3
    finally:
        emu.outage(0)
    assert client.request("GET", "/v1/users/me").status_code == 200


def test_faults_flag_at_startup(tmp_path: Path) -> None:
    plan = '{"rate": 1, "kinds": {"502": 1}, "endpoints": ["users_me"]}'
    with running_emulator(tmp_path, "--faults", plan) as process:
        client = NotionClient(process)
        assert client.request("GET", "/v1/users/me").status_code == 502
        assert client.create(filename="a.txt").status_code == 200
