"""Pages on the worker's web port (bound to 127.0.0.1 unless configured otherwise)."""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest


def register_pages(app: faust.App, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve ``/metrics`` in the Prometheus text format."""

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            body: Any = generate_latest(registry)
            return self.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])
