"""Calls that Notion must carry out exactly once: create, single_part send, complete, append.

None of them is idempotent, and each can end three ways: it happened, it did not, or we cannot
know (a timeout, a reset after the body went out, a 5xx, a junk 2xx — and a 4xx that follows
one of these, such as "is not in the pending status (its status is uploaded)" for a send that
Notion had stored). For the third, the call is never simply repeated: a `check` reads Notion's
own state and says whether it happened (DESIGN.md invariant 8). Only "it did not" leads to
another try.

A check returns the result the call would have had (a dict) when Notion shows it happened,
None when Notion shows it did not, and raises `Failure` when Notion's state cannot be read
right now (the runner retries the check, never the call). It may raise an `UploadError` when
Notion's state shows that going on is pointless (expired, wrong bytes).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from engine.clock import Clock
from engine.guard import BreakerOpen
from engine.notion_answers import Failure
from engine.retry import GaveUp, RetryPolicy, retrying
from engine.upload.interfaces import Emit, Guard

Result = dict[str, Any]
Check = Callable[[], Awaitable[Result | None]]

# How often a "did it land?" check is repeated while a request we gave up on may still be
# running at Notion.
SETTLE_POLL_S = 5.0


class Undecided(Exception):
    """Notion's state could not be read, so whether the call happened is still unknown.
    Whoever resumes the work must check again before doing anything."""

    def __init__(self, operation: str, failure: Failure) -> None:
        super().__init__(f"could not tell whether Notion carried out the {operation}: {failure.message}")
        self.operation = operation
        self.failure = failure
        self.retry_after_s = failure.retry_after_s


class OnceRunner:
    """Runs one non-idempotent call with retries, deciding every unknown outcome from Notion's state.

    settle_s: how long Notion may still act on a request after we stopped waiting for it (its
    own server-side limit is 60 s: NOTION_API.md, "Every request"). A check that finds "did not
    happen" within that time after a timeout or a reset is not trusted for calls whose repeat
    would duplicate something visible (appends): it is repeated until the time has passed.
    """

    def __init__(self, clock: Clock, guard: Guard, retry: RetryPolicy,
                 emit: Emit, settle_s: float = 60.0) -> None:
        self.clock = clock
        self.guard = guard
        self.retry = retry
        self.emit = emit
        self.settle_s = settle_s

    async def run(self, operation: str, call: Callable[[], Awaitable[Result]], check: Check, *,
                  deadline: float | None = None, settle: bool = False, upload_id: str | None = None,
                  wait_if_open: bool = True) -> Result:
        """The call's result, from Notion's answer or from its state.

        Raises the last `Failure` when Notion refused for good or the attempts (or the
        deadline, a monotonic time) ran out with the call certainly not carried out, and
        `Undecided` when they ran out while the outcome was still unknown."""

        async def attempt() -> Result:
            started = self.clock.monotonic()
            try:
                return await self.guard.run(call, deadline=deadline, wait_if_open=wait_if_open)
            except Failure as f:
                if f.never_arrived:
                    raise
                settle_until = started + self.settle_s if settle and f.may_still_land else None
                found = await self.decide(operation, check, f, settle_until=settle_until, deadline=deadline)
                if found is None:
                    raise
                self.emit("NOTION_OUTCOME_FOUND", operation=operation, upload_id=upload_id, reason=f.reason)
                return found

        def failed(f: BaseException, attempt_number: int) -> None:
            reason = f.reason if isinstance(f, Failure) else type(f).__name__
            self.emit("NOTION_RETRY", operation=operation, upload_id=upload_id, reason=reason, attempt=attempt_number)

        try:
            return await retrying(attempt, policy=self.retry, clock=self.clock, retry_on=Failure,
                                  may_retry=_worth_another_try, retry_after=_retry_after, deadline=deadline,
                                  on_failure=failed)
        except GaveUp as out:
            raise out.last from None

    async def decide(self, operation: str, check: Check, cause: Failure, *, settle_until: float | None = None,
                     deadline: float | None = None) -> Result | None:
        """Ask Notion until it tells: the result when the call happened, None when it did not."""
        while True:
            try:
                found = await retrying(check, policy=self.retry, clock=self.clock, retry_on=Failure,
                                       may_retry=_may_ask_again, retry_after=_retry_after, deadline=deadline)
            except (GaveUp, BreakerOpen):
                raise Undecided(operation, cause) from None
            now = self.clock.monotonic()
            if found is None and settle_until is not None and now < settle_until:
                if deadline is not None and now > deadline:
                    raise Undecided(operation, cause)
                await self.clock.sleep(min(SETTLE_POLL_S, settle_until - now))
                continue
            return found


def _worth_another_try(f: BaseException) -> bool:
    # An open breaker refused a caller that would rather not wait: no retry either.
    return isinstance(f, Failure) and f.retryable and not isinstance(f, BreakerOpen)


def _may_ask_again(f: BaseException) -> bool:
    # Whatever Notion answered to "what do you hold?", the question itself changes nothing.
    return not isinstance(f, BreakerOpen)


def _retry_after(f: BaseException) -> float | None:
    return f.retry_after_s if isinstance(f, Failure) else None
