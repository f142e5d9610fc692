"""The online feature store in Cassandra: one partition per entity, one row per feature."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from stream_app.features.vector import StoredFeature
from stream_app.storage.cql import execute_async, write_all


class FeatureRow(NamedTuple):
    """One feature value to store for one entity."""

    entity_key: str
    entity_id: str
    feature: str
    value: float
    event_time: int  # ms: event time of the newest input behind the value
    window_end: int | None  # ms: end of the aggregate's window (None for batch features)


class CassandraFeatureStore:
    """Reads and writes ``entity_features`` for one use case; owns its prepared statements."""

    def __init__(self, session: Any, keyspace: str, use_case: str) -> None:
        self.session = session
        self.use_case = use_case
        table = f"{keyspace}.entity_features"
        self._read = session.prepare(
            f"SELECT feature, value, toUnixTimestamp(event_time) AS event_ms FROM {table} "
            "WHERE use_case = ? AND entity_key = ? AND entity_id = ?"
        )
        self._write = session.prepare(
            f"INSERT INTO {table} (use_case, entity_key, entity_id, feature, value, "
            "window_end, event_time, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )

    async def read_entity(self, entity_key: str, entity_id: str) -> dict[str, StoredFeature]:
        """Every stored feature of one entity."""
        rows = await execute_async(self.session, self._read, (self.use_case, entity_key, entity_id))
        return {row.feature: StoredFeature(row.value, row.event_ms) for row in rows}

    async def read_entities(
        self, entities: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, StoredFeature]]:
        """The stored features of many entities, read concurrently (one query per entity)."""
        keys = list(dict.fromkeys(entities))
        results = await asyncio.gather(*(self.read_entity(k, i) for k, i in keys))
        return dict(zip(keys, results, strict=True))

    def _parameters(self, rows: Iterable[FeatureRow], now_ms: int) -> list[Sequence[Any]]:
        return [
            (self.use_case, r.entity_key, r.entity_id, r.feature, r.value, r.window_end,
             r.event_time, now_ms)
            for r in rows
        ]  # fmt: skip

    def write(self, rows: Iterable[FeatureRow]) -> int:
        """Upsert feature rows (blocking; for batch loads and history)."""
        return write_all(self.session, self._write, self._parameters(rows, int(time.time() * 1000)))
