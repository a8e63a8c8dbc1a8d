"""The browser upload page: `/` is web/index.html, `/static/…` the files it loads, and
`/static/vendor/…` the npm packages it uses, straight from node_modules/ (package-lock.json pins
them; `./run.sh setup` installs them with `npm ci`).

No build step. The page talks to the relay's own endpoints only (tus at /files/, status at
/api/upload/status/{id}, /api/limits), and every script comes from the relay itself, so the policy
below allows nothing from elsewhere: the relay may run where there is no internet, and a page
that takes upload tokens should not load code from a CDN.
"""
from __future__ import annotations

from pathlib import Path

import tornado.web

ROOT = Path(__file__).resolve().parents[1]
WEB_DIR = ROOT / "web"
NODE_MODULES = ROOT / "node_modules"
# /static/vendor/<name> → the one file of an npm package the page loads. Nothing else under
# node_modules/ is reachable.
VENDOR_FILES = {
    "tus.min.js": NODE_MODULES / "tus-js-client" / "dist" / "tus.min.js",
}
VENDOR_ROUTE = r"/static/vendor/({})".format("|".join(name.replace(".", r"\.") for name in VENDOR_FILES))

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


class VendorHandler(StaticHandler):
    """`/static/vendor/(tus.min.js)` → node_modules/tus-js-client/dist/tus.min.js (VENDOR_FILES).
    Route it as `(VENDOR_ROUTE, VendorHandler)` before `/static/(.*)`. When node_modules/ is
    missing the answer is a 404 and the page says what to run."""

    def initialize(self, path: str = "", default_filename: str | None = None,
                   allowed_symlink_directory: str | list[str] | None = None) -> None:
        super().initialize(path=str(NODE_MODULES), default_filename=default_filename,
                           allowed_symlink_directory=allowed_symlink_directory)

    @classmethod
    def get_absolute_path(cls, root: str, path: str) -> str:
        return str(VENDOR_FILES[path])

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        if not Path(absolute_path).is_file():
            raise tornado.web.HTTPError(404, reason="not installed: run ./run.sh setup (npm ci)")
        return absolute_path
