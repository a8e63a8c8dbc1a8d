"""RelayMetrics: the Prometheus view of the relay (served at /metrics).

Two kinds of numbers, neither on the hot path (no per-chunk work):
- counters and the part-latency histogram are fed by the service's events (`on_event`, one
  call per part, request or upload);
- gauges and a few counters are read at scrape time from the live objects: the uploads this
  instance holds, breakers, request budget, adaptive limiter, scheduler, store, loop-lag monitor.

Its own CollectorRegistry: nothing global, so tests can build several.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from engine.admission import REASONS as ADMISSION_REASONS
from engine.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from engine.limiter import CRITICAL, HIGH_LOAD, LOW_LOAD, MEDIUM_LOAD, AdaptiveLimiter
from engine.looplag import LoopLagMonitor
from engine.upload.scheduler import PartScheduler
from engine.upload.session import COMPLETED, CREATED, EXPIRED, FAILED, FINAL_STATES, FINALIZING, RECEIVING, TERMINATED
from engine.webhooks.metrics import webhook_metrics

UPLOAD_STATES = (CREATED, RECEIVING, FINALIZING, COMPLETED, FAILED, EXPIRED, TERMINATED)
BREAKER_STATES = (CLOSED, OPEN, HALF_OPEN)
RESOURCE_STATES = (LOW_LOAD, MEDIUM_LOAD, HIGH_LOAD, CRITICAL)
# Exported at 0 from the start, so rate() works before the first one happens.
KNOWN_EVENTS = ("UPLOAD_START", "PART_SUCCESS", "PART_FAILURE", "TIMEOUT_EVENT", "NOTION_RETRY",
                "CHECKPOINT_SAVED", "CHECKPOINT_RETRY", "UPLOAD_COMPLETE", "UPLOAD_FAILED", "UPLOAD_RESUMED",
                "UPLOAD_CLAIMED", "UPLOAD_RELEASED", "LOCK_LOST", "UPLOAD_EXPIRED", "UPLOAD_TERMINATED",
                "MEMORY_PRESSURE", "CIRCUIT_BREAKER")
# A part of 5–20 MiB takes from a fraction of a second to minutes (READ_TIMEOUT is 300 s).
PART_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
PART_OUTCOMES = {"PART_SUCCESS": "success", "PART_FAILURE": "failure", "TIMEOUT_EVENT": "timeout"}
# Where an upload goes (engine/destinations.py): a block on a page, a row in a database, or
# nowhere (no NOTION_PARENT_PAGE_ID and no NOTION_DESTINATIONS: uploaded, not attached).
DESTINATION_KINDS = ("page", "database", "none")


class Uploads(Protocol):
    """What metrics read from UploadService."""
    live: dict[str, Any]

    def bytes_received_total(self) -> int: ...


class Budget(Protocol):
    rate_limited_count: int

    def snapshot(self) -> dict[str, Any]: ...


class Store(Protocol):
    healthy: bool


@dataclass
class Sources:
    """The live objects read at scrape time (built by server.py)."""
    service: Uploads
    breakers: list[CircuitBreaker]
    budget: Budget
    limiter: AdaptiveLimiter
    scheduler: PartScheduler
    store: Store
    looplag: LoopLagMonitor | None = None
    admission: Any | None = None  # engine.admission.Admission: spool disk, backlog, refusals
    pacer: Any | None = None  # engine.limiter.IntakePacer
    webhooks: Any | None = None  # engine.webhooks.WebhookDispatcher, when WEBHOOK_URL is set


class RelayMetrics:
    def __init__(self, sources: Sources, process_metrics: bool = True) -> None:
        self.sources = sources
        # Why: every counter would otherwise get a `_created` twin (its creation time) that only
        # doubles the scrape. The switch is process-wide; this is the relay's only registry.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client has no hints here
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter("relay_events", "Service events by name (the log lines' `event`)",
                              ["event"], registry=r)
        self.started = Counter("relay_uploads_started", "Uploads created on this instance, by destination kind",
                               ["destination_kind"], registry=r)
        self.completed = Counter("relay_uploads_completed", "Uploads Notion holds in full (and attached), by "
                                 "destination kind", ["destination_kind"], registry=r)
        self.failed = Counter("relay_uploads_failed", "Uploads that failed, by whether they can resume",
                              ["can_resume"], registry=r)
        self.bytes_confirmed = Counter("relay_bytes_confirmed",
                                       "Bytes of parts Notion accepted and that are checkpointed", registry=r)
        self.parts = Counter("relay_parts_sent", "Parts Notion accepted", registry=r)
        self.part_seconds = Histogram("relay_part_send_duration_seconds",
                                      "One attempt to send a part to Notion, by outcome", ["outcome"],
                                      buckets=PART_SECONDS_BUCKETS, registry=r)
        self.retries = Counter("relay_notion_retries",
                               "Failed Notion requests by operation and reason; each is retried unless "
                               "its upload then fails", ["operation", "reason"], registry=r)
        self.checkpoint_retries = Counter("relay_checkpoint_retries",
                                          "Checkpoint writes retried because the store was away", registry=r)
        self.memory_pressure = Counter("relay_memory_pressure_events",
                                       "Changes of the resource state into HIGH_LOAD or CRITICAL", registry=r)
        for event in KNOWN_EVENTS:
            self.events.labels(event=event)
        for outcome in PART_OUTCOMES.values():
            self.part_seconds.labels(outcome=outcome)
        for value in ("true", "false"):
            self.failed.labels(can_resume=value)
        for kind in DESTINATION_KINDS:
            self.started.labels(destination_kind=kind)
            self.completed.labels(destination_kind=kind)
        r.register(_LiveCollector(sources))
        if process_metrics:
            ProcessCollector(registry=r)

    # --- events (UploadService.emit listener) -------------------------------------------------

    def on_event(self, event: str, fields: dict[str, Any]) -> None:
        self.events.labels(event=event).inc()
        outcome = PART_OUTCOMES.get(event)
        if outcome is not None:
            duration = fields.get("duration_s")
            if isinstance(duration, (int, float)):
                self.part_seconds.labels(outcome=outcome).observe(duration)
            if event == "PART_SUCCESS":
                self.parts.inc()
                size = fields.get("size")
                if isinstance(size, int):
                    self.bytes_confirmed.inc(size)
            else:
                self.retries.labels(operation="send", reason=str(fields.get("reason", "unknown"))).inc()
        elif event == "NOTION_RETRY":
            self.retries.labels(operation=str(fields.get("operation", "unknown")),
                                reason=str(fields.get("reason", "unknown"))).inc()
        elif event == "UPLOAD_START":
            self.started.labels(destination_kind=destination_kind(fields)).inc()
        elif event == "UPLOAD_COMPLETE":
            self.completed.labels(destination_kind=destination_kind(fields)).inc()
        elif event == "UPLOAD_FAILED":
            self.failed.labels(can_resume="true" if fields.get("can_resume") else "false").inc()
        elif event == "CHECKPOINT_RETRY":
            self.checkpoint_retries.inc()
        elif event == "MEMORY_PRESSURE":
            self.memory_pressure.inc()

    # --- exposition ---------------------------------------------------------------------------

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """(body, content type): the Prometheus text format, or OpenMetrics when `accept` asks for it."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def destination_kind(fields: dict[str, Any]) -> str:
    """The event's `destination_kind` as a label: one of DESTINATION_KINDS, whatever it says."""
    kind = fields.get("destination_kind")
    return kind if kind in DESTINATION_KINDS else "none"


