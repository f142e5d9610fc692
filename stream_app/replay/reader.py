"""Reading a replay plan's offsets from Kafka, with no side effect on any consumer group.

The consumer is *assigned* each partition at its start offset (never subscribed), so it joins
no group, takes no partition from a worker and triggers no rebalance; auto-commit is off and
nothing is ever committed, so no group's offsets are created or moved. Its group id is the
replay's own (``stream-app-replay-<run id>``), required by the client but never used.

Each partition stops at its end offset; records past it (fetched in the same batch) are
dropped. Batches are as large as the client hands them, up to ``batch_size`` and never more
than the offsets left in the range (a request for more waits out its timeout at the end).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from stream_app.messages import InputMessage
from stream_app.replay.plan import ReplayPlan
from stream_app.settings import KafkaSettings


def replay_group(run_id: str) -> str:
    """The consumer group id of a replay: never a worker's."""
    return f"stream-app-replay-{run_id}"


class RangeReader:
    """The records of ``plan``, in batches (each partition in offset order). The consumer is
    assigned on construction, so the client starts fetching in the background right away
    (while the caller prepares); ``batches`` then reads; ``close`` releases it."""

    def __init__(
        self,
        kafka: KafkaSettings,
        plan: ReplayPlan,
        group_id: str,
        batch_size: int = 10_000,
        poll_timeout_s: float = 1.0,
    ) -> None:
        self.topic = plan.topic
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.remaining = {p.partition: p.end for p in plan.partitions if p.count > 0}
        self.position = {p.partition: p.start for p in plan.partitions if p.count > 0}
        self.consumer = Consumer(
            kafka.client_config(
                {
                    "group.id": group_id,
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "enable.partition.eof": True,
                    # a start offset retention removed since the plan: read from the earliest left
                    "auto.offset.reset": "earliest",
                    "fetch.max.bytes": 64 * 1024 * 1024,
                    "max.partition.fetch.bytes": 16 * 1024 * 1024,
                    "queued.min.messages": 200_000,
                    "log_level": 4,
                }
            )
        )
        starts = [TopicPartition(plan.topic, p.partition, p.start) for p in plan.partitions
                  if p.count > 0]  # fmt: skip
        if starts:
            self.consumer.assign(starts)

    def batches(self) -> Iterator[list[InputMessage]]:
        remaining, topic, consumer = self.remaining, self.topic, self.consumer
        position = self.position
        while remaining:
            # never more than the range still holds: the client returns a batch when it has
            # that many messages or the timeout passed, so asking for more than is left made
            # the last batch of every range wait the whole timeout
            left = sum(end - position[p] for p, end in remaining.items())
            wanted = max(min(self.batch_size, left), 1)
            messages: list[Any] = consumer.consume(wanted, self.poll_timeout_s)
            batch: list[InputMessage] = []
            finished: list[int] = []
            for message in messages:
                error = message.error()
                partition = message.partition()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        end = remaining.get(partition)
                        if end is not None and (message.offset() or 0) >= end:
                            finished.append(partition)
                        continue
                    raise KafkaException(error)
                end = remaining.get(partition)
                offset = message.offset()
                if end is None:
                    continue
                if offset >= end:  # past the range (its last offsets held no record)
                    finished.append(partition)
                    continue
                position[partition] = offset + 1
                batch.append(
                    InputMessage(
                        topic, partition, offset, message.key(), message.value(),
                        message.timestamp()[1],
                    )
                )  # fmt: skip
                if offset + 1 >= end:
                    finished.append(partition)
            for partition in finished:
                if remaining.pop(partition, None) is not None:
                    consumer.incremental_unassign([TopicPartition(topic, partition)])
            if batch:
                yield batch

    def close(self) -> None:
        self.consumer.close()


def read_range(
    kafka: KafkaSettings,
    plan: ReplayPlan,
    group_id: str,
    batch_size: int = 10_000,
    poll_timeout_s: float = 1.0,
) -> Generator[list[InputMessage], None, None]:
    """Every record of ``plan`` in batches (each partition in offset order)."""
    reader = RangeReader(kafka, plan, group_id, batch_size, poll_timeout_s)
    try:
        yield from reader.batches()
    finally:
        reader.close()
