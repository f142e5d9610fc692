"""The prediction log's binary chunk columns: the same lists as the JSON they replace, read
back from either encoding, and JSON where an id would not survive the binary one."""

from __future__ import annotations

import math

import orjson
import pytest

from stream_app.storage import log_columns
from stream_app.storage.predictions import PredictionRow


def row(i: int, **changes: object) -> PredictionRow:
    base = PredictionRow(
        event_id=f"évent-{i}", model_version="v1", prediction_id=f"p-{i}", role="champion",
        value=i / 7, feature_set="set", features=b"", missing_features=["a"] if i % 3 else [],
        feature_age_ms=i * 11, event_time=1_796_000_000_000 + i, scored_at=1_796_000_000_500 + i,
        latency_ms=(i * 0.25) if i % 2 else None,
    )  # fmt: skip
    return base._replace(**changes)  # type: ignore[arg-type]


def test_binary_columns_decode_to_exactly_what_json_held() -> None:
    rows = [row(i) for i in range(50)]
    rows[4] = row(4, value=None, missing_features=["b", "a"])
    rows[5] = row(5, value=-0.0, feature_age_ms=-1)
    rows[6] = row(6, value=1e-310, event_time=2**62)
    blob = log_columns.encode(rows)
    assert blob.startswith(log_columns.MAGIC)
    decoded = log_columns.decode(blob)
    assert decoded == orjson.loads(log_columns.encode_json(rows))
    assert decoded["values"][4] is None
    assert decoded["latency_ms"][0] is None
    assert math.copysign(1.0, decoded["values"][5]) == -1.0  # bytes, not a decimal rendering
    assert len(blob) < len(log_columns.encode_json(rows))


def test_rows_sharing_defaulted_features_get_lists_of_their_own() -> None:
    decoded = log_columns.decode(log_columns.encode([row(1), row(2)]))
    decoded["missing_features"][0].append("x")
    assert decoded["missing_features"][1] == ["a"]


def test_json_columns_logged_before_stay_readable() -> None:
    rows = [row(i) for i in range(3)]
    old = log_columns.encode_json(rows)
    assert log_columns.decode(old) == log_columns.decode(log_columns.encode(rows))


@pytest.mark.parametrize("field", ["event_id", "prediction_id"])
def test_an_id_holding_a_nul_is_logged_as_json(field: str) -> None:
    rows = [row(0), row(1, **{field: "a\x00b"})]
    blob = log_columns.encode(rows)
    assert blob.startswith(b"{")
    assert log_columns.decode(blob)[f"{field}s"][1] == "a\x00b"


def test_an_empty_chunk() -> None:
    assert log_columns.decode(log_columns.encode([])) == orjson.loads(log_columns.encode_json([]))
