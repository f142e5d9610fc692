"""Which served data a retraining learns from: the change point of the champion's error and
the label maturity that leaves out the newest (immature) events."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.lifecycle.retrain_window import LossTimeline, change_point, retrain_window

NOW = 1_800_000_000_000
WINDOW = 60_000


def drifting_timeline(
    change_at_s: float, seconds: float = 60, per_second: int = 100, seed: int = 3
) -> LossTimeline:
    """Champion losses of ~2 before ``change_at_s`` and ~20 after (event time); each label
    arrives 2 to 10 s after its event, so the newest events have only quick labels."""
    rng = np.random.default_rng(seed)
    timeline = LossTimeline(WINDOW)
    start = NOW - int(seconds * 1000)
    for second in range(int(seconds)):
        for _ in range(per_second):
            event_ms = start + second * 1000 + int(rng.integers(0, 1000))
            delay_ms = int(rng.uniform(2000, 10_000))
            if event_ms + delay_ms > NOW:
                continue  # not labelled yet
            loss = abs(rng.normal(20 if second >= change_at_s else 2, 1.5))
            timeline.add(event_ms, loss, delay_ms)
    return timeline


def test_the_change_point_is_where_the_error_steps_up() -> None:
    timeline = drifting_timeline(change_at_s=25)
    change = change_point(timeline.series(), min_labels=100)
    assert change == NOW - 60_000 + 25_000


def test_no_change_point_without_a_step_up() -> None:
    steady = drifting_timeline(change_at_s=1000)
    assert change_point(steady.series(), min_labels=100) is None
    better = LossTimeline(WINDOW)  # the error falls: nothing to cut away
    for i in range(2000):
        better.add(NOW - 60_000 + i * 25, 10.0 if i < 1000 else 1.0, 1000)
    assert change_point(better.series(), min_labels=100) is None


def test_each_side_of_a_change_needs_enough_labels() -> None:
    timeline = drifting_timeline(change_at_s=45)  # about 900 labels after the change
    assert change_point(timeline.series(), min_labels=100) == NOW - 15_000
    assert change_point(timeline.series(), min_labels=2000) is None  # not moved earlier


def test_the_window_starts_at_the_change_and_ends_before_the_immature_events() -> None:
    timeline = drifting_timeline(change_at_s=25)
    window = retrain_window(timeline, NOW, WINDOW, from_change=True, maturity_quantile=0.9)
    assert window.change_ms == NOW - 35_000
    assert window.since_ms == window.change_ms
    assert 8_500 <= window.maturity_ms <= 10_000  # the 90th percentile of 2..10 s delays
    assert window.until_ms == NOW - window.maturity_ms
    assert window.labels == pytest.approx(100 * (35_000 - window.maturity_ms) / 1000, rel=0.1)
    assert any("change point" in r for r in window.reasons)
    assert any("90% of labels" in r for r in window.reasons)


def test_without_a_change_or_for_other_triggers_the_whole_window() -> None:
    timeline = drifting_timeline(change_at_s=25)
    drift = retrain_window(timeline, NOW, WINDOW, from_change=False, maturity_quantile=0.5)
    assert drift.since_ms == NOW - WINDOW
    assert drift.change_ms is None
    assert 5_000 <= drift.maturity_ms <= 7_000  # the median delay
    unknown = retrain_window(None, NOW, WINDOW, from_change=True, maturity_quantile=0.9)
    assert (unknown.since_ms, unknown.until_ms) == (NOW - WINDOW, NOW)


def test_the_timeline_keeps_its_horizon_in_bounded_buckets() -> None:
    timeline = LossTimeline(6 * 3600 * 1000)
    assert timeline.bucket_ms == 6 * 3600 * 1000 // 500
    for i in range(10_000):
        timeline.add(NOW - 7 * 3600 * 1000 + i * 2520, 1.0, 5)
    timeline.prune(NOW)
    starts, counts, _, _ = timeline.series()
    assert len(starts) <= 502
    assert min(starts) >= NOW - 6 * 3600 * 1000 - 2 * timeline.bucket_ms
    timeline.add(NOW, float("nan"), 5)  # a loss that cannot be computed is not counted
    assert sum(timeline.series()[1]) == sum(counts)


def test_a_later_retraining_stays_in_the_regime_an_earlier_one_found() -> None:
    steady = drifting_timeline(change_at_s=1000)  # the new champion's error: no step
    regime = NOW - 40_000
    window = retrain_window(
        steady, NOW, WINDOW, from_change=True, maturity_quantile=0.9, regime_since_ms=regime
    )
    assert window.since_ms == regime
    assert window.regime_since_ms == regime  # recorded again with the next model
    assert any("current regime" in r for r in window.reasons)
    older = retrain_window(
        steady, NOW, WINDOW, from_change=True, maturity_quantile=0.9,
        regime_since_ms=NOW - 2 * WINDOW,
    )  # fmt: skip
    assert older.since_ms == NOW - WINDOW  # a regime older than the window changes nothing
    assert older.regime_since_ms is None
    found = retrain_window(
        drifting_timeline(change_at_s=25), NOW, WINDOW, from_change=True,
        maturity_quantile=0.9, regime_since_ms=regime,
    )  # fmt: skip
    assert found.change_ms == found.regime_since_ms == NOW - 35_000  # a newer change wins
