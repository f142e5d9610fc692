"""Stored predictions, each with the feature vector exactly as it was served.

Two tables: ``predictions`` (slim, by event: what the accuracy join needs) and
``prediction_log`` (by time, in chunks: every prediction with its served vector, for training
sets and replays). A chunk holds the rows of one scored batch and model as JSON columns plus a
float64 matrix, so the scoring path writes one log statement per few hundred predictions.
Simulated history goes to the log only, with ``model_version = "history"`` and no values.

Re-scoring a batch after a crash rewrites the same ``predictions`` rows (idempotent) but may
log an event in two chunks; readers of the log keep one row per event and model version.
"""

from __future__ import annotations

import asyncio
import hashlib
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import orjson
from cassandra.concurrent import execute_concurrent
from cassandra.query import BatchStatement, BatchType

from stream_app.storage.cql import execute_async

BUCKET_MS = 600_000  # 10 minutes of chunks per partition and shard
SHARDS = 8
HISTORY_VERSION = "history"
CHUNK_ROWS = 500  # predictions per log chunk
BY_EVENT_BATCH = 50  # slim rows per unlogged batch

Vector = np.ndarray[Any, np.dtype[np.float64]]


def feature_set_id(names: Sequence[str]) -> str:
    """A stable id for an ordered list of feature names."""
    return hashlib.sha256(",".join(names).encode()).hexdigest()[:16]


def pack(vector: Sequence[float]) -> bytes:
    """A feature vector as little-endian float64 bytes."""
    return np.asarray(vector, dtype="<f8").tobytes()


def unpack(blob: bytes) -> Vector:
    """The vector ``pack`` stored."""
    return np.frombuffer(blob, dtype="<f8")


def bucket_of(ms: int) -> int:
    return ms - ms % BUCKET_MS


def shard_of(key: str) -> int:
    return zlib.crc32(key.encode()) % SHARDS


class PredictionRow(NamedTuple):
    """One prediction (or history row) with its served features, as the scoring path made it."""

    event_id: str
    model_version: str
    prediction_id: str
    role: str
    value: float | None
    feature_set: str
    features: bytes
    missing_features: Sequence[str]
    feature_age_ms: int
    event_time: int
    scored_at: int
    latency_ms: float | None


class LoggedPrediction(NamedTuple):
    """One row read back from the log."""

    event_id: str
    model_version: str
    prediction_id: str
    role: str
    value: float | None
    feature_set: str
    features: Vector
    missing_features: list[str]
    feature_age_ms: int
    event_ms: int
    scored_ms: int
    latency_ms: float | None


class LoggedChunk(NamedTuple):
    """One chunk of the log: rows of one scored batch and model, as stored."""

    model_version: str
    role: str
    feature_set: str
    columns: dict[str, list[Any]]  # event_ids, prediction_ids, values, event_times, scored_at...
    matrix: Vector  # one served vector per row


