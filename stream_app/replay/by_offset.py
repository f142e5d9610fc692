"""Logged rows by the input record they were scored from: a batch matched in a few array ops.

Rows logged with their sources (``storage.log_sources``) are kept per topic and partition
as arrays sorted by offset; a batch of records is matched with one ``searchsorted`` per
partition, and a match counts only if the record's timestamp is the one logged (a topic
deleted and recreated reuses offsets, never its records' timestamps). A record logged more
than once (champion and shadow, or re-scored after a crash) takes its best-ranked row, the
first added among equals, as matching by event id does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stream_app.storage.log_sources import Sources

Array = np.ndarray[Any, Any]
_NONE = -1


class OffsetIndex:
    """Rows (numbered by the caller) by topic, partition, offset and record timestamp."""

    def __init__(self) -> None:
        self._topics: dict[str, int] = {}
        self._parts: list[tuple[Array, ...]] = []
        # (topic number, partition) -> offsets (sorted), timestamps, rows
        self._partitions: dict[tuple[int, int], tuple[Array, Array, Array]] = {}

    def add(self, sources: Sources, rank: int, first_row: int) -> None:
        """The rows ``first_row, first_row + 1, ...`` of a chunk scored from ``sources``;
        a lower ``rank`` is preferred."""
        numbers = np.array([self._topics.setdefault(t, len(self._topics)) for t in sources.topics],
                           dtype=np.int64)  # fmt: skip
        count = sources.count
        self._parts.append(
            (numbers[sources.topic_index] if count else np.empty(0, dtype=np.int64),
             sources.partitions, sources.offsets, sources.timestamps,
             np.full(count, rank, dtype=np.int64),
             np.arange(first_row, first_row + count, dtype=np.int64))
        )  # fmt: skip

    def finish(self) -> None:
        """Sort what was added (call once, after the last ``add``)."""
        if not self._parts:
            return
        topics, partitions, offsets, stamps, ranks, rows = (
            np.concatenate(column) for column in zip(*self._parts, strict=True)
        )
        self._parts = []
        order = np.lexsort((rows, ranks, stamps, offsets, partitions, topics))
        topics, partitions, offsets = topics[order], partitions[order], offsets[order]
        stamps, rows = stamps[order], rows[order]
        # the first of each (topic, partition, offset, timestamp): the best-ranked row
        first = np.ones(len(order), dtype=bool)
        first[1:] = (
            (np.diff(topics) != 0) | (np.diff(partitions) != 0) | (np.diff(offsets) != 0)
            | (np.diff(stamps) != 0)
        )  # fmt: skip
        topics, partitions, offsets = topics[first], partitions[first], offsets[first]
        stamps, rows = stamps[first], rows[first]
        starts = np.flatnonzero(
            np.concatenate(([True], (np.diff(topics) != 0) | (np.diff(partitions) != 0)))
        )
        ends = np.append(starts[1:], len(topics))
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            key = (int(topics[start]), int(partitions[start]))
            self._partitions[key] = (offsets[start:end], stamps[start:end], rows[start:end])

    def __len__(self) -> int:
        return sum(len(rows) for _, _, rows in self._partitions.values())

    def match(self, topic: str, partitions: Array, offsets: Array, timestamps: Array) -> Array:
        """The row logged for each record (topic, partition, offset, timestamp), -1 where
        none was."""
        found = np.full(len(offsets), _NONE, dtype=np.int64)
        number = self._topics.get(topic)
        if number is None or not len(offsets):
            return found
        for partition in np.flatnonzero(np.bincount(partitions)).tolist():
            logged = self._partitions.get((number, partition))
            if logged is None:
                continue
            logged_offsets, logged_stamps, logged_rows = logged
            mine = np.flatnonzero(partitions == partition)
            wanted, stamps = offsets[mine], timestamps[mine]
            low = np.searchsorted(logged_offsets, wanted, side="left")
            high = np.searchsorted(logged_offsets, wanted, side="right")
            at = np.minimum(low, len(logged_offsets) - 1)
            single = (high - low == 1) & (logged_stamps[at] == stamps)
            found[mine[single]] = logged_rows[at[single]]
            # an offset logged under several timestamps (its topic recreated): look closer
            for i in np.flatnonzero(high - low > 1).tolist():
                span = slice(int(low[i]), int(high[i]))
                same = np.flatnonzero(logged_stamps[span] == stamps[i])
                if len(same):
                    found[mine[i]] = logged_rows[span][same[0]]
        return found
