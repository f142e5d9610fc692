"""Reading a replay plan's offsets from Kafka, with no side effect on any consumer group.

The consumer is *assigned* each partition at its start offset (never subscribed), so it joins
no group, takes no partition from a worker and triggers no rebalance; auto-commit is off and
nothing is ever committed, so no group's offsets are created or moved. Its group id is the
replay's own (``stream-app-replay-<run id>``), required by the client but never used.

Each partition stops at its end offset; records past it (fetched in the same batch) are
dropped. A batch is the client's messages with their partitions, offsets and timestamps in
arrays (``RawBatch``): a backtest matches most records to their served vectors by offset and
never needs their keys or values. Batches are as large as the client hands them, up to
``batch_size`` and never more than the offsets left in the range (a request for more waits
out its timeout at the end).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from itertools import compress
from typing import Any, NamedTuple

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from stream_app.messages import InputMessage
from stream_app.replay.plan import ReplayPlan
from stream_app.settings import KafkaSettings

Array = np.ndarray[Any, Any]


class RawBatch(NamedTuple):
    """Records of the range as the client returned them (confluent-kafka messages, no
    error among them), with their partitions, offsets and timestamps as arrays."""

    topic: str
    messages: list[Any]
    partitions: Array  # int64, one per message
    offsets: Array
    timestamps: Array

    def inputs(self, positions: Sequence[int]) -> list[InputMessage]:
        """The messages at ``positions`` as ``InputMessage`` (the decoders' input)."""
        topic, messages = self.topic, self.messages
        at = np.asarray(positions, dtype=np.int64)
        return [
            InputMessage(topic, partition, offset, m.key(), m.value(), stamp)
            for m, partition, offset, stamp in zip(
                map(messages.__getitem__, at.tolist()), self.partitions[at].tolist(),
                self.offsets[at].tolist(), self.timestamps[at].tolist(), strict=True,
            )
        ]  # fmt: skip


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

    def raw_batches(self) -> Iterator[RawBatch]:
        """The range in batches as the client hands them: no per-record tuple, key or value
        copied (``RawBatch.inputs`` makes them for the records that need them)."""
        remaining, topic, consumer = self.remaining, self.topic, self.consumer
        position = self.position
        while remaining:
            # never more than the range still holds: the client returns a batch when it has
            # that many messages or the timeout passed, so asking for more than is left made
            # the last batch of every range wait the whole timeout
            left = sum(end - position[p] for p, end in remaining.items())
            wanted = max(min(self.batch_size, left), 1)
            messages: list[Any] = consumer.consume(wanted, self.poll_timeout_s)
            finished: set[int] = set()
            if any([m.error() is not None for m in messages]):
                messages = self._without_errors(messages, finished)
            partitions = np.array([m.partition() for m in messages], dtype=np.int64)
            offsets = np.array([m.offset() for m in messages], dtype=np.int64)
            keep = np.zeros(len(messages), dtype=bool)
            for partition in np.flatnonzero(np.bincount(partitions)).tolist():
                end = remaining.get(partition)
                if end is None:
                    continue
                mine = partitions == partition
                inside = mine & (offsets < end)
                keep |= inside
                if inside.any():
                    position[partition] = int(offsets[inside].max()) + 1
                # past the range (its last offsets held no record), or its last record read
                if position[partition] >= end or bool((offsets[mine] >= end).any()):
                    finished.add(partition)
            if not keep.all():
                messages = list(compress(messages, keep.tolist()))
                partitions, offsets = partitions[keep], offsets[keep]
            for partition in finished:
                if remaining.pop(partition, None) is not None:
                    consumer.incremental_unassign([TopicPartition(topic, partition)])
            if messages:
                timestamps = np.array([m.timestamp()[1] for m in messages], dtype=np.int64)
                yield RawBatch(topic, messages, partitions, offsets, timestamps)

    def _without_errors(self, messages: list[Any], finished: set[int]) -> list[Any]:
        """The records of ``messages``; a partition's end-of-partition event at or past its
        end offset marks it ``finished``; any other error is raised."""
        records = []
        for message in messages:
            error = message.error()
            if error is None:
                records.append(message)
            elif error.code() == KafkaError._PARTITION_EOF:
                end = self.remaining.get(message.partition())
                if end is not None and (message.offset() or 0) >= end:
                    finished.add(message.partition())
            else:
                raise KafkaException(error)
        return records

    def batches(self) -> Iterator[list[InputMessage]]:
        """The range in batches of ``InputMessage``."""
        for batch in self.raw_batches():
            yield batch.inputs(range(len(batch.messages)))

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
