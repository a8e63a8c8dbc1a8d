"""Webhooks out (Standard Webhooks) from the durable outbox in Redis.

In-process: a real Redis, the real CurlAsyncHTTPClient and a receiver in threads of this process
(tests/support/webhook_receiver.py) that verifies every signature with the spec's algorithm,
written there independently, and with the `standardwebhooks` package. Backoff, timeouts and
leases are shrunk so that everything runs in seconds.

End to end: two relays share one Redis; events are written to the outbox directly (the upload
state machine writes them in the same MULTI as its state change); the receiver is down, then
hangs, one relay is killed with -9 while it holds claims, and every event still arrives, its id
deduplicating to exactly one each.
"""
from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from standardwebhooks.webhooks import Webhook
from tornado.curl_httpclient import CurlAsyncHTTPClient

from engine.clock import SystemClock
from engine.logs import Redactor
from engine.store import CheckpointStore
from engine.webhooks import (
    DUE_KEY,
    PENDING_KEY,
    UPLOAD_COMPLETED,
    UPLOAD_FAILED,
    DeliveryPolicy,
    Outbox,
    WebhookDispatcher,
    WebhookEvent,
    event_key,
    parse_webhook_secret,
    receiver_name,
    sign,
    upload_event,
    webhook_key,
)
from harness.processes import wait_until
from tests.support.webhook_receiver import Receiver, spec_verify

SECRET = "whsec_" + base64.b64encode(b"k" * 8 + bytes(range(24))).decode()
FAST = DeliveryPolicy(timeout_s=1.0, concurrency=3, retry_initial_s=0.05, retry_max_s=0.2, max_age_s=60,
                      poll_interval_s=0.05, lease_s=3.0, failing_after=3)


def record(n: int, **changes: Any) -> dict[str, Any]:
    base = {"id": f"{n:032x}", "owner": "user-42", "filename": f"report-{n}.pdf", "size": 1000 + n,
            "content_type": "application/pdf", "notion_file_upload_id": f"fu-{n}", "page_id": "page-1",
            "block_id": f"block-{n}", "created_at": 1_800_000_000.0, "error": None, "state": "completed"}
    return {**base, **changes}


def event(n: int, kind: str = UPLOAD_COMPLETED) -> WebhookEvent:
    return upload_event(kind, record(n), occurred_at=time.time())


# --- signing and settings -------------------------------------------------------------------

def test_the_signature_is_the_specs_and_the_reference_library_verifies_it():
    body = b'{"type":"upload.completed","timestamp":"2026-01-01T00:00:00.000Z","data":{"name":"\xc3\xa9"}}'
    stamp = int(time.time())
    ours = sign(webhook_key(SECRET), "evt_1", stamp, body)
    reference = Webhook(SECRET)
    assert ours == reference.sign("evt_1", datetime.fromtimestamp(stamp, UTC), body.decode())
    headers = {"webhook-id": "evt_1", "webhook-timestamp": str(stamp), "webhook-signature": ours}
    assert spec_verify(SECRET, headers, body)
    reference.verify(body, headers)
    assert not spec_verify(SECRET, headers, body + b" ")  # one byte more: refused


def test_webhook_secrets_are_checked_and_never_echoed():
    assert parse_webhook_secret(SECRET) == SECRET
    assert parse_webhook_secret("  ") is None
    for bad in ("k" * 40, "whsec_not*base64!", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError) as info:
            parse_webhook_secret(bad)
        assert bad not in str(info.value)
    # Logs and health name the receiver by scheme, host and port only.
    assert receiver_name("https://user:pw@hooks.example.com:8443/x?token=abc") == "https://hooks.example.com:8443"


def test_the_body_is_the_specs_shape_with_the_uploads_data():
    ev = upload_event(UPLOAD_FAILED, record(7, error="Notion refused the file"), occurred_at=1_800_000_100.5)
    import json
    body = json.loads(ev.body)
    assert body["type"] == "upload.failed" and body["timestamp"] == "2027-01-15T08:01:40.500Z"
    data = body["data"]
    assert data["upload_id"] == f"{7:032x}" and data["owner"] == "user-42" and data["size"] == 1007
    assert data["filename"] == "report-7.pdf" and data["content_type"] == "application/pdf"
    assert data["destination"] == {"name": "default", "id": "page-1", "kind": "page"}
    assert data["notion"] == {"file_upload_id": "fu-7", "page_id": "page-1", "block_id": "block-7",
                              "row_id": None, "data_source_id": None}
    assert data["error"] == "Notion refused the file"
    # One id per upload and type, whoever writes the transition.
    assert ev.id == upload_event(UPLOAD_FAILED, record(7), occurred_at=0).id != event(7).id


