"""`stream-app init` twice against the real servers, as a user runs it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from stream_app.settings import Settings, TopicNames
from tests.e2e.conftest import Run

TOPIC_FIELDS = list(TopicNames().model_dump())


@pytest.fixture
def init_env(
    live_settings: Settings, kafka_admin: AdminClient, cassandra_session: Any, tag: str
) -> Iterator[dict[str, str]]:
    env = {
        "STREAM_APP_KAFKA__BOOTSTRAP_SERVERS": live_settings.kafka.bootstrap_servers,
        "STREAM_APP_CASSANDRA__PORT": str(live_settings.cassandra.port),
        "STREAM_APP_CASSANDRA__KEYSPACE": f"cli_{tag}",
        "STREAM_APP_KAFKA__PARTITIONS": "3",
        **{
            f"STREAM_APP_KAFKA__TOPICS__{field.upper()}": f"cli-{field}-{tag}"
            for field in TOPIC_FIELDS
        },
    }
    yield env
    names = [f"cli-{field}-{tag}" for field in TOPIC_FIELDS]
    existing = kafka_admin.list_topics(timeout=10).topics
    if created := [n for n in names if n in existing]:
        for future in kafka_admin.delete_topics(created).values():
            future.result(timeout=30)
    cassandra_session.execute(f"DROP KEYSPACE IF EXISTS cli_{tag}")


def test_init_twice(
    stream_app: Run, init_env: dict[str, str], kafka_admin: AdminClient, cassandra_session: Any
) -> None:
    first = stream_app("init", env=init_env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count(": created") == len(TOPIC_FIELDS) + 1  # every topic, the keyspace
    assert "schema V001 feature_store: applied" in first.stdout

    second = stream_app("init", env=init_env)
    assert second.returncode == 0, second.stderr
    assert "created" not in second.stdout
    assert "applied" not in second.stdout
    assert "nothing to do" in second.stdout

    topics = kafka_admin.list_topics(timeout=10).topics
    for field in TOPIC_FIELDS:
        assert len(topics[init_env[f"STREAM_APP_KAFKA__TOPICS__{field.upper()}"]].partitions) == 3
    keyspace = init_env["STREAM_APP_CASSANDRA__KEYSPACE"]
    rows = cassandra_session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,)
    )
    assert {"entity_features", "predictions", "ground_truth"} <= {r.table_name for r in rows}
