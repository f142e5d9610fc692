"""Rows of a CSV, JSONL or Parquet file, each with its line number or why it cannot be read.

Shared by the commands that load files (`features load`, `history import`, `events encode`):
a row that cannot be read is reported with its line, never silently skipped.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from stream_app.errors import ConfigurationError

CHUNK_ROWS = 2_000
Rows = Iterator[tuple[int, dict[str, Any] | str]]


def read_table(path: Path) -> tuple[list[str], Rows, int]:
    """Column names, (line number, row or a reason it could not be read), and the number of
    rows (for the progress bar)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        handle = path.open(newline="")
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])

        def csv_rows() -> Iterator[tuple[int, dict[str, Any] | str]]:
            with handle:
                for row in reader:
                    if None in row:
                        yield reader.line_num, "malformed: more values than columns"
                    else:
                        yield reader.line_num, dict(row)

        return columns, csv_rows(), max(_count_lines(path) - 1, 0)
    if suffix in (".jsonl", ".ndjson"):
        keys: list[str] = []  # the columns: the keys of the first object in the file
        with path.open("rb") as lines:
            for line in lines:
                try:
                    first = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(first, dict):
                    keys = list(first)
                    break

        def json_rows() -> Iterator[tuple[int, dict[str, Any] | str]]:
            with path.open("rb") as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        yield number, f"malformed: not JSON ({exc})"
                        continue
                    yield number, row if isinstance(row, dict) else "malformed: not an object"

        return keys, json_rows(), _count_lines(path)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)

        def parquet_rows() -> Iterator[tuple[int, dict[str, Any] | str]]:
            number = 0
            for batch in parquet.iter_batches(batch_size=CHUNK_ROWS):
                for row in batch.to_pylist():
                    number += 1
                    yield number, row

        return list(parquet.schema_arrow.names), parquet_rows(), parquet.metadata.num_rows
    raise ConfigurationError(f"{path}: use a .csv, .jsonl (.ndjson) or .parquet file")


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
