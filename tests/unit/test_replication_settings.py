"""The replication settings: min.insync.replicas on the topics, the consistency level."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stream_app.cassandra_session import open_cluster
from stream_app.provisioning.topics import topic_plans
from stream_app.settings import CassandraSettings, KafkaSettings


def test_topics_carry_min_insync_replicas_when_above_kafkas_default() -> None:
    plans = topic_plans(KafkaSettings(replication_factor=3, min_insync_replicas=2))
    assert all(p.replication_factor == 3 for p in plans)
    assert all(p.config["min.insync.replicas"] == "2" for p in plans)
    compacted = next(p for p in plans if p.name == "model-updates")
    assert compacted.config["cleanup.policy"] == "compact"
    assert all("min.insync.replicas" not in p.config for p in topic_plans(KafkaSettings()))


def test_min_insync_replicas_above_the_replication_factor_is_refused() -> None:
    with pytest.raises(ValidationError, match="no write with acks=all could succeed"):
        KafkaSettings(replication_factor=2, min_insync_replicas=3)


def test_every_request_runs_at_the_configured_consistency() -> None:
    from cassandra import ConsistencyLevel
    from cassandra.cluster import EXEC_PROFILE_DEFAULT

    from stream_app.cassandra_session import HOT_PATH

    def levels(settings: CassandraSettings) -> set[int]:
        cluster = open_cluster(settings)
        try:
            profiles = cluster.profile_manager.profiles
            return {profiles[name].consistency_level for name in (EXEC_PROFILE_DEFAULT, HOT_PATH)}
        finally:
            cluster.shutdown()

    assert levels(CassandraSettings()) == {ConsistencyLevel.LOCAL_ONE}  # the driver's default
    quorum = CassandraSettings(consistency="LOCAL_QUORUM")
    assert levels(quorum) == {ConsistencyLevel.LOCAL_QUORUM}


def test_an_unknown_consistency_is_refused() -> None:
    with pytest.raises(ValidationError, match="LOCAL_QUORUM"):
        CassandraSettings(consistency="TWO")  # type: ignore[arg-type]
