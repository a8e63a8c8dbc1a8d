from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from engine.embedded_redis import EmbeddedRedis, free_tcp_port
from tests.support.emulator import emulator  # noqa: F401  (fixture)
from tests.support.relay import RelayProcess, start_relay
from tests.support.stacks import Stack


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A private redis-server on a TCP port of its own; tests may kill and restart it."""
    server = EmbeddedRedis(tmp_path / "redis", tcp_port=free_tcp_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def relay_factory(tmp_path: Path, emulator, redis_server) -> Iterator[Callable[..., RelayProcess]]:  # noqa: F811
    started: list[RelayProcess] = []

    def make(name: str = "relay", **env: str) -> RelayProcess:
        proc = start_relay(tmp_path / name, emulator.url, redis_server.url, **env)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture
def relay(relay_factory) -> RelayProcess:
    return relay_factory()


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("stack"))
    yield s
    s.close()
