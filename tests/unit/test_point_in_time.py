"""Point-in-time features of past events against a direct computation from the raw readings.

The reference below knows nothing of panes: for each feature it takes the readings inside the
window served at t that came strictly before t, and applies the function with numpy. Served
``now``: the window of ``windows.served_window_start`` (its newest step still filling; a
tumbling window with no reading yet serves the one before). Served at ``event_time``: the
newest window complete at t.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.contracts.decode import SensorReading
from stream_app.features.point_in_time import BatchVersions, PointInTimeFeatures
from stream_app.features.windows import served_window_start
from stream_app.use_cases.spec import AggregateFeature, Serving, load_use_case

EATS = load_use_case("delivery_eta")
REPLAYED = EATS.model_copy(update={"serving": Serving(features_at="event_time")})
MINUTE = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % (15 * MINUTE)


def reference(
    readings: list[SensorReading], name: str, entity: tuple[str, str], t: int, complete: bool
) -> float | None:
    feature = EATS.features[name]
    assert isinstance(feature, AggregateFeature)
    size, step = feature.window.size_ms, feature.window.step_ms

    def inside(start: int) -> list[tuple[int, float]]:
        return [
            (r.event_time, r.values[feature.reading])
            for r in readings
            if r.entities.get(entity[0]) == entity[1]
            and start <= r.event_time < start + size
            and r.event_time < t
        ]

    if complete:
        found = inside(t - t % step - size)
    else:
        start = served_window_start(t, size, step)
        found = inside(start)
        if not found and size == step:
            found = inside(start - size)
    if not found:  # an empty window serves nothing, a count included (the default is used)
        return None
    values = np.array([v for _, v in found])
    return {
        "count": float(len(values)),
        "mean": float(values.mean()),
        "std": float(min(values.std(), (values.max() - values.min()) / 2)),
        "last": float(found[-1][1]),  # the newest (ties: the one merged last)
        "min": float(values.min()),
        "max": float(values.max()),
        "sum": float(values.sum()),
    }[feature.function]


def reading(minutes: float, courier: str, zone: str, speed: float) -> SensorReading:
    return SensorReading("gps", T0 + int(minutes * MINUTE), {"courier_id": courier,
                                                              "zone_id": zone},
                         {"speed_kmh": speed})  # fmt: skip


@given(
    raw=st.lists(
        st.tuples(st.floats(0, 60), st.sampled_from(["c1", "c2"]), st.sampled_from(["z1", "z2"]),
                  st.floats(0, 80)),
        max_size=60,
    ),
    at=st.lists(st.floats(0, 75), min_size=1, max_size=12),
    at_event_time=st.booleans(),
)  # fmt: skip
@settings(max_examples=200, deadline=None)
def test_served_values_equal_a_direct_computation(
    raw: list[tuple[float, str, str, float]], at: list[float], at_event_time: bool
) -> None:
    readings = sorted((reading(*r) for r in raw), key=lambda r: r.event_time)
    features = PointInTimeFeatures(REPLAYED if at_event_time else EATS)
    applied = 0
    for minutes in sorted(at):
        t = T0 + int(minutes * MINUTE)
        before = [r for r in readings if r.event_time < t]
        features.advance(before[applied:])
        applied = len(before)
        for entity in (("courier_id", "c1"), ("zone_id", "z2")):
            served = features.served(dict([entity]), [entity[0]], t).get(entity, {})
            for name, feature in EATS.features_of(AggregateFeature).items():
                if feature.entity != entity[0]:
                    continue
                expected = reference(readings, name, entity, t, at_event_time)
                got = served.get(name)
                if expected is None:
                    assert got is None, (name, t)
                else:
                    assert got is not None, (name, t)
                    assert got.value == pytest.approx(expected, rel=1e-9, abs=1e-9), (name, t)


def test_a_reading_at_or_after_the_event_time_does_not_count() -> None:
    features = PointInTimeFeatures(EATS)
    t = T0 + 5 * MINUTE
    features.advance([reading(4.5, "c1", "z1", 10.0)])
    served = features.served({"courier_id": "c1"}, ["courier_id"], t)[("courier_id", "c1")]
    assert served["courier_pings_10m"].value == 1
    # the importer advances only readings before t; a later one changes nothing at t
    features.advance([reading(5.0, "c1", "z1", 99.0)])
    later = features.served({"courier_id": "c1"}, ["courier_id"], t + MINUTE)
    assert later[("courier_id", "c1")]["courier_pings_10m"].value == 2


def test_forgetting_old_panes_changes_no_value() -> None:
    rng = np.random.default_rng(5)
    readings = sorted(
        (reading(float(m), f"c{rng.integers(3)}", f"z{rng.integers(2)}", float(rng.random() * 50))
         for m in rng.uniform(0, 600, 400)),
        key=lambda r: r.event_time,
    )  # fmt: skip
    kept, forgetting = PointInTimeFeatures(EATS), PointInTimeFeatures(EATS)
    applied = 0
    for minutes in range(5, 600, 7):
        t = T0 + minutes * MINUTE
        before = [r for r in readings if r.event_time < t]
        kept.advance(before[applied:])
        forgetting.advance(before[applied:])
        applied = len(before)
        forgetting.forget_before(t)
        for entity in (("courier_id", "c1"), ("zone_id", "z0")):
            a = kept.served(dict([entity]), [entity[0]], t)
            b = forgetting.served(dict([entity]), [entity[0]], t)
            assert a == b, minutes
    assert len(forgetting.aggregator.panes) < len(kept.aggregator.panes) / 5


def test_batch_features_are_the_version_loaded_before_the_event() -> None:
    versions = BatchVersions({("restaurant_id", "r1", "restaurant_prep_minutes"): [
        (T0, 10.0), (T0 + 60 * MINUTE, 14.0)]})  # fmt: skip
    features = PointInTimeFeatures(EATS, versions)

    def prep(t: int) -> float | None:
        found = features.served({"restaurant_id": "r1"}, ["restaurant_id"], t)
        value = found[("restaurant_id", "r1")].get("restaurant_prep_minutes")
        return None if value is None else value.value

    assert prep(T0 - 1) is None
    assert prep(T0) == 10.0
    assert prep(T0 + 60 * MINUTE - 1) == 10.0
    assert prep(T0 + 60 * MINUTE) == 14.0
    assert math.isclose(prep(T0 + 10**9) or 0, 14.0)
