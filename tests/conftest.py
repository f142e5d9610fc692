"""Fixtures shared by every suite.

The live fixtures (``live_settings`` and what hangs off it) connect to the real Kafka and
Cassandra; only integration and end-to-end tests ask for them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from stream_app.cassandra_session import open_cluster
from stream_app.services import process
from stream_app.settings import Settings, load_settings
from tests.live_services import live_services


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody holds right now, below the ephemeral range (where no
    client connection takes it before the test's server binds it)."""
    return process.free_port()


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


class Deployment:
    """A stream-app deployment of one test on the live servers: its own topics and keyspace."""

    def __init__(self, settings: Settings, tag: str) -> None:
        self.settings = settings
        self.tag = tag

    @property
    def env(self) -> dict[str, str]:
        """The same deployment as STREAM_APP_* variables, for the command line."""
        kafka, cassandra = self.settings.kafka, self.settings.cassandra
        env = {
            "STREAM_APP_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "STREAM_APP_KAFKA__PARTITIONS": str(kafka.partitions),
            "STREAM_APP_CASSANDRA__CONTACT_POINTS": json.dumps(cassandra.contact_points),
            "STREAM_APP_CASSANDRA__PORT": str(cassandra.port),
            "STREAM_APP_CASSANDRA__KEYSPACE": cassandra.keyspace,
            "STREAM_APP_WORKER__APP_ID": self.settings.worker.app_id,
            "STREAM_APP_WORKER__WEB_PORT": str(self.settings.worker.web_port),
            "STREAM_APP_SERVICES__HOME": str(self.settings.services.home),
        }
        for field, name in kafka.topics.model_dump().items():
            env[f"STREAM_APP_KAFKA__TOPICS__{field.upper()}"] = name
        return env


@pytest.fixture
def deployment(
    live_settings: Settings,
    kafka_admin: AdminClient,
    cassandra_session: Any,
    tag: str,
    tmp_path: Path,
) -> Iterator[Deployment]:
    """Topics (2 partitions) and a keyspace of this test's own, created by `init`'s code."""
    from stream_app.provisioning.keyspace import ensure_keyspace
    from stream_app.provisioning.topics import ensure_topics
    from stream_app.settings import (
        CassandraSettings,
        KafkaSettings,
        ServicesSettings,
        TopicNames,
        WorkerSettings,
    )

    names = {field: f"{name}-{tag}" for field, name in TopicNames().model_dump().items()}
    settings = live_settings.model_copy(
        update={
            "kafka": KafkaSettings(
                **{
                    **live_settings.kafka.model_dump(),
                    "topics": TopicNames(**names),
                    "partitions": 2,
                }
            ),
            "cassandra": CassandraSettings(
                **{**live_settings.cassandra.model_dump(), "keyspace": f"t_{tag}"}
            ),
            "worker": WorkerSettings(app_id=f"test-{tag}", web_port=free_port()),
            "services": ServicesSettings(
                **{**live_settings.services.model_dump(), "home": tmp_path / "home"}
            ),
        }
    )
    ensure_topics(settings.kafka)
    ensure_keyspace(settings.cassandra)
    yield Deployment(settings, tag)
    existing = kafka_admin.list_topics(timeout=10).topics
    owned = [t for t in existing if t.endswith(tag)]
    if owned:
        for future in kafka_admin.delete_topics(owned).values():
            future.result(timeout=30)
    # schema changes take long on a busy node: wait for them longer than for a query
    cassandra_session.execute(f"DROP KEYSPACE IF EXISTS t_{tag}", timeout=120)


def consume_all(settings: Settings, topic: str, expected: int, timeout_s: float = 60) -> list[Any]:
    """Read a topic from the start until ``expected`` messages arrived (or the timeout).

    Every partition is assigned directly (no consumer group to join: a second or two faster
    per call than subscribing)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": f"check-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:  # the topic may still be on its way (a replay's own topic, say)
            found = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if (found and found.error is None and found.partitions) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert found is not None, f"topic {topic} does not exist"
        assert found.partitions, f"topic {topic} has no partitions"
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in found.partitions])
        while len(messages) < expected and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                assert message.error() is None, message.error()
                messages.append(message)
        # anything beyond what was expected shows up within a short grace period
        for message in consumer.consume(1000, timeout=1.0):
            assert message.error() is None, message.error()
            messages.append(message)
    finally:
        consumer.close()
    return messages
