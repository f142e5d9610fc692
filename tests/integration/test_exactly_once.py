"""Exactly once on the real Kafka: a batch consumer with a transactional producer.

A killed worker's transaction is left open with outputs in it (produced here by a producer
with the worker's transactional id that never commits). The worker that takes its place, with
the same id, fences it; a ``read_committed`` reader then sees exactly one output per input,
while a ``read_uncommitted`` reader also sees the abandoned ones (so the check can fail).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer, Producer

from stream_app.kafka.consumer import BatchConsumer, BatchOptions, consumer_config
from stream_app.kafka.producer import Publisher
from stream_app.kafka.transactions import BatchOutputs, TransactionalProducer
from stream_app.messages import InputMessage, Record
from stream_app.settings import Settings

INPUTS = 500


class Echo:
    """Publishes one output per input: its partition and offset."""

    def __init__(self, publisher: Publisher, topic: str) -> None:
        self.publisher, self.topic = publisher, topic
        self.seen = 0

    async def process(self, messages: Sequence[InputMessage]) -> None:
        self.seen += len(messages)
        await self.publisher.publish(
            [Record(self.topic, None, f"{m.partition}:{m.offset}".encode()) for m in messages]
        )


class Unused:
    async def publish(self, records: Sequence[Record]) -> None:
        raise AssertionError("every output here belongs to a batch")


def read(settings: Settings, topic: str, isolation: str, settle_s: float = 3.0) -> list[bytes]:
    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": f"read-{topic}-{isolation}",
            "auto.offset.reset": "earliest",
            "isolation.level": isolation,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    last = time.monotonic()
    while time.monotonic() - last < settle_s:
        for message in consumer.consume(1000, 0.5):
            if message.error() is None:
                values.append(message.value())
                last = time.monotonic()
    consumer.close()
    return values


def test_a_fenced_predecessors_open_transaction_is_never_read_committed(
    live_settings: Settings, scratch_topics: Callable[..., str], tag: str
) -> None:
    inputs, outputs = scratch_topics("eos-in", partitions=3), scratch_topics("eos-out")
    producer = Producer(live_settings.kafka.client_config())
    for i in range(INPUTS):
        producer.produce(inputs, b"{}", f"k{i}".encode())
    producer.flush(30)
    consumer_settings = live_settings.consumer.model_copy(update={"transaction_timeout_s": 60})
    settings = live_settings.model_copy(update={"consumer": consumer_settings})
    transactional_id = f"test-eos-{tag}"

    zombie = Producer({**live_settings.kafka.client_config(), "transactional.id": transactional_id,
                       "transaction.timeout.ms": 60_000})  # only the fencing ends it  # fmt: skip
    zombie.init_transactions(30)
    zombie.begin_transaction()
    for i in range(50):
        zombie.produce(outputs, f"zombie:{i}".encode())
    zombie.flush(30)  # delivered inside the open transaction, never committed

    async def scenario() -> None:
        service = Echo(BatchOutputs(Unused()), outputs)
        options = BatchOptions(batch_size=64, batches_in_flight=3, batch_wait_s=0.05,
                               commit_interval_s=0.05)  # fmt: skip
        consumer = BatchConsumer(
            consumer_config(settings.kafka, f"test-eos-{tag}", 10), service, topic=inputs,
            options=options, transactions=TransactionalProducer(settings, transactional_id),
        )  # fmt: skip
        await consumer.start()
        deadline = time.monotonic() + 60
        while service.seen < INPUTS or consumer._pending() or consumer._outputs:
            assert time.monotonic() < deadline, f"processed {service.seen} of {INPUTS}"
            await asyncio.sleep(0.1)
        await consumer.stop()

    asyncio.run(scenario())
    committed = read(settings, outputs, "read_committed")
    assert len(committed) == INPUTS
    assert len(set(committed)) == INPUTS
    assert not [v for v in committed if v.startswith(b"zombie")]
    everything = read(settings, outputs, "read_uncommitted")
    assert len([v for v in everything if v.startswith(b"zombie")]) == 50
