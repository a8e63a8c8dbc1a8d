"""A webhook receiver for tests: verifies every delivery's signature with the Standard Webhooks
algorithm, written here independently of engine/webhooks.py, and with the `standardwebhooks`
package (the reference verifier), and keeps what arrived.

It runs in threads of the test process (http.server), so a test can stop it (connections
refused), make it hang (it accepts and never answers), fail, or answer 410, and start it again
on the same port.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from engine.embedded_redis import free_tcp_port


def spec_verify(secret: str, headers: dict[str, str], body: bytes, tolerance_s: float = 300) -> bool:
    """The spec's verification, from https://www.standardwebhooks.com/: the key is the base64
    after whsec_; the signed content is "{webhook-id}.{webhook-timestamp}.{body}"; the header
    holds space-separated "v1,<base64 HMAC-SHA256>"; a timestamp far from now is refused."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = lower.get("webhook-id"), lower.get("webhook-timestamp"), lower.get("webhook-signature")
    if not (msg_id and stamp and signatures) or not stamp.isdigit():
        return False
    if abs(time.time() - int(stamp)) > tolerance_s:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    for item in signatures.split(" "):
        version, _, value = item.partition(",")
        if version == "v1" and hmac.compare_digest(base64.b64decode(value), expected):
            return True
    return False


@dataclass
class Delivery:
    id: str
    timestamp: int
    body: bytes
    event: dict[str, Any]
    verified: bool
    reference_verified: bool
    status: int  # what the receiver answered


@dataclass
class Receiver:
    secret: str
    port: int = field(default_factory=free_tcp_port)
    # What to answer: "ok" (204), "fail" (500), "gone" (410), "hang" (never, until the mode
    # changes), or a callable(Delivery count so far, event id) → status.
    mode: Any = "ok"
    # Called with each parsed event as it arrives, before the answer (e.g. to check that Notion
    # already holds the file an upload.completed announces).
    on_event: Callable[[dict[str, Any]], None] | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/notion?key=receiver-query-token-7c1f"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                if receiver._server is None:  # stopped: a kept-alive connection finds nobody home
                    self.close_connection = True
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = receiver._handle(dict(self.headers.items()), body)
                if status is None:  # hang: never answer while the mode says so
                    while receiver.mode == "hang" and receiver._server is not None:
                        time.sleep(0.05)
                    self.close_connection = True
                    return
                body = b"" if status in (204, 304) else b"ok"  # a 204 has no body
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def _handle(self, headers: dict[str, str], body: bytes) -> int | None:
        lower = {k.lower(): v for k, v in headers.items()}
        try:
            Webhook(self.secret).verify(body, headers)
            reference = True
        except WebhookVerificationError:
            reference = False
        mode = self.mode
        with self._lock:
            count = len(self.deliveries)
            if callable(mode):
                status = mode(count, lower.get("webhook-id"))
            else:
                status = {"ok": 204, "fail": 500, "gone": 410, "hang": None}[mode]
            try:
                event = json.loads(body)
            except ValueError:
                event = {}
            if self.on_event is not None and event:
                self.on_event(event)
            self.deliveries.append(Delivery(lower.get("webhook-id", ""), int(lower.get("webhook-timestamp", "0")),
                                            body, event, spec_verify(self.secret, headers, body), reference,
                                            status or 0))
        return status

    def accepted(self) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if 200 <= d.status < 300]

    def accepted_ids(self) -> list[str]:
        return [d.id for d in self.accepted()]

    def wait_for(self, predicate: Callable[["Receiver"], bool], timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.05)
        raise AssertionError(f"receiver: condition not met within {timeout_s} s "
                             f"({len(self.deliveries)} deliveries, {len(self.accepted())} accepted)")
