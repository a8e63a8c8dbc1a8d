"""The relay: one Tornado process that takes uploads (tus, PUT) and streams them to Notion.

Builds every heavy object (Redis, curl client, engine) here, wires the routes, prints
`relay listening on http://HOST:PORT` when ready, and shuts down gracefully on SIGTERM.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import signal
import socket
import sys
import threading
from typing import Any

import tornado.web
from tornado.curl_httpclient import CurlAsyncHTTPClient
from tornado.ioloop import PeriodicCallback
from tornado.netutil import bind_sockets

from engine.access import Access
from engine.admission import Admission, loads_of
from engine.breaker import CircuitBreaker
from engine.budget import SharedRequestBudget
from engine.clock import SystemClock
from engine.destinations import Destinations
from engine.disk import SpoolDisk
from engine.embedded_redis import EmbeddedRedis
from engine.grants import grant_access
from engine.guard import NotionGuard
from engine.limiter import AdaptiveLimiter, ResourceSampler, Thresholds, read_cgroup, read_cpu_throttling
from engine.locks import UploadLocks
from engine.logs import (
    EventLog,
    PressureWatch,
    breaker_fields,
    configure_logging,
    configured_secrets,
)
from engine.looplag import LoopLagMonitor
from engine.metrics import RelayMetrics, Sources
from engine.notion import NotionClient, Timeouts
from engine.pacer import IntakePacer
from engine.quotas import Quotas
from engine.redis import RedisConnection
from engine.retry import RetryPolicy
from engine.store import CheckpointStore
from engine.upload.scheduler import PartScheduler
from engine.upload.service import ServiceParts, UploadService
from engine.webhooks import build_dispatcher, state_events
from handlers.api import CreateSessionHandler, StatusHandler, StreamUploadHandler
from handlers.base import NotFoundHandler
from handlers.destinations import DestinationsHandler
from handlers.limits import LimitsHandler
from handlers.metrics import MetricsHandler
from handlers.openapi import OpenAPIHandler
from handlers.page import VENDOR_ROUTE, WEB_DIR, PageHandler, StaticHandler, VendorHandler
from handlers.slowclients import LISTEN_BACKLOG, BodyWatch, CappedHTTPServer, fit_fd_limit
from handlers.system import HealthHandler, SystemView
from handlers.tus import TusCollectionHandler, TusUploadHandler
from settings import Settings, SettingsError

log = logging.getLogger("relay")

JSON_BODY_LIMIT_BYTES = 1 * 2**20
OWNERSHIP_INTERVAL_S = 1.0
# Socket reads and data_received calls of up to 256 KiB instead of Tornado's 64 KiB: a quarter
# of the calls on the hot path, a few MiB buffered for 25 clients at once (malloc.env: why the
# allocator settings matter for this).
BODY_CHUNK_BYTES = 256 * 1024
# Spare curl handles beyond MAX_WORKERS part sends, so create/complete/attach never queue
# inside CurlAsyncHTTPClient, where queued requests have no timeout (DESIGN.md quirks).
CONTROL_CURL_HANDLES = 4
# A Notion request's ticket in the shared budget outlives TOTAL_TIMEOUT by this much, for the
# rare wait for a curl handle; one that outlives even that counts as answered when it expires.
BUDGET_LEASE_SLACK_S = 60.0
# Inside a memory-limited cgroup the spool's page cache counts against the limit: its bytes are
# sent to disk as they arrive, 4 MiB at a time (engine/upload/spool.py says why).
SPOOL_WRITEBACK_BYTES = 4 * 2**20


class Relay:
    """Everything the process owns, in the order it is started and stopped."""

    def __init__(self, settings: Settings, sampler: ResourceSampler | None = None) -> None:
        self.settings = settings
        self.sampler = sampler  # tests inject memory readings here; None = psutil and cgroups
        self.port = 0
        self.clock = SystemClock()
        self.embedded: EmbeddedRedis | None = None
        self.server: CappedHTTPServer | None = None
        self.stopping = False

    def start_embedded_redis(self) -> None:
        """Without REDIS_URL, our own redis-server; started (and waited for) before the event
        loop runs, so the wait blocks nothing."""
        if self.settings.redis_url is None:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            self.embedded = EmbeddedRedis(self.settings.data_dir / "redis")
            self.embedded.start()

    def start_store(self) -> tuple[CheckpointStore, str]:
        s = self.settings
        url = s.redis_url
        kind = "RedisCheckpointStorage"
        if url is None:
            assert self.embedded is not None, "start_embedded_redis() runs before the event loop"
            url = self.embedded.url
            kind = "RedisCheckpointStorage (embedded)"
        ttl = s.checkpoint_expiration_hours * 3600
        # One connection for every Redis user: checkpoints, locks, quotas, grants, budget, webhooks.
        self.redis = RedisConnection(url)
        return CheckpointStore(self.redis, self.clock, ttl), kind

    def build(self) -> tornado.web.Application:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        s.spool_dir.mkdir(parents=True, exist_ok=True)
        store, store_kind = self.start_store()
        self.store = store
        http = CurlAsyncHTTPClient(force_instance=True, max_clients=s.max_workers + CONTROL_CURL_HANDLES)
        self.http = http
        notion = NotionClient(http, s.notion_api_base, s.notion_token or "emulator-token", s.notion_version,
                              Timeouts(s.connection_timeout_s, s.read_timeout_s, s.total_timeout_s))
        notion_breaker = CircuitBreaker("notion_api", self.clock, s.cb_notion_failure_threshold,
                                        s.cb_notion_timeout_duration_s, s.cb_half_open_max_calls,
                                        window_s=s.cb_notion_window_s,
                                        failure_rate=s.cb_notion_failure_rate_percent / 100,
                                        minimum_calls=s.cb_notion_minimum_calls)
        upload_breaker = CircuitBreaker("upload_operations", self.clock, s.cb_upload_failure_threshold,
                                        s.cb_upload_timeout_duration_s, s.cb_half_open_max_calls)
        # The service's events and the relay's own go to the same listeners: logs, metrics, breaker.
        listeners: list[Any] = [EventLog()]

        def emit(event: str, **fields: Any) -> None:
            for listener in listeners:
                listener(event, fields)

        for breaker in (notion_breaker, upload_breaker):
            breaker.on_change(lambda name, old, new: emit("CIRCUIT_BREAKER", **breaker_fields(name, old, new)))
        # A request lives at most its total timeout, plus its wait for one of libcurl's handles.
        budget = SharedRequestBudget(self.clock, *s.notion_rate_limit, redis=self.redis,
                                     lease_s=s.total_timeout_s + BUDGET_LEASE_SLACK_S)
        locks = UploadLocks(self.redis, self.instance_id(), s.lock_ttl_s)
        guard = NotionGuard(self.clock, notion_breaker, budget)
        limiter = AdaptiveLimiter(
            self.sampler or ResourceSampler(s.total_memory_mb, s.total_cpu_cores),
            Thresholds(s.memory_low_threshold_mb, s.memory_medium_threshold_mb,
                       s.memory_high_threshold_mb, s.memory_critical_threshold_mb),
            s.min_workers, s.max_workers, s.default_workers, scale_thresholds=s.total_memory_mb is None)
        limiter.tick()
        scheduler = PartScheduler(limit=lambda: limiter.workers)
        self.scheduler = scheduler
        self.limiter = limiter
        # Reads from clients are paced while the CPU quota runs out, so the loop
        # stays responsive (health, new requests); the intake asks it for every body chunk:
        # pacer.take(n). It only ever engages when the CPU, not Notion's budget, is what binds.
        pacer = IntakePacer(self.clock, lambda: limiter.last.cpu_limit_cores if limiter.last else 1.0,
                            throttling=read_cpu_throttling)
        self.pacer = pacer

        def upload_outcome(event: str, fields: dict[str, Any]) -> None:
            if event == "UPLOAD_COMPLETE":
                upload_breaker.record_success()
            elif event == "UPLOAD_FAILED":
                upload_breaker.record_failure()

        listeners.append(upload_outcome)
        access = Access(s.upload_tokens, s.observability_public, s.cors_origins, s.max_url_bytes,
                        **grant_access(s, self.redis, self.clock))
        # Webhooks when an upload ends (WEBHOOK_URL): delivered from the outbox in Redis by
        # whichever instance is alive; self.webhooks.outbox is where events are written.
        self.webhooks = build_dispatcher(s, self.redis, self.clock, emit)
        if self.webhooks is not None:
            store.outbox = self.webhooks.outbox  # events go out in the same MULTI as the state they announce
        self.access = access
        quotas = Quotas(self.redis, self.clock, s.quota_concurrent_uploads, s.quota_mb_per_hour * 2**20)
        destinations = Destinations(s.notion_destinations, s.notion_parent_page_id, notion, guard, self.clock,
                                    s.notion_files_property, s.notion_caption_property)
        service = UploadService(ServiceParts(
            clock=self.clock, notion=notion, guard=guard, store=store, scheduler=scheduler,
            retry=RetryPolicy.from_settings(s), spool_dir=s.spool_dir, part_size_bytes=s.part_size_bytes,
            parent_page_id=s.notion_parent_page_id, locks=locks, owner_idle_s=s.owner_idle_timeout_s,
            notion_settle_s=s.notion_settle_s, destinations=destinations,
            append_window_s=s.append_batch_window_ms / 1000,
            append_max_window_s=s.append_batch_max_window_ms / 1000,
            budget_fill=lambda: budget.tokens / budget.capacity,
            announce=state_events if self.webhooks is not None else None,
            quotas=quotas if access.enabled else None, listeners=listeners,
            spool_writeback_bytes=SPOOL_WRITEBACK_BYTES if read_cgroup().memory_limit_bytes else 0))
        service.check_owners = access.enabled
        self.service = service
        self.looplag = LoopLagMonitor()
        # Admission from what runs out: memory (limiter), the spool's disk, the budget's backlog.
        disk = SpoolDisk(s.spool_dir, s.spool_min_free_mb * 2**20, self.clock,
                         spooled=lambda: sum(x.spooled_bytes for x in loads_of(service.live.values())))
        disk.tick()
        self.disk = disk
        admission = Admission(
            [notion_breaker, upload_breaker], store, limiter, disk, budget,
            loads=lambda: loads_of(service.live.values()), pending=lambda: service.creating,
            part_size_bytes=s.part_size_bytes, backlog_limit_s=s.notion_backlog_limit_s,
            max_active=s.max_active_uploads)
        service.admission = admission
        system = SystemView(self.clock, service, limiter, [notion_breaker, upload_breaker], budget, scheduler,
                            store, store_kind, s.max_concurrent_uploads, s.queue_size_limit, looplag=self.looplag,
                            admission=admission, webhooks=self.webhooks)
        self.system = system
        system.pacer = pacer
        service.intake.pace = pacer.take
        metrics = RelayMetrics(Sources(service, [notion_breaker, upload_breaker], budget, limiter, scheduler, store,
                                       self.looplag, admission=admission, webhooks=self.webhooks))
        metrics.sources.pacer = pacer
        listeners.append(metrics.on_event)
        pressure = PressureWatch(emit)

        async def tick() -> None:
            sample = limiter.tick()
            disk.tick()  # free space on the spool's disk: on this tick only, never per request
            pressure.observe(limiter.state, sample.used_mb, sample.total_bytes / 2**20, limiter.workers)
            scheduler.pump()
            await store.ping()

        self.loops = [
            PeriodicCallback(lambda: asyncio.ensure_future(tick()), s.metrics_interval_s * 1000),
            PeriodicCallback(pacer.tick, pacer.window_s * 1000),
            PeriodicCallback(lambda: asyncio.ensure_future(service.maintain()), OWNERSHIP_INTERVAL_S * 1000),
            PeriodicCallback(lambda: asyncio.ensure_future(service.sweep()), s.cleanup_interval_s * 1000),
        ]
        self.body_watch = BodyWatch(self.clock, s.body_idle_timeout_s, s.body_min_rate_bps)
        self.loops.append(PeriodicCallback(self.body_watch.tick, 1000))
        streaming = {"service": service, "access": access, "body_watch": self.body_watch}
        kwargs = {"service": service, "system": system, "access": access}
        return tornado.web.Application([
            (r"/files/?", TusCollectionHandler, streaming),
            (r"/files/([^/]+)", TusUploadHandler, streaming),
            (r"/api/upload/create-session", CreateSessionHandler, kwargs),
            (r"/api/upload/status/([^/]+)", StatusHandler, kwargs),
            (r"/api/upload/([^/]+)", StreamUploadHandler, {**kwargs, "body_watch": self.body_watch}),
            (r"/api/system/health", HealthHandler, {"system": system, "access": access}),
            (r"/metrics", MetricsHandler, {"metrics": metrics, "access": access}),
            (r"/api/openapi.json", OpenAPIHandler),
            (r"/api/limits", LimitsHandler, {"service": service, "access": access}),
            (r"/api/destinations", DestinationsHandler, {"destinations": destinations, "access": access}),
            (r"/()", PageHandler, {"path": str(WEB_DIR), "default_filename": "index.html"}),
            (VENDOR_ROUTE, VendorHandler),
            (r"/static/(.*)", StaticHandler, {"path": str(WEB_DIR)}),
        ], default_handler_class=NotFoundHandler, compress_response=False)

    async def serve(self) -> None:
        app = self.build()
        s = self.settings
        # The store's epoch as it is now: without it, a Redis that loses its data before the first
        # ownership tick would go unnoticed (engine/upload/registry.py, maintain).
        await self.service.maintain()
        # idle_connection_timeout is also Tornado's deadline for reading a request's headers.
        # At the cap, the longest idle connection is closed to make room (handlers/slowclients.py).
        self.server = CappedHTTPServer(app, max_connections=fit_fd_limit(s.max_connections),
                                       max_body_size=JSON_BODY_LIMIT_BYTES,
                                       xheaders=False, idle_connection_timeout=s.header_timeout_s,
                                       chunk_size=BODY_CHUNK_BYTES, max_header_size=s.max_header_bytes,
                                       # a connection's read buffer: a few chunks, not Tornado's 100 MB
                                       max_buffer_size=4 * BODY_CHUNK_BYTES)
        sockets = bind_sockets(s.port, address=s.host, backlog=LISTEN_BACKLOG)
        self.server.add_sockets(sockets)
        port = self.port = sockets[0].getsockname()[1]
        for loop in self.loops:
            loop.start()
        self.looplag.start()
        if self.webhooks is not None:
            self.webhooks.start()
        self._install_signals()
        mode = "demo (Notion emulator)" if s.demo_mode else "notion"
        log.info("starting: mode=%s api=%s parent_page=%s", mode, s.notion_api_base, s.notion_parent_page_id)
        print(f"relay listening on http://{s.host}:{port}", flush=True)
        self._stopped = asyncio.Event()
        await self._stopped.wait()

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # a relay run inside a test's thread is stopped with stop(), not signals
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)

    def _on_signal(self) -> None:
        if self.stopping:
            log.warning("second signal: exiting now")
            os._exit(1)
        self.stopping = True
        asyncio.ensure_future(self.shutdown())

    def instance_id(self) -> str:
        """Stable across restarts on the same DATA_DIR, so a restarted relay keeps its uploads'
        locks instead of waiting for them to lapse."""
        if self.settings.instance_id:
            return self.settings.instance_id
        path = self.settings.data_dir / "instance-id"
        try:
            return path.read_text().strip()
        except OSError:
            value = f"{socket.gethostname()}-{secrets.token_hex(6)}"
            path.write_text(value)
            return value

    async def shutdown(self) -> None:
        grace = self.settings.shutdown_timeout_s
        log.info("shutting down: no new connections; waiting up to %.0fs for parts in flight", grace)
        if self.server is not None:
            self.server.stop()
        for loop in self.loops:
            loop.stop()
        self.looplag.stop()
        self.service.stop_taking_bytes()
        deadline = self.clock.monotonic() + grace
        # Parts in flight finish and their checkpoints are written (the part job awaits them);
        # uploads being completed get their complete/attach.
        # Polled: "idle" is a condition over many uploads, parts and tasks, not one event.
        while not self.service.idle() and self.clock.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await self.service.flush(max(0.0, deadline - self.clock.monotonic()))
        await self.service.release_all()
        if self.webhooks is not None:
            await self.webhooks.stop(min(2.0, max(0.0, deadline - self.clock.monotonic())))
        await self.redis.close()
        if self.service.idle():
            self.http.close()  # closing it under running transfers makes libcurl callbacks fail
        if self.embedded is not None:
            self.embedded.stop()
        log.info("stopped")
        self._stopped.set()


def main() -> None:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"relay: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_logging(settings.log_format, configured_secrets(
        settings.notion_token, [secret for _, secret in settings.upload_tokens], settings.redis_url,
        grant_secret=settings.upload_grant_secret, webhook_secret=settings.webhook_secret,
        webhook_url=settings.webhook_url))
    relay = Relay(settings)
    # Why: a full garbage collection walks every object, and the ~50,000 that the imports made
    # live as long as the process. It cost 20-30 ms of CPU under load, more than a 0.2-CPU
    # dyno's quota for a 100 ms period, so health waited for the next period. Frozen, they are
    # never walked again (the relay's own objects are still collected).
    gc.collect()
    gc.freeze()
    try:
        relay.start_embedded_redis()
        asyncio.run(relay.serve())
    except RuntimeError as exc:
        if relay.embedded is not None:
            relay.embedded.stop()
        print(f"relay: cannot start: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
