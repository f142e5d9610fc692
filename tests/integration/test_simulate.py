"""The simulator against the real servers: live traffic to Kafka, history to Cassandra."""

from __future__ import annotations

import io
from typing import Any

import orjson

from stream_app.contracts.decode import (
    decode_client_event,
    decode_ground_truth,
    decode_sensor_reading,
)
from stream_app.errors import InvalidEvent
from stream_app.simulation.backfill import write_history
from stream_app.simulation.live import LiveOptions, run_live
from stream_app.storage.ground_truth import GroundTruthStore
from stream_app.storage.predictions import PredictionStore
from stream_app.use_cases.spec import load_use_case
from tests.conftest import Deployment, consume_all


def test_live_traffic_reaches_every_topic(deployment: Deployment) -> None:
    settings = deployment.settings
    options = LiveOptions(
        rate=400,
        duration_s=2.5,
        seed=9,
        invalid_rate=0.05,
        label_delay_factor=0.001,
        run_id="live",
        drift_at_s=1.25,
        readings_per_event=4,
    )
    report = run_live(settings, load_use_case("delivery_eta"), options, progress=io.StringIO())
    assert report.client_events == 1000
    assert report.delivery_failures == 0
    assert sum(report.invalid.values()) > 10
    assert 300 < report.drifted_events < 700  # events after --drift-at follow the drifted rules

    topics = settings.kafka.topics
    events = consume_all(settings, topics.client_events, 1000)
    assert len(events) == 1000
    valid, refused = 0, 0
    for message in events:
        try:
            assert decode_client_event(message.value()).event_id == message.key().decode()
            valid += 1
        except InvalidEvent:
            refused += 1
    assert refused == sum(report.invalid.values())

    readings = consume_all(settings, topics.sensor_readings, report.readings)
    assert len(readings) == report.readings > 2000
    decode_sensor_reading(readings[0].value())

    labels = consume_all(settings, topics.ground_truth, report.ground_truth)
    assert len(labels) == report.ground_truth == valid - report.unlabelled
    assert {m.key() for m in labels} <= {m.key() for m in events}
    truth = decode_ground_truth(labels[0].value())
    assert truth.label_time >= 1_795_000_000_000


def test_history_lands_where_training_reads(deployment: Deployment, cassandra_session: Any) -> None:
    settings = deployment.settings
    use_case = load_use_case("delivery_eta")
    report = write_history(
        cassandra_session,
        settings.cassandra.keyspace,
        use_case,
        days=0.25,
        seed=4,
        home=settings.services.home,
        events_per_day=8_000,
        progress=io.StringIO(),
    )
    assert report.events == 2000
    # the last hour's deliveries have not arrived yet; 3 % of orders are never labelled
    assert 0.75 * report.events < report.labels < report.events

    store = PredictionStore(cassandra_session, settings.cassandra.keyspace, use_case.name)
    rows = list(store.scan(report.start_ms, report.end_ms + 1))
    assert len(rows) == report.events
    assert store.feature_names(rows[0].feature_set) == use_case.feature_names
    assert len(rows[0].features) == len(use_case.feature_names)
    assert rows[0].model_version == "history"
    assert rows[0].value is None

    labels = GroundTruthStore(cassandra_session, settings.cassandra.keyspace, use_case.name)
    found = labels.read([r.event_id for r in rows])
    assert len(found) == report.labels

    batch = cassandra_session.execute(
        f"SELECT COUNT(*) AS n FROM {settings.cassandra.keyspace}.entity_features "
        "WHERE use_case = 'delivery_eta' AND entity_key = 'restaurant_id' "
        "AND entity_id = 'restaurant-3'"
    ).one()
    assert batch.n == 1
    csv_file = (
        settings.services.home / "simulated" / "delivery_eta" / "batch_features.restaurant_id.csv"
    )
    lines = csv_file.read_text().splitlines()
    assert lines[0] == "restaurant_id,restaurant_prep_minutes"
    assert len(lines) == 81
    assert orjson.loads(orjson.dumps(report.__dict__))["events"] == 2000
