"""Role announcements on the compacted ``model-updates`` topic (key ``<use_case>:<role>``)."""

from __future__ import annotations

import time

import orjson
from confluent_kafka import Producer

from stream_app.contracts.outputs import model_update_key, model_update_payload
from stream_app.errors import StreamAppError
from stream_app.settings import KafkaSettings


def announce(
    kafka: KafkaSettings,
    use_case: str,
    role: str,
    version: str | None,
    reason: str,
    traffic_fraction: float | None = None,
) -> None:
    """Publish one role change and wait until the broker acknowledged it."""
    failures: list[str] = []
    producer = Producer({**kafka.client_config(), "enable.idempotence": True, "acks": "all"})
    payload = model_update_payload(
        use_case=use_case,
        role=role,
        model_version=version,
        announced_at=int(time.time() * 1000),
        reason=reason,
        traffic_fraction=traffic_fraction,
    )
    producer.produce(
        kafka.topics.model_updates,
        orjson.dumps(payload),
        model_update_key(use_case, role),
        on_delivery=lambda err, msg: failures.append(str(err)) if err else None,
    )
    if producer.flush(30) or failures:
        raise StreamAppError(f"announcing {role}={version} on model-updates failed: {failures}")
