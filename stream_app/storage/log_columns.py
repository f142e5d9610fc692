"""The per-row columns of a prediction-log chunk, in a binary encoding (and the JSON of old rows).

A chunk's ``columns`` blob was one JSON object of lists. It is now binary: the two string
columns joined by NUL, the integer columns as one little-endian int64 matrix, the two
nullable float columns as float64 with a validity bitmap, and the defaulted-feature lists as
a small table of distinct lists plus a uint32 index per row (a batch has a handful of them).
A column is decoded only when read (``Columns``): a few ``numpy.frombuffer`` calls, or one
``str.split`` for a string column, instead of parsing every token of every column. It is
also about a quarter smaller.

Both encodings decode to the same dictionary of lists, so rows logged before stay readable:
a blob is binary when it starts with ``MAGIC`` (a JSON object starts with ``{``). A chunk
whose ids contain NUL (never produced by the shipped producers, but not refused by the
contract) is written as JSON.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import orjson

MAGIC = b"\x00SL1"
_SEPARATOR = "\x00"
# the parts of a binary blob, in order, after the header (magic, rows, each part's length)
_PARTS = (
    "event_ids", "prediction_ids", "integers", "values", "values_present", "latency_ms",
    "latency_present", "missing_table", "missing_index",
)  # fmt: skip
_HEADER = struct.Struct(f"<4sI{len(_PARTS)}I")


class ColumnRow(Protocol):
    """What a chunk's columns are made of (``PredictionRow`` has it)."""

    @property
    def event_id(self) -> str: ...
    @property
    def prediction_id(self) -> str: ...
    @property
    def value(self) -> float | None: ...
    @property
    def event_time(self) -> int: ...
    @property
    def scored_at(self) -> int: ...
    @property
    def latency_ms(self) -> float | None: ...
    @property
    def feature_age_ms(self) -> int: ...
    @property
    def missing_features(self) -> Sequence[str]: ...


def encode_json(rows: Sequence[ColumnRow]) -> bytes:
    """The JSON encoding (the one rows were logged in before ``MAGIC``)."""
    return orjson.dumps(
        {
            "event_ids": [r.event_id for r in rows],
            "prediction_ids": [r.prediction_id for r in rows],
            "values": [r.value for r in rows],
            "event_times": [r.event_time for r in rows],
            "scored_at": [r.scored_at for r in rows],
            "latency_ms": [r.latency_ms for r in rows],
            "feature_age_ms": [r.feature_age_ms for r in rows],
            "missing_features": [list(r.missing_features) for r in rows],
        }
    )


def _nullable(values: list[float | None]) -> tuple[bytes, bytes]:
    """float64 bytes (NaN where None) and the validity bitmap."""
    if None in values:
        present = np.array([v is not None for v in values], dtype=bool)
        array = np.array([np.nan if v is None else v for v in values], dtype="<f8")
    else:  # the common case: one conversion
        present = np.ones(len(values), dtype=bool)
        array = np.array(values, dtype="<f8")
    return array.tobytes(), np.packbits(present).tobytes()


def encode(rows: Sequence[ColumnRow]) -> bytes:
    """The columns of ``rows`` in the binary encoding (JSON if an id holds a NUL)."""
    count = len(rows)
    event_ids = _SEPARATOR.join([r.event_id for r in rows])
    prediction_ids = _SEPARATOR.join([r.prediction_id for r in rows])
    if count and (
        event_ids.count(_SEPARATOR) != count - 1 or prediction_ids.count(_SEPARATOR) != count - 1
    ):
        return encode_json(rows)
    integers = np.array(
        [[r.event_time for r in rows], [r.scored_at for r in rows],
         [r.feature_age_ms for r in rows]], dtype="<i8",
    ).reshape(3, count)  # fmt: skip
    values, values_present = _nullable([r.value for r in rows])
    latency, latency_present = _nullable([r.latency_ms for r in rows])
    table: dict[tuple[str, ...], int] = {(): 0}
    index = np.zeros(count, dtype="<u4")
    for i, r in enumerate(rows):
        if r.missing_features:
            index[i] = table.setdefault(tuple(r.missing_features), len(table))
    parts = [  # in _PARTS order
        event_ids.encode(), prediction_ids.encode(), integers.tobytes(), values,
        values_present, latency, latency_present, orjson.dumps(list(table)), index.tobytes(),
    ]  # fmt: skip
    return _HEADER.pack(MAGIC, count, *map(len, parts)) + b"".join(parts)


def _nullable_list(data: memoryview, present: memoryview, count: int) -> list[float | None]:
    values: list[float | None] = np.frombuffer(data, dtype="<f8").tolist()
    mask = np.unpackbits(np.frombuffer(present, dtype=np.uint8), count=count).astype(bool)
    if not mask.all():
        for i in np.flatnonzero(~mask).tolist():
            values[i] = None
    return values


_INTEGERS = ("event_times", "scored_at", "feature_age_ms")  # the int64 part's rows, in order


class Columns(Mapping[str, list[Any]]):
    """A chunk's columns, each decoded the first time it is read: a replay reads four of
    the eight (and skips the rest: string ids, defaulted features, latencies)."""

    NAMES = (
        "event_ids", "prediction_ids", "values", "event_times", "scored_at", "latency_ms",
        "feature_age_ms", "missing_features",
    )  # fmt: skip

    def __init__(self, blob: bytes) -> None:
        self._decoded: dict[str, list[Any]] = {}
        self._parts: dict[str, memoryview] = {}
        self._count = 0
        if not blob.startswith(MAGIC):
            self._decoded = orjson.loads(blob)
            return
        _, self._count, *lengths = _HEADER.unpack_from(blob)
        view = memoryview(blob)
        offset = _HEADER.size
        for name, length in zip(_PARTS, lengths, strict=True):
            self._parts[name] = view[offset : offset + length]
            offset += length

    def __getitem__(self, name: str) -> list[Any]:
        column = self._decoded.get(name)
        if column is None:
            if not self._parts or name not in self.NAMES:
                raise KeyError(name)
            column = self._decoded[name] = self._decode(name)
        return column

    def __iter__(self) -> Iterator[str]:
        return iter(self.NAMES if self._parts else self._decoded)

    def __len__(self) -> int:
        return len(self.NAMES) if self._parts else len(self._decoded)

    def _decode(self, name: str) -> list[Any]:
        parts, count = self._parts, self._count
        if name in ("event_ids", "prediction_ids"):
            return str(parts[name], "utf-8").split(_SEPARATOR) if count else []
        if name in _INTEGERS:
            row = _INTEGERS.index(name)
            integers = np.frombuffer(parts["integers"], dtype="<i8").reshape(3, count)
            values: list[Any] = integers[row].tolist()
            return values
        if name in ("values", "latency_ms"):
            present = parts["values_present" if name == "values" else "latency_present"]
            return _nullable_list(parts[name], present, count)
        table = [list(m) for m in orjson.loads(parts["missing_table"])]
        index = np.frombuffer(parts["missing_index"], dtype="<u4").tolist()
        return [table[i][:] for i in index]


def decode(blob: bytes) -> Columns:
    """The columns of a chunk, from either encoding."""
    return Columns(blob)
