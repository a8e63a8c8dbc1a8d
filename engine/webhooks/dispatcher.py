"""Delivery: each instance's WebhookDispatcher claims due events and POSTs them, signed."""
from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from tornado.httpclient import HTTPRequest

from engine.clock import Clock
from engine.redis import RedisSource, StoreUnavailable
from engine.webhooks.outbox import ClaimedEvent, Outbox
from engine.webhooks.signing import receiver_name, signature_headers, webhook_key

log = logging.getLogger("relay.webhooks")
# A receiver whose last failure is older than this, with nothing waiting, is not reported failing.
FAILING_NEWS_S = 3600.0
USER_AGENT = "notion-upload-relay-webhooks/1"


# --- delivery --------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeliveryPolicy:
    timeout_s: float = 10.0
    concurrency: int = 4
    retry_initial_s: float = 5.0
    retry_max_s: float = 3600.0
    max_age_s: float = 86400.0
    poll_interval_s: float = 1.0
    lease_s: float = 21.0
    failing_after: int = 5  # consecutive failures after which health calls the receiver failing

    @classmethod
    def from_settings(cls, s: Any) -> "DeliveryPolicy":
        return cls(s.webhook_timeout_s, s.webhook_concurrency, s.webhook_retry_initial_s, s.webhook_retry_max_s,
                   s.webhook_max_age_s, s.webhook_poll_interval_s, s.webhook_lease_s, s.webhook_failing_after)

    def backoff(self, attempt: int, rand: float) -> float:
        """Before attempt `attempt + 1`: exponential, capped, with "equal jitter" (half fixed,
        half random) so that many events failing together do not come back together."""
        delay = min(self.retry_max_s, self.retry_initial_s * 2 ** max(0, attempt - 1))
        return float(delay * (0.5 + 0.5 * rand))


Emit = Callable[..., None]


