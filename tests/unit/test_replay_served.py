"""The index of production's served vectors a replay scores from (pure)."""

from __future__ import annotations

from typing import Any

import numpy as np

from stream_app.messages import InputMessage
from stream_app.replay.served import load_served
from stream_app.storage import log_sources
from stream_app.storage.predictions import HISTORY_VERSION, LoggedChunk, PredictionRow

LAYOUTS = {"ab": ["a", "b"], "bca": ["b", "c", "a"]}


def chunk(
    version: str,
    role: str,
    layout: str,
    ids: list[str],
    rows: list[list[float]],
    values: list[float | None] | None = None,
    scored_at: int = 5000,
) -> LoggedChunk:
    columns: dict[str, list[Any]] = {
        "event_ids": ids,
        "values": values or [float(i) for i in range(len(ids))],
        "event_times": [1000 + i for i in range(len(ids))],
        "scored_at": [scored_at] * len(ids),
        "missing_features": [["c"] if i == 0 else [] for i in range(len(ids))],
        "feature_age_ms": [7 * i for i in range(len(ids))],
    }
    return LoggedChunk(version, role, layout, columns, np.array(rows, dtype=np.float64))


def test_vectors_come_back_in_the_order_asked_from_any_layout() -> None:
    index = load_served(
        [
            chunk("v1", "champion", "ab", ["e1", "e2"], [[1, 2], [3, 4]]),
            chunk("v1", "champion", "bca", ["e3"], [[30, 31, 32]]),
        ],
        LAYOUTS.__getitem__,
        ["v1"],
    )
    rows = index.vectors(["e3", "nope", "e1"], ["b", "a"])
    assert rows.found.tolist() == [True, False, True]
    assert rows.matrix.tolist() == [[30, 32], [2, 1]]
    # a layout without a feature the models need does not count as served
    rows = index.vectors(["e1", "e3"], ["a", "c"])
    assert rows.found.tolist() == [False, True]
    assert rows.matrix.tolist() == [[32, 31]]


def test_the_live_vector_wins_over_the_shadow_and_history() -> None:
    index = load_served(
        [
            chunk(HISTORY_VERSION, "champion", "ab", ["e1", "e2"], [[0, 0], [0, 0]], [None, None]),
            chunk("shadow-v", "shadow", "ab", ["e1", "e2"], [[5, 5], [6, 6]]),
            chunk("v1", "champion", "ab", ["e2"], [[9, 9]], [4.5]),
        ],
        LAYOUTS.__getitem__,
        ["v1", "shadow-v"],
    )
    assert index.vectors(["e1", "e2"], ["a", "b"]).matrix.tolist() == [[5, 5], [9, 9]]
    assert index.production == {"v1": {"e2": 4.5}, "shadow-v": {"e1": 0.0, "e2": 1.0}}
    assert index.served_as("e2") == (["c"], 0)
    assert len(index) == 2


def test_chunks_scored_outside_the_range_are_left_out() -> None:
    index = load_served(
        [
            chunk("v1", "champion", "ab", ["early"], [[1, 1]], scored_at=999),
            chunk("v1", "champion", "ab", ["inside"], [[2, 2]], scored_at=1000),
            chunk("v1", "champion", "ab", ["late"], [[3, 3]], scored_at=2000),
        ],
        LAYOUTS.__getitem__,
        ["v1"],
        scored_from=1000,
        scored_to=2000,
    )
    assert sorted(index.where) == ["inside"]


def with_sources(logged: LoggedChunk, first_offset: int, topic: str = "t") -> LoggedChunk:
    ids = logged.columns["event_ids"]
    row = PredictionRow("e", "v", "p", "champion", 1.0, "s", b"", [], 0, 0, 0, None)
    rows = [
        row._replace(
            source=InputMessage(topic, 0, first_offset + i, None, None, 10 * (first_offset + i)),
            entities={"zone_id": f"z-{e}"},
        )
        for i, e in enumerate(ids)
    ]
    return logged._replace(sources=log_sources.decode(log_sources.encode(rows)))


def test_records_are_found_by_offset_where_logged_and_by_event_id_in_older_chunks() -> None:
    index = load_served(
        [
            chunk("v1", "champion", "ab", ["old"], [[1, 1]]),  # logged before sources
            with_sources(chunk("v1", "champion", "ab", ["e1", "e2"], [[2, 2], [3, 3]]), 10),
            with_sources(chunk("v1", "champion", "bca", ["e3"], [[40, 41, 42]]), 12),
        ],
        LAYOUTS.__getitem__,
        ["v1"],
    )
    offsets = np.array([12, 10, 11, 99])
    rows = index.by_source("t", np.zeros(4, dtype=np.int64), offsets, offsets * 10)
    assert rows.tolist()[3] == -1  # not logged at that offset
    found = rows[:3]
    assert index.event_ids(found) == ["e3", "e1", "e2"]
    assert index.event_times(found) == [1000, 1000, 1001]
    assert index.entities("zone_id", found) == ["z-e3", "z-e1", "z-e2"]
    assert index.vectors_at(found, ["a", "b"]).matrix.tolist() == [[42, 40], [2, 2], [3, 3]]
    assert index.served_as_rows(found) == [(["c"], 0), (["c"], 0), ([], 7)]
    # the old chunk: by event id only, its entities not logged
    old = index.rows_of(["old", None, "e2"])
    assert old.tolist()[1] == -1
    assert index.vectors_at(old, ["a", "b"]).found.tolist() == [True, False, True]
    assert index.entities("zone_id", old[:1]) == [""]
