"""The input record each prediction-log row was scored from, and its entities (binary).

A replay matches the records it reads to the vectors production served for them. By event
id, that costs a JSON parse of every record; by source, it costs nothing per record: a
served row names the record it came from (topic, partition, offset, and the record's
timestamp, compared too, so a record of a topic since deleted and recreated never takes the
vector of the one that had its offset) and carries what the replay's report needs of the
event beside what ``log_columns`` holds: its entities (drift is reported per entity).

A chunk's sources are one blob (the ``sources`` column of ``prediction_log``, V013): a table
of topics and a uint16 index per row, the partitions, offsets and timestamps as one
little-endian int64 matrix, the entity keys, and every key's entity ids joined by NUL (key
by key; ``""`` where a row's event has no such entity: an entity id is never empty). Chunks
without one (logged before, simulated or imported history, or an entity id holding a NUL)
are matched by event id as before.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import orjson

from stream_app.messages import InputMessage

Array = np.ndarray[Any, Any]
MAGIC = b"\x00SR1"
_SEPARATOR = "\x00"
_PARTS = ("topics", "topic_index", "integers", "entity_keys", "entity_ids")
_HEADER = struct.Struct(f"<4sI{len(_PARTS)}I")


class RowSource(NamedTuple):
    """The consumed record a row was scored from, and its event's entities."""

    message: InputMessage
    entities: Mapping[str, str]


def encode(sources: Sequence[RowSource | None]) -> bytes | None:
    """The sources of a chunk's rows, or None when a row has none (or an id holds a NUL)."""
    count = len(sources)
    if not count or None in sources:
        return None
    messages = [s.message for s in sources]  # type: ignore[union-attr]
    topics: dict[str, int] = {}
    index = np.array([topics.setdefault(m.topic, len(topics)) for m in messages], dtype="<u2")
    integers = np.array(
        [[m.partition for m in messages], [m.offset for m in messages],
         [m.timestamp_ms for m in messages]], dtype="<i8",
    )  # fmt: skip
    entities = [s.entities for s in sources]  # type: ignore[union-attr]
    keys = list(entities[0])
    if any(e.keys() != entities[0].keys() for e in entities):
        keys = sorted({k for e in entities for k in e})
    ids = _SEPARATOR.join([e.get(k, "") for k in keys for e in entities])
    if keys and ids.count(_SEPARATOR) != len(keys) * count - 1:
        return None
    parts = [  # in _PARTS order
        orjson.dumps(list(topics)), index.tobytes(), integers.tobytes(), orjson.dumps(keys),
        ids.encode(),
    ]  # fmt: skip
    return _HEADER.pack(MAGIC, count, *map(len, parts)) + b"".join(parts)


class Sources:
    """A chunk's sources, decoded: per row its topic (``topics[topic_index]``), partition,
    offset and record timestamp as arrays; entity ids by key, split when first read."""

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
        self._ids = parts["entity_ids"]
        self._entities: dict[str, list[str]] | None = None

    def entity(self, key: str) -> list[str]:
        """Each row's id for entity ``key`` (``""`` where its event has none)."""
        if self._entities is None:
            ids = str(self._ids, "utf-8").split(_SEPARATOR) if self.keys else []
            count = self.count
            self._entities = {k: ids[i * count : (i + 1) * count] for i, k in enumerate(self.keys)}
        return self._entities.get(key) or [""] * self.count


def decode(blob: bytes | None) -> Sources | None:
    """The sources of a chunk (None for a chunk logged without)."""
    return None if blob is None else Sources(blob)
