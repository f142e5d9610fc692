"""End-to-end fixtures: the `stream-app` command run as users run it, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

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
