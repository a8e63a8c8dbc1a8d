"""Prometheus metrics of the webhook outbox and this instance's deliveries: read at scrape time
from the dispatcher's copy of the outbox's numbers (no I/O)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def webhook_metrics(dispatcher: Any) -> Iterator[Metric]:
    """The webhook gauges and counters (engine/metrics.py yields them at scrape time)."""
    snap = dispatcher.snapshot()  # the outbox as the dispatcher last read it; no I/O here
    yield _gauge("relay_webhooks_pending", "Webhook events not yet delivered (all instances)",
                 snap.get("pending", 0))
    yield _gauge("relay_webhooks_oldest_pending_seconds", "Age of the oldest webhook event not yet "
                 "delivered (0: none)", snap.get("oldest_pending_age_s", 0.0))
    yield _gauge("relay_webhooks_in_flight", "Webhook deliveries this instance has running",
                 snap.get("in_flight", 0))
    yield _gauge("relay_webhook_receiver_consecutive_failures", "Failed webhook attempts since the "
                 "last success (all instances)", snap.get("consecutive_failures", 0))
    yield _gauge("relay_webhook_receiver_failing", "1 while the receiver keeps failing "
                 "(WEBHOOK_FAILING_AFTER consecutive failures)", 1 if dispatcher.failing else 0)
    yield CounterMetricFamily("relay_webhooks_delivered", "Webhook events delivered (2xx) by this instance",
                              value=dispatcher.finished["delivered"])
    failed = CounterMetricFamily("relay_webhooks_failed", "Webhook events this instance stopped without a "
                                 "2xx: gone (the receiver answered 410) or expired (given up after "
                                 "WEBHOOK_MAX_AGE)", labels=["reason"])
    for reason in ("gone", "expired"):
        failed.add_metric([reason], dispatcher.finished[reason])
    yield failed
    attempts = CounterMetricFamily("relay_webhook_attempts", "Webhook delivery attempts by this instance, "
                                   "by outcome", labels=["outcome"])
    for outcome, n in dispatcher.attempts.items():
        attempts.add_metric([outcome], n)
    yield attempts
