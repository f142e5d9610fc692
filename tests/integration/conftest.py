"""Integration tests: real Kafka and Cassandra, fixtures from tests/conftest.py."""

from __future__ import annotations

from typing import Any

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def prometheus_registry() -> Any:
    """A metrics registry of the test's own (a worker's metrics register once per registry)."""
    from prometheus_client import CollectorRegistry

    return CollectorRegistry()
