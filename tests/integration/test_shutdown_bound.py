"""A SIGTERM drain that cannot finish (a server gone, a batch that never completes) is cut
short after ``worker.shutdown_timeout_s`` with exit code 70, instead of hanging until the
orchestrator's SIGKILL. (The drain that finishes, exit 0 under load with nothing lost or
repeated, is tests/e2e/test_scoring_path.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import free_port

# A Faust app on the real Kafka with one component whose stop never returns.
WORKER = """
import asyncio, sys
from stream_app.agents.attach import attach
from stream_app.runtime.app import create_app
from stream_app.runtime.run import DrainingWorker
from stream_app.settings import Settings

settings = Settings()
app = create_app(settings, app_id=sys.argv[1])

async def start() -> None:
    print("STUCK STARTED", flush=True)

async def never_stops() -> None:
    await asyncio.Event().wait()

attach(app, "Stuck", start, never_stops)
DrainingWorker(app, loglevel="INFO", shutdown_timeout_s=3.0).execute_from_commandline()
"""


def test_a_drain_that_cannot_finish_is_cut_short_with_exit_code_70(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "STREAM_APP_WORKER__WEB_PORT": str(port),
           "STREAM_APP_SERVICES__HOME": str(tmp_path)}  # fmt: skip
    (tmp_path / "worker").mkdir()
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-c", WORKER, f"stuck-{port}"], env=env,
                              stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            if "STUCK STARTED" in (tmp_path / "worker.log").read_text():
                break
            assert time.monotonic() < deadline, "the worker never started"
            time.sleep(0.5)
        sent = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
        took = time.monotonic() - sent
    finally:
        if worker.poll() is None:
            worker.kill()
    text = (tmp_path / "worker.log").read_text()
    assert code == 70, text[-3000:]
    assert 3.0 <= took < 30, took
    assert "the drain took longer than 3 s" in text
