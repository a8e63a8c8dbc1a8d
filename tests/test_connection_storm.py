"""A storm of idle connections can neither starve health nor stop an upload (issue 12, item 6).

When the cap on open connections (MAX_CONNECTIONS) is reached, a new connection makes room by
closing the connection that has been idle longest: one that never sent a request, one that sent
only part of its headers (slowloris), or a keep-alive between requests. A connection in the
middle of a request (an upload's body) is never closed for it. Health and metrics are answered
even when every slot holds a request in progress.

Real processes: the relay on an ephemeral port, the emulator and a private Redis.
"""
from __future__ import annotations

import base64
import json
import multiprocessing
import resource
import selectors
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import requests

from handlers.slowclients import ConnectionCap
from harness.relay import MIB, make_file
from harness.stacks import Stack, unthrottled_stack
from harness.tusclient import upload

STORM = 1000
POLL_EVERY_S = 0.1
POLL_FOR_S = 10.0
ANSWER_WITHIN_S = 1.0
HEALTH = "/api/system/health"
TUS = {"Tus-Resumable": "1.0.0"}


def raise_own_fd_limit(needed: int) -> None:
    """This test process holds STORM sockets at once, more than a soft limit of 1024 allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            try:  # root may raise the hard limit too (the tests run as root here)
                resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            except (ValueError, OSError):
                pass
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        pytest.fail(f"cannot hold {STORM} sockets: RLIMIT_NOFILE is {soft} (run as root or raise the limit)")


def host_port(url: str) -> tuple[str, int]:
    host, port = url.split("//")[1].split(":")
    return host, int(port)


class Storm:
    """Holds `count` connections that have no request in progress: 45 % send nothing, 45 % part
    of a header block (slowloris), 10 % one whole request and then idle as keep-alives (a
    tenth only: a burst of whole requests is a different load). Whenever the relay closes one,
    it is opened again (at most `reopen_per_s` a second), so the relay stays at its cap for the
    whole test. It runs in a process of its own, as an attacker would: in the test's process
    its busy thread would hold the GIL and slow the health poller's own requests down."""

    KINDS = ("silent", "partial") * 9 + ("keepalive",) * 2

    def __init__(self, address: tuple[str, int], count: int, reopen_per_s: float) -> None:
        self.address = address
        self.count = count
        self.reopen_per_s = reopen_per_s
        self.selector = selectors.DefaultSelector()
        self.opened = 0
        self.closed_by_relay = 0
        self.failed_connects = 0
        self.held_min: int | None = None
        self._next_kind = 0

    def held(self) -> int:
        return len(self.selector.get_map())

    def open_one(self) -> None:
        kind = self.KINDS[self._next_kind % len(self.KINDS)]
        self._next_kind += 1
        try:
            s = socket.create_connection(self.address, timeout=5)
            if kind == "partial":
                s.sendall(b"GET " + HEALTH.encode() + b" HTTP/1.1\r\nHost: storm\r\nX-Slow: ")
            elif kind == "keepalive":
                s.sendall(b"GET " + HEALTH.encode() + b" HTTP/1.1\r\nHost: storm\r\n\r\n")
            s.setblocking(False)
        except OSError:
            self.failed_connects += 1
            return
        self.selector.register(s, selectors.EVENT_READ, kind)
        self.opened += 1

    def run(self, ready: Any, stop: Any) -> dict[str, Any]:
        started = time.monotonic()
        for _ in range(self.count):
            self.open_one()
            self._drain(0)
        opened_in_s = time.monotonic() - started
        ready.set()
        last = time.monotonic()
        allowance = 0.0
        while not stop.is_set():
            self._drain(0.02)
            now = time.monotonic()
            allowance = min(allowance + (now - last) * self.reopen_per_s, self.reopen_per_s / 10)
            last = now
            while self.held() < self.count and allowance >= 1:
                allowance -= 1
                self.open_one()
        return {"storm_connections": self.count, "storm_opened_in_s": round(opened_in_s, 2),
                "storm_opened": self.opened, "storm_closed_by_relay": self.closed_by_relay,
                "storm_failed_connects": self.failed_connects}

    def _drain(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            try:
                data = sock.recv(65536)  # a keep-alive's answer: read and forget
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                self.selector.unregister(sock)
                sock.close()
                self.closed_by_relay += 1


def run_storm(address: tuple[str, int], count: int, reopen_per_s: float, ready: Any, stop: Any,
              results: Any) -> None:
    """The storm's process (spawned: the test's process has threads)."""
    raise_own_fd_limit(count + 256)
    results.put(Storm(address, count, reopen_per_s).run(ready, stop))


class Poller(threading.Thread):
    """GET `path` on a new connection every `every_s`, as a platform's health check does."""

    def __init__(self, url: str, every_s: float) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.every_s = every_s
        self.stop = threading.Event()
        self.results: list[tuple[int | str, float]] = []  # (status or error, seconds)
        self.at: list[float] = []  # when each poll started, seconds after the poller did

    def run(self) -> None:
        next_at = begun = time.monotonic()
        while not self.stop.is_set():
            started = time.monotonic()
            self.at.append(started - begun)
            try:
                r = requests.get(self.url, timeout=(ANSWER_WITHIN_S * 2, ANSWER_WITHIN_S * 2),
                                 headers={"Connection": "close"})
                outcome: int | str = r.status_code
            except requests.RequestException as exc:
                outcome = type(exc).__name__
            self.results.append((outcome, time.monotonic() - started))
            next_at += self.every_s
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def slowest(self, n: int) -> list[tuple[float, int | str, float]]:
        """The n slowest polls: (seconds after start, outcome, milliseconds)."""
        polls = sorted(zip(self.at, self.results, strict=False), key=lambda p: -p[1][1])[:n]
        return [(round(at, 2), outcome, round(took * 1000, 1)) for at, (outcome, took) in polls]

    def good(self) -> int:
        return sum(1 for status, took in self.results if status == 200 and took <= ANSWER_WITHIN_S)


@pytest.fixture(scope="module")
def storm_stack(tmp_path_factory) -> Iterator[Stack]:
    # Default MAX_CONNECTIONS (200) and HEADER_TIMEOUT (30 s, longer than the test): the cap, not
    # the header deadline, is what the storm meets.
    stack = unthrottled_stack(tmp_path_factory.mktemp("storm"))
    yield stack
    stack.close()


def test_a_thousand_idle_connections_starve_neither_health_nor_an_upload(storm_stack, tmp_path):
    raise_own_fd_limit(STORM + 256)  # the storm's process inherits it
    relay, emulator = storm_stack.relay, storm_stack.emulator
    relay_proc = psutil.Process(relay.pid)
    fds_before, rss_before = relay_proc.num_fds(), relay_proc.memory_info().rss
    path = tmp_path / "normal.txt"
    sha = make_file(path, 12 * MIB)
    mp = multiprocessing.get_context("spawn")
    ready, stop, results = mp.Event(), mp.Event(), mp.Queue()
    storm = mp.Process(target=run_storm, args=(host_port(relay.url), STORM, 200.0, ready, stop, results),
                       daemon=True)
    storm.start()
    health = Poller(relay.url + HEALTH, POLL_EVERY_S)
    metrics = Poller(relay.url + "/metrics", 0.5)
    fds_peak = 0
    try:
        assert ready.wait(60), "the storm could not open its connections"
        health.start()
        metrics.start()
        upload_started = time.monotonic()
        result = upload(relay.url, path, 4 * MIB, deadline_s=120)
        upload_s = time.monotonic() - upload_started
        deadline = upload_started + POLL_FOR_S
        while time.monotonic() < deadline:  # keep polling for the whole window, the storm on
            fds_peak = max(fds_peak, relay_proc.num_fds())
            time.sleep(0.1)
        rss_storm = relay_proc.memory_info().rss
    finally:
        health.stop.set()
        metrics.stop.set()
        stop.set()
        health.join(10)
        metrics.join(10)
        storm_report = results.get(timeout=30) if storm.is_alive() or not results.empty() else {}
        storm.join(10)
        if storm.is_alive():
            storm.kill()

    took = sorted(t for _, t in health.results)
    report = {
        **storm_report,
        "health_polls": len(health.results), "health_ok_within_1s": health.good(),
        "health_p50_ms": round(statistics.median(took) * 1000, 1),
        "health_p99_ms": round(took[int(len(took) * 0.99) - 1] * 1000, 1), "health_max_ms": round(took[-1] * 1000, 1),
        "health_slowest": health.slowest(5),
        "metrics_polls": len(metrics.results), "metrics_ok_within_1s": metrics.good(),
        "upload_12MiB_s": round(upload_s, 2), "upload_errors": result.errors,
        "relay_fds_before": fds_before, "relay_fds_peak": fds_peak,
        "relay_rss_mib_before": round(rss_before / MIB, 1), "relay_rss_mib_storm": round(rss_storm / MIB, 1),
    }
    print("connection storm:", json.dumps(report))
    assert len(health.results) >= POLL_FOR_S / POLL_EVERY_S * 0.8, report
    assert health.good() >= 0.99 * len(health.results), report
    assert metrics.good() == len(metrics.results), report
    status = relay.status(result.url.rsplit("/", 1)[-1])
    assert status["status"] == "completed", report
    assert emulator.upload(status["notion"]["file_upload_id"])["sha256"] == sha
    # The relay kept its cap (200 by default): the storm's other connections were closed, not piled up.
    assert report["storm_closed_by_relay"] >= STORM - 200, report
    assert fds_peak <= fds_before + 200 + 40, report
    assert requests.get(relay.url + HEALTH, timeout=5).status_code == 200


# --- which connection goes: the order, on a relay with a cap of 4 ---------------------------------

SMALL_CAP = 4


@pytest.fixture(scope="module")
def small_cap_stack(tmp_path_factory) -> Iterator[Stack]:
    stack = unthrottled_stack(tmp_path_factory.mktemp("smallcap"), MAX_CONNECTIONS=str(SMALL_CAP))
    yield stack
    stack.close()


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """One whole answer (status, body) from a blocking socket; a keep-alive stays usable."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    return int(head.split(b" ", 2)[1]), body


def get(address: tuple[str, int], path: str, sock: socket.socket | None = None) -> tuple[socket.socket, int, bytes]:
    """GET on a new connection (or `sock`), kept alive afterwards."""
    sock = sock or socket.create_connection(address, timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    status, body = read_answer(sock)
    return sock, status, body


def closed_by_relay(sock: socket.socket, within_s: float) -> bool:
    """Whether the relay closes `sock` (EOF or reset) within `within_s`; nothing may be sent to it."""
    sock.settimeout(within_s)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""  # data it was not sent would be a fault too
    except BlockingIOError:
        return True
    except ConnectionError:
        return False
    finally:
        sock.setblocking(True)


def create_upload(url: str, size: int) -> str:
    r = requests.post(f"{url}/files/", headers={
        **TUS, "Upload-Length": str(size), "Upload-Metadata": "filename " + base64.b64encode(b"held.txt").decode(),
        "Connection": "close"}, timeout=30)
    assert r.status_code == 201, r.text
    return "/files/" + r.headers["Location"].rsplit("/", 1)[-1]


class HeldPatch:
    """A tus PATCH whose headers were taken (the relay said 100 Continue) and half its body sent:
    a request in progress, held open by the test."""

    SIZE = 64 * 1024

    def __init__(self, address: tuple[str, int], path: str) -> None:
        self.body = bytes(range(256)) * (self.SIZE // 256)
        self.sock = socket.create_connection(address, timeout=30)
        self.sock.sendall((f"PATCH {path} HTTP/1.1\r\nHost: test\r\nTus-Resumable: 1.0.0\r\n"
                           f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
                           f"Content-Length: {self.SIZE}\r\nExpect: 100-continue\r\n\r\n").encode())
        continue_line = b""
        while not continue_line.endswith(b"\r\n\r\n"):
            chunk = self.sock.recv(1)
            assert chunk, f"closed before 100 Continue: {continue_line!r}"
            continue_line += chunk
        assert continue_line.startswith(b"HTTP/1.1 100"), continue_line
        self.sock.sendall(self.body[: self.SIZE // 2])

    def finish(self) -> int:
        self.sock.sendall(self.body[self.SIZE // 2:])
        status, _ = read_answer(self.sock)
        self.sock.close()
        return status


def test_at_the_cap_the_longest_idle_connection_goes_and_a_request_in_progress_stays(small_cap_stack):
    relay = small_cap_stack.relay
    address = host_port(relay.url)
    upload = HeldPatch(address, create_upload(relay.url, HeldPatch.SIZE))  # 1 of 4: a request in progress
    silent = socket.create_connection(address, timeout=10)  # 2: has sent nothing
    partial = socket.create_connection(address, timeout=10)  # 3: part of its headers (slowloris)
    partial.sendall(b"GET /api/system/health HTTP/1.1\r\nHost: te")
    # 4: one whole request, then idle as a keep-alive. The relay accepts in order, so once this
    # is answered, the two before it are open and idle — idle longer than this one.
    keepalive, status, _ = get(address, HEALTH)
    assert status == 200
    sockets = [upload.sock, silent, partial, keepalive]
    try:
        # Each new connection at the cap closes the one idle longest, and is answered.
        newcomers = []
        for expected_victim, survivors in ((silent, [partial, keepalive]), (partial, [keepalive]), (keepalive, [])):
            sock, status, _ = get(address, HEALTH)
            newcomers.append(sock)
            sockets.append(sock)
            assert status == 200
            assert closed_by_relay(expected_victim, within_s=5)
            assert all(still_open(s) for s in survivors)
        assert all(still_open(s) for s in newcomers)
        # The upload, in the middle of its body all along, goes on and finishes.
        assert still_open(upload.sock)
        assert upload.finish() == 204
        _, status, _ = get(address, HEALTH, sock=newcomers[-1])  # a newcomer, kept alive, serves on
        assert status == 200
    finally:
        for s in sockets:
            s.close()


def test_with_every_slot_serving_health_and_metrics_still_answer(small_cap_stack):
    relay = small_cap_stack.relay
    address = host_port(relay.url)
    paths = [create_upload(relay.url, HeldPatch.SIZE) for _ in range(SMALL_CAP)]
    uploads = [HeldPatch(address, path) for path in paths]  # every slot: a request in progress
    try:
        for path in (HEALTH, "/metrics"):
            sock, status, _ = get(address, path)
            sock.close()
            assert status == 200, path
        # Anything else waits: 503 + Retry-After, the relay's JSON, and the connection closes.
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(b"GET /api/openapi.json HTTP/1.1\r\nHost: test\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), head
        assert b"\r\nRetry-After: 5\r\n" in head and b"\r\nConnection: close\r\n" in head
        assert json.loads(body)["code"] == "unavailable"
        # The uploads were never touched, and finish.
        assert [u.finish() for u in uploads] == [204] * SMALL_CAP
        uploads = []
        assert requests.get(f"{relay.url}/api/openapi.json", timeout=10).status_code == 200
    finally:
        for u in uploads:
            u.sock.close()


# --- units -----------------------------------------------------------------------------------------

def make_cap(limit: int = 3, reserve: int = 2) -> ConnectionCap[str]:
    return ConnectionCap(limit, reserve, lambda path: path in ("/api/system/health", "/metrics"))


def test_cap_closes_the_oldest_idle_first_and_never_one_serving():
    cap = make_cap()
    assert cap.arrive("upload") == (True, None)
    assert cap.started("upload", "/files/x")  # a request in progress
    assert cap.arrive("a") == (True, None)
    assert cap.arrive("b") == (True, None)  # the cap (3) is reached
    assert cap.arrive("c") == (True, "a")  # the oldest idle goes
    cap.started("b", "/api/system/health")
    cap.waiting("b")  # b answered, a keep-alive again: idle since now, after c
    assert cap.arrive("d") == (True, "c")
    assert cap.arrive("e") == (True, "b")
    assert cap.arrive("f") == (True, "d")
    assert cap.open == 3 and cap.serving == 1 and cap.evicted == 4


def test_cap_admits_into_the_reserve_only_when_nothing_is_idle():
    cap = make_cap(limit=2, reserve=2)
    for conn in ("u1", "u2"):
        cap.arrive(conn)
        assert cap.started(conn, "/files/x")
    assert cap.arrive("h") == (True, None)  # beyond the cap, into the reserve
    assert cap.started("h", "/api/system/health")  # health is answered beyond the cap
    assert cap.arrive("m") == (True, None)
    assert cap.started("m", "/metrics")
    assert cap.arrive("x") == (False, None)  # nothing idle and the reserve is full
    cap.waiting("h")  # health answered: idle again, so a newcomer may take its place
    assert cap.arrive("y") == (True, "h")
    assert not cap.started("y", "/files/")  # two requests in progress already: refused
    assert cap.refused_requests == 1 and cap.refused_at_arrival == 1
    cap.forget("u1")  # an upload ended and its client closed
    cap.waiting("m")  # metrics answered
    assert cap.arrive("z") == (True, "m")  # the idle one goes before the refused one
    assert cap.started("z", "/files/")  # u2 alone in progress: a slot is free again
    # Nothing idle: a refused connection (its 503 already written, lingering) goes, none serving.
    assert cap.arrive("w") == (True, "y")
    assert cap.arrive("v") == (True, "w")
    assert cap.open == 3 and cap.serving == 2


def test_cap_forgets_closed_connections():
    cap = make_cap(limit=2)
    cap.arrive("a")
    cap.arrive("b")
    cap.forget("a")
    cap.forget("a")
    assert cap.arrive("c") == (True, None)
    assert cap.started("gone", "/") is True  # a connection the cap no longer counts is not refused
    assert cap.open == 2


def test_request_path():
    from handlers.slowclients import request_path
    assert request_path("GET /metrics?x=1 HTTP/1.1") == "/metrics"
    assert request_path("GET /api/system/health HTTP/1.1") == "/api/system/health"
    assert request_path("garbage") == ""


def test_the_open_files_limit_is_raised_to_the_hard_limit_when_low(monkeypatch):
    from handlers import slowclients
    limits = {"now": (1024, 4096)}
    monkeypatch.setattr(slowclients.resource, "getrlimit", lambda which: limits["now"])
    monkeypatch.setattr(slowclients.resource, "setrlimit", lambda which, value: limits.update(now=value))
    assert slowclients.fit_fd_limit(2000) == 2000
    assert limits["now"] == (4096, 4096)
    limits["now"] = (8192, 8192)
    assert slowclients.fit_fd_limit(200) == 200 and limits["now"] == (8192, 8192)  # enough: untouched
    limits["now"] = (512, 512)  # cannot be raised: the cap shrinks to fit
    fits = slowclients.fit_fd_limit(1000)
    assert fits < 1000 and fits + 2 * slowclients.reserve_for(fits) + slowclients.OTHER_FDS <= 512
