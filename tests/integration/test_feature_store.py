"""The feature store against the real Cassandra: point-in-time lookups across window
boundaries, batch loads (CSV, JSONL, Parquet) with their rejections, and topic incarnations."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stream_app.contracts.decode import SensorReading
from stream_app.errors import ConfigurationError
from stream_app.features.batch_load import load_batch_features
from stream_app.features.pane_store import PaneStore
from stream_app.features.panes import PaneAggregator, PaneKey, aggregate_groups
from stream_app.features.store import CassandraFeatureStore
from stream_app.use_cases.spec import load_use_case
from tests.conftest import Deployment

MINUTE = 60_000
T0 = 1_795_000_020_000 - 1_795_000_020_000 % (15 * MINUTE)  # a 15-minute boundary
EATS = load_use_case("delivery_eta")


def stores(deployment: Deployment, session: Any) -> tuple[PaneStore, CassandraFeatureStore]:
    keyspace = deployment.settings.cassandra.keyspace
    panes = PaneStore(session, keyspace, EATS.name, retention_s=86_400 * 400)
    return panes, CassandraFeatureStore(session, keyspace, EATS, panes)


def write_readings(panes: PaneStore, readings: list[tuple[int, float]]) -> None:
    """Courier c1's speed readings (event time offset from T0, value), in zone z1."""
    aggregator = PaneAggregator(aggregate_groups(EATS))
    events = [
        SensorReading("gps-c1", T0 + dt, {"courier_id": "c1", "zone_id": "z1"}, {"speed_kmh": v})
        for dt, v in readings
    ]
    aggregator.load(aggregator.unknown_panes((0, r) for r in events), {})
    for offset, reading in enumerate(events):
        aggregator.apply(0, offset, reading)
    asyncio.run(panes.write(panes.snapshot(aggregator.take_dirty())))


def test_point_in_time_lookups_across_window_boundaries(
    deployment: Deployment, cassandra_session: Any
) -> None:
    panes, store = stores(deployment, cassandra_session)
    # one reading a minute for 20 minutes: speed = minute number
    write_readings(panes, [(m * MINUTE + 30_000, float(m)) for m in range(20)])
    courier, zone = ("courier_id", "c1"), ("zone_id", "z1")

    def at(minutes: float) -> dict[str, Any]:
        found = asyncio.run(store.as_of([courier, zone], T0 + int(minutes * MINUTE)))
        return {**found[courier], **{f"zone.{k}": v for k, v in found[zone].items()}}

    assert at(0.5) == {}  # the first pane is not over yet: nothing from the future
    early = at(1.2)  # the first 1-minute pane ended; 5-minute and 15-minute panes have not
    assert early["courier_speed_mean_10m"].value == 0.0
    assert early["courier_pings_10m"].value == 1.0
    assert "courier_speed_last" not in early
    assert "zone.zone_speed_mean_15m" not in early
    # 12.5 minutes: the newest complete 10-minute window is [2, 12)
    later = at(12.5)
    assert later["courier_pings_10m"].value == 10.0
    assert later["courier_speed_mean_10m"].value == pytest.approx(sum(range(2, 12)) / 10)
    assert later["courier_speed_last"].value == 9.0  # tumbling [5, 10): its newest reading
    assert "zone.zone_speed_mean_15m" not in later  # no 15-minute window has ended yet
    after = at(15.0)
    assert after["courier_speed_last"].value == 14.0  # [10, 15) just ended
    assert after["zone.zone_speed_mean_15m"].value == pytest.approx(sum(range(15)) / 15)
    assert after["zone.zone_speed_std_15m"].value > 0
    # live reads serve the open windows with their unfinished panes (in real time those hold
    # only readings up to now; here the whole of [10, 15) is already written)
    live = asyncio.run(store.read_entities([courier], T0 + int(12.5 * MINUTE)))[courier]
    assert live["courier_pings_10m"].value == 10.0  # [3, 13): minutes 3..12
    assert live["courier_speed_last"].value == 14.0


