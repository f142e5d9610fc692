"""The online feature store in Cassandra: one partition per entity, one row per feature."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from stream_app.cassandra_session import HOT_PATH
from stream_app.errors import FeatureLookupError
from stream_app.features.vector import StoredFeature
from stream_app.storage.cql import execute_async, is_outage, write_all


class FeatureRow(NamedTuple):
    """One feature value to store for one entity."""

    entity_key: str
    entity_id: str
    feature: str
    value: float
    event_time: int  # ms: event time of the newest input behind the value
    window_end: int | None  # ms: end of the aggregate's window (None for batch features)


READ_GROUP = 100  # entity ids per read query


class CassandraFeatureStore:
    """Reads and writes ``entity_features`` for one use case; owns its prepared statements."""

    def __init__(
        self, session: Any, keyspace: str, use_case: str, read_timeout_s: float = 1.0
    ) -> None:
        self.session = session
        self.use_case = use_case
        self.read_timeout_s = read_timeout_s
        self.read_timeouts = 0  # reads that came back too late; their features count as missing
        table = f"{keyspace}.entity_features"
        self._read = session.prepare(
            f"SELECT entity_id, feature, value, toUnixTimestamp(event_time) AS event_ms "
            f"FROM {table} WHERE use_case = ? AND entity_key = ? AND entity_id IN ?"
        )
        self._write = session.prepare(
            f"INSERT INTO {table} (use_case, entity_key, entity_id, feature, value, "
            "window_end, event_time, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )

    async def _read_group(
        self, entity_key: str, entity_ids: list[str]
    ) -> dict[tuple[str, str], dict[str, StoredFeature]]:
        rows = await execute_async(
            self.session,
            self._read,
            (self.use_case, entity_key, entity_ids),
            self.read_timeout_s,
            HOT_PATH,
        )
        found: dict[tuple[str, str], dict[str, StoredFeature]] = {}
        for entity_id, feature, value, event_ms in rows:
            found.setdefault((entity_key, entity_id), {})[feature] = StoredFeature(value, event_ms)
        return found

    async def read_entities(
        self, entities: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, StoredFeature]]:
        """The stored features of many entities: one query per entity key and up to
        ``READ_GROUP`` ids (a multi-partition IN), the queries running concurrently. An entity
        with nothing stored is returned with no features.

        A query that times out leaves its entities out (their features count as missing, per
        the use case's policy); Cassandra being unreachable raises ``FeatureLookupError``.
        """
        by_key: dict[str, list[str]] = {}
        for entity_key, entity_id in dict.fromkeys(entities):
            by_key.setdefault(entity_key, []).append(entity_id)
        groups = [
            (entity_key, ids[start : start + READ_GROUP])
            for entity_key, ids in by_key.items()
            for start in range(0, len(ids), READ_GROUP)
        ]
        results = await asyncio.gather(
            *(self._read_group(k, ids) for k, ids in groups), return_exceptions=True
        )
        found: dict[tuple[str, str], dict[str, StoredFeature]] = {}
        for (entity_key, ids), result in zip(groups, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result  # cancellation
                if is_outage(result):
                    raise FeatureLookupError(f"reading features failed: {result}") from result
                self.read_timeouts += len(ids)
                continue
            for entity_id in ids:
                found[(entity_key, entity_id)] = result.get((entity_key, entity_id), {})
        return found

    def _parameters(self, rows: Iterable[FeatureRow], now_ms: int) -> list[Sequence[Any]]:
        return [
            (self.use_case, r.entity_key, r.entity_id, r.feature, r.value, r.window_end,
             r.event_time, now_ms)
            for r in rows
        ]  # fmt: skip

    def write(self, rows: Iterable[FeatureRow]) -> int:
        """Upsert feature rows (blocking; for batch loads and history)."""
        return write_all(self.session, self._write, self._parameters(rows, int(time.time() * 1000)))
