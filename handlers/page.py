"""The browser upload page: `/` is web/index.html, `/static/…` the files it loads.

Plain files, no build step. The page talks to the relay's own endpoints only (tus at /files/,
status at /api/upload/status/{id}), so the policy below allows nothing from elsewhere: the relay
may run where there is no internet, and a page that takes upload tokens should not load
third-party code.
"""
from __future__ import annotations

from pathlib import Path

import tornado.web

WEB_DIR = Path(__file__).resolve().parents[1] / "web"

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "connect-src 'self'", "object-src 'none'", "base-uri 'none'", "form-action 'none'",
    "frame-ancestors 'none'",
])


class StaticHandler(tornado.web.StaticFileHandler):
    """`/static/(.*)` → web/. Revalidated on every load (ETag), so a deploy is seen at once."""

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Content-Type-Options", "nosniff")

    def get_content_type(self) -> str:
        content_type = super().get_content_type()
        if content_type.startswith("text/") and "charset" not in content_type:
            content_type += "; charset=utf-8"
        return content_type


class PageHandler(StaticHandler):
    """`/` → web/index.html (route it as `r"/()"` with `default_filename="index.html"`)."""

    def set_extra_headers(self, path: str) -> None:
        super().set_extra_headers(path)
        self.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.set_header("Referrer-Policy", "no-referrer")
