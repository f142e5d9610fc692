"""`init` against the real servers: everything created once, a second run changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from stream_app.errors import SchemaMigrationError
from stream_app.provisioning.keyspace import ensure_keyspace, load_migrations
from stream_app.provisioning.topics import ensure_topics
from stream_app.settings import CassandraSettings, KafkaSettings, Settings, TopicNames


@pytest.fixture
def scratch_settings(
    live_settings: Settings, kafka_admin: AdminClient, cassandra_session: Any, tag: str
) -> Iterator[Settings]:
    """The live servers, with topic and keyspace names owned by this test."""
    names = {field: f"{name}-{tag}" for field, name in TopicNames().model_dump().items()}
    kafka = KafkaSettings(
        **{**live_settings.kafka.model_dump(), "topics": TopicNames(**names), "partitions": 2}
    )
    cassandra = CassandraSettings(
        **{**live_settings.cassandra.model_dump(), "keyspace": f"t_{tag}"}
    )
    yield live_settings.model_copy(update={"kafka": kafka, "cassandra": cassandra})
    existing = kafka_admin.list_topics(timeout=10).topics
    created = [name for name in names.values() if name in existing]
    if created:
        for future in kafka_admin.delete_topics(created).values():
            future.result(timeout=30)
    cassandra_session.execute(f"DROP KEYSPACE IF EXISTS t_{tag}")


def test_topics_created_once(scratch_settings: Settings, kafka_admin: AdminClient) -> None:
    first = ensure_topics(scratch_settings.kafka)
    topic_count = len(scratch_settings.kafka.topics.all())
    assert topic_count == 10
    assert [o.action for o in first] == ["created"] * topic_count
    second = ensure_topics(scratch_settings.kafka)
    assert [o.action for o in second] == ["exists"] * topic_count

    metadata = kafka_admin.list_topics(timeout=10).topics
    for name in scratch_settings.kafka.topics.all():
        assert len(metadata[name].partitions) == 2
    updates = ConfigResource(ConfigResource.Type.TOPIC, scratch_settings.kafka.topics.model_updates)
    config = kafka_admin.describe_configs([updates])[updates].result(timeout=10)
    assert config["cleanup.policy"].value == "compact"


def test_a_topic_that_differs_is_reported(
    scratch_settings: Settings, kafka_admin: AdminClient
) -> None:
    ensure_topics(scratch_settings.kafka)
    wider = scratch_settings.kafka.model_copy(update={"partitions": 4})
    outcomes = {o.name: o for o in ensure_topics(wider)}
    predictions = outcomes[scratch_settings.kafka.topics.predictions]
    assert predictions.action == "differs"
    assert "2 partitions, settings ask for 4" in predictions.detail


def test_a_topic_another_init_created_meanwhile_is_still_compared(
    scratch_settings: Settings, kafka_admin: AdminClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between our metadata read and our create, another `init` (or the broker's metadata
    lagging behind a create) made the topics: they are judged as existing ones, not waved
    through as "exists"."""
    from stream_app.provisioning import topics

    ensure_topics(scratch_settings.kafka)  # the other init, with 2 partitions
    reach = topics.reach

    def stale(kafka: KafkaSettings, timeout_s: float) -> Any:
        admin, metadata = reach(kafka, timeout_s)
        for name in kafka.topics.all():
            metadata.topics.pop(name, None)  # what we read before the other init ran
        return admin, metadata

    monkeypatch.setattr(topics, "reach", stale)
    wider = scratch_settings.kafka.model_copy(update={"partitions": 4})
    outcomes = {o.name: o for o in ensure_topics(wider)}
    predictions = outcomes[scratch_settings.kafka.topics.predictions]
    assert predictions.action == "differs"
    assert "2 partitions, settings ask for 4" in predictions.detail
    assert {o.action for o in ensure_topics(scratch_settings.kafka)} == {"exists"}


def test_keyspace_and_tables_created_once(
    scratch_settings: Settings, cassandra_session: Any
) -> None:
    # as on a production cluster (the other tests' keyspaces use SimpleStrategy)
    settings = scratch_settings.cassandra.model_copy(
        update={"replication_strategy": "NetworkTopologyStrategy"}
    )
    first = ensure_keyspace(settings)
    assert first.created_keyspace
    assert [m.version for m in first.applied] == [m.version for m in load_migrations()]
    replication = cassandra_session.execute(
        "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
        (settings.keyspace,),
    ).one()[0]
    assert replication == {
        "class": "org.apache.cassandra.locator.NetworkTopologyStrategy",
        settings.local_dc: "1",
    }
    second = ensure_keyspace(scratch_settings.cassandra)
    assert not second.created_keyspace
    assert second.applied == []
    assert second.already_applied == len(first.applied)

    tables = {
        row.table_name
        for row in cassandra_session.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s",
            (scratch_settings.cassandra.keyspace,),
        )
    }
    assert {
        "entity_features", "predictions", "prediction_log", "feature_sets", "ground_truth",
        "model_versions", "model_roles", "model_role_history",
    } <= tables  # fmt: skip


def test_an_edited_migration_is_refused(scratch_settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "V1__first.cql").write_text("CREATE TABLE a (k int PRIMARY KEY);")
    ensure_keyspace(scratch_settings.cassandra, tmp_path)
    (tmp_path / "V1__first.cql").write_text("CREATE TABLE a (k text PRIMARY KEY);")
    with pytest.raises(SchemaMigrationError, match="changed after it was applied"):
        ensure_keyspace(scratch_settings.cassandra, tmp_path)
    (tmp_path / "V1__first.cql").write_text("CREATE TABLE a (k int PRIMARY KEY);")
    (tmp_path / "V2__second.cql").write_text("CREATE TABLE b (k int PRIMARY KEY);")
    assert [m.name for m in ensure_keyspace(scratch_settings.cassandra, tmp_path).applied] == [
        "second"
    ]
