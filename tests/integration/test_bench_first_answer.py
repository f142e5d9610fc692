"""A bench whose worker dies before answering says so at once, with the worker's last words
(it used to wait two minutes and then quote a spinner's escape code)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from stream_app.bench.e2e import (
    FIRST_ANSWER_S,
    await_first_answer,
    bench_settings,
    create_topics,
    delete_topics,
)
from stream_app.errors import BenchError
from stream_app.settings import Settings
from stream_app.simulation.world import World
from stream_app.use_cases.spec import load_use_case

pytestmark = pytest.mark.integration


def test_a_worker_that_exits_before_answering_is_reported_with_its_last_words(
    live_settings: Settings, tmp_path: Path
) -> None:
    settings = bench_settings(live_settings, uuid.uuid4().hex[:6], "first")
    world = World(load_use_case(settings.use_case), 7)
    log = tmp_path / "worker.log"
    log.write_bytes(b"OSError: [Errno 98] address already in use\n\x1b[?25h\n")
    create_topics(settings)
    try:
        dead = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
        started = time.monotonic()
        with pytest.raises(BenchError, match=r"exited \(code \[3\]\).*Errno 98"):
            await_first_answer(settings, world, "probe", [dead], log)
        assert time.monotonic() - started < FIRST_ANSWER_S / 2  # not the whole wait
    finally:
        delete_topics(settings)
