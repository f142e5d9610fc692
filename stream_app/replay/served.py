"""What production served: the feature vectors and predictions stored in the prediction log.

A replay scores an event from the vector production built for it when one was logged: the
exact input production's models saw, so a version replayed on it gives the value it gave in
production. Vectors are kept per feature set (a column layout) as one matrix each, and an
event points at its row, so a batch's vectors are gathered with one fancy index per layout.
A record is found by its source (topic, partition, offset and timestamp, ``by_offset``)
where its row was logged with one, without reading the record; by event id otherwise.

An event logged under several roles (champion and shadow, say) was served the same stored
features; the live roles' vector is preferred, then the shadow's, then simulated history's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np

from stream_app.replay.by_offset import OffsetIndex
from stream_app.storage.predictions import HISTORY_VERSION, LoggedChunk

Array = np.ndarray[Any, Any]
_PREFERENCE = {"champion": 0, "challenger": 0, "shadow": 1}
_HISTORY = 2


class ServedRows(NamedTuple):
    """Vectors of a batch in the requested column order, and which events had one."""

    matrix: Array  # rows of the events found, in their order
    found: Array  # per event of the batch: whether it had a served vector


class _Layout:
    """The rows of one feature set, appended chunk by chunk and stacked once read."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.parts: list[Array] = []
        self.rows = 0
        self.matrix: Array = np.empty((0, len(names)))

    def append(self, matrix: Array) -> int:
        first = self.rows
        self.parts.append(matrix)
        self.rows += len(matrix)
        return first

    def stack(self) -> None:
        if self.parts:
            self.matrix = np.vstack([self.matrix, *self.parts])
            self.parts = []


