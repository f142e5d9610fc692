"""The replay report's figures, from scored arrays (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.models.metrics import mae
from stream_app.models.training import histograms, hours_of
from stream_app.replay import report
from stream_app.use_cases.spec import load_use_case

USE_CASE = load_use_case("delivery_eta")
RNG = np.random.default_rng(3)


def test_bucket_sizes_are_round_and_bounded() -> None:
    assert report.bucket_ms(0, 60 * 60_000, 60) == 60_000
    assert report.bucket_ms(0, 61 * 60_000, 60) == 300_000
    assert report.bucket_ms(0, 5_000, 60) == 1_000
    assert report.bucket_ms(0, 400 * 86_400_000, 60) == 7 * 86_400_000
    assert report.bucket_ms(0, 4000 * 86_400_000, 60) == -(-4000 * 86_400_000 // 60)


def test_production_agreement_counts_identical_values() -> None:
    agreement = report.production_agreement(
        ["a", "b", "c"], np.array([1.0, 2.0, 3.0]), {"a": 1.0, "b": 2.5}
    )
    assert agreement == {"compared": 2, "identical": 1, "max_abs_difference": 0.5}
    assert report.production_agreement(["a"], np.array([1.0]), {}) is None


def test_the_better_version_is_named_with_its_metric_and_significance() -> None:
    actual = RNG.normal(30, 5, 2_000)
    good = actual + RNG.normal(0, 1, 2_000)
    bad = actual + RNG.normal(3, 2, 2_000)
    metrics = {"old": {"mae": mae(bad, actual)}, "new": {"mae": mae(good, actual)}}
    found = report.winner(USE_CASE, "mae", metrics, {"old": bad, "new": good}, actual, 200, 1, 0.05)
    assert found is not None
    assert found["version"] == "new"
    assert found["p_value"] < 0.05
    assert found["improvement"] == pytest.approx(1 - metrics["new"]["mae"] / metrics["old"]["mae"])
    assert "not chance" in found["reasons"][-1]
    # the same predictions twice: a tie, and one version alone: no contest
    tie = report.winner(USE_CASE, "mae", {"x": {"mae": 1.0}, "y": {"mae": 1.0}},
                        {"x": good, "y": good}, actual, 200, 1, 0.05)  # fmt: skip
    assert tie is not None
    assert tie["version"] is None
    assert report.winner(USE_CASE, "mae", metrics, {"new": good}, actual, 200, 1, 0.05) is None


def test_higher_is_better_metrics_pick_the_higher() -> None:
    actual = np.zeros(100)
    near, far = np.full(100, 1.0), np.full(100, 9.0)
    metrics = {"near": {"within_tolerance": 1.0}, "far": {"within_tolerance": 0.0}}
    found = report.winner(USE_CASE, "within_tolerance", metrics, {"far": far, "near": near},
                          actual, 200, 1, 0.05)  # fmt: skip
    assert found is not None
    assert found["version"] == "near"


def test_the_metric_per_bucket_is_the_metric_of_the_bucket_rows() -> None:
    times = np.array([0, 10, 70_000, 130_000, 130_500], dtype=np.int64)
    actual = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    predicted = {"v": np.array([2.0, 2.0, 1.0, 4.0, 8.0])}
    series = report.metric_over_time(USE_CASE, "mae", times, predicted, actual, 0, 60_000, 4)
    assert series["buckets"] == [0, 60_000, 120_000, 180_000]
    assert series["labelled"] == [2, 1, 2, 0]
    assert series["by_version"]["v"] == [0.5, 2.0, 1.5, None]


def test_the_error_histogram_counts_every_error_once() -> None:
    actual = RNG.normal(30, 5, 1_000)
    histogram = report.error_distribution(
        "regression", {"a": actual + 1, "b": actual + RNG.normal(0, 3, 1_000)}, actual
    )
    assert len(histogram["edges"]) == report.HISTOGRAM_BINS + 1
    assert sum(histogram["by_version"]["a"]) == 1_000
    assert sum(histogram["by_version"]["b"]) == 1_000


def test_versus_samples_at_most_its_points_and_skips_missing() -> None:
    x = np.arange(5_000, dtype=float)
    x[3] = np.nan
    pairs = report.versus("production", x, "v", x * 2, seed=1)
    assert len(pairs["points"]) == report.SCATTER_POINTS
    assert all(b == 2 * a for a, b in pairs["points"])
    assert len(report.versus("p", x[:10], "v", x[:10], 1)["points"]) == 9


def test_drift_per_bucket_rises_where_a_feature_shifted() -> None:
    names = USE_CASE.feature_names
    rows = 6_000
    times = np.sort(RNG.integers(0, 600_000, rows)).astype(np.int64)
    training = np.column_stack([RNG.uniform(0.5, 9, rows) if n == "distance_km"
                                else RNG.normal(20, 3, rows) for n in names])  # fmt: skip
    distributions = {"features": histograms(training, names, hours_of(times))}
    served = training.copy()
    late = times >= 300_000
    served[late, names.index("distance_km")] += 6  # the second half drifts
    scored = report.Scored(
        event_ids=[str(i) for i in range(rows)], event_times=times, predictions={},
        labels=np.full(rows, np.nan), vectors=served,
        entities={k: [f"{k}-{i % 500}" for i in range(rows)] for k in USE_CASE.entities.keys},
    )  # fmt: skip
    drift = report.drift_over_time(
        USE_CASE, names, distributions, scored, np.zeros(rows), 0, 300_000, 2, 30
    )
    before, after = drift["features"]["distance_km"]
    assert before is not None
    assert before < 0.1
    assert after is not None
    assert after > 1.0
    assert "hour_of_day" not in drift["features"]  # monitor_drift = false in the spec


def test_a_replay_estimates_each_version_without_its_labels() -> None:
    from stream_app.monitoring.estimates import Estimator
    from stream_app.replay.report import estimate_of

    rng = np.random.default_rng(8)
    p = rng.uniform(0.02, 0.98, 20_000)
    labels = (rng.random(20_000) < p).astype(float)
    realised = {"accuracy": float(np.mean((p >= 0.5) == labels)), "log_loss": None}
    found = estimate_of(Estimator("cbpe"), np.zeros((20_000, 3)), p, realised)
    assert found["method"] == "cbpe"
    assert found["metrics"]["accuracy"] == pytest.approx(realised["accuracy"], abs=0.01)
    assert set(found["error"]) == {"accuracy"}  # no realised log loss: no error for it
    assert found["error"]["accuracy"] < 0.01
