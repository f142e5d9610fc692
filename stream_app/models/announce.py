"""Records the model lifecycle publishes and waits for: role announcements on the compacted
``model-updates`` topic (key ``<use_case>:<role>``) and decisions on ``model-decisions``."""

from __future__ import annotations

import time
from typing import Any

import orjson
from confluent_kafka import Producer

from stream_app.contracts.outputs import model_update_key, model_update_payload
from stream_app.errors import StreamAppError
from stream_app.settings import KafkaSettings


def produce_acknowledged(kafka: KafkaSettings, topic: str, key: bytes, value: Any) -> None:
    """Publish one JSON record and wait until the broker acknowledged it.

    Not an idempotent producer: getting a producer id first costs up to half a second, and a
    duplicate of a role announcement or a decision (a retried send) changes nothing."""
    failures: list[str] = []
    producer = Producer(kafka.client_config({"acks": "all"}))
    producer.produce(
        topic,
        orjson.dumps(value),
        key,
        on_delivery=lambda err, msg: failures.append(str(err)) if err else None,
    )
    if producer.flush(30) or failures:
        raise StreamAppError(f"publishing to {topic} failed: {failures or 'timed out'}")


def announce(
    kafka: KafkaSettings,
    use_case: str,
    role: str,
    version: str | None,
    reason: str,
    traffic_fraction: float | None = None,
) -> None:
    """Publish one role change (None clears the role) and wait for the broker."""
    payload = model_update_payload(
        use_case=use_case,
        role=role,
        model_version=version,
        announced_at=int(time.time() * 1000),
        reason=reason,
        traffic_fraction=traffic_fraction,
    )
    produce_acknowledged(
        kafka, kafka.topics.model_updates, model_update_key(use_case, role), payload
    )
