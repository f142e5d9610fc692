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
