"""`GET /api/limits`: what the relay will take, so the page can say so before Upload is pressed.

    {"max_file_bytes": 5368709120, "extensions": ["aac", …], "content_types": ["application/json", …]}

`max_file_bytes` is the workspace's own limit (Notion's users/me, cached by the service and
shared with creation, so it costs at most one Notion request per cache period); `extensions` and
`content_types` are engine/filetypes.py's table, the same one creation checks. Public, like the
page itself: it says nothing about anyone's uploads.
"""
from __future__ import annotations

from typing import Any

from engine.filetypes import EXTENSIONS, SUPPORTED_TYPES
from engine.upload.service import UploadService
from handlers.base import BaseHandler


class LimitsHandler(BaseHandler):
    def initialize(self, service: UploadService, **kwargs: Any) -> None:
        self.service = service
        super().initialize(**kwargs)

    async def get(self) -> None:
        # Never raises for Notion trouble: the engine then answers its default (5 GiB), uncached.
        limit = await self.service.workspace_limit()
        self.write_json(200, {
            "max_file_bytes": limit,
            "extensions": sorted(EXTENSIONS),
            "content_types": sorted(SUPPORTED_TYPES),
        })
