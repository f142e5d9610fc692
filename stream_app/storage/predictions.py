"""Stored predictions, each with the feature vector exactly as it was served.

Two tables: ``predictions`` (slim, by event: what the accuracy join needs) and
``prediction_log`` (by time, in chunks: every prediction with its served vector, for training
sets and replays). A chunk holds the rows of one scored batch and model as binary columns
(``log_columns``; older chunks hold JSON, still read) plus a float64 matrix, so the scoring
path writes one log statement per few hundred predictions.
Simulated history goes to the log only, with ``model_version = "history"`` and no values.

Re-scoring a batch after a crash rewrites the same ``predictions`` rows (idempotent) but may
log an event in two chunks; readers of the log keep one row per event and model version.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np
from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent
from cassandra.query import BatchStatement, BatchType

from stream_app.cassandra_session import HOT_PATH
from stream_app.messages import InputMessage
from stream_app.storage import log_columns, log_sources
from stream_app.storage.cql import binder, execute_async
from stream_app.storage.log_sources import Sources

BUCKET_MS = 600_000  # 10 minutes of chunks per partition and shard
DAY_MS = 86_400_000
SHARDS = 8
HISTORY_VERSION = "history"
CHUNK_ROWS = 500  # predictions per log chunk
BY_EVENT_BATCH = 50  # slim rows per unlogged batch
# A batch this small goes to Cassandra as one request holding both tables' rows: under
# Cassandra's default batch_size_warn_threshold (5 KiB), so no deployment warns about it.
ONE_REQUEST_BYTES = 4608  # a tenth under 5 KiB
BY_EVENT_ROW_BYTES = 128  # a by-event row as Cassandra sizes it (about 100 bytes)
SCAN_BUCKETS = 144  # buckets read together when scanning the log
SCAN_CONCURRENCY = 128

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


def day_of(ms: int) -> int:
    return ms - ms % DAY_MS


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
    source: InputMessage | None = None  # the record scored (live rows; history has none)
    entities: Mapping[str, str] | None = None  # its event's (with ``source``)


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
    columns: Mapping[str, list[Any]]  # event_ids, prediction_ids, values, event_times, scored_at...
    matrix: Vector  # one served vector per row
    sources: Sources | None = None  # the records the rows were scored from, when logged


class PredictionWriter(Protocol):
    """Where the scoring path stores what it served (Cassandra: ``PredictionStore``)."""

    def register_feature_set(self, names: Sequence[str]) -> str: ...

    async def write_async(self, rows: Sequence[PredictionRow]) -> None: ...


class PredictionStore:
    """Reads and writes the prediction tables of one use case; owns its statements."""

    def __init__(self, session: Session, keyspace: str, use_case: str) -> None:
        self.session = session
        self.use_case = use_case
        self._by_event = session.prepare(
            f"INSERT INTO {keyspace}.predictions (use_case, event_id, model_version, "
            "prediction_id, role, value, event_time, scored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._bind_by_event = binder(self._by_event)
        self._log = session.prepare(
            f"INSERT INTO {keyspace}.prediction_log (use_case, bucket, shard, first_scored_at, "
            "chunk_id, model_version, role, feature_set, row_count, columns, features, "
            "sources) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._scan = session.prepare(
            "SELECT model_version, role, feature_set, columns, features, sources "
            f"FROM {keyspace}.prediction_log WHERE use_case = ? AND bucket = ? AND shard = ?"
        )
        self._scan_started = session.prepare(
            "SELECT model_version, role, feature_set, columns, features, sources "
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
        self._index = session.prepare(
            f"INSERT INTO {keyspace}.prediction_log_buckets (use_case, day, bucket) "
            "VALUES (?, ?, ?)"
        )
        self._buckets = session.prepare(
            "SELECT toUnixTimestamp(bucket) FROM "
            f"{keyspace}.prediction_log_buckets WHERE use_case = ? AND "
            "day = ? AND bucket >= ? AND bucket < ?"
        )
        self._indexed: set[int] = set()  # buckets this store has written to the index
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
                    self._bind_by_event(
                        (self.use_case, r.event_id, r.model_version, r.prediction_id, r.role,
                         r.value, r.event_time, r.scored_at)
                    )
                )  # fmt: skip
            batches.append(batch)
        return batches

    def _log_parameters(self, rows: Sequence[PredictionRow]) -> list[tuple[Any, ...]]:
        """One log insert per chunk of rows sharing a model version, role, feature set and
        bucket of scoring time (a live batch is scored at once; imported history spans many
        buckets, and a chunk never crosses one, so a time range finds all its rows)."""
        groups: dict[tuple[str, str, str, int], list[PredictionRow]] = {}
        for row in rows:
            key = (row.model_version, row.role, row.feature_set, bucket_of(row.scored_at))
            groups.setdefault(key, []).append(row)
        parameters = []
        for (version, role, feature_set, _), group in groups.items():
            for start in range(0, len(group), CHUNK_ROWS):
                chunk = group[start : start + CHUNK_ROWS]
                first = min(r.scored_at for r in chunk)
                chunk_id = chunk[0].prediction_id
                columns = log_columns.encode(chunk)
                parameters.append(
                    (self.use_case, bucket_of(first), shard_of(chunk_id), first, chunk_id,
                     version, role, feature_set, len(chunk), columns,
                     b"".join(r.features for r in chunk),
                     log_sources.encode(chunk))
                )  # fmt: skip
        return parameters

    def _log_statements(self, rows: Sequence[PredictionRow]) -> tuple[list[Any], set[int]]:
        """The log inserts of ``rows`` and, for buckets not yet in the index, theirs (the
        index is written with the chunks, so it is never behind them)."""
        parameters = self._log_parameters(rows)
        statements: list[Any] = [(self._log, p) for p in parameters]
        new = {p[1] for p in parameters} - self._indexed
        statements += [(self._index, (self.use_case, day_of(b), b)) for b in new]
        return statements, new

    def _requests(
        self, rows: Sequence[PredictionRow]
    ) -> tuple[list[tuple[Any, Sequence[Any] | None]], set[int]]:
        """The requests storing ``rows`` in both tables. A small batch (the scoring path at a
        steady rate: a few events) is one unlogged batch of its by-event rows and its log
        chunk, one request instead of two: each request costs the worker 0.5 to 1.2 ms of CPU
        in the driver (measured), more than the rows do."""
        batches = self._by_event_batches(rows)
        log, new = self._log_statements(rows)
        log_bytes = sum(len(b) for _, p in log for b in p if isinstance(b, bytes))
        if len(batches) == 1 and len(rows) * BY_EVENT_ROW_BYTES + log_bytes <= ONE_REQUEST_BYTES:
            for statement, parameters in log:
                batches[0].add(statement, parameters)
            return [(batches[0], None)], new
        return [(b, None) for b in batches] + log, new

    async def write_async(self, rows: Sequence[PredictionRow]) -> None:
        """Store rows in both tables; returns when Cassandra acknowledged every write."""
        requests, new = self._requests(rows)
        await asyncio.gather(*(execute_async(self.session, s, p) for s, p in requests))
        self._indexed |= new

    def write(self, rows: Sequence[PredictionRow]) -> None:
        """Store rows in both tables (blocking)."""
        requests, new = self._requests(rows)
        execute_concurrent(self.session, [(s, p or ()) for s, p in requests], concurrency=32,
                           raise_on_first_error=True)  # fmt: skip
        self._indexed |= new

    def write_history(self, rows: Sequence[PredictionRow]) -> int:
        """Store history rows in the log only (blocking)."""
        statements, new = self._log_statements(rows)
        execute_concurrent(self.session, statements, concurrency=16, raise_on_first_error=True)
        self._indexed |= new
        return len(rows)

    # -- reading --------------------------------------------------------------------------

    def _statements(
        self, bucket: int, started: tuple[int, int] | None
    ) -> list[tuple[Any, tuple[Any, ...]]]:
        if started is None:
            return [(self._scan, (self.use_case, bucket, shard)) for shard in range(SHARDS)]
        return [(self._scan_started, (self.use_case, bucket, shard, *started))
                for shard in range(SHARDS)]  # fmt: skip

    def buckets(self, start_ms: int, end_ms: int) -> list[int]:
        """The buckets in ``[start_ms, end_ms)`` that hold chunks, oldest first (the index,
        one query per day)."""
        first = bucket_of(start_ms)
        days = range(day_of(first), end_ms, DAY_MS)
        results = execute_concurrent(
            self.session,
            [(self._buckets, (self.use_case, day, first, end_ms)) for day in days],
            concurrency=SCAN_CONCURRENCY, raise_on_first_error=True, execution_profile=HOT_PATH,
        )  # fmt: skip
        return sorted(int(row[0]) for result in results for row in result.result_or_exc)

    def chunks(
        self, start_ms: int, end_ms: int, started_in_range: bool = False
    ) -> Iterator[LoggedChunk]:
        """The logged chunks holding predictions scored in ``[start_ms, end_ms)``, bucket by
        bucket. A chunk starts in the bucket of its first row, so the bucket before
        ``start_ms`` is read too; with ``started_in_range``, only chunks whose first row was
        scored in the range are read (every row of a chunk is in its bucket, so that is the
        same set). Only the buckets the index lists are read (a year of imported history is
        52,560 ten-minute buckets, most of them empty), many at once, yielded in order."""
        since = bucket_of(start_ms) - (0 if started_in_range else BUCKET_MS)
        started = (start_ms, end_ms) if started_in_range else None
        buckets = self.buckets(since, end_ms)
        for start in range(0, len(buckets), SCAN_BUCKETS):
            statements = [s for b in buckets[start : start + SCAN_BUCKETS]
                          for s in self._statements(b, started)]  # fmt: skip
            results = execute_concurrent(
                self.session, statements, concurrency=SCAN_CONCURRENCY,
                raise_on_first_error=True, execution_profile=HOT_PATH,  # rows as tuples
            )  # fmt: skip
            for result in results:  # in statement order: bucket by bucket
                for version, role, feature_set, blob, features, sources in result.result_or_exc:
                    columns = log_columns.decode(blob)
                    count = len(columns["event_ids"])
                    yield LoggedChunk(
                        version,
                        role,
                        feature_set,
                        columns,
                        np.frombuffer(features, dtype="<f8").reshape(count, -1),
                        log_sources.decode(sources),
                    )

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


def index_logged_buckets(session: Session, keyspace: str) -> int:
    """Fill ``prediction_log_buckets`` for the chunks logged before it existed (`init`, once);
    returns the buckets indexed."""
    rows = session.execute(
        f"SELECT DISTINCT use_case, bucket, shard FROM {keyspace}.prediction_log"
    )
    # timestamps come back as naive datetimes in UTC
    found = {(row.use_case, calendar.timegm(row.bucket.utctimetuple()) * 1000) for row in rows}
    insert = session.prepare(
        f"INSERT INTO {keyspace}.prediction_log_buckets (use_case, day, bucket) VALUES (?, ?, ?)"
    )
    execute_concurrent(
        session, [(insert, (u, day_of(b), b)) for u, b in found], concurrency=64,
        raise_on_first_error=True,
    )  # fmt: skip
    return len(found)