class ServedIndex:
    """Served vectors and production predictions by event id and by input record, from
    prediction-log chunks. Every row added is numbered (``rows_of``, ``by_source``); the
    per-row accessors take those numbers."""

    def __init__(self, feature_names: Callable[[str], list[str]], versions: Iterable[str]) -> None:
        self._feature_names = feature_names
        self._layouts: dict[str, _Layout] = {}
        self._ranks: list[int] = []  # per chunk
        self._where: dict[str, int] | None = None  # built when first needed (``where``)
        self._chunks: list[tuple[LoggedChunk, str, int]] = []  # chunk, layout, its first row there
        self._count = 0
        self._offsets = OffsetIndex()
        # per row, once finished: its chunk, row in that chunk, layout, row in the layout's matrix
        self._chunk_of: Array = np.empty(0, dtype=np.int64)
        self._in_chunk: Array = np.empty(0, dtype=np.int64)
        self._layout_of: Array = np.empty(0, dtype=np.int64)
        self._layout_row: Array = np.empty(0, dtype=np.int64)
        self._layout_names: list[str] = []
        self._event_ids: Array = np.empty(0, dtype=object)
        self._event_times: Array = np.empty(0, dtype=np.int64)
        self._entities: dict[str, Array] = {}
        # production predictions of the versions replayed: version -> event id -> value
        self.production: dict[str, dict[str, float]] = {v: {} for v in versions}

    def add(self, chunk: LoggedChunk) -> None:
        """Index one chunk (call ``finish`` once every chunk is added)."""
        columns = chunk.columns
        event_ids: list[str] = columns["event_ids"]
        values = self.production.get(chunk.model_version)
        if values is not None:
            logged = columns["values"]
            known = values.keys() & event_ids
            if known or None in logged:  # an event's first value is kept
                values.update(
                    (e, v) for e, v in zip(event_ids, logged, strict=True)
                    if v is not None and e not in known
                )  # fmt: skip
            else:  # the common case, in one call
                values.update(zip(event_ids, logged, strict=True))
        rank = (
            _HISTORY
            if chunk.model_version == HISTORY_VERSION
            else _PREFERENCE.get(chunk.role, _HISTORY)
        )
        layout = self._layouts.get(chunk.feature_set)
        if layout is None:
            layout = self._layouts[chunk.feature_set] = _Layout(
                self._feature_names(chunk.feature_set)
            )
        self._chunks.append((chunk, chunk.feature_set, layout.append(chunk.matrix)))
        first, count = self._count, len(event_ids)
        self._count += count
        self._ranks.append(rank)
        if chunk.sources is not None:
            self._offsets.add(chunk.sources, rank, first)

    @property
    def where(self) -> dict[str, int]:
        """Event id -> its row (the preferred one when logged more than once). Built on
        first use: a replay whose records are all found by offset never needs it. Events
        seen for the first time (nearly all) are indexed in bulk; an event already indexed
        keeps its row unless a later chunk's role is preferred."""
        if self._where is not None:
            return self._where
        where: dict[str, int] = {}
        ranks: dict[str, int] = {}
        first = 0
        for (chunk, _, _), rank in zip(self._chunks, self._ranks, strict=True):
            event_ids: list[str] = chunk.columns["event_ids"]
            rows = range(first, first + len(event_ids))
            first += len(event_ids)
            if not where.keys() & event_ids:
                where.update(zip(event_ids, rows, strict=True))
                ranks.update(zip(event_ids, repeat(rank), strict=False))
                continue
            for event_id, row in zip(event_ids, rows, strict=True):
                if ranks.get(event_id, 3) > rank:
                    ranks[event_id] = rank
                    where[event_id] = row
        self._where = where
        return where

    def finish(self) -> None:
        for layout in self._layouts.values():
            layout.stack()
        self._offsets.finish()
        if not self._chunks:
            return
        self._layout_names = list(self._layouts)
        number = {name: i for i, name in enumerate(self._layout_names)}
        counts = np.array([len(c.columns["event_ids"]) for c, _, _ in self._chunks])
        starts = np.cumsum(counts) - counts
        self._chunk_of = np.repeat(np.arange(len(counts)), counts)
        self._in_chunk = np.arange(self._count) - starts[self._chunk_of]
        self._layout_of = np.array([number[s] for _, s, _ in self._chunks])[self._chunk_of]
        self._layout_row = np.array([f for _, _, f in self._chunks])[self._chunk_of]
        self._layout_row += self._in_chunk
        self._event_ids = np.array(
            [e for c, _, _ in self._chunks for e in c.columns["event_ids"]], dtype=object
        )
        self._event_times = np.concatenate(
            [np.asarray(c.columns["event_times"], dtype=np.int64) for c, _, _ in self._chunks]
        )

    def __len__(self) -> int:
        return len(self.where)

    def rows_of(self, event_ids: Sequence[str | None]) -> Array:
        """The row of each event (-1 for an event without one, or no id)."""
        if not event_ids:
            return np.empty(0, dtype=np.int64)
        where = self.where
        return np.array([-1 if e is None else where.get(e, -1) for e in event_ids], dtype=np.int64)

    def by_source(self, topic: str, partitions: Array, offsets: Array, stamps: Array) -> Array:
        """The row logged for each record of ``topic`` (-1 for a record without one)."""
        return self._offsets.match(topic, partitions, offsets, stamps)

    def event_ids(self, rows: Array) -> list[str]:
        ids: list[str] = self._event_ids[rows].tolist()
        return ids

    def event_times(self, rows: Array) -> list[int]:
        times: list[int] = self._event_times[rows].tolist()
        return times

    def entities(self, key: str, rows: Array) -> list[str]:
        """Each row's id for entity ``key``, as logged with its source (``""`` where the
        event has none, or the row no source)."""
        column = self._entities.get(key)
        if column is None:
            column = self._entities[key] = self._entity_column(key)
        ids: list[str] = column[rows].tolist()
        return ids

    def _entity_column(self, key: str) -> Array:
        """Every row's id for entity ``key`` (an array of references into one table of
        distinct ids: no string made per row)."""
        table: dict[str, int] = {"": 0}
        codes = []
        for chunk, _, _ in self._chunks:
            if chunk.sources is None:
                codes.append(np.zeros(len(chunk.matrix), dtype=np.int64))
                continue
            ids, index = chunk.sources.entity_codes(key)
            mapped = np.array([table.setdefault(e, len(table)) for e in ids], dtype=np.int64)
            codes.append(mapped[index])
        distinct = np.empty(len(table), dtype=object)
        distinct[:] = list(table)
        return distinct[np.concatenate(codes)] if codes else distinct[:0]

    def served_as(self, event_id: str) -> tuple[list[str], int]:
        """The features production defaulted for the event, and their age (ms)."""
        return self.served_as_rows(np.array([self.where[event_id]]))[0]

    def served_as_rows(self, rows: Array) -> list[tuple[list[str], int]]:
        """Per row: the features production defaulted, and their age (ms)."""
        out = []
        for number, row in zip(self._chunk_of[rows].tolist(), self._in_chunk[rows].tolist(),
                               strict=True):  # fmt: skip
            columns = self._chunks[number][0].columns
            out.append((columns["missing_features"][row], columns["feature_age_ms"][row]))
        return out

    def vectors(self, event_ids: Sequence[str], names: Sequence[str]) -> ServedRows:
        """The served vectors of ``event_ids`` in ``names`` order; events without one (or
        whose layout lacks a name) are left out and marked in ``found``."""
        return self.vectors_at(self.rows_of(event_ids), names)

    def vectors_at(self, rows: Array, names: Sequence[str]) -> ServedRows:
        """The vectors of ``rows`` in ``names`` order; rows of -1, or whose layout lacks a
        name, are left out and marked in ``found``."""
        found = np.zeros(len(rows), dtype=bool)
        matrix = np.empty((len(rows), len(names)))
        known = np.flatnonzero(rows >= 0)
        layouts = self._layout_of[rows[known]]
        for code in np.unique(layouts).tolist():
            layout = self._layouts[self._layout_names[code]]
            try:
                columns = [layout.names.index(n) for n in names]
            except ValueError:
                continue  # this layout lacks a feature the models need
            positions = known[layouts == code]
            matrix[positions] = layout.matrix[self._layout_row[rows[positions]]][:, columns]
            found[positions] = True
        return ServedRows(matrix[found], found)


def load_served(
    chunks: Iterable[LoggedChunk],
    feature_names: Callable[[str], list[str]],
    versions: Iterable[str],
    scored_from: int | None = None,
    scored_to: int | None = None,
) -> ServedIndex:
    """An index over the chunks given, leaving out those whose rows were all scored outside
    ``[scored_from, scored_to)`` (the log is read in whole buckets)."""
    index = ServedIndex(feature_names, versions)
    for chunk in chunks:
        scored = chunk.columns["scored_at"]
        if scored_from is not None and max(scored) < scored_from:
            continue
        if scored_to is not None and min(scored) >= scored_to:
            continue
        index.add(chunk)
    index.finish()
    return index
