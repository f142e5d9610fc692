"""Ground truth on the accuracy path: labels stored, joined with predictions, or waiting.

``LabelStore`` writes labels (``ground_truth``), finds the predictions of labelled events
(``predictions``, by event), and keeps labels whose prediction is not there yet
(``pending_labels``) so that a restarted worker can go on waiting for them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Protocol

from cassandra.cluster import Session
from cassandra.query import BatchStatement, BatchType

from stream_app.cassandra_session import HOT_PATH
from stream_app.storage.cql import execute_async
from stream_app.storage.ground_truth import label_insert

HOUR_MS = 3_600_000
BATCH_ROWS = 50
READ_GROUP = 100


class Label(NamedTuple):
    event_id: str
    label: float
    label_time: int
    received_at: int
    partition: int


class StoredPrediction(NamedTuple):
    event_id: str
    model_version: str
    prediction_id: str
    role: str
    value: float
    event_time: int
    scored_at: int


class LabelStorage(Protocol):
    """Where the accuracy path keeps labels and finds predictions (Cassandra: ``LabelStore``)."""

    async def store(self, labels: Sequence[Label]) -> None: ...

    async def predictions_of(
        self, event_ids: Iterable[str]
    ) -> dict[str, list[StoredPrediction]]: ...

    async def wait(self, labels: Sequence[Label]) -> None: ...

    async def done(self, labels: Sequence[Label]) -> None: ...

    async def waiting(self, partition: int, since_ms: int) -> list[Label]: ...


class LabelStore:
    """Labels and the prediction join for one use case."""

    def __init__(self, session: Session, keyspace: str, use_case: str) -> None:
        self.session = session
        self.use_case = use_case
        self._label = session.prepare(label_insert(keyspace))
        self._predictions = session.prepare(
            "SELECT event_id, model_version, prediction_id, role, value, "
            "toUnixTimestamp(event_time), toUnixTimestamp(scored_at) "
            f"FROM {keyspace}.predictions WHERE use_case = ? AND event_id IN ?"
        )
        self._wait = session.prepare(
            f"INSERT INTO {keyspace}.pending_labels (use_case, source_partition, hour, event_id, "
            "label, label_time, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        self._done = session.prepare(
            f"DELETE FROM {keyspace}.pending_labels WHERE use_case = ? AND source_partition = ? "
            "AND hour = ? AND event_id = ?"
        )
        self._waiting = session.prepare(
            "SELECT event_id, label, toUnixTimestamp(label_time), toUnixTimestamp(received_at) "
            f"FROM {keyspace}.pending_labels WHERE use_case = ? AND source_partition = ? "
            "AND hour = ?"
        )

    def _batches(self, statement: Any, rows: Sequence[Sequence[Any]]) -> list[BatchStatement]:
        batches = []
        for start in range(0, len(rows), BATCH_ROWS):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for row in rows[start : start + BATCH_ROWS]:
                batch.add(statement, row)
            batches.append(batch)
        return batches

    async def store(self, labels: Sequence[Label]) -> None:
        rows = [(self.use_case, x.event_id, x.label, x.label_time, x.received_at) for x in labels]
        await asyncio.gather(
            *(execute_async(self.session, b) for b in self._batches(self._label, rows))
        )

    async def predictions_of(self, event_ids: Iterable[str]) -> dict[str, list[StoredPrediction]]:
        """Every stored prediction (one per model version) of each event that has one."""
        ids = list(dict.fromkeys(event_ids))
        groups = [ids[i : i + READ_GROUP] for i in range(0, len(ids), READ_GROUP)]
        results = await asyncio.gather(
            *(execute_async(self.session, self._predictions, (self.use_case, g), None, HOT_PATH)
              for g in groups)
        )  # fmt: skip
        found: dict[str, list[StoredPrediction]] = {}
        for rows in results:
            for row in rows:
                found.setdefault(row[0], []).append(StoredPrediction(*row))
        return found

    async def wait(self, labels: Sequence[Label]) -> None:
        rows = [
            (self.use_case, x.partition, x.received_at - x.received_at % HOUR_MS, x.event_id,
             x.label, x.label_time, x.received_at)
            for x in labels
        ]  # fmt: skip
        await asyncio.gather(
            *(execute_async(self.session, b) for b in self._batches(self._wait, rows))
        )

    async def done(self, labels: Sequence[Label]) -> None:
        rows = [
            (self.use_case, x.partition, x.received_at - x.received_at % HOUR_MS, x.event_id)
            for x in labels
        ]
        await asyncio.gather(
            *(execute_async(self.session, b) for b in self._batches(self._done, rows))
        )

    async def waiting(self, partition: int, since_ms: int) -> list[Label]:
        """Labels of ``partition`` still waiting, received since ``since_ms``."""
        now = int(time.time() * 1000)
        hours = range(since_ms - since_ms % HOUR_MS, now + 1, HOUR_MS)
        loop = asyncio.get_running_loop()

        def read(hour: int) -> list[Any]:  # paged: a busy hour can hold many labels
            return list(self.session.execute(self._waiting, (self.use_case, partition, hour)))

        results = await asyncio.gather(*(loop.run_in_executor(None, read, h) for h in hours))
        return [
            Label(row[0], row[1], row[2], row[3], partition) for rows in results for row in rows
        ]
