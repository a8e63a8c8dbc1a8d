"""`python -m emulator --host H --port P --data-dir D [...]`: serve until SIGTERM/SIGINT.

Prints exactly one line, `emulator listening on http://HOST:PORT`, once the socket listens
(with the real port when --port 0), so scripts and tests can find it. The state under
--data-dir is reloaded at start (store.py, journal.py); a second emulator on the same data
directory is refused (exit 1).
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback
from tornado.netutil import bind_sockets

from . import imports
from .app import make_app
from .config import EmulatorConfig, parse_args
from .journal import DataDirInUse
from .rules import MAX_SEND_BODY_BYTES
from .state import Emulator

# Bigger than Tornado's 64 KiB default: fewer Python calls per MiB received, and still
# only a fraction of a MiB per connection in memory.
READ_CHUNK_BYTES = 256 * 1024
SHUTDOWN_GRACE_S = 2.0


async def serve(config: EmulatorConfig) -> None:
    emu = Emulator(config)
    app = make_app(emu)
    if config.access_log:
        # Nothing else configures logging in the emulator: without a handler Tornado's
        # INFO lines (every 2xx) would go nowhere.
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s.%(msecs)03d %(message)s", datefmt="%H:%M:%S")
    else:
        # Tornado logs every 4xx/5xx as a warning; under a benchmark's 429s and injected
        # faults that is thousands of lines. /_emulator/stats has the counts instead.
        app.settings["log_function"] = lambda handler: None
    server = HTTPServer(
        app,
        chunk_size=READ_CHUNK_BYTES,
        max_body_size=MAX_SEND_BODY_BYTES,
        idle_connection_timeout=300,
    )
    sockets = bind(config)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    if config.port_file is not None:
        remember_port(config.port_file, port)
    # Signal handlers before the ready line: a supervisor may signal as soon as it reads it.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sweeper = PeriodicCallback(emu.store.sweep_expired, config.sweep_interval_s * 1000)
    sweeper.start()
    resume_imports(emu)
    host = f"[{config.host}]" if ":" in config.host else config.host  # IPv6 literal in a URL
    print(f"emulator listening on http://{host}:{port}", flush=True)

    await stop.wait()
    # Order: stop accepting, release stalled requests, then close what is still open.
    server.stop()
    sweeper.stop()
    emu.shutdown()
    try:
        await asyncio.wait_for(server.close_all_connections(), SHUTDOWN_GRACE_S)
    except TimeoutError:
        pass
    emu.store.close()


def resume_imports(emu: Emulator) -> None:
    """external_url uploads still pending were being imported when the emulator stopped:
    begin again (their partial download was removed at start)."""
    now = emu.clock.now()
    for upload in list(emu.store.uploads.values()):
        if upload.mode == "external_url" and upload.status(now) == "pending":
            imports.start(emu, upload)


def bind(config: EmulatorConfig) -> list[socket.socket]:
    """The configured port; with --port 0 and a --port-file, the remembered port first."""
    if config.port == 0 and config.port_file is not None:
        try:
            remembered = int(config.port_file.read_text().strip())
        except (OSError, ValueError):
            remembered = 0
        if 0 < remembered < 65536:
            try:
                return bind_sockets(remembered, address=config.host)
            except OSError:
                pass  # taken meanwhile: any free port will do
    return bind_sockets(config.port, address=config.host)


def remember_port(path: Path, port: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{port}\n")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        asyncio.run(serve(config))
    except DataDirInUse as e:
        print(f"emulator: cannot start: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