def test_redaction_masks_jwts_and_webhook_secrets():
    from engine.logs import configured_secrets
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl"
    r = Redactor(configured_secrets(None, (), None, grant_secret="g" * 40, webhook_secret=SECRET,
                                    webhook_url="https://u:pass-word-1@h.example/x?token=querysecret1"))
    line = f"a {jwt_like} b {SECRET} c {SECRET[6:]} d {'g' * 40} e pass-word-1 f token=querysecret1"
    masked = r.redact(line)
    for secret in (jwt_like, SECRET[6:], "g" * 40, "pass-word-1", "querysecret1"):
        assert secret not in masked, masked


# --- the outbox and the dispatcher, in-process -----------------------------------------------

@pytest.fixture
def store(redis_server):
    s = CheckpointStore(redis_server.url, SystemClock(), ttl_s=3600)
    yield s


@pytest.fixture
def receiver():
    r = Receiver(SECRET).start()
    yield r
    r.stop()


class Harness:
    def __init__(self, store: CheckpointStore, url: str, policy: DeliveryPolicy = FAST) -> None:
        self.outbox = Outbox(store, policy.max_age_s)
        self.http = CurlAsyncHTTPClient(force_instance=True, max_clients=policy.concurrency)
        self.events: list[tuple[str, dict]] = []
        self.dispatcher = WebhookDispatcher(self.outbox, self.http, url, SECRET, SystemClock(), policy,
                                            emit=lambda name, **f: self.events.append((name, f)))

    async def close(self) -> None:
        await self.dispatcher.stop(0.5)


async def until(predicate, timeout_s: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout_s} s")


async def test_events_arrive_signed_and_each_once(store, receiver):
    h = Harness(store, receiver.url)
    events = [event(n) for n in range(12)]
    for ev in events:
        assert await h.outbox.add(ev)
    h.dispatcher.start()
    try:
        await until(lambda: len(receiver.accepted()) >= 12, what="12 deliveries")
        await asyncio.sleep(0.3)
        assert sorted(receiver.accepted_ids()) == sorted(e.id for e in events)
        for d in receiver.deliveries:
            assert d.verified and d.reference_verified, d
            assert d.event["type"] == "upload.completed" and d.event["data"]["owner"] == "user-42"
        # The body is byte for byte the one stored.
        assert {d.body.decode() for d in receiver.deliveries} == {e.body for e in events}
        await until(lambda: (h.dispatcher._last_snapshot or {}).get("pending") == 0 and
                    h.dispatcher._last_snapshot.get("delivered") == 12, what="snapshot")
        assert h.dispatcher.finished["delivered"] == 12 and not h.dispatcher.failing
        assert await store.redis.zcard(DUE_KEY) == 0 and await store.redis.zcard(PENDING_KEY) == 0
        # Adding a delivered event again (a retried MULTI) sends nothing more.
        assert not await h.outbox.add(events[0])
        await asyncio.sleep(0.3)
        assert len(receiver.deliveries) == 12
    finally:
        await h.close()


async def test_an_event_is_written_in_the_callers_transaction_or_not_at_all(store):
    outbox = Outbox(store)
    ev = event(1)
    # Committed with the caller's own write.
    async with store.redis.pipeline(transaction=True) as pipe:
        pipe.set("relay:upload:test", "{}")
        outbox.add_to(pipe, ev)
        await pipe.execute()
    assert await store.redis.exists(event_key(ev.id)) and await store.redis.zscore(DUE_KEY, ev.id) is not None
    # A transaction that does not happen (WATCH saw a change) writes no event.
    other = event(2)
    async with store.redis.pipeline(transaction=True) as pipe:
        await pipe.watch("relay:upload:test")
        await store.redis.set("relay:upload:test", "changed")
        pipe.multi()
        pipe.set("relay:upload:test", "mine")
        outbox.add_to(pipe, other)
        from redis.exceptions import WatchError
        with pytest.raises(WatchError):
            await pipe.execute()
    assert not await store.redis.exists(event_key(other.id))
    # The same transition written twice is one event.
    async with store.redis.pipeline(transaction=True) as pipe:
        outbox.add_to(pipe, ev)
        outbox.add_to(pipe, ev)
        await pipe.execute()
    assert await store.redis.zcard(PENDING_KEY) == 1


