"""Slow clients: 50 connections that trickle a byte every few seconds neither stop a normal
upload nor stay open: the body watch and the header deadline close them."""
from __future__ import annotations

import base64
import socket
import threading
import time

import requests

from harness.relay import MIB, make_file
from harness.tusclient import upload
from tests.test_tus_protocol import TUS


def test_fifty_tricklers_do_not_stop_an_upload_and_are_closed(relay_factory, emulator, tmp_path):
    relay = relay_factory(BODY_IDLE_TIMEOUT="3", BODY_MIN_RATE="1024", HEADER_TIMEOUT="4",
                          MAX_CONCURRENT_UPLOADS="60")
    host, port = relay.url.split("//")[1].split(":")
    urls = []
    for i in range(25):
        r = requests.post(f"{relay.url}/files/", headers={
            **TUS, "Upload-Length": str(MIB), "Upload-Metadata": "filename " + base64.b64encode(b"slow.txt").decode()},
            timeout=30)
        urls.append(r.headers["Location"].split(port, 1)[1])
    closed_after: list[float] = []
    lock = threading.Lock()
    started = time.monotonic()

    def trickle(first: bytes, rest: bytes) -> None:
        s = socket.create_connection((host, int(port)), timeout=30)
        try:
            s.sendall(first)
            for byte in rest:
                if time.monotonic() - started > 40:
                    return
                time.sleep(2)  # the slow client's own pace, the behaviour under test
                s.sendall(bytes([byte]))
        except OSError:
            with lock:
                closed_after.append(time.monotonic() - started)
        finally:
            s.close()

    threads = []
    for path in urls:  # 25 that trickle a request body
        head = (f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\n"
                f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
                f"Content-Length: {MIB}\r\n\r\n").encode()
        threads.append(threading.Thread(target=trickle, args=(head, b"x" * 100), daemon=True))
    for _ in range(25):  # 25 that trickle their headers
        threads.append(threading.Thread(target=trickle, args=(b"G", b"ET /api/system/health HTTP/1.1\r\n" * 3),
                                        daemon=True))
    for t in threads:
        t.start()
    path = tmp_path / "normal.txt"
    sha = make_file(path, 24 * MIB)
    result = upload(relay.url, path, 8 * MIB, deadline_s=60)
    status = relay.status(result.url.rsplit("/", 1)[-1])
    assert status["status"] == "completed"
    assert emulator.upload(status["notion"]["file_upload_id"])["sha256"] == sha
    for t in threads:
        t.join(45)
    assert len(closed_after) == 50, f"only {len(closed_after)} of 50 slow connections were closed"
    assert max(closed_after) < 20
    assert requests.get(f"{relay.url}/api/system/health", timeout=5).status_code == 200
