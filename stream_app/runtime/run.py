"""`stream-app worker`: build the dependencies, the app and its agents, and run them."""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Sequence

import faust

from stream_app.runtime.app import create_app, worker_datadir
from stream_app.runtime.dependencies import build_dependencies
from stream_app.settings import Settings

log = logging.getLogger(__name__)


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


def run_worker(settings: Settings, use_cases: Sequence[str] = ()) -> int:
    """Build everything for ``use_cases`` (default: the settings' own) and run until SIGINT
    or SIGTERM."""
    import uvloop

    uvloop.install()  # a faster event loop: Faust's per-message asyncio overhead dominates
    deps = build_dependencies(settings, use_cases=use_cases)
    worker_datadir(settings).mkdir(parents=True, exist_ok=True)
    app = create_app(settings, deps)
    quiet_garbage_collector()
    worker = faust.Worker(app, loglevel=settings.worker.log_level.upper(), override_logging=True)
    log.info("settings: %s", json.dumps(settings.masked()))
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        deps.close()
    return 0
