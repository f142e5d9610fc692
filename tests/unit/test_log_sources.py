"""The prediction log's per-row sources: the record each row was scored from and its
entities, read back as logged; none where a row lacks one or an id would not survive."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from stream_app.messages import InputMessage
from stream_app.storage import log_sources


class Row(NamedTuple):
    source: InputMessage | None
    entities: Mapping[str, str] | None


def source(i: int, topic: str = "client-events", **entities: str) -> Row:
    message = InputMessage(topic, i % 3, 1_000 + i, b"k", b"{}", 1_796_000_000_000 + i)
    return Row(message, entities or {"courier_id": f"c-{i}", "zone_id": f"zöne-{i % 2}"})


def test_sources_read_back_as_logged() -> None:
    rows = [source(i) for i in range(7)] + [source(7, topic="other-events")]
    blob = log_sources.encode(rows)
    assert blob is not None
    assert blob.startswith(log_sources.MAGIC)
    decoded = log_sources.decode(blob)
    assert decoded is not None
    assert decoded.count == 8
    topics = [decoded.topics[i] for i in decoded.topic_index.tolist()]
    messages = [r.source for r in rows if r.source is not None]
    assert topics == [m.topic for m in messages]
    assert decoded.partitions.tolist() == [m.partition for m in messages]
    assert decoded.offsets.tolist() == [m.offset for m in messages]
    assert decoded.timestamps.tolist() == [m.timestamp_ms for m in messages]
    assert decoded.entity("zone_id") == [f"zöne-{i % 2}" for i in range(8)]
    assert decoded.entity("courier_id") == [f"c-{i}" for i in range(8)]
    assert decoded.entity("unknown") == [""] * 8


def test_rows_with_different_entities_leave_the_absent_ones_empty() -> None:
    rows = [source(0, courier_id="c"), source(1, zone_id="z"), source(2, zone_id="y", a="b")]
    decoded = log_sources.decode(log_sources.encode(rows))
    assert decoded is not None
    assert decoded.entity("courier_id") == ["c", "", ""]
    assert decoded.entity("zone_id") == ["", "z", "y"]
    assert decoded.entity("a") == ["", "", "b"]


def test_any_entity_id_reads_back() -> None:
    rows = [
        source(0, courier_id="a\x00b"),
        source(1, courier_id='"{é'),
        source(2, courier_id="a\x00b"),
    ]
    decoded = log_sources.decode(log_sources.encode(rows))
    assert decoded is not None
    assert decoded.entity("courier_id") == ["a\x00b", '"{é', "a\x00b"]
    table, index = decoded.entity_codes("courier_id")
    assert table == ["", "a\x00b", '"{é']  # each distinct id once
    assert index.tolist() == [1, 2, 1]


def test_no_sources_where_a_row_has_none() -> None:
    assert log_sources.encode([source(0), Row(None, None)]) is None  # history, say
    assert log_sources.encode([]) is None
    assert log_sources.decode(None) is None  # a chunk logged before V013, or history
