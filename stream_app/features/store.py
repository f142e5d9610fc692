"""The online feature store in Cassandra: batch features and windowed aggregates (panes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, NamedTuple, TypeGuard, TypeVar

from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent_with_args

from stream_app.cassandra_session import HOT_PATH
from stream_app.errors import FeatureLookupError
from stream_app.features.pane_store import PaneStore
from stream_app.features.panes import AggregateGroup, aggregate_groups, window_values
from stream_app.features.point_in_time import BatchVersions
from stream_app.features.vector import StoredFeature
from stream_app.storage.cql import execute_async, is_outage, write_all
from stream_app.use_cases.spec import BatchFeature, UseCase


class FeatureRow(NamedTuple):
    """One feature value to store for one entity."""

    entity_key: str
    entity_id: str
    feature: str
    value: float
    event_time: int  # ms: event time of the newest input behind the value
    window_end: int | None  # ms: end of the aggregate's window (None for batch features)


READ_GROUP = 100  # entity ids per read query
T = TypeVar("T")


class CassandraFeatureStore:
    """Stored features of one use case: batch features (``entity_features``) and windowed
    aggregates (panes, through ``PaneStore``), read together for serving."""

    def __init__(
        self,
        session: Session,
        keyspace: str,
        use_case: UseCase,
        panes: PaneStore | None = None,
        read_timeout_s: float = 1.0,
    ) -> None:
        self.session = session
        self.use_case = use_case.name
        self.panes = panes
        self.read_timeout_s = read_timeout_s
        self.read_timeouts = 0  # reads that came back too late; their features count as missing
        self._groups: dict[str, list[AggregateGroup]] = {}
        for group in aggregate_groups(use_case):
            self._groups.setdefault(group.entity_key, []).append(group)
        table = f"{keyspace}.entity_features"
        self._read = session.prepare(
            f"SELECT entity_id, feature, value, toUnixTimestamp(event_time) AS event_ms "
            f"FROM {table} WHERE use_case = ? AND entity_key = ? AND entity_id IN ?"
        )
        self._write = session.prepare(
            f"INSERT INTO {table} (use_case, entity_key, entity_id, feature, value, "
            "window_end, event_time, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        # per entity (partition): the newest version of a feature valid at a time
        self._batch_as_of = session.prepare(
            "SELECT entity_id, value, toUnixTimestamp(valid_from) AS valid_ms FROM "
            f"{keyspace}.batch_feature_history WHERE use_case = ? AND entity_key = ? AND "
            "entity_id IN ? AND feature = ? AND valid_from <= ? PER PARTITION LIMIT 1"
        )
        self._batch_versions = session.prepare(
            "SELECT feature, toUnixTimestamp(valid_from) AS valid_ms, value FROM "
            f"{keyspace}.batch_feature_history WHERE use_case = ? AND entity_key = ? AND "
            "entity_id = ?"
        )
        self._batch_features = {
            name: feature.entity for name, feature in use_case.features_of(BatchFeature).items()
        }

    async def as_of(
        self,
        entities: Iterable[tuple[str, str]],
        at_ms: int,
        complete_panes_only: bool = True,
    ) -> dict[tuple[str, str], dict[str, StoredFeature]]:
        """Point-in-time lookup: each entity's features as they were at ``at_ms``.

        Batch features: the version valid at ``at_ms`` (``batch_feature_history``). Windowed
        features: the windows served at ``at_ms`` from panes that ended by then, so no reading
        newer than ``at_ms`` counts (a window can lack its last, unfinished step). Panes older
        than the retention are gone: such features come back missing. Without
        ``complete_panes_only``, the windows are those the scoring path serves at ``at_ms``.

        One query per feature or pane group and up to ``READ_GROUP`` ids, concurrently. A
        query that times out leaves its entities' features missing (``read_timeouts``);
        Cassandra being unreachable raises ``FeatureLookupError``.
        """
        keys = list(dict.fromkeys(entities))
        by_key: dict[str, list[str]] = {}
        for entity_key, entity_id in keys:
            by_key.setdefault(entity_key, []).append(entity_id)
        reads: list[tuple[str, list[str], Awaitable[Any], str | None]] = []
        for entity_key, ids in by_key.items():
            for start in range(0, len(ids), READ_GROUP):
                group_ids = ids[start : start + READ_GROUP]
                for name, owner in self._batch_features.items():
                    if owner == entity_key:
                        query = execute_async(
                            self.session, self._batch_as_of,
                            (self.use_case, entity_key, group_ids, name, at_ms),
                            self.read_timeout_s, HOT_PATH,
                        )  # fmt: skip
                        reads.append((entity_key, group_ids, query, name))
                groups = self._groups.get(entity_key)
                if groups and self.panes is not None:
                    windows = self.panes.read_windows(groups, group_ids, at_ms)
                    reads.append((entity_key, group_ids, windows, None))
        results = await asyncio.gather(*(read for _, _, read, _ in reads), return_exceptions=True)
        found: dict[tuple[str, str], dict[str, StoredFeature]] = {}
        for (entity_key, ids, _, feature), result in zip(reads, results, strict=True):
            if not self._answered(result, ids):
                continue
            if feature is not None:  # a batch feature: the newest version valid at at_ms
                for entity_id, value, valid_ms in result:
                    found.setdefault((entity_key, entity_id), {})[feature] = StoredFeature(
                        value, valid_ms
                    )
                continue
            groups = self._groups[entity_key]
            for entity_id, entity_panes in result.items():
                found.setdefault((entity_key, entity_id), {}).update(
                    window_values(groups, entity_panes, at_ms, complete_panes_only)
                )
        return {key: found.get(key, {}) for key in keys}

    def _answered(self, result: T | BaseException, ids: Sequence[str]) -> TypeGuard[T]:
        """Whether one concurrent read (from ``gather(..., return_exceptions=True)``) answered.
        A timeout leaves its ``ids`` missing (counted in ``read_timeouts``); Cassandra being
        unreachable raises ``FeatureLookupError``; a cancellation is raised again."""
        if not isinstance(result, BaseException):
            return True
        if not isinstance(result, Exception):
            raise result  # cancellation
        if is_outage(result):
            raise FeatureLookupError(f"reading features failed: {result}") from result
        self.read_timeouts += len(ids)
        return False

    async def read_entities_at(
        self, entities: Iterable[tuple[str, str]], at_ms: int
    ) -> dict[tuple[str, str], dict[str, StoredFeature]]:
        """The features served at ``at_ms`` to a use case whose events are served at their own
        time: ``as_of``, point in time (the windows complete at ``at_ms``)."""
        return await self.as_of(entities, at_ms)

    def batch_versions(self, entities: Iterable[tuple[str, str]]) -> BatchVersions:
        """Every loaded version of these entities' batch features (blocking; for imports)."""
        keys = [k for k in dict.fromkeys(entities) if k[0] in set(self._batch_features.values())]
        results = execute_concurrent_with_args(
            self.session, self._batch_versions, [(self.use_case, k, i) for k, i in keys],
            concurrency=64, raise_on_first_error=True,
        )  # fmt: skip
        versions: dict[tuple[str, str, str], list[tuple[int, float]]] = {}
        for (entity_key, entity_id), result in zip(keys, results, strict=True):
            for row in result.result_or_exc:
                if self._batch_features.get(row.feature) == entity_key:
                    versions.setdefault((entity_key, entity_id, row.feature), []).append(
                        (row.valid_ms, row.value)
                    )
        for found in versions.values():
            found.sort()
        return BatchVersions(versions)

    async def _read_group(
        self, entity_key: str, entity_ids: list[str], at_ms: int
    ) -> dict[tuple[str, str], dict[str, StoredFeature]]:
        batch_rows = execute_async(
            self.session,
            self._read,
            (self.use_case, entity_key, entity_ids),
            self.read_timeout_s,
            HOT_PATH,
        )
        groups = self._groups.get(entity_key, [])
        if groups and self.panes is not None:
            rows, panes = await asyncio.gather(
                batch_rows, self.panes.read_windows(groups, entity_ids, at_ms)
            )
        else:
            rows, panes = await batch_rows, {}
        found: dict[tuple[str, str], dict[str, StoredFeature]] = {}
        for entity_id, feature, value, event_ms in rows:
            found.setdefault((entity_key, entity_id), {})[feature] = StoredFeature(value, event_ms)
        for entity_id, entity_panes in panes.items():
            found.setdefault((entity_key, entity_id), {}).update(
                window_values(groups, entity_panes, at_ms)
            )
        return found

    async def read_entities(
        self, entities: Iterable[tuple[str, str]], at_ms: int | None = None
    ) -> dict[tuple[str, str], dict[str, StoredFeature]]:
        """The stored features of many entities as served at ``at_ms`` (default: now): one
        query per entity key and up to ``READ_GROUP`` ids (a multi-partition IN) for batch
        features, one per pane group for windowed ones, all concurrently. An entity with
        nothing stored is returned with no features.

        A query that times out leaves its entities out (their features count as missing, per
        the use case's policy); Cassandra being unreachable raises ``FeatureLookupError``.
        """
        at = int(time.time() * 1000) if at_ms is None else at_ms
        by_key: dict[str, list[str]] = {}
        for entity_key, entity_id in dict.fromkeys(entities):
            by_key.setdefault(entity_key, []).append(entity_id)
        groups = [
            (entity_key, ids[start : start + READ_GROUP])
            for entity_key, ids in by_key.items()
            for start in range(0, len(ids), READ_GROUP)
        ]
        results = await asyncio.gather(
            *(self._read_group(k, ids, at) for k, ids in groups), return_exceptions=True
        )
        found: dict[tuple[str, str], dict[str, StoredFeature]] = {}
        for (entity_key, ids), result in zip(groups, results, strict=True):
            if not self._answered(result, ids):
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
