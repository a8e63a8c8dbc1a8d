"""Exactly-once decisions in-process, on a fake clock and a scripted Notion: no process, no socket.

Each case scripts what Notion answers to the call and what its state shows afterwards, and checks
how many times the call went out (the thing that must never be "twice" when Notion did it once).
"""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine.breaker import CircuitBreaker
from engine.budget import RequestBudget
from engine.clock import FakeClock
from engine.guard import NotionGuard
from engine.notion_answers import Failure
from engine.notion_answers import parse_retry_after as _parse_retry_after
from engine.notion_answers import shape_problem as _shape_problem
from engine.retry import RetryPolicy
from engine.upload.finishing import holding_problem, shows_file
from engine.upload.once import OnceRunner, Undecided

pytestmark = pytest.mark.inprocess

OK = {"object": "file_upload", "id": "f", "status": "uploaded"}


class Script:
    """Answers in order: a dict is returned, an exception raised."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def runner(clock: FakeClock, retries: int = 3, settle_s: float = 60.0) -> OnceRunner:
    guard = NotionGuard(clock, CircuitBreaker("notion", clock, 1000, 1.0), RequestBudget(clock, 100000, 60))
    return OnceRunner(clock, guard, RetryPolicy(retries=retries, initial_delay_s=1, jitter_percent=0),
                      lambda *a, **k: None, settle_s=settle_s)


async def drive(clock: FakeClock, coro: Any) -> Any:
    """Run `coro`, moving the fake clock whenever everything is asleep."""
    task = asyncio.ensure_future(coro)
    while not task.done():
        await asyncio.sleep(0)
        if not task.done():
            clock.advance(0.5)
    return task.result()


def ambiguous(status: int = 503) -> Failure:
    return Failure("http", "stored, then answered 5xx", status=status)


async def test_a_call_notion_did_is_not_repeated():
    clock = FakeClock()
    call, check = Script(ambiguous(504)), Script(OK)
    assert await drive(clock, runner(clock).run("complete", call, check)) == OK
    assert call.calls == 1 and check.calls == 1


async def test_a_call_notion_did_not_do_is_repeated():
    clock = FakeClock()
    call, check = Script(ambiguous(), OK), Script(None)
    assert await drive(clock, runner(clock).run("complete", call, check)) == OK
    assert call.calls == 2 and check.calls == 1


async def test_a_refusal_after_a_lost_answer_is_decided_from_notions_state():
    # The send landed but its answer was lost; the repeat is refused as "not pending".
    clock = FakeClock()
    refusal = Failure("http", "is not in the pending status (its status is uploaded)", status=400)
    call, check = Script(ambiguous(), refusal), Script(None, OK)
    assert await drive(clock, runner(clock).run("send", call, check)) == OK
    assert call.calls == 2


async def test_a_plain_refusal_is_raised_without_a_repeat():
    clock = FakeClock()
    refusal = Failure("http", "missing parts", status=400)
    call, check = Script(refusal), Script(None)
    with pytest.raises(Failure):
        await drive(clock, runner(clock).run("complete", call, check))
    assert call.calls == 1


async def test_nothing_reached_notion_means_no_check():
    clock = FakeClock()
    call, check = Script(Failure("connect", "refused"), Failure("http", "slow down", status=429), OK), Script(OK)
    assert await drive(clock, runner(clock).run("create", call, check)) == OK
    assert call.calls == 3 and check.calls == 0


async def test_an_unreadable_state_is_undecided_never_a_repeat():
    clock = FakeClock()
    call, check = Script(ambiguous()), Script(Failure("timeout", "stalled"))
    with pytest.raises(Undecided):
        await drive(clock, runner(clock, retries=2).run("attach", call, check))
    assert call.calls == 1 and check.calls == 3


async def test_a_junk_2xx_is_an_unknown_outcome():
    clock = FakeClock()
    call, check = Script(Failure("junk", "an HTML page with status 200")), Script(OK)
    assert await drive(clock, runner(clock).run("attach", call, check)) == OK
    assert call.calls == 1


async def test_after_a_timeout_an_append_is_repeated_only_once_notion_gave_up_on_it():
    clock = FakeClock()
    start = clock.monotonic()
    call, check = Script(Failure("timeout", "stalled"), OK), Script(None)
    assert await drive(clock, runner(clock, settle_s=60).run("attach", call, check, settle=True)) == OK
    assert call.calls == 2 and check.calls >= 2
    assert clock.monotonic() - start >= 60


async def test_an_append_still_landing_is_found_while_settling():
    clock = FakeClock()
    call, check = Script(Failure("transfer", "reset")), Script(None, None, OK)
    assert await drive(clock, runner(clock, settle_s=60).run("attach", call, check, settle=True)) == OK
    assert call.calls == 1


async def test_a_deadline_counts_the_wait_on_an_open_breaker():
    clock = FakeClock()
    breaker = CircuitBreaker("notion", clock, 1, 30.0)
    breaker.record_failure()  # open for 30 s
    guard = NotionGuard(clock, breaker, RequestBudget(clock, 100000, 60))
    once = OnceRunner(clock, guard, RetryPolicy(retries=5, initial_delay_s=1, jitter_percent=0), lambda *a, **k: None)
    call = Script(OK)
    with pytest.raises(Failure) as caught:
        await drive(clock, once.run("create", call, Script(None), deadline=clock.monotonic() + 20))
    assert caught.value.never_arrived and call.calls == 0
    assert clock.monotonic() < 1000 + 20 + 1


@pytest.mark.parametrize("operation, body, problem", [
    ("create", {"object": "file_upload", "id": "x", "status": "pending"}, None),
    ("create", {"object": "file_upload", "id": "x"}, "status"),
    ("create", {}, "file_upload"),
    ("create", ["not", "an", "object"], "JSON object"),
    ("attach", {"object": "list", "results": []}, "no block"),
    ("attach", {"object": "list", "results": [{"object": "block", "id": "b"}]}, None),
    ("children", {"object": "list", "results": []}, None),
    ("users_me", {"object": "user", "id": "u"}, "bot"),
])
def test_a_2xx_counts_only_with_the_documented_object(operation, body, problem):
    found = _shape_problem(operation, body)
    assert (found is None) if problem is None else (problem in found)


def test_retry_after_in_seconds_or_as_an_http_date():
    assert _parse_retry_after("7", 0) == 7
    assert _parse_retry_after("Thu, 01 Jan 1970 00:00:30 GMT", 10.0) == 20.0
    assert _parse_retry_after("soon", 0) is None


def test_holding_the_file_means_every_byte_and_every_part():
    upload = {"content_length": 30, "number_of_parts": {"total": 3, "sent": 3}}
    assert holding_problem(upload, 30, 3) is None
    assert "bytes" in holding_problem({**upload, "content_length": 31}, 30, 3)
    assert "parts" in holding_problem({**upload, "number_of_parts": {"total": 3, "sent": 2}}, 30, 3)
    assert "bytes" in holding_problem({"content_length": None}, 30, None)


def test_our_block_is_told_by_type_and_file_name_as_notion_shows_it():
    hosted = {"type": "file", "file": {"url": "https://files.example/ws/abc/r%C3%A9sum%C3%A9.pdf?X-Amz=1",
                                        "expiry_time": "2026-01-01T00:00:00.000Z"}}
    assert shows_file({"type": "pdf", "pdf": hosted}, "résumé.pdf", "pdf")
    assert not shows_file({"type": "file", "file": hosted}, "résumé.pdf", "pdf")
    assert shows_file({"type": "file", "file": {**hosted, "name": "a.txt"}}, "a.txt", "file")
    assert not shows_file({"type": "pdf", "pdf": hosted, "in_trash": True}, "résumé.pdf", "pdf")


async def test_the_retry_loop_honours_retry_after_attempts_and_deadline():
    from engine.retry import GaveUp, retrying

    clock = FakeClock()
    policy = RetryPolicy(retries=3, initial_delay_s=1, jitter_percent=0)
    flaky = Script(Failure("http", "busy", status=503, retry_after_s=7), OK)
    started = clock.monotonic()
    assert await drive(clock, retrying(flaky, policy=policy, clock=clock, retry_on=Failure,
                                       retry_after=lambda f: f.retry_after_s)) == OK
    assert clock.monotonic() - started >= 7  # Retry-After is a floor
    with pytest.raises(GaveUp):
        await drive(clock, retrying(Script(ambiguous()), policy=policy, clock=clock, retry_on=Failure))
    with pytest.raises(GaveUp):  # the next wait would pass the deadline
        await drive(clock, retrying(Script(ambiguous()), policy=policy, clock=clock, retry_on=Failure,
                                    deadline=clock.monotonic() + 0.5))
    refused = Script(Failure("http", "no", status=400))
    with pytest.raises(Failure):
        await drive(clock, retrying(refused, policy=policy, clock=clock, retry_on=Failure,
                                    may_retry=lambda f: f.retryable))
    assert refused.calls == 1