class PredictionStore:
    """Reads and writes the prediction tables of one use case; owns its statements."""

    def __init__(self, session: Any, keyspace: str, use_case: str) -> None:
        self.session = session
        self.use_case = use_case
        self._by_event = session.prepare(
            f"INSERT INTO {keyspace}.predictions (use_case, event_id, model_version, "
            "prediction_id, role, value, event_time, scored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._log = session.prepare(
            f"INSERT INTO {keyspace}.prediction_log (use_case, bucket, shard, first_scored_at, "
            "chunk_id, model_version, role, feature_set, row_count, columns, features) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._scan = session.prepare(
            "SELECT model_version, role, feature_set, columns, features "
            f"FROM {keyspace}.prediction_log WHERE use_case = ? AND bucket = ? AND shard = ?"
        )
        self._scan_started = session.prepare(
            "SELECT model_version, role, feature_set, columns, features "
            f"FROM {keyspace}.prediction_log WHERE use_case = ? AND bucket = ? AND shard = ? "
            "AND first_scored_at >= ? AND first_scored_at < ?"
        )
        self._for_event = session.prepare(
            "SELECT model_version, prediction_id, role, value, "
            "toUnixTimestamp(event_time) AS event_ms, toUnixTimestamp(scored_at) AS scored_ms "
            f"FROM {keyspace}.predictions WHERE use_case = ? AND event_id = ?"
        )
        self._save_set = session.prepare(
            f"INSERT INTO {keyspace}.feature_sets (use_case, feature_set, feature_names) "
            "VALUES (?, ?, ?)"
        )
        self._read_set = session.prepare(
            f"SELECT feature_names FROM {keyspace}.feature_sets "
            "WHERE use_case = ? AND feature_set = ?"
        )
        self._feature_sets: dict[str, list[str]] = {}

    def register_feature_set(self, names: Sequence[str]) -> str:
        """Store the names of a vector layout once; returns its id."""
        set_id = feature_set_id(names)
        if set_id not in self._feature_sets:
            self.session.execute(self._save_set, (self.use_case, set_id, list(names)))
            self._feature_sets[set_id] = list(names)
        return set_id

    def feature_names(self, set_id: str) -> list[str]:
        """The names of a stored feature set."""
        if set_id not in self._feature_sets:
            row = self.session.execute(self._read_set, (self.use_case, set_id)).one()
            if row is None:
                raise KeyError(f"unknown feature set {set_id}")
            self._feature_sets[set_id] = list(row.feature_names)
        return self._feature_sets[set_id]

    # -- writing --------------------------------------------------------------------------

    def _by_event_batches(self, rows: Sequence[PredictionRow]) -> list[BatchStatement]:
        batches = []
        for start in range(0, len(rows), BY_EVENT_BATCH):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for r in rows[start : start + BY_EVENT_BATCH]:
                batch.add(
                    self._by_event,
                    (self.use_case, r.event_id, r.model_version, r.prediction_id, r.role,
                     r.value, r.event_time, r.scored_at),
                )  # fmt: skip
            batches.append(batch)
        return batches

    def _log_parameters(self, rows: Sequence[PredictionRow]) -> list[tuple[Any, ...]]:
        """One log insert per chunk of rows sharing a model version, role and feature set."""
        groups: dict[tuple[str, str, str], list[PredictionRow]] = {}
        for row in rows:
            groups.setdefault((row.model_version, row.role, row.feature_set), []).append(row)
        parameters = []
        for (version, role, feature_set), group in groups.items():
            for start in range(0, len(group), CHUNK_ROWS):
                chunk = group[start : start + CHUNK_ROWS]
                first = min(r.scored_at for r in chunk)
                chunk_id = chunk[0].prediction_id
                columns = orjson.dumps(
                    {
                        "event_ids": [r.event_id for r in chunk],
                        "prediction_ids": [r.prediction_id for r in chunk],
                        "values": [r.value for r in chunk],
                        "event_times": [r.event_time for r in chunk],
                        "scored_at": [r.scored_at for r in chunk],
                        "latency_ms": [r.latency_ms for r in chunk],
                        "feature_age_ms": [r.feature_age_ms for r in chunk],
                        "missing_features": [list(r.missing_features) for r in chunk],
                    }
                )
                parameters.append(
                    (self.use_case, bucket_of(first), shard_of(chunk_id), first, chunk_id,
                     version, role, feature_set, len(chunk), columns,
                     b"".join(r.features for r in chunk))
                )  # fmt: skip
        return parameters

    async def write_async(self, rows: Sequence[PredictionRow]) -> None:
        """Store rows in both tables; returns when Cassandra acknowledged every write."""
        writes = [execute_async(self.session, b) for b in self._by_event_batches(rows)]
        writes += [execute_async(self.session, self._log, p) for p in self._log_parameters(rows)]
        await asyncio.gather(*writes)

    def write(self, rows: Sequence[PredictionRow]) -> None:
        """Store rows in both tables (blocking)."""
        statements: list[tuple[Any, Any]] = [(b, ()) for b in self._by_event_batches(rows)]
        statements += [(self._log, p) for p in self._log_parameters(rows)]
        execute_concurrent(self.session, statements, concurrency=32, raise_on_first_error=True)

    def write_history(self, rows: Sequence[PredictionRow]) -> int:
        """Store history rows in the log only (blocking)."""
        statements = [(self._log, p) for p in self._log_parameters(rows)]
        execute_concurrent(self.session, statements, concurrency=16, raise_on_first_error=True)
        return len(rows)

    # -- reading --------------------------------------------------------------------------

    def _chunks(self, bucket: int, started: tuple[int, int] | None = None) -> list[Any]:
        statements: list[tuple[Any, tuple[Any, ...]]]
        if started is None:
            statements = [(self._scan, (self.use_case, bucket, shard)) for shard in range(SHARDS)]
        else:
            statements = [(self._scan_started, (self.use_case, bucket, shard, *started))
                          for shard in range(SHARDS)]  # fmt: skip
        results = execute_concurrent(
            self.session, statements, concurrency=SHARDS, raise_on_first_error=True
        )
        return [chunk for result in results for chunk in result.result_or_exc]

    def chunks(
        self, start_ms: int, end_ms: int, started_in_range: bool = False
    ) -> Iterator[LoggedChunk]:
        """The logged chunks holding predictions scored in ``[start_ms, end_ms)``, bucket by
        bucket. A chunk starts in the bucket of its first row, so the bucket before
        ``start_ms`` is read too; with ``started_in_range``, only chunks whose first row was
        scored in the range are read (every row of a live batch's chunk was scored at once,
        so for live predictions that is the same set)."""
        bucket = bucket_of(start_ms) - (0 if started_in_range else BUCKET_MS)
        started = (start_ms, end_ms) if started_in_range else None
        while bucket < end_ms:
            for chunk in self._chunks(bucket, started):
                columns = orjson.loads(chunk.columns)
                count = len(columns["event_ids"])
                yield LoggedChunk(
                    chunk.model_version,
                    chunk.role,
                    chunk.feature_set,
                    columns,
                    np.frombuffer(chunk.features, dtype="<f8").reshape(count, -1),
                )
            bucket += BUCKET_MS

    def scan(self, start_ms: int, end_ms: int) -> Iterator[LoggedPrediction]:
        """Every logged prediction scored in ``[start_ms, end_ms)``, oldest first within each
        bucket of the log, one per event and model version."""
        seen: set[tuple[str, str]] = set()
        bucket: int | None = None
        rows: list[LoggedPrediction] = []
        for chunk in self.chunks(start_ms, end_ms):
            chunk_bucket = bucket_of(min(chunk.columns["scored_at"], default=start_ms))
            if bucket is not None and chunk_bucket != bucket:
                yield from _first_per_event(rows, seen)
                rows = []
            bucket = chunk_bucket
            rows += [r for r in _unpack_chunk(chunk) if start_ms <= r.scored_ms < end_ms]
        yield from _first_per_event(rows, seen)

    def served(self, event_id: str, scored_at_ms: int) -> list[LoggedPrediction]:
        """The logged rows (with vectors) of one event scored at ``scored_at_ms``."""
        return [r for r in self.scan(scored_at_ms, scored_at_ms + 1) if r.event_id == event_id]

    def for_event(self, event_id: str) -> list[Any]:
        """Every stored prediction of one event (one per model version), without vectors."""
        return list(self.session.execute(self._for_event, (self.use_case, event_id)))


def _first_per_event(
    rows: list[LoggedPrediction], seen: set[tuple[str, str]]
) -> Iterator[LoggedPrediction]:
    rows.sort(key=lambda r: r.scored_ms)
    for row in rows:
        if (row.event_id, row.model_version) not in seen:
            seen.add((row.event_id, row.model_version))
            yield row


def _unpack_chunk(chunk: LoggedChunk) -> Iterable[LoggedPrediction]:
    columns = chunk.columns
    for i, event_id in enumerate(columns["event_ids"]):
        yield LoggedPrediction(
            event_id=event_id,
            model_version=chunk.model_version,
            prediction_id=columns["prediction_ids"][i],
            role=chunk.role,
            value=columns["values"][i],
            feature_set=chunk.feature_set,
            features=chunk.matrix[i],
            missing_features=columns["missing_features"][i],
            feature_age_ms=columns["feature_age_ms"][i],
            event_ms=columns["event_times"][i],
            scored_ms=columns["scored_at"][i],
            latency_ms=columns["latency_ms"][i],
        )