async def test_failures_are_retried_with_backoff_under_the_same_id(store, receiver):
    receiver.mode = lambda count, _id: 500 if count < 3 else 200
    h = Harness(store, receiver.url)
    ev = event(3)
    await h.outbox.add(ev)
    started = time.monotonic()
    h.dispatcher.start()
    try:
        await until(lambda: receiver.accepted(), what="delivery after 3 failures")
        await until(lambda: len(h.events) == 4, what="the delivery told")  # after the receiver's answer
        assert [d.id for d in receiver.deliveries] == [ev.id] * 4
        assert all(d.verified and d.reference_verified for d in receiver.deliveries)
        assert len({d.body for d in receiver.deliveries}) == 1  # the same bytes every time
        assert time.monotonic() - started >= 0.05 * 0.5 * (1 + 2 + 4) * 0.9  # backed off between tries
        assert [name for name, _ in h.events] == ["WEBHOOK_RETRY"] * 3 + ["WEBHOOK_DELIVERED"]
        assert h.events[-1][1]["attempt"] == 4
        assert h.dispatcher.attempts == {"success": 1, "failure": 3, "gone": 0}
        await until(lambda: (h.dispatcher._last_snapshot or {}).get("consecutive_failures") == 0, what="reset")
    finally:
        await h.close()


async def test_410_from_the_receiver_stops_that_event(store, receiver):
    receiver.mode = lambda count, event_id: 410 if event_id == gone.id else 200
    h = Harness(store, receiver.url)
    gone, kept = event(4), event(5)
    await h.outbox.add(gone)
    await h.outbox.add(kept)
    h.dispatcher.start()
    try:
        await until(lambda: kept.id in receiver.accepted_ids(), what="the other event")
        await asyncio.sleep(0.5)
        assert [d.id for d in receiver.deliveries].count(gone.id) == 1
        assert h.dispatcher.finished == {"delivered": 1, "gone": 1, "expired": 0}
        assert await store.redis.zcard(PENDING_KEY) == 0
    finally:
        await h.close()


async def test_an_event_is_given_up_after_the_maximum_age(store, receiver):
    receiver.mode = "fail"
    policy = DeliveryPolicy(timeout_s=1.0, concurrency=2, retry_initial_s=0.1, retry_max_s=0.2, max_age_s=0.8,
                            poll_interval_s=0.05, lease_s=3.0, failing_after=3)
    h = Harness(store, receiver.url, policy)
    await h.outbox.add(event(6))
    h.dispatcher.start()
    try:
        await until(lambda: h.dispatcher.finished["expired"] == 1, what="given up")
        tries = len(receiver.deliveries)
        assert 3 <= tries <= 12, tries
        await until(lambda: h.dispatcher.failing, what="health: receiver failing")
        snap = h.dispatcher.snapshot()
        assert snap["status"] == "failing" and snap["failed"] == 1 and snap["pending"] == 0
        assert snap["last_error"] == "http_500"
        await asyncio.sleep(0.5)
        assert len(receiver.deliveries) == tries
    finally:
        await h.close()


async def test_a_hanging_receiver_never_slows_the_event_loop(store, receiver):
    """Deliveries time out, at most `concurrency` at once; the loop stays responsive."""
    receiver.mode = "hang"
    h = Harness(store, receiver.url, DeliveryPolicy(timeout_s=0.5, concurrency=2, retry_initial_s=0.05,
                                                   retry_max_s=0.1, max_age_s=60, poll_interval_s=0.05,
                                                   lease_s=2.0, failing_after=3))
    for n in range(10):
        await h.outbox.add(event(100 + n))
    h.dispatcher.start()
    lags, most_in_flight = [], 0
    try:
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - before - 0.01)
            most_in_flight = max(most_in_flight, len(h.dispatcher.in_flight))
        assert most_in_flight == 2
        assert max(lags) < 0.1, max(lags)
        assert h.dispatcher.attempts["failure"] >= 4  # timed out and retried meanwhile
        assert all(e[1].get("error") == "timeout" for e in h.events if e[0] == "WEBHOOK_RETRY")
        await until(lambda: h.dispatcher.failing, what="receiver failing")
        receiver.mode = "ok"
        await until(lambda: len(set(receiver.accepted_ids())) == 10, what="all 10 once it answers")
    finally:
        await h.close()


async def test_claims_of_a_dead_instance_are_delivered_by_another_after_the_lease(store, receiver):
    outbox = Outbox(store)
    events = [event(200 + n) for n in range(3)]
    for ev in events:
        await outbox.add(ev)
    # An instance claims them (lease 1 s) and dies before it delivers anything.
    _, claimed = await outbox.claim(10, lease_s=1.0)
    assert {c.id for c in claimed} == {e.id for e in events}
    h = Harness(store, receiver.url)
    started = time.monotonic()
    h.dispatcher.start()
    try:
        await until(lambda: len(receiver.accepted()) == 3, what="deliveries after the lease")
        # The receiver has the bytes before the dispatcher has read its answer and told of it.
        await until(lambda: len(h.events) == 3, what="each delivery told")
        assert time.monotonic() - started >= 0.8  # not before the lease ended
        assert all(d.verified for d in receiver.deliveries)
        assert [e[1]["attempt"] for e in h.events] == [2, 2, 2]  # the dead instance's try counted
    finally:
        await h.close()


