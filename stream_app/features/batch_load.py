"""`stream-app features load`: batch features from CSV, JSONL or Parquet into the store.

A file holds one entity key column (e.g. ``restaurant_id``) and columns named after batch
features of that entity. Every value becomes the feature's current value (``entity_features``,
read when scoring) and a version valid from ``--as-of`` (``batch_feature_history``, for
point-in-time lookups). Rows that cannot be used are reported with their line and reason,
never silently skipped; a column that is not a feature of the use case refuses the file.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from cassandra.cluster import Session

from stream_app.errors import ConfigurationError
from stream_app.features.store import CassandraFeatureStore, FeatureRow
from stream_app.progress import ProgressBar
from stream_app.storage.cql import write_all
from stream_app.tabular import read_table
from stream_app.use_cases.spec import BatchFeature, UseCase

CHUNK_ROWS = 2_000
MAX_ID_LENGTH = 128
SHOWN_REJECTIONS = 20


@dataclass
class Rejection:
    line: int
    reason: str
    row: dict[str, Any]


@dataclass
class LoadReport:
    """What a load did."""

    file: str
    entity_key: str
    features: list[str]
    rows: int = 0
    loaded_rows: int = 0
    values: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        reasons = Counter(r.reason.split(":")[0] for r in self.rejected)
        return {
            "file": self.file,
            "entity_key": self.entity_key,
            "features": self.features,
            "rows": self.rows,
            "loaded_rows": self.loaded_rows,
            "values": self.values,
            "rejected_rows": len(self.rejected),
            "rejected_by_reason": dict(reasons),
            "first_rejections": [
                {"line": r.line, "reason": r.reason} for r in self.rejected[:SHOWN_REJECTIONS]
            ],
            "seconds": round(self.seconds, 2),
        }


def plan_columns(use_case: UseCase, columns: list[str]) -> tuple[str, list[str]]:
    """The entity key column and the feature columns, or a clear refusal."""
    batch = use_case.features_of(BatchFeature)
    keys = [c for c in columns if c in use_case.entities.keys]
    if len(keys) != 1:
        raise ConfigurationError(
            f"the file needs exactly one entity key column of {use_case.entities.keys}, "
            f"found {keys or 'none'} among {columns}"
        )
    entity_key = keys[0]
    features = [c for c in columns if c != entity_key]
    unknown = [c for c in features if c not in batch or batch[c].entity != entity_key]
    if unknown:
        allowed = [n for n, f in batch.items() if f.entity == entity_key]
        raise ConfigurationError(
            f"columns {unknown} are not batch features of {entity_key} in use case "
            f"{use_case.name} (those are {allowed})"
        )
    if not features:
        raise ConfigurationError("the file has no feature columns")
    return entity_key, features


def parse_row(
    row: dict[str, Any], entity_key: str, features: list[str]
) -> tuple[str, dict[str, float]] | str:
    """The entity id and its values, or why the row cannot be loaded. Empty cells are
    absent values (the feature keeps its previous value)."""
    entity_id = row.get(entity_key)
    if entity_id is None or str(entity_id).strip() == "":
        return f"missing entity id: {entity_key} is empty"
    entity_id = str(entity_id).strip()
    if len(entity_id) > MAX_ID_LENGTH:
        return f"invalid entity id: longer than {MAX_ID_LENGTH} characters"
    values: dict[str, float] = {}
    for feature in features:
        raw = row.get(feature)
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):
            continue
        if isinstance(raw, bool):
            return f"invalid number: {feature}={raw!r}"
        try:
            value = float(raw)
        except (TypeError, ValueError):
            return f"invalid number: {feature}={raw!r}"
        if not math.isfinite(value):
            return f"non-finite number: {feature}={raw!r}"
        values[feature] = value
    if not values:
        return "no values: every feature cell is empty"
    return entity_id, values


def load_batch_features(
    session: Session,
    keyspace: str,
    use_case: UseCase,
    path: Path,
    as_of_ms: int,
    progress: TextIO = sys.stderr,
) -> LoadReport:
    """Load ``path``; returns the report (rejections included)."""
    started = time.monotonic()
    columns, rows, size = read_table(path)
    entity_key, features = plan_columns(use_case, columns)
    report = LoadReport(str(path), entity_key, features)
    store = CassandraFeatureStore(session, keyspace, use_case)
    history = session.prepare(
        f"INSERT INTO {keyspace}.batch_feature_history (use_case, entity_key, entity_id, "
        "feature, valid_from, value, loaded_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    pending: list[FeatureRow] = []
    now = int(time.time() * 1000)
    bar = ProgressBar(size, "rows", progress, label="loading")

    def flush() -> None:
        store.write(pending)
        write_all(
            session,
            history,
            [(use_case.name, r.entity_key, r.entity_id, r.feature, as_of_ms, r.value, now)
             for r in pending],
        )  # fmt: skip
        report.values += len(pending)
        pending.clear()

    for line, row in rows:
        report.rows += 1
        parsed = row if isinstance(row, str) else parse_row(row, entity_key, features)
        if isinstance(parsed, str):
            report.rejected.append(Rejection(line, parsed, row if isinstance(row, dict) else {}))
            continue
        entity_id, values = parsed
        report.loaded_rows += 1
        pending += [
            FeatureRow(entity_key, entity_id, f, v, as_of_ms, None) for f, v in values.items()
        ]
        if len(pending) >= CHUNK_ROWS:
            flush()
            bar(report.rows)
    if pending:
        flush()
    bar(report.rows)
    bar.close()
    report.seconds = time.monotonic() - started
    return report
