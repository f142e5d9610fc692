"""Ground-truth labels in Cassandra, keyed by the event they label."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import NamedTuple

from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent

from stream_app.storage.cql import write_all


def label_insert(keyspace: str) -> str:
    """The one statement that writes a label (the accuracy agent and `history import`)."""
    return (
        f"INSERT INTO {keyspace}.ground_truth (use_case, event_id, label, label_time, "
        "received_at) VALUES (?, ?, ?, ?, ?)"
    )


class LabelRow(NamedTuple):
    """One label."""

    event_id: str
    label: float
    label_time: int


class GroundTruthStore:
    """Reads and writes ``ground_truth`` for one use case."""

    def __init__(self, session: Session, keyspace: str, use_case: str) -> None:
        self.session = session
        self.use_case = use_case
        self._write = session.prepare(label_insert(keyspace))
        self._read = session.prepare(
            f"SELECT event_id, label, toUnixTimestamp(label_time) AS label_ms "
            f"FROM {keyspace}.ground_truth WHERE use_case = ? AND event_id IN ?"
        )

    def write(self, rows: Iterable[LabelRow]) -> int:
        now = int(time.time() * 1000)
        params = [(self.use_case, r.event_id, r.label, r.label_time, now) for r in rows]
        return write_all(self.session, self._write, params)

    def read(self, event_ids: list[str]) -> dict[str, LabelRow]:
        """The labels of these events that exist (blocking; queries of 100 ids, 32 at once)."""
        found: dict[str, LabelRow] = {}
        results = execute_concurrent(
            self.session,
            [
                (self._read, (self.use_case, event_ids[start : start + 100]))
                for start in range(0, len(event_ids), 100)
            ],
            concurrency=32,
            raise_on_first_error=True,
        )
        for result in results:
            for row in result.result_or_exc:
                found[row.event_id] = LabelRow(row.event_id, row.label, row.label_ms)
        return found
