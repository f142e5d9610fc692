"""Matching a replay's records to the rows logged for them by topic, partition, offset and
record timestamp (pure)."""

from __future__ import annotations

import numpy as np

from stream_app.messages import InputMessage
from stream_app.replay.by_offset import OffsetIndex
from stream_app.storage import log_sources
from stream_app.storage.log_sources import Sources
from stream_app.storage.predictions import PredictionRow


def sources(*records: tuple[int, int, int], topic: str = "t") -> Sources:
    """Sources of (partition, offset, timestamp) records."""
    row = PredictionRow("e", "v", "p", "champion", 1.0, "s", b"", [], 0, 0, 0, None)
    rows = [row._replace(source=InputMessage(topic, p, o, None, None, ts), entities={"k": "v"})
            for p, o, ts in records]  # fmt: skip
    decoded = log_sources.decode(log_sources.encode(rows))
    assert decoded is not None
    return decoded


def match(index: OffsetIndex, topic: str, *records: tuple[int, int, int]) -> list[int]:
    p, o, ts = (np.array(column, dtype=np.int64) for column in zip(*records, strict=True))
    found: list[int] = index.match(topic, p, o, ts).tolist()
    return found


def test_records_find_their_rows_only_with_the_logged_timestamp() -> None:
    index = OffsetIndex()
    index.add(sources((0, 10, 100), (0, 11, 101), (1, 10, 200)), rank=0, first_row=0)
    index.add(sources((0, 12, 102)), rank=0, first_row=3)
    index.finish()
    assert len(index) == 4
    found = match(index, "t", (1, 10, 200), (0, 12, 102), (0, 11, 101), (0, 10, 100))
    assert found == [2, 3, 1, 0]
    # not logged: another offset, partition or topic, or the same offset of a recreated topic
    assert match(index, "t", (0, 13, 103), (2, 10, 100), (0, 10, 999)) == [-1, -1, -1]
    assert match(index, "other", (0, 10, 100)) == [-1]


def test_the_preferred_row_of_a_record_logged_twice_and_a_recreated_topic() -> None:
    index = OffsetIndex()
    index.add(sources((0, 5, 50)), rank=1, first_row=0)  # shadow
    index.add(sources((0, 5, 50), (0, 6, 60)), rank=0, first_row=1)  # champion
    index.add(sources((0, 6, 60)), rank=0, first_row=3)  # re-scored after a crash: first kept
    index.add(sources((0, 5, 77)), rank=0, first_row=4)  # offset 5 of the topic recreated
    index.finish()
    assert match(index, "t", (0, 5, 50), (0, 6, 60), (0, 5, 77)) == [1, 2, 4]


def test_an_empty_index_matches_nothing() -> None:
    index = OffsetIndex()
    index.finish()
    assert match(index, "t", (0, 1, 1)) == [-1]
