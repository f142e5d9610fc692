"""Pages on the worker's web port (bound to 127.0.0.1 unless configured otherwise).

- ``/metrics``: Prometheus text format.
- ``/dashboard``: a live page (plain HTML and canvas, no external scripts) polling
- ``/dashboard/data``: the worker's monitor snapshot as JSON (also what `stream-app status`
  reads).
- ``/healthz``: liveness. 200 while the event loop answers and every consumer makes progress
  (``monitoring.liveness``); 503 with the stalled consumers and why, so a supervisor restarts
  the worker.
- ``/ready``: readiness (``monitoring.readiness``). 200 when every consumer is assigned or
  waiting for an assignment, every use case has a champion loaded and Kafka and Cassandra
  answer; 503 with the reasons otherwise (and while draining after SIGTERM).
"""

from __future__ import annotations

from typing import Any

import faust
import orjson
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from stream_app.bundled import package_file
from stream_app.monitoring.liveness import Watchdog
from stream_app.monitoring.readiness import Readiness
from stream_app.monitoring.state import Monitor


def register_pages(app: faust.App, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve ``/metrics`` in the Prometheus text format."""

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            body: Any = generate_latest(registry)
            return self.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])


def register_dashboard(app: faust.App, monitors: dict[str, Monitor]) -> None:
    """Serve ``/dashboard`` and its data, per use case (``?use_case=NAME``; default: the
    first); the data names every use case the worker serves."""
    page = package_file("monitoring/dashboard.html").read_bytes()
    default = next(iter(monitors))

    @app.page("/dashboard")
    class Dashboard(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(page, content_type="text/html")

    @app.page("/dashboard/data")
    class DashboardData(View):
        async def get(self, request: Request) -> Response:
            name = request.query.get("use_case", default)
            monitor = monitors.get(name)
            if monitor is None:
                known = {"error": f"no use case {name!r} here", "use_cases": list(monitors)}
                return self.bytes(orjson.dumps(known), content_type="application/json",
                                  status=404)  # fmt: skip
            snapshot = {**monitor.snapshot(), "use_cases": list(monitors)}
            body = orjson.dumps(snapshot, option=orjson.OPT_SERIALIZE_NUMPY)
            return self.bytes(body, content_type="application/json")


def register_health(
    app: faust.App, watchdog: Watchdog | None, readiness: Readiness | None = None
) -> None:
    """Serve ``/healthz`` and ``/ready``: answered on the event loop, so a blocked loop fails
    them too. Without a ``readiness`` (an app with no agents), ``/ready`` is ``/healthz``."""

    @app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            healthy, body = (True, {"status": "ok", "consumers": []})
            if watchdog is not None:
                healthy, body = watchdog.health()
            return self.bytes(
                orjson.dumps(body), content_type="application/json", status=200 if healthy else 503
            )

    @app.page("/ready")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            ready, body = (True, {"status": "ready", "reasons": []})
            if readiness is not None:
                ready, body = await readiness.report()
            return self.bytes(
                orjson.dumps(body), content_type="application/json", status=200 if ready else 503
            )