def test_batch_features_by_validity_time(
    deployment: Deployment, cassandra_session: Any, tmp_path: Path
) -> None:
    _, store = stores(deployment, cassandra_session)
    keyspace = deployment.settings.cassandra.keyspace
    first, second = tmp_path / "monday.csv", tmp_path / "tuesday.csv"
    first.write_text("restaurant_id,restaurant_prep_minutes\nr1,10\nr2,20\n")
    second.write_text("restaurant_id,restaurant_prep_minutes\nr1,11\n")
    load_batch_features(cassandra_session, keyspace, EATS, first, T0, io.StringIO())
    load_batch_features(cassandra_session, keyspace, EATS, second, T0 + 86_400_000, io.StringIO())
    key = ("restaurant_id", "r1")
    monday = asyncio.run(store.as_of([key], T0 + 3_600_000))[key]
    tuesday = asyncio.run(store.as_of([key], T0 + 86_400_000 + 1))[key]
    before = asyncio.run(store.as_of([key], T0 - 1))[key]
    assert monday["restaurant_prep_minutes"].value == 10.0
    assert tuesday["restaurant_prep_minutes"].value == 11.0
    assert before == {}
    current = asyncio.run(store.read_entities([key, ("restaurant_id", "r2")]))
    assert current[key]["restaurant_prep_minutes"].value == 11.0
    assert current[("restaurant_id", "r2")]["restaurant_prep_minutes"].value == 20.0


ROWS = [
    {"restaurant_id": "r1", "restaurant_prep_minutes": 12.5},
    {"restaurant_id": "", "restaurant_prep_minutes": 3.0},
    {"restaurant_id": "r3", "restaurant_prep_minutes": "fast"},
    {"restaurant_id": "r4", "restaurant_prep_minutes": None},
    {"restaurant_id": "r5", "restaurant_prep_minutes": 9.0},
]


def _csv(path: Path) -> None:
    lines = ["restaurant_id,restaurant_prep_minutes"]
    for r in ROWS:
        value = r["restaurant_prep_minutes"]
        lines.append(f"{r['restaurant_id']},{'' if value is None else value}")
    lines.append("r6,1,extra")
    path.write_text("\n".join(lines) + "\n")


def _jsonl(path: Path) -> None:
    lines = [json.dumps(r) for r in ROWS] + ["{not json"]
    path.write_text("\n".join(lines) + "\n")


def _parquet(path: Path) -> None:
    table = pa.table({
        "restaurant_id": [r["restaurant_id"] for r in ROWS],
        "restaurant_prep_minutes": [
            None if r["restaurant_prep_minutes"] is None else str(r["restaurant_prep_minutes"])
            for r in ROWS
        ],
    })  # fmt: skip
    pq.write_table(table, path)


@pytest.mark.parametrize(("suffix", "write", "malformed"), [
    (".csv", _csv, 1), (".jsonl", _jsonl, 1), (".parquet", _parquet, 0),
])  # fmt: skip
def test_every_format_loads_and_reports_its_rejections(
    deployment: Deployment, cassandra_session: Any, tmp_path: Path, suffix: str, write: Any,
    malformed: int,
) -> None:  # fmt: skip
    path = tmp_path / f"prep{suffix}"
    write(path)
    progress = io.StringIO()
    report = load_batch_features(
        cassandra_session, deployment.settings.cassandra.keyspace, EATS, path, T0, progress
    )
    summary = report.summary()
    assert summary["loaded_rows"] == 2  # r1 and r5
    reasons = summary["rejected_by_reason"]
    assert reasons["missing entity id"] == 1
    assert reasons["invalid number"] == 1
    assert reasons["no values"] == 1  # r4: every cell empty
    assert reasons.get("malformed", 0) == malformed
    assert all(r["line"] >= 1 for r in summary["first_rejections"])
    assert "loading [" in progress.getvalue()
    _, store = stores(deployment, cassandra_session)
    found = asyncio.run(store.read_entities([("restaurant_id", "r1"), ("restaurant_id", "r3")]))
    assert found[("restaurant_id", "r1")]["restaurant_prep_minutes"].value == 12.5
    assert found[("restaurant_id", "r3")] == {}


