"""`GET /api/limits`: what the relay will take, so the page can say so before Upload is pressed.

    {"max_file_bytes": 5368709120, "extensions": ["aac", …], "content_types": ["application/json", …]}

`max_file_bytes` is the workspace's own limit (Notion's users/me, cached by the service and
shared with creation, so it costs at most one Notion request per cache period); `extensions` and
`content_types` are engine/filetypes.py's table, the same one creation checks. Public, like the
page itself: it says nothing about anyone's uploads. With a valid upload grant as the bearer
token, the answer is narrowed to what the grant allows (`max_bytes`, `content_types`) and says
when it expires; a missing or invalid grant changes nothing here (creation answers 401/403).
"""
from __future__ import annotations

from typing import Any

from engine.errors import UploadError
from engine.filetypes import EXTENSIONS, SUPPORTED_TYPES
from engine.grants import type_allowed
from engine.upload.service import UploadService
from handlers.base import BaseHandler


class LimitsHandler(BaseHandler):
    service: UploadService  # given (server.py), with access

    async def get(self) -> None:
        # Never raises for Notion trouble: the engine then answers its default (5 GiB), uncached.
        limit = await self.service.workspace_limit()
        extensions, types = sorted(EXTENSIONS), sorted(SUPPORTED_TYPES)
        body: dict[str, Any] = {}
        grant = self._grant()
        if grant is not None:
            if grant.max_bytes is not None:
                limit = min(limit, grant.max_bytes)
            if grant.content_types is not None:
                types = [t for t in types if type_allowed(t, grant.content_types)]
                extensions = [e for e in extensions if any(t in types for t in EXTENSIONS[e])]
            body["grant"] = {"expires_at": grant.expires_at, "max_uploads": grant.max_uploads,
                             "destinations": list(grant.destinations) if grant.destinations is not None else None}
        self.write_json(200, {"max_file_bytes": limit, "extensions": extensions, "content_types": types, **body})

    def _grant(self):
        if self.access.grants is None or not self.request.headers.get("Authorization"):
            return None
        try:
            self.owner()
        except UploadError:
            return None
        return self.grant
