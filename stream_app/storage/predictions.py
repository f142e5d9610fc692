"""Stored predictions, each with the feature vector exactly as it was served.

Rows live twice: by event (``predictions``: the accuracy join) and by hour
(``predictions_by_hour``: training sets and replays over a time range). Simulated history is
stored by hour only, with ``model_version = "history"`` and no value: the vectors serving
would have built, for the bootstrap model to learn from.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from cassandra.concurrent import execute_concurrent
from cassandra.query import BatchStatement, BatchType

from stream_app.storage.cql import write_all

HOUR_MS = 3_600_000
HISTORY_VERSION = "history"
HISTORY_BATCH_ROWS = 20  # about 5 KiB: Cassandra's default batch-size warning


class ServedRow(NamedTuple):
    """One prediction (or history row) with its served features."""

    event_id: str
    model_version: str
    prediction_id: str
    role: str
    value: float | None
    features: dict[str, float]
    missing_features: list[str]
    feature_age_ms: int
    event_time: int
    scored_at: int


class PredictionStore:
    """Reads and writes the prediction tables of one use case."""

    def __init__(self, session: Any, keyspace: str, use_case: str) -> None:
        self.session = session
        self.use_case = use_case
        columns = "prediction_id, role, value, features, missing_features, event_time"
        self._by_event = session.prepare(
            f"INSERT INTO {keyspace}.predictions (use_case, event_id, model_version, {columns}, "
            "feature_age_ms, scored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._by_hour = session.prepare(
            f"INSERT INTO {keyspace}.predictions_by_hour (use_case, hour, scored_at, event_id, "
            f"model_version, {columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._hour_scan = session.prepare(
            f"SELECT event_id, model_version, prediction_id, role, value, features, "
            f"missing_features, toUnixTimestamp(event_time) AS event_ms, "
            f"toUnixTimestamp(scored_at) AS scored_ms FROM {keyspace}.predictions_by_hour "
            "WHERE use_case = ? AND hour = ?"
        )
        self._for_event = session.prepare(
            f"SELECT model_version, prediction_id, role, value, features, missing_features, "
            f"feature_age_ms, toUnixTimestamp(event_time) AS event_ms, "
            f"toUnixTimestamp(scored_at) AS scored_ms FROM {keyspace}.predictions "
            "WHERE use_case = ? AND event_id = ?"
        )

    def statements(self, row: ServedRow) -> list[tuple[Any, Sequence[Any]]]:
        """The two inserts that store one row."""
        common = (
            row.prediction_id, row.role, row.value, row.features, set(row.missing_features),
            row.event_time,
        )  # fmt: skip
        hour = row.scored_at - row.scored_at % HOUR_MS
        return [
            (self._by_event, (self.use_case, row.event_id, row.model_version, *common,
                              row.feature_age_ms, row.scored_at)),
            (self._by_hour, (self.use_case, hour, row.scored_at, row.event_id,
                             row.model_version, *common)),
        ]  # fmt: skip

    def write(self, rows: Iterable[ServedRow]) -> int:
        """Store rows (blocking; for history and batch jobs)."""
        by_event, by_hour = [], []
        for row in rows:
            (_, first), (_, second) = self.statements(row)
            by_event.append(first)
            by_hour.append(second)
        return write_all(self.session, self._by_event, by_event) + write_all(
            self.session, self._by_hour, by_hour
        )

    def write_by_hour(self, rows: Iterable[ServedRow]) -> int:
        """Store rows in ``predictions_by_hour`` only, in unlogged batches per hour partition.

        For simulated history: those rows are training data, not predictions anyone joins by
        event, and one batch per partition costs the cluster one mutation instead of many.
        """
        by_partition: dict[int, list[Sequence[Any]]] = {}
        for row in rows:
            (_, parameters) = self.statements(row)[1]
            by_partition.setdefault(parameters[1], []).append(parameters)
        batches = []
        for partition_rows in by_partition.values():
            for start in range(0, len(partition_rows), HISTORY_BATCH_ROWS):
                batch = BatchStatement(batch_type=BatchType.UNLOGGED)
                for parameters in partition_rows[start : start + HISTORY_BATCH_ROWS]:
                    batch.add(self._by_hour, parameters)
                batches.append((batch, ()))
        execute_concurrent(self.session, batches, concurrency=32, raise_on_first_error=True)
        return sum(len(rows) for rows in by_partition.values())

    def scan(self, start_ms: int, end_ms: int) -> Iterator[Any]:
        """Every stored row scored in ``[start_ms, end_ms)``, hour by hour, oldest first."""
        hour = start_ms - start_ms % HOUR_MS
        while hour < end_ms:
            for row in self.session.execute(self._hour_scan, (self.use_case, hour)):
                if start_ms <= row.scored_ms < end_ms:
                    yield row
            hour += HOUR_MS

    def for_event(self, event_id: str) -> list[Any]:
        """Every stored prediction of one event (one per model version)."""
        return list(self.session.execute(self._for_event, (self.use_case, event_id)))
