"""The input record each prediction-log row was scored from, and its entities (binary).

A replay matches the records it reads to the vectors production served for them. By event
id, that costs a JSON parse of every record; by source, it costs nothing per record: a
served row names the record it came from (topic, partition, offset, and the record's
timestamp, compared too, so a record of a topic since deleted and recreated never takes the
vector of the one that had its offset) and carries what the replay's report needs of the
event beside what ``log_columns`` holds: its entities (drift is reported per entity).

A chunk's sources are one blob (the ``sources`` column of ``prediction_log``, V013): a table
of topics and a uint16 index per row, the partitions, offsets and timestamps as one
little-endian int64 matrix, the entity keys, the distinct entity ids of the chunk (a batch
has a few hundred: the same couriers and zones come back) and a uint32 index into them per
key and row (0, ``""``, where a row's event has no such entity: an entity id is never
empty). A replay gathers a row's ids from that table, making no string per row. Chunks
without sources (logged before, simulated or imported history) are matched by event id as
before.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any, Protocol, cast

import numpy as np
import orjson

from stream_app.messages import InputMessage

Array = np.ndarray[Any, Any]
MAGIC = b"\x00SR1"
_PARTS = ("topics", "topic_index", "integers", "entity_keys", "entity_table", "entity_index")
_HEADER = struct.Struct(f"<4sI{len(_PARTS)}I")


class SourcedRow(Protocol):
    """What a chunk's sources are made of (``PredictionRow`` has it)."""

    @property
    def source(self) -> InputMessage | None: ...
    @property
    def entities(self) -> Mapping[str, str] | None: ...


def encode(rows: Sequence[SourcedRow]) -> bytes | None:
    """The sources of a chunk's rows, or None when a row has none. On the scoring path:
    C-level passes over the rows (``zip``, ``dict.fromkeys``) where it can."""
    count = len(rows)
    if not count:
        return None
    # a None among them (history) makes zip or chain raise TypeError below
    entities = cast("list[Mapping[str, str]]", [r.entities for r in rows])
    try:
        columns = list(zip(*[r.source for r in rows], strict=False))  # InputMessage's fields
        keys = list(dict.fromkeys(chain.from_iterable(entities)))
    except TypeError:  # a row without a source (history)
        return None
    topics = list(dict.fromkeys(columns[0]))
    if len(topics) == 1:
        topic_index = np.zeros(count, dtype="<u2")
    else:
        of = {t: i for i, t in enumerate(topics)}
        topic_index = np.array([of[t] for t in columns[0]], dtype="<u2")
    integers = np.array([columns[1], columns[2], columns[5]], dtype="<i8")
    table: dict[str, int] = {"": 0}
    number = table.setdefault
    try:
        codes = [[number(e, len(table)) for e in map(itemgetter(k), entities)] for k in keys]
    except KeyError:  # events with different entities
        codes = [[number(e.get(k, ""), len(table)) for e in entities] for k in keys]
    index = np.array(codes, dtype="<u4")
    parts = [  # in _PARTS order
        orjson.dumps(topics), topic_index.tobytes(), integers.tobytes(), orjson.dumps(keys),
        orjson.dumps(list(table)), index.tobytes(),
    ]  # fmt: skip
    return _HEADER.pack(MAGIC, count, *map(len, parts)) + b"".join(parts)


class Sources:
    """A chunk's sources, decoded: per row its topic (``topics[topic_index]``), partition,
    offset and record timestamp as arrays; entity ids by key, from the chunk's table."""

    def __init__(self, blob: bytes) -> None:
        magic, self.count, *lengths = _HEADER.unpack_from(blob)
        if magic != MAGIC:
            raise ValueError(f"not a sources blob (starts {magic!r})")
        view, offset = memoryview(blob), _HEADER.size
        parts: dict[str, memoryview] = {}
        for name, length in zip(_PARTS, lengths, strict=True):
            parts[name] = view[offset : offset + length]
            offset += length
        self.topics: list[str] = orjson.loads(parts["topics"])
        self.topic_index: Array = np.frombuffer(parts["topic_index"], dtype="<u2")
        integers = np.frombuffer(parts["integers"], dtype="<i8").reshape(3, self.count)
        self.partitions: Array = integers[0]
        self.offsets: Array = integers[1]
        self.timestamps: Array = integers[2]
        self.keys: list[str] = orjson.loads(parts["entity_keys"])
        self._table = parts["entity_table"]
        self._index = parts["entity_index"]

    def entity_codes(self, key: str) -> tuple[list[str], Array]:
        """The chunk's distinct entity ids (``""`` first) and, per row, the position of its
        id for entity ``key`` among them (0 where its event has none)."""
        table: list[str] = orjson.loads(self._table)
        if key not in self.keys:
            return table, np.zeros(self.count, dtype=np.int64)
        index = np.frombuffer(self._index, dtype="<u4").reshape(len(self.keys), self.count)
        return table, index[self.keys.index(key)]

    def entity(self, key: str) -> list[str]:
        """Each row's id for entity ``key`` (``""`` where its event has none)."""
        table, index = self.entity_codes(key)
        return [table[i] for i in index.tolist()]


def decode(blob: bytes | None) -> Sources | None:
    """The sources of a chunk (None for a chunk logged without)."""
    return None if blob is None else Sources(blob)
