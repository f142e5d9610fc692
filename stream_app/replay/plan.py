"""The plan of a replay: which offsets of which partitions hold a time range of a topic.

Kafka answers "the first offset at or after time T" per partition (offsets-for-times); a
range ``[from_ms, to_ms)`` is then, per partition, the offsets from the answer for
``from_ms`` up to (not including) the answer for ``to_ms``. An answer of -1 means no message
at or after that time: the range starts (or ends) at the partition's end. The plan is read
with a throw-away consumer that is assigned partitions, never subscribed, and commits nothing,
so no consumer group (least of all a worker's) is touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from stream_app.errors import ConfigurationError
from stream_app.settings import KafkaSettings

END = -1  # offsets-for-times: no message at or after the time asked


@dataclass(frozen=True)
class PartitionRange:
    """Offsets ``[start, end)`` of one partition; ``low`` is its first retained offset."""

    partition: int
    start: int
    end: int
    low: int = 0

    @property
    def truncated(self) -> bool:
        """Whether retention may have removed records of the range (it starts at the first
        record still kept, and older ones were deleted)."""
        return self.low > 0 and self.start <= self.low

    @property
    def count(self) -> int:
        return max(self.end - self.start, 0)


@dataclass(frozen=True)
class ReplayPlan:
    topic: str
    from_ms: int
    to_ms: int
    partitions: list[PartitionRange]

    @property
    def count(self) -> int:
        """Messages in the range (records, including any that will not decode)."""
        return sum(p.count for p in self.partitions)

    @property
    def truncated(self) -> bool:
        return any(p.truncated for p in self.partitions)

    def estimate_s(self, rate_per_s: float) -> float:
        return self.count / rate_per_s if rate_per_s > 0 else float("inf")

    def as_dict(self, rate_per_s: float | None = None) -> dict[str, Any]:
        plan: dict[str, Any] = {
            "topic": self.topic,
            "from": self.from_ms,
            "to": self.to_ms,
            "messages": self.count,
            "partitions": [
                {"partition": p.partition, "start": p.start, "end": p.end, "messages": p.count}
                for p in self.partitions
            ],
        }
        if rate_per_s is not None:
            plan["estimate_s"] = round(self.estimate_s(rate_per_s), 1)
        return plan


def partition_range(partition: int, start: int, end: int, low: int, high: int) -> PartitionRange:
    """One partition's range from the offsets-for-times answers (``END`` when no message at
    or after the time) and its watermarks ``[low, high)``."""
    first = high if start == END else max(start, low)
    last = high if end == END else min(max(end, low), high)
    return PartitionRange(partition, first, max(first, last), low)


def plan_replay(kafka: KafkaSettings, topic: str, from_ms: int, to_ms: int) -> ReplayPlan:
    """Ask the brokers for the offsets of ``[from_ms, to_ms)`` in every partition of ``topic``."""
    if to_ms <= from_ms:
        raise ConfigurationError(f"an empty time range: --to ({to_ms}) is not after --from "
                                 f"({from_ms})")  # fmt: skip
    consumer = Consumer(
        kafka.client_config(
            {
                "group.id": "stream-app-replay-plan",  # required by the client; never joined
                "enable.auto.commit": False,
                "log_level": 4,
            }
        )
    )
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise ConfigurationError(f"topic {topic} does not exist")
        numbers = sorted(metadata.partitions)
        starts = consumer.offsets_for_times(
            [TopicPartition(topic, p, from_ms) for p in numbers], timeout=30
        )
        ends = consumer.offsets_for_times(
            [TopicPartition(topic, p, to_ms) for p in numbers], timeout=30
        )
        ranges = []
        for number, start, end in zip(numbers, starts, ends, strict=True):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, number), timeout=30, cached=False
            )
            ranges.append(partition_range(number, start.offset, end.offset, low, high))
    finally:
        consumer.close()
    return ReplayPlan(topic, from_ms, to_ms, ranges)