class WebhookDispatcher:
    """Claims due events and delivers them; one per instance, all instances share the outbox."""

    def __init__(self, outbox: Outbox, http: Any, url: str, secret: str, clock: Clock,
                 policy: DeliveryPolicy, emit: Emit | None = None,
                 rand: Callable[[], float] = random.random) -> None:
        self.outbox = outbox
        self.http = http  # a CurlAsyncHTTPClient of its own (max_clients = policy.concurrency)
        self.url = url
        self.receiver = receiver_name(url)
        self._key = webhook_key(secret)
        self.clock = clock
        self.policy = policy
        self.emit = emit or (lambda event, **fields: None)
        self.rand = rand
        self.in_flight: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_snapshot: dict[str, Any] | None = None
        self._snapshot_at = 0.0
        # This instance's own counts (Prometheus counters): attempts by outcome, events ended.
        self.attempts = {"success": 0, "failure": 0, "gone": 0}
        self.finished = {"delivered": 0, "gone": 0, "expired": 0}
        outbox.on_added = self.kick

    def __repr__(self) -> str:
        return f"WebhookDispatcher(receiver={self.receiver})"

    # --- running --------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    def kick(self) -> None:
        """Look for due events now (an event was just added)."""
        self._wake.set()

    async def stop(self, grace_s: float = 2.0) -> None:
        """Stop claiming; wait up to `grace_s` for deliveries in flight, then give the rest back."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self.in_flight:
            await asyncio.wait(list(self.in_flight.values()), timeout=grace_s)
        left = list(self.in_flight)
        for task in self.in_flight.values():
            task.cancel()
        try:
            await self.outbox.release(left)
        except StoreUnavailable:
            pass  # their leases end by themselves
        # Closing the client under running transfers makes libcurl callbacks fail: only when
        # nothing had to be cancelled (the process is ending anyway).
        if not left:
            self.http.close()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.run_once()
                await self.refresh_snapshot()
            except StoreUnavailable:
                pass  # Redis away: the events wait there; try again at the next poll
            except Exception:
                log.exception("webhook dispatcher: unexpected error (going on)")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.policy.poll_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()

    async def run_once(self) -> int:
        """Claim as many due events as there are free delivery slots and start them."""
        free = self.policy.concurrency - len(self.in_flight)
        if free <= 0 or self._stopping:
            return 0
        now, events = await self.outbox.claim(free, self.policy.lease_s)
        for event in events:
            if event.id in self.in_flight:
                continue  # still ours from an earlier claim whose lease ran out: let it finish
            task = asyncio.ensure_future(self._deliver(event, now))
            self.in_flight[event.id] = task
            task.add_done_callback(partial(self._task_done, event.id))
        return len(events)

    def _task_done(self, event_id: str, _task: asyncio.Task[None]) -> None:
        self._done(event_id)

    def _done(self, event_id: str) -> None:
        self.in_flight.pop(event_id, None)
        self._wake.set()  # a slot is free: more due events may go

    # --- one attempt ----------------------------------------------------------------------------

    async def _deliver(self, event: ClaimedEvent, claimed_at: float) -> None:
        started = self.clock.monotonic()
        status, error, retry_after = await self._post(event)
        duration = self.clock.monotonic() - started
        try:
            await self._settle(event, claimed_at, status, error, retry_after, duration)
        except StoreUnavailable:
            # The outcome is not recorded: the lease ends and the event is tried again (a
            # delivered one reaches the receiver twice, with the same id).
            log.warning("webhook %s: the store is unavailable; its outcome will be retried", event.id)

    async def _post(self, event: ClaimedEvent) -> tuple[int, str, float | None]:
        body = event.body.encode("utf-8")
        timestamp = int(self.clock.wall())
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   **signature_headers(self._key, event.id, timestamp, body)}
        request = HTTPRequest(
            self.url, method="POST", body=body, headers=headers,
            connect_timeout=min(self.policy.timeout_s, 5.0), request_timeout=self.policy.timeout_s,
            follow_redirects=False, decompress_response=False,
            streaming_callback=lambda chunk: None)  # the receiver's answer is never kept
        try:
            response = await self.http.fetch(request, raise_error=False)
        except Exception as exc:  # 599s raise even with raise_error=False (DESIGN.md quirks)
            return 0, _network_error(exc), None
        if response.code == 599:
            return 0, _network_error(response.error), None
        retry_after = None
        value = response.headers.get("Retry-After") if response.headers else None
        if value and value.strip().isdigit():
            retry_after = float(value.strip())
        return response.code, "" if 200 <= response.code < 300 else f"http_{response.code}", retry_after

    async def _settle(self, event: ClaimedEvent, claimed_at: float, status: int, error: str,
                      retry_after: float | None, duration_s: float = 0.0) -> None:
        fields = {"upload_id": event.upload_id, "event_id": event.id, "type": event.type,
                  "attempt": event.attempt, "status": status or None, "receiver": self.receiver,
                  "duration_s": round(duration_s, 3)}
        if 200 <= status < 300:
            self.attempts["success"] += 1
            self.finished["delivered"] += 1
            await self.outbox.finish(event.id, "delivered", status)
            self.emit("WEBHOOK_DELIVERED", **fields)
            return
        if status == 410:
            # The receiver does not want this event (the spec's way to stop retries).
            self.attempts["gone"] += 1
            self.finished["gone"] += 1
            await self.outbox.finish(event.id, "gone", status, error)
            self.emit("WEBHOOK_FAILED", **fields, reason="receiver answered 410 Gone: not retried")
            return
        self.attempts["failure"] += 1
        delay = self.policy.backoff(event.attempt, self.rand())
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.policy.retry_max_s))
        if claimed_at + delay - event.created_at > self.policy.max_age_s:
            self.finished["expired"] += 1
            await self.outbox.finish(event.id, "expired", status, error)
            self.emit("WEBHOOK_FAILED", **fields, error=error,
                      reason=f"not delivered within {self.policy.max_age_s:g} s: given up")
            return
        await self.outbox.retry_later(event.id, delay, status, error)
        self.emit("WEBHOOK_RETRY", **fields, error=error, retry_in_s=round(delay, 2))

    # --- health and metrics ---------------------------------------------------------------------

    async def refresh_snapshot(self) -> None:
        """Read the outbox's numbers (at most once a second): health and metrics read the copy."""
        now = self.clock.monotonic()
        if self._last_snapshot is not None and now - self._snapshot_at < 1.0:
            return
        self._last_snapshot = await self.outbox.snapshot()
        self._snapshot_at = now

    @property
    def failing(self) -> bool:
        """The receiver failed `failing_after` attempts in a row (any instance), and that is news:
        events are waiting, or the last failure is less than an hour old."""
        snap = self._last_snapshot
        if not snap or snap["consecutive_failures"] < self.policy.failing_after:
            return False
        recent = snap["last_failure_age_s"] is not None and snap["last_failure_age_s"] < FAILING_NEWS_S
        return snap["pending"] > 0 or recent

    def snapshot(self) -> dict[str, Any]:
        """For health: no I/O (the copy the dispatcher's loop keeps fresh)."""
        snap = dict(self._last_snapshot or {})
        snap.update({
            "status": "failing" if self.failing else "healthy",
            "receiver": self.receiver,
            "in_flight": len(self.in_flight),
            "concurrency": self.policy.concurrency,
        })
        return snap


def _network_error(exc: Any) -> str:
    """A short, secret-free name for a failed attempt (never the URL or curl's text)."""
    text = str(exc or "").lower()
    if "timeout" in text or "timed out" in text:
        return "timeout"
    if "connect" in text or "resolve" in text or "refused" in text:
        return "connect_failed"
    return "network_error"


def build_dispatcher(settings: Any, redis: RedisSource, clock: Clock,
                     emit: Emit | None = None) -> WebhookDispatcher | None:
    """The instance's dispatcher when WEBHOOK_URL is set (server.py starts and stops it), with
    a CurlAsyncHTTPClient of its own: a receiver never holds one of Notion's curl handles."""
    if not settings.webhook_url or not settings.webhook_secret:
        return None
    from tornado.curl_httpclient import CurlAsyncHTTPClient

    policy = DeliveryPolicy.from_settings(settings)
    http = CurlAsyncHTTPClient(force_instance=True, max_clients=policy.concurrency)
    outbox = Outbox(redis, policy.max_age_s)
    return WebhookDispatcher(outbox, http, settings.webhook_url, settings.webhook_secret, clock, policy, emit)