class _LiveCollector(Collector):
    """Reads the live objects at scrape time: a few dict reads, no I/O, no psutil call."""

    def __init__(self, sources: Sources) -> None:
        self.s = sources

    def describe(self) -> Iterable[Metric]:
        return []  # dynamic: computed at collect time only

    def collect(self) -> Iterator[Metric]:
        s = self.s
        yield from self._uploads(s)
        yield from self._breakers(s.breakers)
        yield from self._budget(s.budget)
        yield from self._resources(s)
        yield from self._lag(s.looplag)
        yield from self._admission(s.admission)
        yield from self._pacer(s.pacer)
        if s.webhooks is not None:
            yield from webhook_metrics(s.webhooks)

    @staticmethod
    def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, value=value)

    def _uploads(self, s: Sources) -> Iterator[Metric]:
        counts = dict.fromkeys(UPLOAD_STATES, 0)
        for session in list(s.service.live.values()):
            state = session.record.state
            counts[state] = counts.get(state, 0) + 1
        by_state = GaugeMetricFamily("relay_uploads", "Uploads this instance holds, by state", labels=["state"])
        for state, n in counts.items():
            by_state.add_metric([state], n)
        yield by_state
        yield self._gauge("relay_uploads_active", "Uploads in progress on this instance (not completed, "
                          "expired or terminated)", sum(n for st, n in counts.items() if st not in FINAL_STATES))
        yield CounterMetricFamily("relay_bytes_received", "Upload bytes received from clients (counted per "
                                  "request; requests still running count what they sent so far)",
                                  value=s.service.bytes_received_total())
        yield self._gauge("relay_parts_running", "Part sends to Notion in flight", s.scheduler.running)
        yield self._gauge("relay_parts_queued", "Complete parts waiting for a send slot", s.scheduler.queued)
        yield self._gauge("relay_checkpoint_store_up", "1 while the checkpoint store (Redis) answers",
                          1 if s.store.healthy else 0)

    def _breakers(self, breakers: list[CircuitBreaker]) -> Iterator[Metric]:
        state = GaugeMetricFamily("relay_circuit_breaker_state", "1 for each breaker's current state",
                                  labels=["breaker", "state"])
        opened = CounterMetricFamily("relay_circuit_breaker_opened", "Times each breaker opened", labels=["breaker"])
        for b in breakers:
            current = b.state
            for name in BREAKER_STATES:
                state.add_metric([b.name, name], 1 if current == name else 0)
            opened.add_metric([b.name], b.stats.times_opened)
        yield state
        yield opened

    def _budget(self, budget: Budget) -> Iterator[Metric]:
        snap = budget.snapshot()
        yield self._gauge("relay_request_budget_tokens", "Notion requests that may start now (token bucket)",
                          snap.get("tokens", 0))
        yield self._gauge("relay_request_budget_capacity", "Size of the Notion request budget's bucket",
                          snap.get("capacity", 0))
        yield self._gauge("relay_request_budget_in_flight",
                          "Notion requests not yet answered (they hold the bucket lower)",
                          snap.get("in_flight", 0))
        yield self._gauge("relay_request_budget_paused_seconds", "Seconds left of a pause after a 429",
                          snap.get("paused_for_s", 0))
        yield CounterMetricFamily("relay_notion_rate_limited", "429 (and 529) answers from Notion",
                                  value=budget.rate_limited_count)

    def _resources(self, s: Sources) -> Iterator[Metric]:
        limiter = s.limiter
        yield self._gauge("relay_concurrency_limit", "Part sends allowed at once (adaptive limiter)", limiter.workers)
        state = GaugeMetricFamily("relay_resource_state", "1 for the current resource state", labels=["state"])
        for name in RESOURCE_STATES:
            state.add_metric([name], 1 if limiter.state == name else 0)
        yield state
        sample = limiter.last  # taken every METRICS_INTERVAL by the limiter; a scrape samples nothing
        if sample is not None:
            yield self._gauge("relay_resident_memory_bytes", "RSS of the relay process at the last sample",
                              sample.rss_bytes)
            yield self._gauge("relay_memory_used_bytes", "Memory compared with the thresholds (RSS + children, "
                              "or the cgroup's anonymous memory)", sample.used_bytes)
            yield self._gauge("relay_memory_limit_bytes", "The memory the thresholds refer to", sample.total_bytes)
            yield self._gauge("relay_cpu_percent", "CPU use at the last sample (percent of one core)",
                              sample.cpu_percent)

    def _admission(self, admission: Any | None) -> Iterator[Metric]:
        if admission is None:
            return
        snap = admission.snapshot()  # the disk as last sampled on the limiter's tick; no I/O here
        disk, adm = snap["spool_disk"], snap["admission"]
        if disk["free_bytes"] is not None:
            yield self._gauge("relay_spool_free_bytes", "Free space on the spool's disk (last sample, less what "
                              "the spool wrote since)", disk["free_bytes"])
        yield self._gauge("relay_spool_reserved_bytes", "Spool space running uploads (and one new upload) may "
                          "still fill", disk["reserved_bytes"])
        yield self._gauge("relay_spool_min_free_bytes", "SPOOL_MIN_FREE_MB: free space kept beyond the "
                          "reservations (0: not checked)", disk["min_free_bytes"])
        yield self._gauge("relay_spool_low", "1 while the spool's disk is too full to admit a new upload",
                          1 if disk["status"] == "low" else 0)
        if adm["budget_backlog_s"] is not None:
            yield self._gauge("relay_notion_backlog_seconds", "How long the request budget needs for the "
                              "requests running uploads still make", adm["budget_backlog_s"])
        yield self._gauge("relay_admission_refusing", "1 while new uploads are refused (503)",
                          0 if adm["status"] == "admitting" else 1)
        refused = CounterMetricFamily("relay_uploads_refused", "New uploads refused with 503, by reason",
                                      labels=["reason"])
        for reason in ADMISSION_REASONS:
            refused.add_metric([reason], adm["refused"].get(reason, 0))
        yield refused

    def _pacer(self, pacer: Any | None) -> Iterator[Metric]:
        if pacer is None:
            return
        snap = pacer.snapshot()
        yield self._gauge("relay_intake_paced", "1 while reads from clients are paced (the CPU quota is nearly "
                          "used up)", 1 if snap["paced"] else 0)
        yield self._gauge("relay_intake_rate_limit_bytes", "The pace of reads from clients, bytes/s (0: not paced)",
                          (snap["rate_mib_per_s"] or 0) * 2**20)
        yield self._gauge("relay_cpu_share_of_quota", "CPU the process used over the pacer's last window, as a "
                          "share of what it may use (the cgroup quota, at most one core)", snap["cpu_share"])

    def _lag(self, monitor: LoopLagMonitor | None) -> Iterator[Metric]:
        if monitor is None:
            return
        stats = monitor.stats()
        yield self._gauge("relay_event_loop_lag_seconds", "How late the last loop-lag timer ran", stats.last_s)
        yield self._gauge("relay_event_loop_lag_max_seconds", f"Largest loop lag over the last "
                          f"{monitor.window_s:g} s", stats.max_s)
        yield self._gauge("relay_event_loop_lag_p99_seconds", f"99th percentile loop lag over the last "
                          f"{monitor.window_s:g} s", stats.p99_s)
