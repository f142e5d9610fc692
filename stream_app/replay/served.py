"""What production served: the feature vectors and predictions stored in the prediction log.

A replay scores an event from the vector production built for it when one was logged: the
exact input production's models saw, so a version replayed on it gives the value it gave in
production. Vectors are kept per feature set (a column layout) as one matrix each, and an
event points at its row, so a batch's vectors are gathered with one fancy index per layout.

An event logged under several roles (champion and shadow, say) was served the same stored
features; the live roles' vector is preferred, then the shadow's, then simulated history's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np

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
    """Served vectors and production predictions by event id, from prediction-log chunks."""

    def __init__(self, feature_names: Callable[[str], list[str]], versions: Iterable[str]) -> None:
        self._feature_names = feature_names
        self._layouts: dict[str, _Layout] = {}
        self._rank: dict[str, int] = {}
        # event id -> (feature set, row in its matrix, chunk number, row in the chunk)
        self.where: dict[str, tuple[str, int, int, int]] = {}
        self.event_times: dict[str, int] = {}
        self._columns: list[Mapping[str, list[Any]]] = []
        # production predictions of the versions replayed: version -> event id -> value
        self.production: dict[str, dict[str, float]] = {v: {} for v in versions}

    def add(self, chunk: LoggedChunk) -> None:
        """Index one chunk (call ``finish`` once every chunk is added). Events seen for the
        first time (nearly all) are indexed in bulk; an event already indexed keeps its
        entry unless this chunk's role is preferred."""
        columns = chunk.columns
        event_ids: list[str] = columns["event_ids"]
        values = self.production.get(chunk.model_version)
        if values is not None:
            known = values.keys() & event_ids
            values.update(
                (e, v) for e, v in zip(event_ids, columns["values"], strict=True)
                if v is not None and e not in known
            )  # fmt: skip
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
        first = layout.append(chunk.matrix)
        number = len(self._columns)
        self._columns.append(columns)
        where, ranks, times = self.where, self._rank, self.event_times
        count = len(event_ids)
        places = zip(repeat(chunk.feature_set), range(first, first + count), repeat(number),
                     range(count))  # fmt: skip
        if not where.keys() & event_ids:
            where.update(zip(event_ids, places, strict=True))
            ranks.update(zip(event_ids, repeat(rank), strict=False))
            times.update(zip(event_ids, columns["event_times"], strict=True))
            return
        for event_id, place, event_time in zip(
            event_ids, places, columns["event_times"], strict=True
        ):
            if ranks.get(event_id, 3) > rank:
                ranks[event_id] = rank
                where[event_id] = place
                times[event_id] = event_time

    def finish(self) -> None:
        for layout in self._layouts.values():
            layout.stack()

    def __len__(self) -> int:
        return len(self.where)

    def served_as(self, event_id: str) -> tuple[list[str], int]:
        """The features production defaulted for the event, and their age (ms)."""
        _, _, number, row = self.where[event_id]
        columns = self._columns[number]
        return columns["missing_features"][row], columns["feature_age_ms"][row]

    def vectors(self, event_ids: Sequence[str], names: Sequence[str]) -> ServedRows:
        """The served vectors of ``event_ids`` in ``names`` order; events without one (or
        whose layout lacks a name) are left out and marked in ``found``."""
        found = np.zeros(len(event_ids), dtype=bool)
        matrix = np.empty((len(event_ids), len(names)))
        by_layout: dict[str, tuple[list[int], list[int]]] = {}
        where = self.where
        for i, event_id in enumerate(event_ids):
            place = where.get(event_id)
            if place is not None:
                positions, rows = by_layout.setdefault(place[0], ([], []))
                positions.append(i)
                rows.append(place[1])
        for set_id, (positions, rows) in by_layout.items():
            layout = self._layouts[set_id]
            try:
                columns = [layout.names.index(n) for n in names]
            except ValueError:
                continue  # this layout lacks a feature the models need
            matrix[positions] = layout.matrix[np.asarray(rows)][:, columns]
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
