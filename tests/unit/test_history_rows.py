"""History and readings rows: the same checks as the live decoders, with reasons and codes."""

from __future__ import annotations

import pytest

from stream_app.errors import ConfigurationError
from stream_app.history.rows import (
    ColumnMap,
    EventRows,
    ReadingRows,
    event_names,
    parse_time,
)
from stream_app.use_cases.spec import load_use_case

EATS = load_use_case("delivery_eta")
MACHINES = load_use_case("machine_failure")
T = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def row(**values: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": "e1", "event_time": str(T), "courier_id": "c1", "restaurant_id": "r1",
        "zone_id": "z1", "distance_km": "3.5", "items": "2", "hour_of_day": "", "day_of_week": "1",
        "delivery_minutes": "31",
    }  # fmt: skip
    base.update(values)
    return base


def test_times_in_every_accepted_form() -> None:
    assert parse_time(str(T), "ms", "t") == T
    assert parse_time(T / 1000, "s", "t") == T
    assert parse_time("2023-11-14T22:13:20Z", "ms", "t") == T
    assert parse_time("2023-11-14 22:13:20", "ms", "t") == T  # no zone: UTC
    assert parse_time("2023-11-14T23:13:20+01:00", "ms", "t") == T
    assert str(parse_time(str(T // 1000), "ms", "t")).startswith(
        "invalid_value: t='1700000000' is outside 2000-2100 (seconds? pass --time-unit s)"
    )
    assert str(parse_time("yesterday", "ms", "t")).startswith("invalid_value: t='yesterday'")
    assert parse_time("", "ms", "t") == "missing_field: t is empty"
    assert parse_time("nan", "ms", "t") == "non_finite_number: t='nan'"


def test_an_event_row_becomes_the_event_the_worker_decodes() -> None:
    parsed = EventRows(EATS, ColumnMap(), "ms").parse(row())
    assert not isinstance(parsed, str)
    event = parsed.event
    assert (event.event_id, event.event_time) == ("e1", T)
    assert event.entities == {"courier_id": "c1", "restaurant_id": "r1", "zone_id": "z1"}
    assert event.fields == {"distance_km": 3.5, "items": 2.0, "hour_of_day": None,
                            "day_of_week": 1.0}  # fmt: skip
    assert parsed.label is not None
    assert (parsed.label.label, parsed.label.label_time) == (31.0, T)  # no label_time: at once


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"event_id": " "}, "missing_field: event_id is empty"),
        ({"courier_id": ""}, "missing_entity: courier_id is empty"),
        ({"event_time": "2023-13-01"}, "invalid_value: event_time="),
        ({"distance_km": "far"}, "wrong_type: distance_km='far' is not a number"),
        ({"distance_km": "inf"}, "non_finite_number: distance_km='inf'"),
        ({"delivery_minutes": "soon"}, "wrong_type: delivery_minutes='soon' is not a number"),
        ({"label_time": str(T - 1)}, "invalid_value: label_time is before event_time"),
        ({"event_id": "x" * 129}, "invalid_value: event_id is longer than 128"),
    ],
)
def test_a_bad_row_is_refused_with_its_code(change: dict[str, object], reason: str) -> None:
    refused = EventRows(EATS, ColumnMap(), "ms").parse(row(**change))
    assert isinstance(refused, str)
    assert refused.startswith(reason)


def test_unlabelled_rows_are_kept_and_binary_labels_are_checked() -> None:
    parsed = EventRows(EATS, ColumnMap(), "ms").parse(row(delivery_minutes=""))
    assert not isinstance(parsed, str)
    assert parsed.label is None
    machines = EventRows(MACHINES, ColumnMap(), "ms")
    base = {"event_id": "j1", "event_time": T, "machine_id": "m1", "line_id": "l1",
            "planned_load_pct": 50, "job_hours": 2, "machine_age_years": 3,
            "night_shift": "true"}  # fmt: skip
    ok = machines.parse({**base, "failed_during_job": "1"})
    assert not isinstance(ok, str)
    assert ok.event.fields["night_shift"] == 1.0
    assert machines.parse({**base, "failed_during_job": "2"}) == (
        "invalid_value: failed_during_job='2' (binary labels are 0 or 1)"
    )


def test_columns_are_renamed_and_a_missing_one_is_named() -> None:
    columns = ColumnMap.parse(["event_id=order", "event_time=placed_at"], event_names(EATS))
    rows = EventRows(EATS, columns, "ms")
    data = row()
    data["order"], data["placed_at"] = data.pop("event_id"), "2023-11-14T22:13:20Z"
    del data["event_time"]
    parsed = rows.parse(data)
    assert not isinstance(parsed, str)
    assert (parsed.event.event_id, parsed.event.event_time) == ("e1", T)
    with pytest.raises(ConfigurationError, match=r"lacks event_time \(column 'placed_at'\)"):
        rows.check_columns(["order", "courier_id", "restaurant_id", "zone_id"])
    with pytest.raises(ConfigurationError, match="'eta' is not one of"):
        ColumnMap.parse(["eta=minutes"], event_names(EATS))
    with pytest.raises(ConfigurationError, match="expected NAME=COLUMN"):
        ColumnMap.parse(["event_id"], event_names(EATS))


def test_a_readings_row_becomes_a_sensor_reading() -> None:
    readings = ReadingRows(EATS, ColumnMap(), "s")
    reading = readings.parse(
        {"event_time": T / 1000, "courier_id": "c1", "zone_id": "z1", "speed_kmh": "17.5"}
    )
    assert not isinstance(reading, str)
    assert reading.event_time == T
    assert reading.entities == {"courier_id": "c1", "zone_id": "z1"}
    assert reading.values == {"speed_kmh": 17.5}
    assert readings.parse({"event_time": T / 1000, "speed_kmh": 3}) == (
        "missing_entity: no entity id (courier_id, zone_id)"
    )
    assert readings.parse({"event_time": T / 1000, "courier_id": "c1", "speed_kmh": ""}) == (
        "missing_field: every reading value is empty"
    )
    with pytest.raises(ConfigurationError, match="lacks a reading column"):
        readings.check_columns(["event_time", "courier_id", "speed"])
