"""Webhooks out when an upload ends: Standard Webhooks, from a durable outbox in Redis.

Spec: https://www.standardwebhooks.com/ (what `standardwebhooks`, Svix and others verify).
Each attempt is a POST of the event's JSON body, byte for byte the same on every attempt, with

    webhook-id         the event's id: the same on every attempt, so receivers deduplicate
    webhook-timestamp  unix seconds of this attempt (verifiers refuse stale ones)
    webhook-signature  v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">, the key being the
                       base64-decoded part of WEBHOOK_SECRET after `whsec_`

Body: {"type": "upload.completed" | "upload.failed" | "upload.expired" | "upload.terminated",
       "timestamp": ISO-8601 of when it happened, "data": {upload_id, owner, filename, size,
       content_type, destination, notion: {file_upload_id, page_id, block_id}, error}}.

Durability. An event is written to Redis in the same MULTI as the state change it reports
(`Outbox.add_to(pipe, event)`), so it exists exactly when the new state does. Every instance
runs a WebhookDispatcher that claims due events with a lease (a Lua script on Redis's clock:
the event's due time moves to now + lease), POSTs them and then removes them (2xx), stops them
(410 from the receiver), or puts them back with exponential backoff and jitter until
WEBHOOK_MAX_AGE (24 h) has passed since the event. An instance that dies holding claims only
delays them by the lease: another instance (or itself, restarted) claims them again.
Delivery is at least once: a receiver dedupes on `webhook-id`.

Isolation. Deliveries go through their own CurlAsyncHTTPClient (never the Notion client's
handles), at most WEBHOOK_CONCURRENCY at once (claims never exceed free slots, so no request
waits inside curl's queue, where it would have no timeout), each with connect and total
timeouts; the receiver's answer body is discarded as it arrives. Nothing here is on an
upload's path: a slow or dead receiver costs uploads nothing.

Redis keys: relay:webhook:event:{id} (the event), relay:webhook:due and relay:webhook:pending
(zsets of ids), relay:webhook:done:{id} (a finished event's marker), relay:webhook:stats (shared
delivery counts); what each holds and for how long: engine/redis/keys.py.
"""
from __future__ import annotations

from engine.webhooks.dispatcher import DeliveryPolicy, WebhookDispatcher, build_dispatcher
from engine.webhooks.events import (
    EVENT_TYPES,
    STATE_EVENTS,
    UPLOAD_COMPLETED,
    UPLOAD_EXPIRED,
    UPLOAD_FAILED,
    UPLOAD_TERMINATED,
    WebhookEvent,
    event_id_for,
    state_events,
    upload_event,
)
from engine.webhooks.outbox import DUE_KEY, PENDING_KEY, STATS_KEY, ClaimedEvent, Outbox, done_key, event_key
from engine.webhooks.signing import (
    SECRET_PREFIX,
    parse_webhook_secret,
    parse_webhook_url,
    receiver_name,
    sign,
    signature_headers,
    webhook_key,
)

__all__ = [
    "DUE_KEY", "EVENT_TYPES", "PENDING_KEY", "SECRET_PREFIX", "STATE_EVENTS", "STATS_KEY", "UPLOAD_COMPLETED",
    "UPLOAD_EXPIRED", "UPLOAD_FAILED", "UPLOAD_TERMINATED", "ClaimedEvent", "DeliveryPolicy", "Outbox",
    "WebhookDispatcher", "WebhookEvent", "build_dispatcher", "done_key", "event_id_for", "event_key",
    "parse_webhook_secret", "parse_webhook_url", "receiver_name", "sign", "signature_headers", "state_events",
    "upload_event", "webhook_key",
]
