"""GET /metrics: the Prometheus text format, from engine/metrics.py's registry."""
from __future__ import annotations

from engine.errors import Unauthorized
from engine.metrics import RelayMetrics
from handlers.base import BaseHandler


class MetricsHandler(BaseHandler):
    metrics: RelayMetrics  # given (server.py), with access

    def get(self) -> None:
        if not self.may_see_details():
            # OBSERVABILITY_ACCESS=token (the default once upload tokens are set).
            raise Unauthorized("metrics need an upload token: send Authorization: Bearer <token>")
        body, content_type = self.metrics.exposition(self.request.headers.get("Accept"))
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)
