"""The emulator's state and its Tornado application (route table)."""
from __future__ import annotations

import asyncio
import logging

import tornado.web

from . import api, control, databases, pages
from .config import EmulatorConfig
from .faults import FaultInjector, FaultPlan, Outage
from .ratelimit import RateLimiter
from .stats import Stats
from .store import UploadStore, WallClock

log = logging.getLogger("emulator")


class Emulator:
    """Everything the handlers share; reaches them through the route table's kwargs."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.clock = WallClock()
        self.store = UploadStore(config.data_dir, self.clock)
        self.limiter = RateLimiter(config.rate_limit)
        self.faults = FaultInjector(FaultPlan.parse(config.faults))
        self.outage = Outage()
        self.stats = Stats()
        # The workspace's plan and per-file limit; `POST /_emulator/plan` may change them
        # at run time (a workspace that is downgraded between send and complete).
        self.plan = config.plan
        self.max_file_bytes = config.max_file_bytes
        self._stopping: asyncio.Future[None] | None = None

    @property
    def stopping(self) -> asyncio.Future[None]:
        """Resolved when the emulator shuts down: stalled requests stop waiting on it."""
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_future()
        return self._stopping

    def shutdown(self) -> None:
        if not self.stopping.done():
            self.stopping.set_result(None)


def make_app(emu: Emulator) -> tornado.web.Application:
    kw = {"emu": emu}
    uuidish = r"([^/]+)"
    routes = [
        (r"/v1/file_uploads", api.FileUploadsHandler, kw),
        (rf"/v1/file_uploads/{uuidish}", api.RetrieveHandler, kw),
        (rf"/v1/file_uploads/{uuidish}/send", api.SendHandler, kw),
        (rf"/v1/file_uploads/{uuidish}/complete", api.CompleteHandler, kw),
        (r"/v1/users", api.UsersHandler, kw),
        (r"/v1/users/me", api.UsersMeHandler, kw),
        (rf"/v1/users/{uuidish}", api.UserHandler, kw),
        (r"/v1/pages", pages.PagesHandler, kw),
        (rf"/v1/pages/{uuidish}", pages.PageHandler, kw),
        (rf"/v1/blocks/{uuidish}", pages.BlockHandler, kw),
        (rf"/v1/blocks/{uuidish}/children", pages.BlockChildrenHandler, kw),
        (rf"/v1/databases/{uuidish}", databases.DatabaseHandler, kw),
        (rf"/v1/databases/{uuidish}/query", databases.DatabaseQueryHandler, kw),
        (rf"/v1/data_sources/{uuidish}", databases.DataSourceHandler, kw),
        (rf"/v1/data_sources/{uuidish}/query", databases.DataSourceQueryHandler, kw),
        (r"/_emulator/health", control.HealthHandler, kw),
        (r"/_emulator/uploads", control.UploadsHandler, kw),
        (rf"/_emulator/uploads/{uuidish}", control.UploadHandler, kw),
        (rf"/_emulator/files/{uuidish}", control.FileHandler, kw),
        (rf"/_emulator/blobs/{uuidish}/{uuidish}", control.BlobHandler, kw),
        (r"/_emulator/stats", control.StatsHandler, kw),
        (r"/_emulator/stats/reset", control.StatsResetHandler, kw),
        (r"/_emulator/faults", control.FaultsHandler, kw),
        (r"/_emulator/outage", control.OutageHandler, kw),
        (r"/_emulator/clock", control.ClockHandler, kw),
        (r"/_emulator/plan", control.PlanHandler, kw),
        (r"/_emulator/databases", control.DatabasesHandler, kw),
        (rf"/_emulator/databases/{uuidish}/rows", control.DatabaseRowsHandler, kw),
        (r"/_emulator/.*", control.UnknownControlHandler, kw),
        (r"/.*", api.UnknownRouteHandler, kw),
    ]
    return tornado.web.Application(routes)
