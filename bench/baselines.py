"""The two floors the relay is compared with, each run as its own process so its CPU is its own.

    python -m bench.baselines sink --out-dir DIR
        A bare Tornado @stream_request_body app that writes a PUT body to DIR/NAME: the least any
        Tornado front door that spools to disk must do. Prints "sink listening on http://…".
    python -m bench.baselines curl --api URL --filename F --content-type T PART...
        A bare libcurl uploader: creates a Notion file upload, sends every part file with
        CurlMime add_file (libcurl reads the file), completes it. Prints "curl uploader ready",
        starts on SIGUSR1 (so the parent can read its CPU time after start-up), prints
        "curl uploader result {json}", then waits to be terminated.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import tornado.httpserver
import tornado.netutil
import tornado.web

from bench.client import Http, HttpError, Response

NOTION_VERSION = "2025-09-03"
# A 429 from the emulator is waited out, like the relay does; anything else is a failure.
MAX_RATE_LIMIT_WAITS = 20

SINK_READY = r"sink listening on (http://\S+)"
CURL_READY = r"curl uploader ready"
CURL_RESULT_PREFIX = "curl uploader result "


# --- bare Tornado sink ---------------------------------------------------------------------

def make_sink_app(out_dir: Path) -> tornado.web.Application:
    @tornado.web.stream_request_body
    class SinkHandler(tornado.web.RequestHandler):
        def prepare(self) -> None:
            # Tornado's default body limit is 100 MB; the sink takes any size.
            self.request.connection.set_max_body_size(2**63)
            self._received = 0
            self._file = open(out_dir / self.path_args[0], "wb")

        def data_received(self, chunk: bytes) -> None:
            self._file.write(chunk)
            self._received += len(chunk)

        def put(self, name: str) -> None:
            self._file.close()
            self.write({"name": name, "bytes": self._received})

        def on_connection_close(self) -> None:
            # A client that goes away mid-body must not leave the file open.
            if hasattr(self, "_file") and not self._file.closed:
                self._file.close()

    return tornado.web.Application([(r"/sink/([A-Za-z0-9._-]+)", SinkHandler)])


async def _serve_sink(out_dir: Path) -> None:
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    # body_timeout is a deadline for the whole body (DESIGN.md quirk): make it larger than any run.
    server = tornado.httpserver.HTTPServer(make_sink_app(out_dir), body_timeout=6 * 3600)
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    print(f"sink listening on http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


# --- bare libcurl uploader -----------------------------------------------------------------

def upload_parts(api: str, token: str, parts: Sequence[Path], filename: str, content_type: str) -> str:
    """Create, send every part, complete; returns the Notion file upload id."""
    headers = {"Authorization": f"Bearer {token}", "Notion-Version": NOTION_VERSION}
    multi = len(parts) > 1
    with Http(headers) as http:
        create = {"filename": filename, "content_type": content_type}
        if multi:
            create.update(mode="multi_part", number_of_parts=len(parts))
        upload = _ok(http.json("POST", f"{api}/v1/file_uploads", create), "create").json()
        for number, part in enumerate(parts, start=1):
            fields = {"part_number": str(number)} if multi else {}
            url = f"{api}/v1/file_uploads/{upload['id']}/send"
            _send_part(http, url, part, filename, content_type, fields)
        if multi:
            _ok(http.json("POST", f"{api}/v1/file_uploads/{upload['id']}/complete"), "complete")
        final = _ok(http.json("GET", f"{api}/v1/file_uploads/{upload['id']}"), "retrieve").json()
        if final.get("status") != "uploaded":
            raise HttpError(f"upload {upload['id']} ended as {final.get('status')!r}, not uploaded")
        return str(upload["id"])


def _send_part(
    http: Http, url: str, part: Path, filename: str, content_type: str, fields: dict[str, str],
) -> None:
    for _ in range(MAX_RATE_LIMIT_WAITS):
        answer = http.send_file_part(url, part, filename, content_type, fields)
        if answer.status != 429:
            _ok(answer, f"send {part.name}")
            return
        time.sleep(float(answer.headers.get("retry-after", "1")))
    _ok(answer, f"send {part.name} (rate limited {MAX_RATE_LIMIT_WAITS} times)")


def _ok(answer: Response, what: str) -> Response:
    if answer.status != 200:
        raise HttpError(f"{what}: HTTP {answer.status}: {answer.body[:500]!r}")
    return answer


def _run_curl(args: argparse.Namespace) -> int:
    # Block SIGUSR1 before announcing readiness so an early signal waits for sigwait.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    print("curl uploader ready", flush=True)
    signal.sigwait({signal.SIGUSR1})
    try:
        file_id = upload_parts(args.api, args.token, [Path(p) for p in args.parts],
                               args.filename, args.content_type)
        result = {"ok": True, "file_upload_id": file_id}
    except Exception as exc:  # reported to the parent as data, not as a trace
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(CURL_RESULT_PREFIX + json.dumps(result), flush=True)
    # Stay alive (idle) so the parent reads the final CPU time of this process; it ends us.
    while True:
        signal.pause()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines")
    sub = parser.add_subparsers(dest="which", required=True)
    sink = sub.add_parser("sink")
    sink.add_argument("--out-dir", type=Path, required=True)
    curl = sub.add_parser("curl")
    curl.add_argument("--api", required=True)
    curl.add_argument("--token", default=os.environ.get("NOTION_TOKEN", "emulator-token"))
    curl.add_argument("--filename", required=True)
    curl.add_argument("--content-type", required=True)
    curl.add_argument("parts", nargs="+")
    args = parser.parse_args(argv)
    if args.which == "sink":
        asyncio.run(_serve_sink(args.out_dir))
        return 0
    return _run_curl(args)


if __name__ == "__main__":
    sys.exit(main())
