"""End-to-end fixtures: the `stream-app` command run as users run it, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Deployment

CLI = [sys.executable, "-m", "stream_app.main"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


Run = Callable[..., subprocess.CompletedProcess[str]]


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 600, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `stream-app ARGS` with the test's environment on top of ours."""
    return subprocess.run(
        [*CLI, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def stream_app() -> Run:
    return run_cli


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll ``condition`` every 0.5 s until it returns something true (returned); a worker
    that does not answer yet (``OSError``) is waited for too."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
            if last:
                return last
        except OSError as exc:  # a worker still starting
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def readiness(port: int) -> tuple[int, dict[str, Any]]:
    """The worker's ``/ready`` answer: (status code, body)."""
    import urllib.error
    import urllib.request

    import orjson

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=10) as page:
            return page.status, orjson.loads(page.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def wait_assigned(port: int, topics: set[str], timeout_s: float = 120) -> dict[str, Any]:
    """Wait until the worker is ready with partitions of every one of ``topics`` assigned (a
    worker can be ready while still waiting for an assignment); returns the ``/ready`` body."""

    def assigned() -> dict[str, Any] | None:
        status, body = readiness(port)
        held = {c["topic"] for c in body.get("consumers", []) if c["state"] == "assigned"}
        return body if status == 200 and topics <= held else None

    body: dict[str, Any] = wait_for(assigned, timeout_s, f"/ready with {sorted(topics)} assigned")
    return body


@pytest.fixture
def trained(deployment: Deployment, stream_app: Run) -> Deployment:
    """The deployment with simulated history and a champion trained on it."""
    history = stream_app(
        "simulate", "--history", "0.5", "--events-per-day", "6000", env=deployment.env
    )
    assert history.returncode == 0, history.stderr
    train = stream_app("train", env=deployment.env)
    assert train.returncode == 0, train.stderr
    assert json.loads(train.stdout)["role"] == "champion"
    return deployment
