"""`stream-app worker`: build the dependencies, the app and its agents, and run them."""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import faust

from stream_app.errors import ConfigurationError
from stream_app.runtime.app import create_app, worker_datadir
from stream_app.runtime.dependencies import build_dependencies
from stream_app.services.process import bind_error
from stream_app.settings import Settings

log = logging.getLogger(__name__)

EX_SOFTWARE = 70  # the drain was cut short


class DrainingWorker(faust.Worker):
    """Faust's worker, whose SIGTERM drain is bounded: stopping the app stops every consumer
    (each finishes its batches in flight, commits them and leaves its group) and the process
    exits 0; if that takes longer than ``shutdown_timeout_s`` it exits at once with 70."""

    def __init__(self, *args: Any, shutdown_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shutdown_timeout_s = shutdown_timeout_s
        self._deadline: threading.Timer | None = None

    def _schedule_shutdown(self, signal: Any) -> None:
        if self._deadline is None:
            log.info("%s: draining (at most %.0f s)", signal.name, self.shutdown_timeout_s)
            self._deadline = threading.Timer(self.shutdown_timeout_s, self._cut_short)
            self._deadline.daemon = True
            self._deadline.start()
        super()._schedule_shutdown(signal)

    def _cut_short(self) -> None:
        log.critical(
            "the drain took longer than %.0f s; exiting without finishing it "
            "(uncommitted batches will be scored again)",
            self.shutdown_timeout_s,
        )
        logging.shutdown()
        os._exit(EX_SOFTWARE)


def quiet_garbage_collector() -> None:
    """Keep the cyclic garbage collector's full passes short.

    Full collections walk every tracked object; with Faust, pydantic, LightGBM and the
    Cassandra driver loaded they took 70 to 90 ms here, every second or two under load: the
    worst latency outliers. The objects built at start-up live as long as the process, so they
    are frozen out of collection, and the youngest generation is collected less often (events
    are freed by reference counting, not by the cycle collector).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(700, 10, 100)


def check_web_port(host: str, port: int) -> None:
    """A one-line error if the worker's web port cannot be bound (Faust would otherwise fail
    after start-up, with a traceback)."""
    error = bind_error(port, host)
    if error is not None:
        raise ConfigurationError(
            f"the worker's web port {host}:{port} cannot be bound ({error}): another process "
            "holds it; set worker.web_port (STREAM_APP_WORKER__WEB_PORT)"
        )


def run_worker(settings: Settings, use_cases: Sequence[str] = ()) -> int:
    """Build everything for ``use_cases`` (default: the settings' own) and run until SIGINT
    or SIGTERM."""
    import uvloop

    check_web_port(settings.worker.web_host, settings.worker.web_port)
    uvloop.install()  # a faster event loop: Faust's per-message asyncio overhead dominates
    deps = build_dependencies(settings, use_cases=use_cases)
    worker_datadir(settings).mkdir(parents=True, exist_ok=True)
    app = create_app(settings, deps)
    quiet_garbage_collector()
    worker = DrainingWorker(
        app,
        loglevel=settings.worker.log_level.upper(),
        override_logging=True,
        shutdown_timeout_s=settings.worker.shutdown_timeout_s,
    )
    log.info("settings: %s", json.dumps(settings.masked()))
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        deps.close()
    return 0
