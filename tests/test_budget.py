"""Notion's request budget (engine/budget.py): the bucket's arithmetic on a fake clock, the proof
that Notion always has a token when it counts one of our requests, whatever moment it picks,
and the same bucket shared through a real redis-server."""
from __future__ import annotations

import asyncio
import heapq
import math
import random
import time

import pytest

from engine.budget import UNANSWERED_GRACE_S, RequestBudget, SharedRequestBudget
from engine.clock import FakeClock, SystemClock
from engine.redis import RedisConnection

# --- the bucket on a fake clock ------------------------------------------------------------------

@pytest.mark.inprocess
def test_budget_allows_a_burst_then_paces():
    clock = FakeClock()
    budget = RequestBudget(clock, requests=180, window_s=60)
    assert budget.capacity == 179  # one below Notion's bucket (see capacity_for)
    for _ in range(179):
        ticket = budget.try_take()
        assert ticket is not None
        budget.settle(ticket, answered=True)
    assert budget.try_take() is None
    assert budget.wait_s() == pytest.approx(1 / 3)
    clock.advance(1 / 3)
    assert budget.try_take() is not None and budget.try_take() is None


@pytest.mark.inprocess
def test_requests_in_flight_hold_the_bucket_below_its_capacity():
    clock = FakeClock()
    budget = RequestBudget(clock, requests=10, window_s=1)  # 9 tokens, 10/s
    flying = [budget.try_take() for _ in range(4)]
    assert all(flying) and budget.in_flight == 4
    clock.advance(60)
    assert budget.tokens == pytest.approx(5)  # not 9: Notion may not have counted the 4 yet
    budget.settle(flying[0], answered=True)
    assert budget.tokens == pytest.approx(5)  # settling frees room, refill fills it
    clock.advance(0.1)
    assert budget.tokens == pytest.approx(6)
    clock.advance(60)
    assert budget.tokens == pytest.approx(6)


@pytest.mark.inprocess
def test_a_request_without_an_answer_stays_in_flight_for_a_grace():
    clock = FakeClock()
    budget = RequestBudget(clock, requests=10, window_s=1)
    ticket = budget.try_take()
    assert ticket is not None
    budget.settle(ticket, answered=False)
    clock.advance(UNANSWERED_GRACE_S - 0.01)
    assert budget.in_flight == 1 and budget.tokens == pytest.approx(8)
    clock.advance(0.02)
    assert budget.in_flight == 0
    clock.advance(0.1)
    assert budget.tokens == pytest.approx(9)


@pytest.mark.inprocess
def test_a_bucket_all_in_flight_waits_for_a_settle():
    clock = FakeClock()
    budget = RequestBudget(clock, requests=3, window_s=1)  # 2 tokens
    a, b = budget.try_take(), budget.try_take()
    assert a and b
    clock.advance(10)
    assert budget.try_take() is None and budget.wait_s() > 0
    budget.settle(a, answered=True)
    clock.advance(budget.wait_s())
    assert budget.try_take() is not None


@pytest.mark.inprocess
def test_budget_pauses_everyone_on_429():
    clock = FakeClock()
    budget = RequestBudget(clock, requests=10, window_s=1)
    assert budget.capacity == 9
    budget.pause(5)
    assert budget.wait_s() == pytest.approx(5)
    clock.advance(5)
    assert budget.try_take() is not None


@pytest.mark.inprocess
def test_budget_take_waits_on_the_clock():
    async def scenario():
        clock = FakeClock()
        budget = RequestBudget(clock, requests=1, window_s=10)
        first = budget.try_take()
        assert first is not None
        budget.settle(first, answered=True)
        waiter = asyncio.ensure_future(budget.take())
        await asyncio.sleep(0)
        assert not waiter.done()
        clock.advance(10)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert waiter.done()

    asyncio.run(scenario())


# --- Notion's side: whatever moment it counts a request, it has a token -------------------------

class NotionBucket:
    """Notion's bucket as NOTION_API.md describes it (180 per 60 s, bursts allowed), refilling
    smoothly or a whole token at a time."""

    def __init__(self, requests: int, window_s: float, stepped: bool) -> None:
        self.capacity = float(requests)
        self.rate = requests / window_s
        self.stepped = stepped
        self.level = self.capacity
        self.stamp = 0.0

    def count(self, now: float) -> bool:
        if self.stepped:
            earned = math.floor(now * self.rate) - math.floor(self.stamp * self.rate)
        else:
            earned = (now - self.stamp) * self.rate
        self.level = min(self.capacity, self.level + earned)
        self.stamp = now
        if self.level < 1 - 1e-9:
            return False
        self.level -= 1
        return True


COUNT, END, TRY = 0, 1, 2  # at one instant Notion counts before we learn the answer


