"""`stream-app history import`: a team's labelled past events become training data.

For every past event the vector the live worker would have served at the event's time is built
by the serving code (``features.point_in_time``: the feature agent's panes over the imported
readings, the scoring path's windows and vector builder, batch features as loaded then) and
stored where training reads served vectors: ``prediction_log`` with model version ``history``,
and the labels in ``ground_truth``. `stream-app train` then uses them exactly as it uses what
the worker served.

The same files, mapping and spec are recognised (``history_imports``) and not imported twice;
with ``force`` they are written again, to the same rows (chunks are made deterministically
from the sorted events, so nothing is added).
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from cassandra.cluster import Session

from stream_app.contracts.decode import SensorReading
from stream_app.contracts.outputs import prediction_id
from stream_app.errors import ConfigurationError
from stream_app.features.point_in_time import PointInTimeFeatures
from stream_app.features.store import CassandraFeatureStore
from stream_app.features.vector import FeatureVectorBuilder
from stream_app.history.rows import ColumnMap, EventRows, LabelledEvent, ReadingRows, TimeUnit
from stream_app.models.training import spec_hash
from stream_app.progress import ProgressBar
from stream_app.storage.ground_truth import GroundTruthStore, LabelRow
from stream_app.storage.predictions import HISTORY_VERSION, PredictionRow, PredictionStore, pack
from stream_app.tabular import read_table
from stream_app.timeparse import format_ms
from stream_app.use_cases.spec import UseCase

CHUNK_EVENTS = 5_000  # a multiple of the log's chunk size: the same chunks every time
SHOWN_REJECTIONS = 20


@dataclass
class Rejected:
    """Rows of one kind that were refused, by reason, with their file and line."""

    rows: int = 0
    kept: int = 0
    refused: list[tuple[str, int, str]] = field(default_factory=list)  # file, line, reason

    def summary(self) -> dict[str, Any]:
        reasons = Counter(reason.split(":")[0] for _, _, reason in self.refused)
        return {
            "rows": self.rows,
            "imported": self.kept,
            "rejected": len(self.refused),
            "rejected_by_reason": dict(reasons),
            "first_rejections": [
                {"file": f, "line": line, "reason": reason}
                for f, line, reason in self.refused[:SHOWN_REJECTIONS]
            ],
        }


@dataclass
class ImportReport:
    """What an import did."""

    use_case: str
    import_id: str
    files: list[str]
    events: Rejected = field(default_factory=Rejected)
    readings: Rejected = field(default_factory=Rejected)
    labelled: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    missing: Counter[str] = field(default_factory=Counter)
    feature_names: list[str] = field(default_factory=list)
    already_imported_at: int | None = None
    seconds: float = 0.0

    def summary(self, spec: str) -> dict[str, Any]:
        imported = self.events.kept
        result: dict[str, Any] = {
            "use_case": self.use_case,
            "import_id": self.import_id,
            "files": self.files,
            "already_imported_at": format_ms(self.already_imported_at)
            if self.already_imported_at
            else None,
            "events": {**self.events.summary(), "labelled": self.labelled},
            "readings": self.readings.summary(),
            "missing_feature_share": {
                name: round(self.missing[name] / imported, 4) for name in self.feature_names
            }
            if imported
            else {},
            "seconds": round(self.seconds, 2),
        }
        if self.first_ms is not None and self.last_ms is not None:
            result["time_range"] = {"from": format_ms(self.first_ms),
                                    "to": format_ms(self.last_ms)}  # fmt: skip
            result["next"] = (
                f"stream-app train --use-case {spec} --since {format_ms(self.first_ms)} "
                f"--until {format_ms(self.last_ms + 1000)}"
            )
        return result


def _read(
    paths: Sequence[Path],
    parse: Callable[[dict[str, Any]], Any],
    check: Callable[[Sequence[str]], None],
    rejected: Rejected,
) -> list[Any]:
    kept = []
    for path in paths:
        columns, rows, _ = read_table(path)
        check(columns)
        for line, row in rows:
            rejected.rows += 1
            parsed = row if isinstance(row, str) else parse(row)
            if isinstance(parsed, str):
                rejected.refused.append((str(path), line, parsed))
                continue
            kept.append((parsed, str(path), line))
    return kept


def import_id(
    use_case: UseCase, paths: Iterable[Path], settings_of_the_import: Sequence[str]
) -> str:
    """The identity of an import: the files' bytes, how they were read, and the spec."""
    digest = hashlib.sha256(spec_hash(use_case).encode())
    for path in paths:
        digest.update(str(path.name).encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    for item in settings_of_the_import:
        digest.update(item.encode())
    return digest.hexdigest()[:32]


class HistoryImports:
    """The ``history_imports`` table of one use case."""

    def __init__(self, session: Session, keyspace: str, use_case: str) -> None:
        self.session = session
        self.use_case = use_case
        self._read = session.prepare(
            "SELECT toUnixTimestamp(imported_at) AS at_ms FROM "
            f"{keyspace}.history_imports WHERE use_case = ? AND import_id = ?"
        )
        self._write = session.prepare(
            f"INSERT INTO {keyspace}.history_imports (use_case, import_id, imported_at, files, "
            "events, labels, readings, first_event, last_event) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )

    def imported_at(self, import_id: str) -> int | None:
        row = self.session.execute(self._read, (self.use_case, import_id)).one()
        return None if row is None else int(row.at_ms)

    def record(self, report: ImportReport) -> None:
        self.session.execute(
            self._write,
            (self.use_case, report.import_id, int(time.time() * 1000), report.files,
             report.events.kept, report.labelled, report.readings.kept, report.first_ms,
             report.last_ms),
        )  # fmt: skip


def import_history(
    session: Session,
    keyspace: str,
    use_case: UseCase,
    event_files: Sequence[Path],
    reading_files: Sequence[Path] = (),
    columns: ColumnMap | None = None,
    reading_columns: ColumnMap | None = None,
    time_unit: TimeUnit = "ms",
    force: bool = False,
    progress: TextIO = sys.stderr,
) -> ImportReport:
    """Import labelled past events (and the readings behind their aggregate features)."""
    started = time.monotonic()
    columns, reading_columns = columns or ColumnMap(), reading_columns or ColumnMap()
    for path in (*event_files, *reading_files):
        if not path.is_file():
            raise ConfigurationError(f"{path} does not exist")
    how = [
        time_unit,
        repr(sorted(columns.renamed.items())),
        repr(sorted(reading_columns.renamed.items())),
        f"readings={len(reading_files)}",
    ]
    identity = import_id(use_case, (*event_files, *reading_files), how)
    report = ImportReport(use_case.name, identity, [str(p) for p in (*event_files, *reading_files)])
    report.feature_names = use_case.feature_names
    imports = HistoryImports(session, keyspace, use_case.name)
    if not force:
        report.already_imported_at = imports.imported_at(identity)
        if report.already_imported_at is not None:
            report.seconds = time.monotonic() - started
            return report

    events = EventRows(use_case, columns, time_unit)
    parsed_events = _read(event_files, events.parse, events.check_columns, report.events)
    readings = ReadingRows(use_case, reading_columns, time_unit)
    parsed_readings = _read(reading_files, readings.parse, readings.check_columns, report.readings)
    past = _unique(parsed_events, report.events)
    past.sort(key=lambda e: (e.event.event_time, e.event.event_id))
    stream: list[SensorReading] = [r for r, _, _ in parsed_readings]
    stream.sort(key=lambda r: r.event_time)  # stable: a file's order breaks ties
    report.readings.kept = len(stream)
    report.events.kept = len(past)
    if past:
        report.first_ms, report.last_ms = past[0].event.event_time, past[-1].event.event_time
    _store(session, keyspace, use_case, past, stream, report, progress)
    imports.record(report)
    report.seconds = time.monotonic() - started
    return report


def _unique(
    parsed: list[tuple[LabelledEvent, str, int]], rejected: Rejected
) -> list[LabelledEvent]:
    """The events, each id once (a repeated id is refused with the line of its first row)."""
    first: dict[str, tuple[str, int]] = {}
    kept = []
    for event, path, line in parsed:
        seen = first.get(event.event.event_id)
        if seen is not None:
            rejected.refused.append(
                (
                    path,
                    line,
                    f"duplicate_event: event_id {event.event.event_id!r} is also on "
                    f"line {seen[1]} of {seen[0]}",
                )
            )
            continue
        first[event.event.event_id] = (path, line)
        kept.append(event)
    return kept


def _store(
    session: Session,
    keyspace: str,
    use_case: UseCase,
    past: list[LabelledEvent],
    stream: list[SensorReading],
    report: ImportReport,
    progress: TextIO,
) -> None:
    """Point-in-time vectors of ``past`` from ``stream``, written in deterministic chunks."""
    builder = FeatureVectorBuilder(use_case, use_case.feature_names)
    store = CassandraFeatureStore(session, keyspace, use_case)
    batch = store.batch_versions(
        (key, e.event.entities[key]) for e in past for key in builder.entity_keys
        if key in e.event.entities
    )  # fmt: skip
    features = PointInTimeFeatures(use_case, batch)
    predictions = PredictionStore(session, keyspace, use_case.name)
    labels = GroundTruthStore(session, keyspace, use_case.name)
    feature_set = predictions.register_feature_set(use_case.feature_names)
    bar = ProgressBar(len(past), "events", progress, label="importing")
    next_reading = 0
    for start in range(0, len(past), CHUNK_EVENTS):
        chunk = past[start : start + CHUNK_EVENTS]
        rows: list[PredictionRow] = []
        label_rows: list[LabelRow] = []
        for item in chunk:
            event = item.event
            t = event.event_time
            end = next_reading
            while end < len(stream) and stream[end].event_time < t:
                end += 1
            features.advance(stream[next_reading:end])
            next_reading = end
            stored = features.served(event.entities, builder.entity_keys, t)
            served = builder.build(event.fields, event.entities, stored, t)
            report.missing.update(served.missing)
            rows.append(
                PredictionRow(
                    event_id=event.event_id, model_version=HISTORY_VERSION,
                    prediction_id=prediction_id(event.event_id, HISTORY_VERSION),
                    role=HISTORY_VERSION, value=None, feature_set=feature_set,
                    features=pack(served.values), missing_features=served.missing,
                    feature_age_ms=served.age_ms, event_time=t, scored_at=t, latency_ms=None,
                )
            )  # fmt: skip
            if item.label is not None:
                label_rows.append(LabelRow(event.event_id, item.label.label,
                                           item.label.label_time))  # fmt: skip
        predictions.write_history(rows)
        report.labelled += labels.write(label_rows)
        features.forget_before(chunk[-1].event.event_time)
        bar(start + len(chunk))
    bar.close()
