"""Windowed aggregates by panes against a reference computed directly from the readings.

Streams are random: several source partitions interleaved, event times out of order, some
readings far too late, duplicates re-delivered after a "crash". The reference decides for
each reading whether it is late from its partition's watermark, then computes every served
window straight from the accepted readings.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.contracts.decode import SensorReading
from stream_app.features.panes import (
    NEVER,
    AggregateGroup,
    PaneAggregator,
    PaneState,
    WindowedFeature,
    aggregate_groups,
    window_values,
)
from stream_app.features.windows import RunningAggregate, served_window_start
from stream_app.use_cases.spec import load_use_case

MINUTE = 60_000
T0 = 1_795_000_000_000

GROUP = AggregateGroup(
    entity_key="courier_id",
    reading="speed",
    pane_ms=MINUTE,
    horizon_ms=5 * MINUTE,
    lateness_ms=30_000,
    features=(
        WindowedFeature("mean_5m", "mean", 5 * MINUTE, MINUTE),
        WindowedFeature("count_5m", "count", 5 * MINUTE, MINUTE),
        WindowedFeature("std_5m", "std", 5 * MINUTE, MINUTE),
        WindowedFeature("max_2m", "max", 2 * MINUTE, MINUTE),
        WindowedFeature("min_1m", "min", MINUTE, MINUTE),
        WindowedFeature("last_5m", "last", 5 * MINUTE, MINUTE),
        WindowedFeature("sum_3m", "sum", 3 * MINUTE, MINUTE),
    ),
)

readings = st.lists(
    st.tuples(
        st.integers(0, 2),  # source partition
        st.sampled_from(["c1", "c2"]),  # entity
        st.integers(-12 * MINUTE, 20 * MINUTE),  # event time offset: late, in order, ahead
        st.floats(0, 100, allow_nan=False),
    ),
    max_size=120,
)


def reading(entity: str, t: int, value: float) -> SensorReading:
    return SensorReading("s", t, {"courier_id": entity}, {"speed": value})


def stream(items: list[tuple[int, str, int, float]]) -> list[tuple[int, int, SensorReading]]:
    """(partition, offset, reading) in consumption order; offsets increase per partition."""
    offsets: dict[int, int] = {}
    out = []
    clock = T0
    for partition, entity, delta, value in items:
        clock += 7_000  # the stream moves forward; event times scatter around it
        offset = offsets.get(partition, -1) + 1
        offsets[partition] = offset
        out.append((partition, offset, reading(entity, clock + delta, value)))
    return out


def reference(
    events: list[tuple[int, int, SensorReading]], at: int
) -> tuple[dict[str, dict[str, float]], int]:
    """Served values per entity computed from the accepted readings, and the late count."""
    watermarks: dict[int, int] = {}
    accepted: list[SensorReading] = []
    late = 0
    for partition, _, r in events:
        pane = r.event_time - r.event_time % GROUP.pane_ms
        if pane + GROUP.horizon_ms + GROUP.lateness_ms <= watermarks.get(partition, NEVER):
            late += 1
        else:
            accepted.append(r)
        watermarks[partition] = max(watermarks.get(partition, NEVER), r.event_time)
    result: dict[str, dict[str, float]] = {}
    for entity in ("c1", "c2"):
        for feature in GROUP.features:
            start = served_window_start(at, feature.size_ms, feature.step_ms)
            end = start + feature.size_ms
            inside = sorted(
                (
                    r
                    for r in accepted
                    if r.entities["courier_id"] == entity and start <= r.event_time < end
                ),
                key=lambda r: r.event_time,
            )
            values = [r.values["speed"] for r in inside]
            if not values and feature.size_ms == feature.step_ms:  # tumbling: the window before
                inside = sorted(
                    (
                        r
                        for r in accepted
                        if r.entities["courier_id"] == entity
                        and start - feature.size_ms <= r.event_time < start
                    ),
                    key=lambda r: r.event_time,
                )
                values = [r.values["speed"] for r in inside]
            if not values:
                continue
            result.setdefault(entity, {})[feature.name] = {
                "mean": statistics.fmean(values) if values else math.nan,
                "count": float(len(values)),
                "std": statistics.pstdev(values),
                "max": max(values),
                "min": min(values),
                "last": values[-1],
                "sum": math.fsum(values),
            }[feature.function]
    return result, late


def served(aggregator: PaneAggregator, entity: str, at: int) -> dict[str, float]:
    panes: dict[tuple[str, int], list[RunningAggregate]] = {}
    for key, state in aggregator.panes.items():
        if key.entity_id == entity:
            panes.setdefault((key.aggregate, key.pane_start), []).append(state.aggregate)
    return {name: v.value for name, v in window_values([GROUP], panes, at).items()}


def run(aggregator: PaneAggregator, events: list[tuple[int, int, SensorReading]]) -> int:
    aggregator.load(aggregator.unknown_panes((p, r) for p, _, r in events), {})
    return sum(aggregator.apply(p, o, r).late for p, o, r in events)


def assert_close(got: dict[str, float], expected: dict[str, float]) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-6), name


@given(items=readings, at_offset=st.integers(0, 25 * MINUTE))
@settings(max_examples=300, deadline=None)
def test_panes_match_the_reference(items: list[Any], at_offset: int) -> None:
    events = stream(items)
    at = T0 + at_offset + 7_000 * len(events) // 2
    aggregator = PaneAggregator([GROUP])
    late = run(aggregator, events)
    expected, expected_late = reference(events, at)
    assert late == expected_late
    for entity in ("c1", "c2"):
        assert_close(served(aggregator, entity, at), expected.get(entity, {}))


@given(items=readings, crash_at=st.integers(0, 120), at_offset=st.integers(0, 25 * MINUTE))
@settings(max_examples=300, deadline=None)
def test_a_restart_replays_without_double_counting(
    items: list[Any], crash_at: int, at_offset: int
) -> None:
    events = stream(items)
    at = T0 + at_offset + 7_000 * len(events) // 2
    first = PaneAggregator([GROUP])
    run(first, events[:crash_at])
    # the store holds what the first worker wrote; the second starts with empty memory and
    # consumes again from an older committed offset (here: from the very beginning)
    stored = {key: PaneState(_copy(s.aggregate), s.max_offset) for key, s in first.panes.items()}
    second = PaneAggregator([GROUP])
    second.load(second.unknown_panes((p, r) for p, _, r in events), stored)
    for p, o, r in events:
        second.apply(p, o, r)
    whole = PaneAggregator([GROUP])
    run(whole, events)
    for entity in ("c1", "c2"):
        assert_close(served(second, entity, at), served(whole, entity, at))


def _copy(state: RunningAggregate) -> RunningAggregate:
    copy = RunningAggregate()
    copy.merge(state)
    return copy


def test_a_late_reading_is_counted_not_merged() -> None:
    aggregator = PaneAggregator([GROUP])
    events = [
        (0, 0, reading("c1", T0 + 20 * MINUTE, 10.0)),  # moves the watermark far ahead
        (0, 1, reading("c1", T0, 99.0)),  # its windows closed 14.5 minutes ago
        (0, 2, reading("c1", T0 + 19 * MINUTE, 30.0)),  # out of order, still in time
    ]
    assert run(aggregator, events) == 1
    values = served(aggregator, "c1", T0 + 20 * MINUTE + 1)
    assert values["count_5m"] == 2.0
    assert values["max_2m"] == 30.0


def test_partitions_keep_their_own_watermark() -> None:
    aggregator = PaneAggregator([GROUP])
    events = [
        (0, 0, reading("c1", T0 + 20 * MINUTE, 10.0)),
        (1, 0, reading("c1", T0 + 17 * MINUTE, 20.0)),  # partition 1 has seen nothing newer
    ]
    assert run(aggregator, events) == 0


def test_the_shipped_use_cases_group_their_windows_into_panes() -> None:
    groups = {(g.entity_key, g.name): g for g in aggregate_groups(load_use_case("delivery_eta"))}
    courier = groups[("courier_id", "speed_kmh/60000")]
    assert {f.name for f in courier.features} == {"courier_speed_mean_10m", "courier_pings_10m"}
    assert courier.horizon_ms == 10 * MINUTE
    assert ("zone_id", "speed_kmh/900000") in groups
    assert ("courier_id", "speed_kmh/300000") in groups


def test_point_in_time_values_never_use_a_pane_that_ends_later() -> None:
    aggregator = PaneAggregator([GROUP])
    run(
        aggregator,
        [(0, 0, reading("c1", T0 + 30_000, 1.0)), (0, 1, reading("c1", T0 + 90_000, 5.0))],
    )
    panes = {(k.aggregate, k.pane_start): [s.aggregate] for k, s in aggregator.panes.items()}
    at = T0 + 100_000  # inside the second pane
    live = window_values([GROUP], panes, at)
    as_of = window_values([GROUP], panes, at, complete_panes_only=True)
    assert live["count_5m"].value == 2.0
    assert as_of["count_5m"].value == 1.0
    assert as_of["last_5m"].event_time == T0 + 30_000


@given(items=readings, at_offset=st.integers(0, 25 * MINUTE))
@settings(max_examples=200, deadline=None)
def test_point_in_time_values_only_use_readings_before_the_time(
    items: list[Any], at_offset: int
) -> None:
    events = stream(items)
    at = T0 + at_offset + 7_000 * len(events) // 2
    aggregator = PaneAggregator([GROUP])
    run(aggregator, events)
    panes = {}
    for key, state in aggregator.panes.items():
        panes.setdefault((key.aggregate, key.pane_start), []).append(state.aggregate)
    for name, feature in window_values([GROUP], panes, at, complete_panes_only=True).items():
        assert feature.event_time < at, name
