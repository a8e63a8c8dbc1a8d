"""Injected failures: a seeded fault plan per request, and timed outages.

The plan (`--faults` or `POST /_emulator/faults`) is JSON:

    {"rate": 0.1, "kinds": {"503": 1, "reset": 1, ...}, "endpoints": ["send"],
     "stall_s": 600, "slow_s": 3, "seed": 1, "count": 5,
     "retry_after_s": 1, "rate_limit_reason": "public_api_request_rate_limit"}

`rate` is the share of matching requests that fail, `kinds` relative weights. `count`
(optional) stops injecting after that many faults, which makes "fail exactly the next send"
possible. Draws come from one `random.Random(seed)`, so a given plan and request sequence
always fail the same requests.

What each kind does is carried out by the handlers (`gate.py`; a send's in `api.py`); this module only decides.
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import RATE_LIMIT_REASON

ENDPOINTS: tuple[str, ...] = (
    "create",
    "send",
    "complete",
    "retrieve",
    "list",
    "users_me",
    "list_users",
    "retrieve_user",
    "attach",
    "children",
    "create_page",
    "retrieve_page",
    "update_page",
    "retrieve_block",
    "update_block",
    "delete_block",
    "retrieve_database",
    "query_database",
    "retrieve_data_source",
    "query_data_source",
)

STATUS_KINDS: tuple[str, ...] = ("500", "502", "503", "504", "409", "429", "529")
BEHAVIOUR_KINDS: tuple[str, ...] = ("reset", "stall", "slow", "ambiguous")
KINDS: tuple[str, ...] = STATUS_KINDS + BEHAVIOUR_KINDS

DEFAULT_KINDS: dict[str, float] = {"500": 1.0, "502": 1.0, "503": 1.0, "504": 1.0}

_KEYS = {
    "rate",
    "kinds",
    "endpoints",
    "stall_s",
    "slow_s",
    "seed",
    "count",
    "retry_after_s",
    "rate_limit_reason",
}


class FaultConfigError(ValueError):
    """The fault JSON is not valid; the message says why."""


@dataclass(frozen=True)
class FaultPlan:
    rate: float = 0.0
    kinds: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_KINDS))
    endpoints: frozenset[str] = frozenset(ENDPOINTS)
    stall_s: float = 600.0
    slow_s: float = 3.0
    seed: int = 0
    count: int | None = None
    retry_after_s: float = 1.0
    rate_limit_reason: str = RATE_LIMIT_REASON

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> "FaultPlan":
        if not isinstance(raw, Mapping):
            raise FaultConfigError("the fault plan must be a JSON object")
        unknown = set(raw) - _KEYS
        if unknown:
            raise FaultConfigError(f"unknown keys: {', '.join(sorted(unknown))}")
        rate = _number(raw.get("rate", 0.0), "rate")
        if not 0.0 <= rate <= 1.0:
            raise FaultConfigError("rate must be between 0 and 1")
        kinds_raw = raw.get("kinds", DEFAULT_KINDS)
        if not isinstance(kinds_raw, Mapping) or not kinds_raw:
            raise FaultConfigError("kinds must be a non-empty object of kind -> weight")
        kinds: dict[str, float] = {}
        for kind, weight in kinds_raw.items():
            if kind not in KINDS:
                raise FaultConfigError(f"unknown fault kind {kind!r}; known: {', '.join(KINDS)}")
            w = _number(weight, f"kinds.{kind}")
            if w < 0:
                raise FaultConfigError(f"kinds.{kind} must be ≥ 0")
            if w > 0:
                kinds[kind] = w
        if rate > 0 and not kinds:
            raise FaultConfigError("at least one kind needs a weight > 0")
        endpoints_raw = raw.get("endpoints", list(ENDPOINTS))
        if not isinstance(endpoints_raw, list) or not all(isinstance(e, str) for e in endpoints_raw):
            raise FaultConfigError("endpoints must be a list of endpoint names")
        bad = [e for e in endpoints_raw if e not in ENDPOINTS]
        if bad:
            raise FaultConfigError(
                f"unknown endpoints: {', '.join(bad)}; known: {', '.join(ENDPOINTS)}"
            )
        count = raw.get("count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise FaultConfigError("count must be a non-negative integer")
        seed = raw.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise FaultConfigError("seed must be an integer")
        reason = raw.get("rate_limit_reason", RATE_LIMIT_REASON)
        if not isinstance(reason, str) or not reason:
            raise FaultConfigError("rate_limit_reason must be a string")
        plan = cls(
            rate=rate,
            kinds=kinds,
            endpoints=frozenset(endpoints_raw),
            stall_s=_number(raw.get("stall_s", 600.0), "stall_s"),
            slow_s=_number(raw.get("slow_s", 3.0), "slow_s"),
            seed=seed,
            count=count,
            retry_after_s=_number(raw.get("retry_after_s", 1.0), "retry_after_s"),
            rate_limit_reason=reason,
        )
        if plan.stall_s < 0 or plan.slow_s < 0 or plan.retry_after_s < 0:
            raise FaultConfigError("stall_s, slow_s and retry_after_s must be ≥ 0")
        return plan

    def describe(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "kinds": dict(self.kinds),
            "endpoints": sorted(self.endpoints),
            "stall_s": self.stall_s,
            "slow_s": self.slow_s,
            "seed": self.seed,
            "count": self.count,
            "retry_after_s": self.retry_after_s,
            "rate_limit_reason": self.rate_limit_reason,
        }


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FaultConfigError(f"{name} must be a number")
    return float(value)


class FaultInjector:
    """Decides, request by request, whether and how a request fails."""

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self.injected: dict[str, int] = {}
        self.set_plan(plan or FaultPlan())

    def set_plan(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._rng = random.Random(plan.seed)
        self._left = plan.count
        self._kinds = list(plan.kinds)
        self._weights = [plan.kinds[k] for k in self._kinds]

    def pick(self, endpoint: str) -> str | None:
        plan = self.plan
        if plan.rate <= 0 or endpoint not in plan.endpoints or self._left == 0:
            return None
        if self._rng.random() >= plan.rate:
            return None
        kind = self._rng.choices(self._kinds, weights=self._weights)[0]
        if self._left is not None:
            self._left -= 1
        self.injected[kind] = self.injected.get(kind, 0) + 1
        return kind

    def ambiguous_status(self) -> int:
        return self._rng.choice((503, 504))

    def describe(self) -> dict[str, Any]:
        out = self.plan.describe()
        out["remaining"] = self._left
        return out


@dataclass
class Outage:
    """`POST /_emulator/outage`: every /v1 request fails with `status` until it ends."""

    clock: Callable[[], float] = time.monotonic
    until: float = 0.0
    status: int = 503

    def start(self, seconds: float, status: int) -> None:
        self.until = self.clock() + seconds
        self.status = status

    def remaining_s(self) -> float:
        return max(0.0, self.until - self.clock())

    def active(self) -> bool:
        return self.remaining_s() > 0
