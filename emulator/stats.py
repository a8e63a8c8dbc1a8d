"""Counters for `GET /_emulator/stats`: what the client under test actually did."""
from __future__ import annotations

from collections import defaultdict
from typing import Any


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        # endpoint -> outcome ("200", "400", …, "reset", "disconnected") -> count
        self.requests: defaultdict[str, defaultdict[str, int]] = defaultdict(
            lambda: defaultdict(int)
        )
        self.rate_limited = 0  # 429s issued by the token buckets (not injected ones)
        self.in_flight = 0
        self.max_in_flight = 0
        self.in_flight_by_endpoint: defaultdict[str, int] = defaultdict(int)
        self.max_in_flight_by_endpoint: defaultdict[str, int] = defaultdict(int)
        self.bytes_received = 0  # request body bytes on /v1

    def begin(self, endpoint: str) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.in_flight_by_endpoint[endpoint] += 1
        self.max_in_flight_by_endpoint[endpoint] = max(
            self.max_in_flight_by_endpoint[endpoint], self.in_flight_by_endpoint[endpoint]
        )

    def end(self, endpoint: str, outcome: str) -> None:
        self.in_flight -= 1
        self.in_flight_by_endpoint[endpoint] -= 1
        self.requests[endpoint][outcome] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": {ep: dict(outcomes) for ep, outcomes in self.requests.items()},
            "requests_total": sum(sum(o.values()) for o in self.requests.values()),
            "rate_limited": self.rate_limited,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "max_in_flight_by_endpoint": dict(self.max_in_flight_by_endpoint),
            "bytes_received": self.bytes_received,
        }
