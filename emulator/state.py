"""`Emulator`: the state every handler shares (config, store, clock, limiter, faults, outage,
stats, the workspace's plan). The route table (app.py) hands it to each handler; this module
imports no handler."""
from __future__ import annotations

import asyncio

from .config import EmulatorConfig
from .faults import FaultInjector, FaultPlan, Outage
from .ratelimit import RateLimiter
from .stats import Stats
from .store import UploadStore, WallClock


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
