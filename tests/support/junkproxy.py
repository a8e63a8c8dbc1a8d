"""A proxy between the relay and the emulator that answers some requests itself with a 2xx and
junk: an HTML error page, a cut JSON body, an object without its fields. Such requests are NOT
passed on, so Notion never saw them; the relay cannot know that and must decide from Notion's
state. Seeded, so a run is repeatable.

    python -m tests.support.junkproxy --upstream URL --rate 0.3 --seed 1 \
        --endpoints create,send,complete,attach,retrieve

prints `junk proxy listening on http://127.0.0.1:PORT`; `GET /_proxy/stats` counts the junk.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import signal
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

ROUTES = [
    ("POST", re.compile(r"^/v1/file_uploads/?$"), "create"),
    ("POST", re.compile(r"^/v1/file_uploads/[^/]+/send$"), "send"),
    ("POST", re.compile(r"^/v1/file_uploads/[^/]+/complete$"), "complete"),
    ("GET", re.compile(r"^/v1/file_uploads/[0-9a-fA-F-]+$"), "retrieve"),
    ("PATCH", re.compile(r"^/v1/blocks/[^/]+/children$"), "attach"),
]
JUNK = [
    ("text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
    ("application/json", b'{"object": "file_upload", "id": "3c90c3cc-0d44-4b50-8888-8dd2'),
    ("application/json", b'{"object": "file_upload"}'),
    ("application/json", b"{}"),
    ("application/json", b'{"object": "list"}'),
    ("application/json", b""),
]
PASSED_HEADERS = ("Authorization", "Notion-Version", "Content-Type", "Accept", "User-Agent")
RETURNED_HEADERS = ("Content-Type", "Retry-After", "X-Request-Id", "X-Notion-Request-Id")


class Proxy:
    def __init__(self, upstream: str, rate: float, endpoints: set[str], seed: int) -> None:
        self.upstream = upstream.rstrip("/")
        self.rate = rate
        self.endpoints = endpoints
        self.seed = seed
        # One generator per endpoint: the k-th complete is junk or not whatever the interleaving
        # of concurrent uploads, so a run is repeatable.
        self.randoms = {name: random.Random(f"{seed}:{name}") for _, _, name in ROUTES}
        self.junk: dict[str, int] = {}
        self.passed: dict[str, int] = {}
        self.http = AsyncHTTPClient(max_body_size=64 * 2**20, max_buffer_size=64 * 2**20)


class ForwardHandler(tornado.web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "POST", "PATCH", "DELETE", "PUT")

    def initialize(self, proxy: Proxy) -> None:
        self.proxy = proxy

    def endpoint(self) -> str | None:
        for method, pattern, name in ROUTES:
            if self.request.method == method and pattern.match(self.request.path):
                return name
        return None

    async def handle(self) -> None:
        proxy = self.proxy
        name = self.endpoint()
        if name in proxy.endpoints and proxy.randoms[name].random() < proxy.rate:
            content_type, body = proxy.randoms[name].choice(JUNK)
            proxy.junk[name] = proxy.junk.get(name, 0) + 1
            self.set_status(200)
            self.set_header("Content-Type", content_type)
            self.finish(body)
            return
        proxy.passed[name or "other"] = proxy.passed.get(name or "other", 0) + 1
        headers = {h: self.request.headers[h] for h in PASSED_HEADERS if h in self.request.headers}
        method = self.request.method
        request = HTTPRequest(proxy.upstream + self.request.uri, method=method, headers=headers,
                              body=self.request.body if method in ("POST", "PATCH", "PUT") else None,
                              allow_nonstandard_methods=True, request_timeout=600, decompress_response=False)
        response = await proxy.http.fetch(request, raise_error=False)
        if response.code == 599:  # upstream unreachable or reset: so are we
            self.request.connection.stream.close()
            return
        self.set_status(response.code, response.reason)
        for h in RETURNED_HEADERS:
            if h in response.headers:
                self.set_header(h, response.headers[h])
        self.finish(response.body or b"")

    get = post = patch = delete = put = handle  # type: ignore[assignment]


class StatsHandler(tornado.web.RequestHandler):
    def initialize(self, proxy: Proxy) -> None:
        self.proxy = proxy

    def get(self) -> None:
        self.write({"junk": self.proxy.junk, "passed": self.proxy.passed})


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--rate", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--endpoints", default="create,send,complete,attach,retrieve")
    args = parser.parse_args()
    proxy = Proxy(args.upstream, args.rate, set(args.endpoints.split(",")), args.seed)
    app = tornado.web.Application([
        (r"/_proxy/stats", StatsHandler, {"proxy": proxy}),
        (r"/.*", ForwardHandler, {"proxy": proxy}),
    ])
    server = tornado.httpserver.HTTPServer(app, max_body_size=64 * 2**20, max_buffer_size=64 * 2**20)
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    print(f"junk proxy listening on http://127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()


def stats(url: str) -> dict[str, Any]:
    import requests

    return json.loads(requests.get(f"{url}/_proxy/stats", timeout=10).text)


if __name__ == "__main__":
    asyncio.run(main())
