"""`GET /api/destinations`: where uploads may go, as Notion describes each place.

    {"destinations": [{"name": "default", "id": "…", "kind": "page", "title": "Uploads"},
                      {"name": "deliverables", "id": "…", "kind": "database", "title": "Deliverables"}],
     "default": "default"}

What Notion says is cached by the engine (each lookup spends the request budget); a place
Notion cannot describe right now is listed with `kind: null`. Public, like the page: it lists
the relay's configuration, never anyone's uploads.
"""
from __future__ import annotations

from engine.destinations import Destinations
from handlers.base import BaseHandler


class DestinationsHandler(BaseHandler):
    destinations: Destinations  # given (server.py), with access

    async def get(self) -> None:
        listing = await self.destinations.listing()
        default = self.destinations.default_name
        self.set_header("Cache-Control", "no-store")
        self.write_json(200, {"destinations": listing, "default": default})
