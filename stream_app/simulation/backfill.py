"""`stream-app simulate --history DAYS`: past events, served vectors and labels into Cassandra.

The rows land where training reads: the prediction tables (``model_version = "history"``, no
value) and ``ground_truth``. The world's batch features are written to the feature store and
to CSV files (one per entity key) under the project's home, as a nightly job would produce.
"""

from __future__ import annotations

import csv
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from cassandra.cluster import Session

from stream_app.contracts.outputs import prediction_id
from stream_app.features.store import CassandraFeatureStore, FeatureRow
from stream_app.progress import StatusLine
from stream_app.simulation.history import history_chunks
from stream_app.simulation.world import DAY_MS, World
from stream_app.storage.ground_truth import GroundTruthStore, LabelRow
from stream_app.storage.predictions import HISTORY_VERSION, PredictionRow, PredictionStore, pack
from stream_app.use_cases.spec import UseCase


@dataclass
class HistoryReport:
    """What a history run wrote."""

    run_id: str
    events: int = 0
    labels: int = 0
    batch_features: int = 0
    start_ms: int = 0
    end_ms: int = 0
    seconds: float = 0.0
    batch_files: tuple[str, ...] = ()


def write_batch_files(world: World, folder: Path) -> list[Path]:
    """The world's batch features as CSV, one file per entity key (header: key, features)."""
    by_entity: dict[str, dict[str, Any]] = {}
    for name, (entity, values) in world.batch_features().items():
        by_entity.setdefault(entity, {})[name] = values
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for entity, features in by_entity.items():
        path = folder / f"batch_features.{entity}.csv"
        with path.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow([entity, *features])
            for index, entity_id in enumerate(world.ids[entity]):
                writer.writerow([entity_id, *(f"{features[n][index]:.6g}" for n in features)])
        paths.append(path)
    return paths


def write_history(
    session: Session,
    keyspace: str,
    use_case: UseCase,
    days: float,
    seed: int,
    home: Path,
    drift_at_s: float | None = None,
    events_per_day: int | None = None,
    progress: TextIO = sys.stderr,
) -> HistoryReport:
    """Simulate ``days`` of history ending now and store it for training."""
    began = time.monotonic()
    world = World(use_case, seed)
    end_ms = int(time.time() * 1000)
    start_ms = end_ms - int(days * DAY_MS)
    report = HistoryReport(run_id=f"h{seed}-{end_ms // 1000:x}", start_ms=start_ms, end_ms=end_ms)
    features = CassandraFeatureStore(session, keyspace, use_case)
    predictions = PredictionStore(session, keyspace, use_case.name)
    labels = GroundTruthStore(session, keyspace, use_case.name)

    batch_rows = [
        FeatureRow(entity, world.ids[entity][i], name, float(value), start_ms, None)
        for name, (entity, values) in world.batch_features().items()
        for i, value in enumerate(values.tolist())
    ]
    report.batch_features = features.write(batch_rows)
    report.batch_files = tuple(
        str(p) for p in write_batch_files(world, home / "simulated" / use_case.name)
    )
    drift_at_ms = None if drift_at_s is None else start_ms + int(drift_at_s * 1000)
    feature_set = predictions.register_feature_set(use_case.feature_names)
    status = StatusLine(progress)
    for chunk in history_chunks(
        world, start_ms, end_ms, report.run_id, drift_at_ms, events_per_day
    ):
        times = chunk.events.times_ms.tolist()
        rows = [
            PredictionRow(
                event_id=event_id,
                model_version=HISTORY_VERSION,
                prediction_id=prediction_id(event_id, HISTORY_VERSION),
                role=HISTORY_VERSION,
                value=None,
                feature_set=feature_set,
                features=pack(chunk.vectors[i]),
                missing_features=chunk.missing[i],
                feature_age_ms=chunk.ages_ms[i],
                event_time=times[i],
                scored_at=times[i],
                latency_ms=None,
            )
            for i, event_id in enumerate(chunk.event_ids)
        ]
        predictions.write_history(rows)
        labelled = chunk.labelled_rows(end_ms).tolist()
        label_values = chunk.events.labels.tolist()
        delays = chunk.events.label_delays_ms.tolist()
        report.labels += labels.write(
            LabelRow(chunk.event_ids[i], label_values[i], times[i] + delays[i]) for i in labelled
        )
        report.events += len(rows)
        elapsed = time.monotonic() - began
        status(
            f"history: {report.events:,} events, {report.labels:,} labels "
            f"({report.events / elapsed:,.0f} events/s)"
        )
    status.close()
    report.seconds = time.monotonic() - began
    return report
