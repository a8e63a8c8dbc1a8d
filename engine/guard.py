"""NotionGuard: what every Notion request passes before and after it runs.

Before: wait while the breaker is open, then take a request-budget token. After: tell the
breaker how it went and pause the budget on a 429. Running uploads wait here instead of failing.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from engine.breaker import CircuitBreaker
from engine.budget import Budget, OverBudget
from engine.clock import Clock
from engine.notion_answers import Failure

T = TypeVar("T")


class BreakerOpen(Failure):
    """The breaker is open and the caller would rather be refused than wait (a new upload:
    DESIGN.md, "while open, new uploads are refused with 503 + Retry-After")."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("connect", "Notion's circuit breaker is open", retry_after_s=retry_after_s)

# Failures after which Notion cannot count the request any more: it answered, or nothing reached
# it. After the others (a timeout, a broken connection, a junk answer from something in between)
# the request may still be on its way to Notion.
_ANSWERED = frozenset({"http", "connect"})

# A 429 without Retry-After still needs a pause (NOTION_API.md: wait, then retry).
DEFAULT_RATE_LIMIT_PAUSE_S = 1.0


class NotionGuard:
    def __init__(self, clock: Clock, breaker: CircuitBreaker, budget: Budget) -> None:
        self.clock = clock
        self.breaker = breaker
        self.budget = budget

    async def run(self, call: Callable[[], Awaitable[T]], deadline: float | None = None,
                  wait_if_open: bool = True) -> T:
        """Run `call` once the breaker and the budget let it. With a deadline (monotonic), a
        wait that would pass it fails at once as "never reached Notion" instead: a request with
        a router cutting at 30 s must get its answer (503 + Retry-After) in time. Without
        `wait_if_open`, an open breaker fails at once (BreakerOpen)."""
        while not self.breaker.allow():
            wait = max(0.05, self.breaker.retry_after_s())
            if not wait_if_open or (deadline is not None and self.clock.monotonic() + wait > deadline):
                raise BreakerOpen(wait)
            await self.clock.sleep(wait)
        try:
            ticket = await self.budget.take(deadline)
        except OverBudget as over:
            self.breaker.release()  # not Notion's failure: nothing was sent
            raise Failure("connect", "Notion's request budget is used up for now", retry_after_s=over.wait_s) from None
        except BaseException:
            self.breaker.release()
            raise
        try:
            result = await call()
        except Failure as failure:
            self.budget.settle(ticket, answered=failure.kind in _ANSWERED)
            self._record(failure)
            raise
        except BaseException:
            self.budget.settle(ticket, answered=False)
            self.breaker.release()
            raise
        self.budget.settle(ticket, answered=True)
        self.breaker.record_success()
        return result

    def _record(self, failure: Failure) -> None:
        if failure.rate_limited:
            self.budget.pause(failure.retry_after_s or DEFAULT_RATE_LIMIT_PAUSE_S)
            self.breaker.release()
        elif failure.is_notion_failure:
            self.breaker.record_failure()
        else:
            # Notion is healthy; it rejected what we sent.
            self.breaker.record_success()
