"""The index of production's served vectors a replay scores from (pure)."""

from __future__ import annotations

from typing import Any

import numpy as np

from stream_app.replay.served import load_served
from stream_app.storage.predictions import HISTORY_VERSION, LoggedChunk

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