def play(seed: int, count_at: str, stepped: bool, forget_in_flight: bool = False,
         workers: int = 8, requests: int = 500) -> tuple[int, float]:
    """Workers send requests as fast as the budget allows, each lasting 0.05-3 s, one in ten
    ending without an answer; Notion counts each at the moment `count_at` picks. Returns the
    requests Notion refused and the time the last one ended."""
    rng = random.Random(seed)
    clock = FakeClock(start=0.0)
    budget = RequestBudget(clock, requests=180, window_s=60)
    notion = NotionBucket(180, 60, stepped)
    events: list[tuple[float, int, int, object]] = []
    seq = 0

    def at(when: float, kind: int, data: object) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (when, kind, seq, data))

    for worker in range(workers):
        at(0.0, TRY, worker)
    sent = refused = 0
    end = 0.0
    while events:
        now, kind, _, data = heapq.heappop(events)
        clock.now = now
        if kind == COUNT:
            refused += not notion.count(now)
        elif kind == END:
            ticket, answered, worker = data
            budget.settle(ticket, answered)
            end = now
            at(now, TRY, worker)
        elif sent < requests:
            ticket = budget.try_take()
            if ticket is None:
                at(now + budget.wait_s(), TRY, data)
                continue
            if forget_in_flight:
                budget.settle(ticket, answered=True)
            sent += 1
            duration = rng.uniform(0.05, 3.0)
            answered = rng.random() >= 0.1
            # Unanswered, the request may reach Notion until the grace is over.
            latest = now + duration + (0.0 if answered else UNANSWERED_GRACE_S)
            counted = {"send": now, "answer": latest, "anywhere": rng.uniform(now, latest)}[count_at]
            at(counted, COUNT, None)
            at(now + duration, END, (ticket, answered, data))
    assert sent == requests
    return refused, end


@pytest.mark.inprocess
@pytest.mark.parametrize("count_at", ["send", "answer", "anywhere"])
@pytest.mark.parametrize("stepped", [False, True], ids=["smooth", "stepped"])
def test_notion_has_a_token_whenever_it_counts_our_request(count_at, stepped):
    for seed in range(20):
        refused, end = play(seed, count_at, stepped)
        assert refused == 0, (seed, refused)
        # and the budget is spent: 500 requests need (500 - 180) / 3 = 107 s at best
        assert end < 125, (seed, end)


@pytest.mark.inprocess
def test_a_bucket_that_forgets_its_requests_in_flight_earns_429s():
    """The same play with requests counted only when they leave: Notion, counting late, refuses
    some, so the test above can tell the two apart."""
    refused = sum(play(seed, "answer", stepped=False, forget_in_flight=True)[0] for seed in range(20))
    assert refused > 0


# --- the bucket shared through Redis --------------------------------------------------------------

def with_shared_buckets(redis_server, scenario) -> None:
    """Run `scenario(connection, bucket)` where bucket(lease_s=60) is one more instance's view of
    a shared bucket of 4 tokens refilling 5 a second, all on one real redis-server."""
    async def run():
        connection = RedisConnection(redis_server.url)

        def bucket(lease_s: float = 60) -> SharedRequestBudget:
            return SharedRequestBudget(SystemClock(), 5, 1.0, redis=connection, lease_s=lease_s)

        try:
            await scenario(connection, bucket)
        finally:
            await connection.close()

    asyncio.run(run())


def in_flight(connection: RedisConnection):
    return connection.client.zcard("relay:budget:in-flight")


# Each wait below only has to be long enough: the bucket's ceiling caps the refill, so what a
# slower machine adds changes nothing.

def test_the_shared_bucket_holds_requests_in_flight_below_its_capacity(redis_server):
    async def scenario(connection, bucket):
        one, two = bucket(), bucket()
        tickets = [await one.take(), await two.take(), await one.take()]
        assert all(t.shared for t in tickets)
        assert one.snapshot()["in_flight"] == 3  # as of its last call to Redis
        await asyncio.sleep(1.0)
        await two.take()
        # with 3 still in flight, the 4th empties the bucket however long it waited
        assert two.tokens == pytest.approx(0, abs=0.01)
        assert await in_flight(connection) == 4
        one.settle(tickets[0], answered=True)
        two.settle(tickets[1], answered=False)
        await asyncio.sleep(0.1)
        assert await in_flight(connection) == 3
        grace_end = await connection.client.zscore("relay:budget:in-flight", tickets[1].id)
        seconds, micros = await connection.client.time()
        assert grace_end == pytest.approx(seconds + micros / 1e6 + UNANSWERED_GRACE_S, abs=1)
        await asyncio.sleep(0.5)
        await one.take()  # room for one after the answered settle
        assert one.tokens == pytest.approx(0, abs=0.01)

    with_shared_buckets(redis_server, scenario)


def test_a_shared_ticket_leaves_with_its_lease_when_its_instance_dies(redis_server):
    async def scenario(connection, bucket):
        dead = bucket(lease_s=0.3)
        await dead.take()
        await dead.take()
        assert await in_flight(connection) == 2
        await asyncio.sleep(0.5)  # the leases end
        alive = bucket()
        ticket = await alive.take()
        assert await in_flight(connection) == 1
        alive.settle(ticket, answered=True)
        await asyncio.sleep(1.0)  # refilled to all 4 tokens: the dead instance's 2 count no more
        await alive.take()
        assert alive.tokens == pytest.approx(3, abs=0.01)

    with_shared_buckets(redis_server, scenario)


def test_a_429_empties_the_shared_bucket_for_every_instance(redis_server):
    async def scenario(connection, bucket):
        one, two = bucket(), bucket()
        one.pause(0.5)
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await two.take()
        assert time.monotonic() - started >= 0.3
        assert two.snapshot()["rate_limited"] == 0 and one.snapshot()["rate_limited"] == 1

    with_shared_buckets(redis_server, scenario)
