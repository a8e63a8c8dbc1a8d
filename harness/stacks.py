"""A Stack: an emulator (with optional flags), a private Redis and a relay, started together."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from engine.embedded_redis import EmbeddedRedis, free_tcp_port
from harness.emulator import start_emulator
from harness.relay import start_relay

# Far above what a test needs: for tests about something other than throttling, where a 429
# or a 503 for load would only get in the way (throttling itself: test_resilience.py).
UNTHROTTLED = "100000/60"


class Stack:
    def __init__(self, folder: Path, emulator_args: Sequence[str] = (), **relay_env: str) -> None:
        self.folder = folder
        self.relay = None
        self.emulator = start_emulator(folder / "emulator", *emulator_args)
        self.redis = EmbeddedRedis(folder / "redis", tcp_port=free_tcp_port())
        try:
            self.redis.start()
            self.relay = start_relay(folder / "relay", self.emulator.url, self.redis.url, **relay_env)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.relay is not None:
            self.relay.stop()
        self.redis.stop()
        self.emulator.stop()


def unthrottled_stack(folder: Path, emulator_args: Sequence[str] = (), **relay_env: str) -> Stack:
    """Notion's rate limit, the relay's budget and its upload cap turned far up."""
    env = {"NOTION_RATE_LIMIT": UNTHROTTLED, "MAX_CONCURRENT_UPLOADS": "100000", **relay_env}
    return Stack(folder, ["--rate-limit", UNTHROTTLED, *emulator_args], **env)
