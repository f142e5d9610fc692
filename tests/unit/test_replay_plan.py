"""A replay's offsets per partition from the offsets-for-times answers (pure part)."""

from __future__ import annotations

import pytest

from stream_app.replay.plan import END, PartitionRange, ReplayPlan, partition_range


@pytest.mark.parametrize(
    ("start", "end", "low", "high", "expected"),
    [
        (10, 25, 0, 40, (10, 25)),  # inside the partition
        (10, END, 0, 40, (10, 40)),  # nothing at or after --to: up to the end
        (END, END, 0, 40, (40, 40)),  # nothing at or after --from: empty
        (0, 5, 3, 40, (3, 5)),  # retention removed the oldest messages
        (0, 2, 3, 40, (3, 3)),  # the whole range is gone
        (12, 12, 0, 40, (12, 12)),  # no message in the range
    ],
)
def test_partition_ranges(
    start: int, end: int, low: int, high: int, expected: tuple[int, int]
) -> None:
    found = partition_range(0, start, end, low, high)
    assert (found.start, found.end) == expected
    assert found.count == expected[1] - expected[0]


def test_the_plan_counts_and_estimates() -> None:
    plan = ReplayPlan("client-events", 1, 2, [PartitionRange(0, 5, 105), PartitionRange(1, 7, 7)])
    assert plan.count == 100
    assert plan.estimate_s(50.0) == 2.0
    data = plan.as_dict(rate_per_s=50.0)
    assert data["messages"] == 100
    assert data["estimate_s"] == 2.0
    assert [p["messages"] for p in data["partitions"]] == [100, 0]


@pytest.mark.parametrize(
    ("start", "low", "truncated"),
    [
        (0, 0, False),  # nothing ever deleted
        (3, 3, True),  # the range starts at the first record kept, older ones deleted
        (10, 3, False),  # the range starts after what retention removed
    ],
)
def test_a_plan_knows_when_retention_cut_into_it(start: int, low: int, truncated: bool) -> None:
    found = partition_range(0, start, 20, low, 40)
    assert found.truncated is truncated
    assert ReplayPlan("ground-truth", 1, 2, [PartitionRange(1, 0, 5), found]).truncated is truncated


def test_a_replay_writes_only_its_own_topic_never_a_production_one() -> None:
    from stream_app.errors import ConfigurationError
    from stream_app.replay.backtest import writable_output_topic
    from stream_app.settings import TopicNames

    assert writable_output_topic("r1", TopicNames()) == "replay.r1.predictions"
    # a deployment whose production topic happens to have the replay's name
    hijacked = TopicNames(predictions="replay.r1.predictions")
    with pytest.raises(ConfigurationError, match="production topic"):
        writable_output_topic("r1", hijacked)
    with pytest.raises(ConfigurationError, match="production topic"):
        writable_output_topic("r1", TopicNames(dead_letter="replay.r1.predictions"))


class _Message:
    def __init__(self, partition: int, offset: int, eof: bool = False) -> None:
        self._partition, self._offset, self._eof = partition, offset, eof

    def error(self) -> object:
        from confluent_kafka import KafkaError

        return KafkaError(KafkaError._PARTITION_EOF) if self._eof else None

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return b"{}"

    def timestamp(self) -> tuple[int, int]:
        return (1, self._offset)


class _Consumer:
    """Hands out a partition's records in the order asked, a few per call, and records what
    each ``consume`` asked for."""

    def __init__(self, records: list[_Message]) -> None:
        self.records = records
        self.asked: list[int] = []

    def consume(self, count: int, timeout: float) -> list[_Message]:
        self.asked.append(count)
        handed, self.records = self.records[: min(count, 4)], self.records[min(count, 4) :]
        return handed

    def incremental_unassign(self, partitions: object) -> None:
        pass

    def close(self) -> None:
        pass


def test_the_reader_never_asks_for_more_records_than_the_range_has_left() -> None:
    """The client answers a batch when it holds that many messages or its timeout passed: a
    request beyond what is left made every range's last batch wait the whole timeout."""
    from stream_app.replay.reader import RangeReader
    from stream_app.settings import KafkaSettings

    plan = ReplayPlan("t", 1, 2, [PartitionRange(0, 10, 17), PartitionRange(1, 3, 6)])
    reader = RangeReader(KafkaSettings(), plan, "g", batch_size=5)
    reader.consumer.close()
    records = [_Message(0, o) for o in range(10, 17)] + [_Message(1, o) for o in range(3, 6)]
    fake = reader.consumer = _Consumer(records)  # type: ignore[assignment]
    read = [(m.partition, m.offset) for batch in reader.batches() for m in batch]
    assert read == [(0, o) for o in range(10, 17)] + [(1, o) for o in range(3, 6)]
    assert fake.asked == [5, 5, 2]  # 10 left, 6 left, then the last 2
