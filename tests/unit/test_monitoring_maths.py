"""Rolling accuracy and drift statistics against direct computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as sk

from stream_app.models.training import histograms
from stream_app.monitoring.drift import ModelDrift, ks, psi
from stream_app.monitoring.rolling import RollingAccuracy

T0 = 1_795_000_000_000


@given(
    pairs=st.lists(
        st.tuples(st.floats(0, 100), st.floats(0.5, 100), st.integers(0, 120_000)),
        min_size=1, max_size=200,
    ),
)  # fmt: skip
@settings(max_examples=100, deadline=None)
def test_rolling_regression_metrics_equal_a_direct_computation(
    pairs: list[tuple[float, float, int]],
) -> None:
    rolling = RollingAccuracy("regression", tolerance=5.0, threshold=0.5, window_ms=60_000)
    now = T0 + 120_000
    for predicted, actual, dt in sorted(pairs, key=lambda p: p[2]):
        rolling.add("v1", "champion", predicted, actual, T0 + dt)
    inside = [(p, a) for p, a, dt in pairs if T0 + dt >= now - 60_000 + 1_000]
    snapshot = rolling.snapshot(now)
    if not inside:
        assert snapshot.get(("v1", "champion"), {}).get("labels", 0) == 0
        return
    predicted = np.array([p for p, _ in inside])
    actual = np.array([a for _, a in inside])
    values = snapshot[("v1", "champion")]
    assert values["labels"] == len(inside)
    # scikit-learn as the independent reference (its MAPE is a fraction, ours in percent)
    assert values["mae"] == pytest.approx(sk.mean_absolute_error(actual, predicted), rel=1e-9)
    assert values["rmse"] == pytest.approx(sk.root_mean_squared_error(actual, predicted), rel=1e-9)
    assert values["mape"] == pytest.approx(
        100 * sk.mean_absolute_percentage_error(actual, predicted), rel=1e-9
    )
    within = sum(abs(p - a) <= 5.0 for p, a in inside) / len(inside)
    assert values["within_tolerance"] == pytest.approx(within)


def test_binary_metrics_and_coverage() -> None:
    rng = np.random.default_rng(0)
    probability = rng.random(4000)
    actual = (rng.random(4000) < probability).astype(float)  # calibrated by construction
    rolling = RollingAccuracy("binary_classification", None, 0.5, window_ms=600_000)
    for p, a in zip(probability, actual, strict=True):
        rolling.add("v2", "challenger", float(p), float(a), T0)
    rolling.record_predictions("v2", "challenger", 5000, T0)
    values = rolling.snapshot(T0 + 1_000)[("v2", "challenger")]
    assert values["accuracy"] == pytest.approx(sk.accuracy_score(actual, probability >= 0.5))
    assert values["log_loss"] == pytest.approx(sk.log_loss(actual, probability), rel=1e-5)
    # the rolling AUC is computed over binned probabilities: close to the exact one
    assert values["auc"] == pytest.approx(sk.roc_auc_score(actual, probability), abs=0.01)
    assert values["calibration"] < 0.05
    assert values["label_coverage"] == pytest.approx(0.8)


def test_psi_and_ks_of_identical_and_shifted_distributions() -> None:
    shares = np.full(10, 0.1)
    same = np.full(10, 100.0)
    assert psi(shares, same) == pytest.approx(0.0, abs=1e-9)
    assert ks(shares, same) == pytest.approx(0.0, abs=1e-9)
    shifted = np.array([0, 0, 0, 0, 0, 100, 200, 200, 250, 250], dtype=float)
    assert psi(shares, shifted) > 1.0
    assert ks(shares, shifted) == pytest.approx(0.5)
    assert math.isnan(psi(shares, np.zeros(10)))


def test_model_drift_flags_the_shifted_feature_only() -> None:
    rng = np.random.default_rng(1)
    training = np.column_stack([rng.normal(0, 1, 20_000), rng.uniform(0, 10, 20_000)])
    distributions = {
        "features": histograms(training, ["shifted", "stable"]),
        "prediction": histograms(training[:, :1], ["prediction"])["prediction"],
    }
    drift = ModelDrift(["shifted", "stable"], distributions, {"shifted", "stable"}, 60_000)
    live = np.column_stack([rng.normal(1.5, 1, 5_000), rng.uniform(0, 10, 5_000)])
    drift.observe(live, live[:, 0], T0)
    report = drift.report(T0 + 1_000)
    assert report["shifted"]["psi"] > 0.5
    assert report["stable"]["psi"] < 0.05
    assert report["prediction"]["psi"] > 0.5
    assert report["stable"]["values"] == 5_000
    later = drift.report(T0 + 120_000)  # the window slid past the batch
    assert later["shifted"]["values"] == 0


def test_unmonitored_features_are_left_out() -> None:
    training = np.arange(1000, dtype=float)[:, None]
    drift = ModelDrift(["hour"], {"features": histograms(training, ["hour"])}, set(), 60_000)
    assert not drift.has_reference