async def test_stop_gives_claims_back(store, receiver):
    receiver.mode = "hang"
    h = Harness(store, receiver.url, DeliveryPolicy(timeout_s=5.0, concurrency=2, retry_initial_s=0.05,
                                                   retry_max_s=0.1, max_age_s=60, poll_interval_s=0.05,
                                                   lease_s=60.0, failing_after=3))
    ev = event(300)
    await h.outbox.add(ev)
    h.dispatcher.start()
    await until(lambda: h.dispatcher.in_flight, what="in flight")
    await h.dispatcher.stop(0.1)
    # Due now again, not in 60 s: the next instance takes it at once.
    assert await store.redis.zscore(DUE_KEY, ev.id) <= time.time() + 1
    receiver.mode = "ok"
    h2 = Harness(store, receiver.url)
    h2.dispatcher.start()
    try:
        await until(lambda: ev.id in receiver.accepted_ids(), timeout_s=5, what="delivered by the next one")
    finally:
        await h2.close()


# --- end to end: two relays, a dead receiver, kill -9 ----------------------------------------

def relay_env(receiver: Receiver) -> dict[str, str]:
    return {
        "WEBHOOK_URL": receiver.url, "WEBHOOK_SECRET": SECRET, "WEBHOOK_TIMEOUT": "1",
        "WEBHOOK_RETRY_INITIAL": "0.2", "WEBHOOK_RETRY_MAX": "1", "WEBHOOK_POLL_INTERVAL": "0.1",
        "WEBHOOK_CONCURRENCY": "4", "WEBHOOK_FAILING_AFTER": "3",
    }


def test_every_event_arrives_once_per_id_through_a_dead_receiver_and_a_killed_instance(relay_factory, redis_server):
    receiver = Receiver(SECRET)  # down: connections refused
    env = relay_env(receiver)
    a = relay_factory("a", **env)
    b = relay_factory("b", **env)

    async def enqueue(events: list[WebhookEvent]) -> None:
        s = CheckpointStore(redis_server.url, SystemClock(), ttl_s=3600)
        try:
            outbox = Outbox(s)
            for ev in events:
                await outbox.add(ev)
        finally:
            await s.close()

    events = [event(1000 + n, kind) for n, kind in
              enumerate([UPLOAD_COMPLETED, UPLOAD_FAILED, "upload.expired", "upload.terminated"] * 10)]
    asyncio.run(enqueue(events))

    # Down: every attempt refused; health says so, the outbox holds everything.
    for relay in (a, b):
        wait_until(lambda r=relay: r.health()["components"]["webhooks"]["status"] == "failing", timeout_s=20,
                   message="the relays report the failing receiver")
    health = b.health()
    assert health["status"] == "degraded" and health["components"]["webhooks"]["pending"] == 40
    metrics = requests.get(f"{a.url}/metrics", timeout=10).text
    assert "relay_webhooks_pending 40.0" in metrics and "relay_webhook_receiver_failing 1.0" in metrics
    time.sleep(2)

    # Then the receiver accepts connections but hangs: a holds claims in flight when killed.
    receiver.mode = "hang"
    receiver.start()
    try:
        wait_until(lambda: len(receiver.deliveries) >= 6, timeout_s=20, message="attempts in flight")
        a.kill()  # SIGKILL: no shutdown, its claims are left leased
        time.sleep(1)
        receiver.mode = "ok"
        receiver.wait_for(lambda r: len(set(r.accepted_ids())) == 40, timeout_s=60)
        time.sleep(1)
        ids = receiver.accepted_ids()
        assert sorted(set(ids)) == sorted(e.id for e in events)  # every event, deduplicated: one per id
        assert all(d.verified and d.reference_verified for d in receiver.deliveries)
        for d in receiver.accepted():
            assert d.event["type"] in ("upload.completed", "upload.failed", "upload.expired", "upload.terminated")
        wait_until(lambda: b.health()["components"]["webhooks"]["pending"] == 0
                   and b.health()["components"]["webhooks"]["status"] == "healthy", timeout_s=10,
                   message="outbox empty and receiver healthy again")
        assert b.health()["status"] == "healthy"
    finally:
        receiver.stop()
    log = b.output()
    assert "event=WEBHOOK_DELIVERED" in log and "event=WEBHOOK_RETRY" in log
    assert SECRET not in log and SECRET[6:] not in log and "receiver-query-token-7c1f" not in log
