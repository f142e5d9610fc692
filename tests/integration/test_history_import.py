"""`history import` against the real Cassandra: point-in-time vectors where training reads,
labels joined, rejections by reason and line, and a second import adds nothing."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from stream_app.history.importer import import_history
from stream_app.history.rows import ColumnMap
from stream_app.models.training import load_training_set
from stream_app.storage.ground_truth import GroundTruthStore
from stream_app.storage.predictions import HISTORY_VERSION, PredictionStore
from stream_app.use_cases.spec import load_use_case
from tests.conftest import Deployment

EATS = load_use_case("delivery_eta")
MINUTE = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % (15 * MINUTE)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def events(count: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(1)
    return [
        {
            "order": f"o-{i}", "placed": T0 + 20 * MINUTE + i * 3_000,
            "courier_id": f"c{i % 3}", "restaurant_id": "r1", "zone_id": "z1",
            "distance_km": round(float(rng.uniform(1, 8)), 3), "items": int(rng.integers(1, 5)),
            "hour_of_day": 8.0, "day_of_week": 2, "delivery_minutes": 20 + i % 7,
        }
        for i in range(count)
    ]  # fmt: skip


def readings() -> list[dict[str, Any]]:
    return [
        {"event_time": T0 + m * 20_000, "courier_id": f"c{m % 3}", "zone_id": "z1",
         "speed_kmh": 10 + m % 13}
        for m in range(300)
    ]  # fmt: skip


def run_import(deployment: Deployment, session: Any, files: list[Path], force: bool = False) -> Any:
    columns = ColumnMap({"event_id": "order", "event_time": "placed"})
    return import_history(
        session, deployment.settings.cassandra.keyspace, EATS, files[:1], files[1:], columns,
        force=force, progress=io.StringIO(),
    )  # fmt: skip


def log_chunks(session: Any, keyspace: str) -> int:
    return len(list(session.execute(f"SELECT chunk_id FROM {keyspace}.prediction_log")))


def test_history_lands_where_training_reads_it_point_in_time_and_only_once(
    deployment: Deployment, cassandra_session: Any, tmp_path: Path
) -> None:
    keyspace = deployment.settings.cassandra.keyspace
    rows = events(1200)
    rows.insert(5, {**rows[3]})  # a repeated event id
    rows.insert(9, {**rows[8], "order": "o-bad", "distance_km": "far"})
    rows.append({**rows[0], "order": "o-unlabelled", "delivery_minutes": ""})
    files = [write_csv(tmp_path / "orders.csv", rows), write_csv(tmp_path / "gps.csv", readings())]

    report = run_import(deployment, cassandra_session, files)
    summary = report.summary("delivery_eta")
    assert summary["events"]["rows"] == 1203
    assert summary["events"]["imported"] == 1201
    assert summary["events"]["labelled"] == 1200
    assert summary["events"]["rejected_by_reason"] == {"duplicate_event": 1, "wrong_type": 1}
    first = {r["reason"].split(":")[0]: r["line"] for r in summary["events"]["first_rejections"]}
    assert first == {"duplicate_event": 7, "wrong_type": 11}  # lines of the file (header = 1)
    assert summary["readings"]["imported"] == 300
    assert summary["time_range"]["from"].startswith("2023-11-14T")
    # the readings cover the events' windows: no windowed feature of a courier was missing
    assert summary["missing_feature_share"].get("courier_speed_mean_10m", 0) == 0
    assert summary["missing_feature_share"]["restaurant_prep_minutes"] == 1.0  # none loaded
    json.dumps(summary)

    store = PredictionStore(cassandra_session, keyspace, EATS.name)
    start, end = T0, T0 + 2 * 86_400_000
    logged = {r.event_id: r for r in store.scan(start, end)}
    assert len(logged) == 1201
    assert {r.model_version for r in logged.values()} == {HISTORY_VERSION}
    # o-0 at T0 + 20 min: courier c0's readings (every minute) in the 10-minute window served
    # then, the one whose newest minute is still open: [T0 + 11 min, T0 + 21 min), before o-0
    names = EATS.feature_names
    first_vector = dict(zip(names, logged["o-0"].features.tolist(), strict=True))
    expected = [10 + m % 13 for m in range(300) if m % 3 == 0
                and T0 + 11 * MINUTE <= T0 + m * 20_000 < T0 + 20 * MINUTE]  # fmt: skip
    assert first_vector["courier_pings_10m"] == len(expected)
    assert first_vector["courier_speed_mean_10m"] == np.mean(expected)

    labels = GroundTruthStore(cassandra_session, keyspace, EATS.name)
    training = load_training_set(store, labels, names, start, end)
    assert len(training.labels) == 1200  # the unlabelled event is scored, not learned from

    chunks = log_chunks(cassandra_session, keyspace)
    again = run_import(deployment, cassandra_session, files)
    assert again.already_imported_at is not None
    assert again.events.rows == 0  # not even read
    assert log_chunks(cassandra_session, keyspace) == chunks
    forced = run_import(deployment, cassandra_session, files, force=True)
    assert forced.events.kept == 1201
    assert log_chunks(cassandra_session, keyspace) == chunks  # the same rows, rewritten
    assert len({r.event_id for r in store.scan(start, end)}) == 1201
