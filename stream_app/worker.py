"""`stream-app worker`: the Faust worker process running every agent."""

from __future__ import annotations

import json
import logging

import faust

from stream_app.app import create_app, worker_datadir
from stream_app.settings import Settings

log = logging.getLogger(__name__)


def run_worker(settings: Settings) -> int:
    """Build the app and run it until SIGINT or SIGTERM."""
    worker_datadir(settings).mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    worker = faust.Worker(
        app,
        loglevel=settings.worker.log_level.upper(),
        override_logging=True,
    )
    log.info("settings: %s", json.dumps(settings.masked()))
    worker.execute_from_commandline()
    return 0
