"""A produce/consume round trip with confluent-kafka against the real broker."""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer, Producer

from stream_app.settings import Settings


def test_produce_and_consume_round_trip(
    live_settings: Settings, scratch_topics: Callable[..., str], tag: str
) -> None:
    topic = scratch_topics("round-trip")
    config = live_settings.kafka.client_config()
    producer = Producer({**config, "enable.idempotence": True})
    sent = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(500)}
    delivered: list[str] = []
    for key, value in sent.items():
        producer.produce(
            topic, key=key, value=value, on_delivery=lambda err, msg: delivered.append(str(err))
        )
    assert producer.flush(30) == 0
    assert delivered == ["None"] * len(sent)

    consumer = Consumer({**config, "group.id": f"test-{tag}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    received: dict[bytes, bytes] = {}
    deadline = time.monotonic() + 60
    try:
        while len(received) < len(sent) and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=1.0):
                assert message.error() is None, message.error()
                received[message.key()] = message.value()
    finally:
        consumer.close()
    assert received == sent
