from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.embedded_redis import EmbeddedRedis, free_tcp_port
from harness.relay import RelayProcess, start_relay
from harness.stacks import Stack
from tests.support.emulator import emulator  # noqa: F401  (fixture)

# The browser fixtures (`browser`, `page`) for the Chromium test files.
pytest_plugins = ["tests.support.browser"]

def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The in-process tier runs first: it fails in seconds where an end-to-end run takes minutes."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("inprocess") else 1)


@pytest.fixture(autouse=True)
def _no_sockets_or_processes_in_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """An `inprocess` test that opens a connection, binds a port or starts a process fails."""
    if request.node.get_closest_marker("inprocess") is None:
        return

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an in-process test may not use a socket or a subprocess")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "bind", refuse)
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


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