def test_a_file_with_an_unknown_column_is_refused(
    deployment: Deployment, cassandra_session: Any, tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("restaurant_id,restaurant_prep_minutse\nr1,10\n")
    keyspace = deployment.settings.cassandra.keyspace
    with pytest.raises(ConfigurationError, match="restaurant_prep_minutse"):
        load_batch_features(cassandra_session, keyspace, EATS, path, T0, io.StringIO())


def test_offsets_of_a_recreated_topic_are_not_taken_for_a_replay(
    deployment: Deployment, cassandra_session: Any
) -> None:
    keyspace = deployment.settings.cassandra.keyspace
    old = PaneStore(cassandra_session, keyspace, EATS.name, 3600, source_topic_id="topic-A")
    aggregator = PaneAggregator(aggregate_groups(EATS))
    reading = SensorReading("s", T0, {"courier_id": "c9"}, {"speed_kmh": 10.0})
    aggregator.load(aggregator.unknown_panes([(0, reading)]), {})
    aggregator.apply(0, 500, reading)
    asyncio.run(old.write(old.snapshot(aggregator.take_dirty())))
    key = PaneKey("courier_id", "c9", "speed_kmh/60000", T0, 0)
    same = asyncio.run(old.load([key]))[key]
    assert same.max_offset == 500  # same topic: offsets at or below 500 are replays
    new = PaneStore(cassandra_session, keyspace, EATS.name, 3600, source_topic_id="topic-B")
    fresh = asyncio.run(new.load([key]))[key]
    assert fresh.max_offset == -1  # another incarnation: offset 0 onwards is new data
    assert fresh.aggregate.count == 1  # ... and what was merged before stays


def test_a_worker_taking_a_partition_over_drops_the_readings_its_predecessor_dropped(
    deployment: Deployment, cassandra_session: Any
) -> None:
    """The watermark survives a restart: a reading late for the first worker is late for the
    one that replaces it (before, the new worker began with no watermark and merged it)."""
    from prometheus_client import CollectorRegistry

    from stream_app.features.service import FeatureService
    from stream_app.kafka.producer import KafkaPublisher
    from stream_app.messages import InputMessage
    from stream_app.monitoring.prometheus import WorkerMetrics
    from stream_app.monitoring.state import Monitor

    settings = deployment.settings
    keyspace = settings.cassandra.keyspace
    topic = settings.kafka.topics.sensor_readings

    def message(offset: int, minutes: float) -> InputMessage:
        value = {
            "schema_version": 1,
            "sensor_id": "s",
            "event_time": T0 + int(minutes * MINUTE),
            "entities": {"courier_id": "c1", "zone_id": "z1"},
            "values": {"speed_kmh": 20.0},
        }
        return InputMessage(topic, 0, offset, b"s", json.dumps(value).encode(), T0)  # fmt: skip

    def worker() -> FeatureService:
        panes = PaneStore(cassandra_session, keyspace, EATS.name, 86_400 * 400,
                          source_topic_id="topic-W")  # fmt: skip
        return FeatureService(
            settings=settings, use_case=EATS, panes=panes,
            publisher=KafkaPublisher(settings.kafka, client_id="test-watermarks"),
            metrics=WorkerMetrics(CollectorRegistry()),
            monitor=Monitor(EATS, settings.monitoring),
        )  # fmt: skip

    zone = PaneKey("zone_id", "z1", "speed_kmh/900000", T0, 0)
    first = worker()
    # the zone's quarter hour [T0, T0 + 15 min) gets a reading; then one 40 minutes later
    # moves the partition's watermark past the end of that quarter hour
    asyncio.run(first.process([message(0, 1), message(1, 40)]))
    # the first worker dies; a new one takes the partition and reads on from offset 2
    second = worker()
    result = asyncio.run(second.process([message(2, 2)]))
    # every pane it would update had closed before the watermark (minute 40): the courier's
    # 10-minute windows (1-minute panes) at minute 12.5, its 5-minute window at 5.5 (both with
    # 30 s of lateness), the zone's quarter hour at 15. Three panes refused, none merged.
    assert (result.late, result.merged, result.duplicates) == (3, 0, 0)
    stored = asyncio.run(second.panes.load([zone]))[zone]
    assert stored.aggregate.count == 1  # as the first worker would have kept it
    assert second.aggregator.watermarks[0] == T0 + 40 * MINUTE
