"""Windows, aggregates and feature vectors: the pure functions behind served features."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app.features.vector import FeatureVectorBuilder, StoredFeature
from stream_app.features.windows import (
    RunningAggregate,
    aggregate_rows,
    served_window_start,
    window_starts,
)
from stream_app.use_cases.spec import AGGREGATE_FUNCTIONS, load_use_case

MINUTE = 60_000


def test_tumbling_windows() -> None:
    size = 15 * MINUTE
    assert served_window_start(16 * MINUTE, size, size) == 15 * MINUTE
    assert served_window_start(15 * MINUTE, size, size) == 15 * MINUTE  # start is inclusive
    assert list(window_starts(16 * MINUTE, size, size)) == [15 * MINUTE]


def test_hopping_windows_serve_the_oldest_open_window() -> None:
    size, step = 10 * MINUTE, MINUTE
    t = 25 * MINUTE + 30_000
    starts = list(window_starts(t, size, step))
    assert starts == [m * MINUTE for m in range(16, 26)]
    assert served_window_start(t, size, step) == 16 * MINUTE
    assert all(s <= t < s + size for s in starts)


@given(
    t=st.integers(0, 10**13),
    step_minutes=st.integers(1, 30),
    steps=st.integers(1, 12),
)
def test_every_window_that_contains_t_is_listed(t: int, step_minutes: int, steps: int) -> None:
    step = step_minutes * MINUTE
    size = step * steps
    starts = list(window_starts(t, size, step))
    assert len(starts) == steps
    assert all(s <= t < s + size and s % step == 0 for s in starts)
    assert served_window_start(t, size, step) == starts[0]


@given(
    values=st.lists(st.floats(-1e6, 1e6), max_size=30),
    function=st.sampled_from(AGGREGATE_FUNCTIONS),
)
def test_streaming_and_batch_aggregates_agree(values: list[float], function: str) -> None:
    running = RunningAggregate()
    for i, value in enumerate(values):
        running.add(value, i)
    streamed = running.value(function)
    k = 32
    padded = np.zeros((1, k))
    padded[0, : len(values)] = values
    batch = aggregate_rows(padded, np.array([len(values)]), function)[0]
    if streamed is None:
        assert math.isnan(batch)
    else:
        assert batch == pytest.approx(streamed, rel=1e-6, abs=1e-3)
    if values and function == "mean":
        assert streamed == pytest.approx(float(np.mean(values)), rel=1e-9, abs=1e-9)
    if values and function == "std":
        assert streamed == pytest.approx(float(np.std(values)), rel=1e-6, abs=1e-3)


def test_an_empty_window_counts_zero_and_has_no_mean() -> None:
    assert RunningAggregate().value("count") == 0.0
    assert RunningAggregate().value("mean") is None


EVENT = {"distance_km": 4.0, "items": 3, "hour_of_day": 9.0, "day_of_week": 1}
ENTITIES = {"courier_id": "courier-1", "restaurant_id": "restaurant-2", "zone_id": "zone-3"}
NOW = 1_795_783_200_000


def builder() -> FeatureVectorBuilder:
    use_case = load_use_case("delivery_eta")
    return FeatureVectorBuilder(use_case, use_case.feature_names)


def test_a_full_vector_in_model_order() -> None:
    stored = {
        ("courier_id", "courier-1"): {
            "courier_speed_mean_10m": StoredFeature(18.0, NOW - 5_000),
            "courier_pings_10m": StoredFeature(7.0, NOW - 5_000),
            "courier_speed_last": StoredFeature(17.5, NOW - 5_000),
        },
        ("zone_id", "zone-3"): {
            "zone_speed_mean_15m": StoredFeature(22.0, NOW - 20_000),
            "zone_speed_std_15m": StoredFeature(3.0, NOW - 20_000),
        },
        ("restaurant_id", "restaurant-2"): {
            "restaurant_prep_minutes": StoredFeature(14.0, NOW - 3 * 86_400_000),
        },
    }
    served = builder().build(EVENT, ENTITIES, stored, NOW)
    assert served.values == [4.0, 3.0, 9.0, 1.0, 18.0, 7.0, 22.0, 3.0, 17.5, 14.0]
    assert served.missing == []
    assert served.age_ms == 20_000  # the oldest streaming feature; batch features do not count


def test_missing_and_stale_features_fall_back_to_defaults() -> None:
    stored = {
        ("courier_id", "courier-1"): {
            "courier_speed_mean_10m": StoredFeature(18.0, NOW - 16 * MINUTE),  # older than 15m
        },
    }
    served = builder().build({"distance_km": None, "items": True}, ENTITIES, stored, NOW)
    assert served.values[0] == 3.0
    assert served.values[1] == 1.0
    assert "distance_km" in served.missing
    assert "items" not in served.missing
    assert "courier_speed_mean_10m" in served.missing
    assert served.values[4] == 20.0
    assert "restaurant_prep_minutes" in served.missing
    assert served.age_ms == 0


def test_an_event_without_the_entity_key_gets_defaults() -> None:
    served = builder().build(EVENT, {}, {}, NOW)
    assert len(served.missing) == 6


def test_a_model_may_use_a_subset_in_its_own_order() -> None:
    use_case = load_use_case("delivery_eta")
    subset = FeatureVectorBuilder(use_case, ["items", "distance_km"])
    assert subset.build(EVENT, ENTITIES, {}, NOW).values == [3.0, 4.0]
    with pytest.raises(ValueError, match="not in use case"):
        FeatureVectorBuilder(use_case, ["items", "colour"])


def test_the_std_of_identical_readings_is_zero_despite_cancellation() -> None:
    # E[x^2] - E[x]^2 of three readings of 86.04487914742705 is 2.7e-12, not 0 (found by
    # hypothesis in test_panes); both the running and the vectorised aggregate give 0
    reading = 86.04487914742705
    running = RunningAggregate()
    for _ in range(3):
        running.add(reading, 0)
    assert running.value("std") == 0.0
    rows = aggregate_rows(np.array([[reading, reading, reading, 0.0]]), np.array([3]), "std")
    assert rows.tolist() == [0.0]
    spread = RunningAggregate()
    for value in (1.0, 2.0, 3.0, 4.0):
        spread.add(value, 0)
    assert spread.value("std") == pytest.approx(float(np.std([1.0, 2.0, 3.0, 4.0])))
