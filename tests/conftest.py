"""Fixtures shared by every suite.

The live fixtures (``live_settings`` and what hangs off it) connect to the real Kafka and
Cassandra; only integration and end-to-end tests ask for them.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from stream_app.cassandra_session import open_cluster
from stream_app.settings import Settings, load_settings
from tests.live_services import live_services


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def tag() -> str:
    """A short unique suffix for names (topics, keyspaces, groups) owned by one test."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def live_settings() -> Iterator[Settings]:
    """Settings pointing at the real Kafka and Cassandra (the run fails without them)."""
    with live_services(load_settings()) as settings:
        yield settings


@pytest.fixture(scope="session")
def kafka_admin(live_settings: Settings) -> AdminClient:
    return AdminClient(live_settings.kafka.client_config())


@pytest.fixture
def scratch_topics(kafka_admin: AdminClient, tag: str) -> Iterator[Callable[..., str]]:
    """A factory of topics owned by one test, deleted afterwards."""
    created: list[str] = []

    def make(name: str, partitions: int = 3, config: dict[str, str] | None = None) -> str:
        topic = f"test-{name}-{tag}"
        futures = kafka_admin.create_topics([NewTopic(topic, partitions, 1, config=config or {})])
        futures[topic].result(timeout=30)
        created.append(topic)
        return topic

    yield make
    if created:
        for future in kafka_admin.delete_topics(created).values():
            future.result(timeout=30)


@pytest.fixture(scope="session")
def cassandra_cluster(live_settings: Settings) -> Iterator[Any]:
    cluster = open_cluster(live_settings.cassandra)
    yield cluster
    cluster.shutdown()


@pytest.fixture(scope="session")
def cassandra_session(cassandra_cluster: Any) -> Any:
    return cassandra_cluster.connect()
