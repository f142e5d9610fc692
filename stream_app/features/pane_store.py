"""Panes in Cassandra (``feature_panes``): written by the feature agent, read for serving.
With them, each readings partition's watermark (``feature_watermarks``).

Writes carry an explicit, strictly increasing write timestamp: when batches are written
concurrently, the state built last wins even if its write lands first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from cassandra.cluster import Session
from cassandra.query import BatchStatement, BatchType

from stream_app.cassandra_session import HOT_PATH
from stream_app.features.panes import AggregateGroup, PaneKey, PaneState, StoredPanes
from stream_app.features.windows import RunningAggregate
from stream_app.storage.cql import execute_async

READ_GROUP = 100  # entity ids per read query
WRITE_BATCH = 60  # panes per unlogged write batch
_COLUMNS = "count, total, total_sq, minimum, maximum, last, last_time, max_offset"


class WriteClock:
    """Microsecond timestamps, strictly increasing within the process."""

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(self._last + 1, time.time_ns() // 1000)
        return self._last


def _state(row: Sequence[Any], offset: int) -> PaneState:
    count, total, total_sq, minimum, maximum, last, last_time, max_offset = row[offset:]
    aggregate = RunningAggregate(
        count or 0,
        total or 0.0,
        total_sq or 0.0,
        minimum if minimum is not None else float("inf"),
        maximum if maximum is not None else float("-inf"),
        last if last is not None else float("nan"),
        last_time if last_time is not None else -1,
    )
    return PaneState(aggregate, max_offset if max_offset is not None else -1)


class PaneStorage(Protocol):
    """Where the feature agent keeps its panes and watermarks (Cassandra: ``PaneStore``)."""

    source_topic_id: str

    async def load(self, keys: Iterable[PaneKey]) -> dict[PaneKey, PaneState]: ...

    def snapshot(self, dirty: Iterable[tuple[PaneKey, PaneState]]) -> Sequence[Any]:
        """The writes of these panes as they are now (states go on changing afterwards)."""
        ...

    async def write(self, snapshot: Sequence[Any]) -> None: ...

    async def load_watermarks(self, partitions: Iterable[int]) -> dict[int, int]: ...

    async def write_watermarks(self, watermarks: Mapping[int, int]) -> None: ...


class PaneStore:
    """Reads and writes ``feature_panes`` for one use case."""

    def __init__(
        self,
        session: Session,
        keyspace: str,
        use_case: str,
        retention_s: int,
        read_timeout_s: float = 1.0,
        source_topic_id: str = "",
    ) -> None:
        self.session = session
        self.use_case = use_case
        self.retention_s = retention_s
        # The readings topic's Kafka id (set by the feature agent): loaded panes written from
        # another incarnation of the topic accept every offset. Empty: offsets as stored.
        self.source_topic_id = source_topic_id
        self.read_timeout_s = read_timeout_s
        self.clock = WriteClock()
        table = f"{keyspace}.feature_panes"
        self._write = session.prepare(
            f"INSERT INTO {table} (use_case, entity_key, entity_id, aggregate, pane_start, "
            f"source_partition, {_COLUMNS}, source_topic_id, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ? AND TIMESTAMP ?"
        )
        self._load = session.prepare(
            f"SELECT entity_id, {_COLUMNS.replace('last_time', 'toUnixTimestamp(last_time)')}, "
            "source_topic_id "
            f"FROM {table} WHERE use_case = ? AND entity_key = ? AND entity_id IN ? "
            "AND aggregate = ? AND pane_start = ? AND source_partition = ?"
        )
        marks = f"{keyspace}.feature_watermarks"
        self._write_mark = session.prepare(
            f"INSERT INTO {marks} (use_case, source_topic_id, source_partition, watermark, "
            "updated_at) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?"
        )
        self._load_marks = session.prepare(
            f"SELECT source_partition, watermark FROM {marks} "
            "WHERE use_case = ? AND source_topic_id = ? AND source_partition IN ?"
        )
        self._window = session.prepare(
            "SELECT entity_id, toUnixTimestamp(pane_start), "
            f"{_COLUMNS.replace('last_time', 'toUnixTimestamp(last_time)')} "
            f"FROM {table} WHERE use_case = ? AND entity_key = ? AND entity_id IN ? "
            "AND aggregate = ? AND pane_start >= ? AND pane_start <= ?"
        )

    # -- the feature agent ------------------------------------------------------------------

    def snapshot(self, dirty: Iterable[tuple[PaneKey, PaneState]]) -> list[BatchStatement]:
        """The writes of these panes as they are now: unlogged batches of up to
        ``WRITE_BATCH`` panes (an entity's panes together), bound now with one write
        timestamp."""
        stamp = self.clock.next()
        now = int(time.time() * 1000)
        batches: list[BatchStatement] = []
        rows = 0
        for key, state in sorted(dirty, key=lambda item: (item[0].entity_key, item[0].entity_id)):
            a = state.aggregate
            if not batches or rows >= WRITE_BATCH:
                batches.append(BatchStatement(batch_type=BatchType.UNLOGGED))
                rows = 0
            rows += 1
            batches[-1].add(
                self._write,
                (self.use_case, key.entity_key, key.entity_id, key.aggregate, key.pane_start,
                 key.partition, a.count, a.total, a.total_sq, a.minimum, a.maximum, a.last,
                 a.last_time, state.max_offset, self.source_topic_id, now, self.retention_s,
                 stamp),
            )  # fmt: skip
        return batches

    async def write(self, statements: Sequence[Any]) -> None:
        await asyncio.gather(*(execute_async(self.session, s) for s in statements))

    async def write_watermarks(self, watermarks: Mapping[int, int]) -> None:
        """Store each partition's watermark (event time, ms)."""
        stamp, now = self.clock.next(), int(time.time() * 1000)
        await asyncio.gather(
            *(
                execute_async(
                    self.session,
                    self._write_mark,
                    (self.use_case, self.source_topic_id, partition, mark, now, stamp),
                )
                for partition, mark in watermarks.items()
            )
        )

    async def load_watermarks(self, partitions: Iterable[int]) -> dict[int, int]:
        """The stored watermark of each partition that has one (of this topic incarnation)."""
        wanted = sorted(set(partitions))
        if not wanted:
            return {}
        rows = await execute_async(
            self.session,
            self._load_marks,
            (self.use_case, self.source_topic_id, wanted),
            self.read_timeout_s,
            HOT_PATH,
        )
        return {row[0]: row[1] for row in rows if row[1] is not None}

    async def load(self, keys: Iterable[PaneKey]) -> dict[PaneKey, PaneState]:
        """The stored state of panes (missing ones are absent from the result)."""
        groups: dict[tuple[str, str, int, int], list[str]] = {}
        for key in keys:
            groups.setdefault(
                (key.entity_key, key.aggregate, key.pane_start, key.partition), []
            ).append(key.entity_id)
        queries = [
            (group, ids[start : start + READ_GROUP])
            for group, ids in groups.items()
            for start in range(0, len(ids), READ_GROUP)
        ]
        results = await asyncio.gather(
            *(
                execute_async(
                    self.session,
                    self._load,
                    (self.use_case, entity_key, ids, aggregate, pane_start, partition),
                    self.read_timeout_s,
                    HOT_PATH,
                )
                for (entity_key, aggregate, pane_start, partition), ids in queries
            )
        )
        found = {}
        for ((entity_key, aggregate, pane_start, partition), _), rows in zip(
            queries, results, strict=True
        ):
            for row in rows:
                key = PaneKey(entity_key, row[0], aggregate, pane_start, partition)
                state = _state(row[:-1], 1)
                if self.source_topic_id and row[-1] != self.source_topic_id:
                    state.max_offset = -1  # offsets of another topic incarnation
                found[key] = state
        return found

    # -- serving and point-in-time lookups --------------------------------------------------

    async def read_windows(
        self, groups: list[AggregateGroup], entity_ids: list[str], at_ms: int
    ) -> Mapping[str, StoredPanes]:
        """Per entity id: the panes of every group (all one entity key) that the windows
        served at ``at_ms`` can cover, by (aggregate, pane start), all partitions."""
        queries = [
            (group, entity_ids[start : start + READ_GROUP])
            for group in groups
            for start in range(0, len(entity_ids), READ_GROUP)
        ]
        results = await asyncio.gather(
            *(
                execute_async(
                    self.session,
                    self._window,
                    (
                        self.use_case,
                        group.entity_key,
                        ids,
                        group.name,
                        at_ms - group.horizon_ms - group.pane_ms,
                        at_ms,
                    ),
                    self.read_timeout_s,
                    HOT_PATH,
                )
                for group, ids in queries
            )
        )
        panes: dict[str, dict[tuple[str, int], list[RunningAggregate]]] = {}
        for (group, _), rows in zip(queries, results, strict=True):
            for row in rows:
                state = _state(row, 2)
                panes.setdefault(row[0], {}).setdefault((group.name, row[1]), []).append(
                    state.aggregate
                )
        return panes
