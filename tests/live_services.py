"""Where the integration tests find Kafka and Cassandra.

1. The services named by the environment (``STREAM_APP_*``; by default the local ones that
   ``stream-app services up`` runs on 127.0.0.1) when both answer.
2. Otherwise containers through testcontainers, when a Docker daemon answers a ping.
3. Otherwise the tests fail: a missing service is a failure, never a skip.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from stream_app.services.cassandra_server import probe_cassandra
from stream_app.services.kafka_server import probe_kafka
from stream_app.settings import CassandraSettings, KafkaSettings, Settings

# testcontainers drives the Confluent image (KRaft from 7.0); Kafka 3.9 inside
KAFKA_IMAGE = "confluentinc/cp-kafka:7.9.0"
CASSANDRA_IMAGE = "cassandra:5.0"


def _unreachable(settings: Settings) -> list[str]:
    problems = []
    for name, probe in (("Kafka", probe_kafka), ("Cassandra", probe_cassandra)):
        try:
            probe(settings)
        except Exception as exc:  # each client raises its own error types
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
    return problems


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:  # no client library, no socket, or no engine behind it
        return False
    return True


@contextlib.contextmanager
def live_services(settings: Settings) -> Iterator[Settings]:
    """Settings pointing at a reachable Kafka and Cassandra, or a failure saying why not."""
    problems = _unreachable(settings)
    if not problems:
        yield settings
        return
    if not _docker_answers():
        raise RuntimeError(
            "the integration tests need a real Kafka and Cassandra and found neither a running "
            "pair nor a Docker engine. Start them with `stream-app services up` (or `make "
            "services`), or point STREAM_APP_KAFKA__BOOTSTRAP_SERVERS and "
            "STREAM_APP_CASSANDRA__CONTACT_POINTS at running servers.\n" + "\n".join(problems)
        )
    from testcontainers.community.cassandra import CassandraContainer
    from testcontainers.community.kafka import KafkaContainer

    with (
        KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka,
        CassandraContainer(CASSANDRA_IMAGE) as cassandra,
    ):
        host, port = cassandra.get_contact_points()[0]
        yield settings.model_copy(
            update={
                "kafka": KafkaSettings(bootstrap_servers=kafka.get_bootstrap_server()),
                "cassandra": CassandraSettings(contact_points=[host], port=port),
            }
        )
