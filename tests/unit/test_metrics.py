"""The use cases' accuracy metrics against scikit-learn, an independent implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as sk

from stream_app.models import metrics


@given(rows=st.lists(st.tuples(st.floats(-50, 200), st.floats(0.5, 150)), min_size=1, max_size=300))
@settings(max_examples=100, deadline=None)
def test_regression_metrics_equal_scikit_learn(rows: list[tuple[float, float]]) -> None:
    predicted, actual = (np.array(column) for column in zip(*rows, strict=True))
    assert metrics.mae(predicted, actual) == pytest.approx(
        sk.mean_absolute_error(actual, predicted), rel=1e-9, abs=1e-12
    )
    assert metrics.rmse(predicted, actual) == pytest.approx(
        sk.root_mean_squared_error(actual, predicted), rel=1e-9, abs=1e-12
    )
    assert metrics.mape(predicted, actual) == pytest.approx(
        100 * sk.mean_absolute_percentage_error(actual, predicted), rel=1e-9, abs=1e-12
    )


def test_mape_skips_zero_labels_where_scikit_learn_divides_by_epsilon() -> None:
    predicted, actual = np.array([1.0, 11.0, 5.0]), np.array([0.0, 10.0, 0.0])
    assert metrics.mape(predicted, actual) == pytest.approx(10.0)  # only the non-zero label
    assert math.isnan(metrics.mape(predicted[[0]], actual[[0]]))


@given(
    probability=st.lists(
        # few distinct values, so ties are common
        st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5, 0.75, 0.9, 1.0]) | st.floats(0, 1),
        min_size=2, max_size=300,
    ),
    seed=st.integers(0, 2**32 - 1),
)  # fmt: skip
@settings(max_examples=150, deadline=None)
def test_binary_metrics_equal_scikit_learn(probability: list[float], seed: int) -> None:
    p = np.array(probability)
    actual = (np.random.default_rng(seed).random(len(p)) < 0.4).astype(float)
    assert metrics.accuracy(p, actual) == pytest.approx(sk.accuracy_score(actual, p >= 0.5))
    clipped = np.clip(p, 1e-7, 1 - 1e-7)  # both clip; scikit-learn at its dtype's epsilon
    assert metrics.log_loss(p, actual) == pytest.approx(
        sk.log_loss(actual, clipped, labels=[0, 1]), rel=1e-9
    )
    if 0 < actual.sum() < len(actual):
        assert metrics.auc(p, actual) == pytest.approx(sk.roc_auc_score(actual, p), rel=1e-12)
    else:
        assert math.isnan(metrics.auc(p, actual))


def test_calibration_error_of_a_calibrated_and_a_biased_model() -> None:
    rng = np.random.default_rng(3)
    p = rng.random(50_000)
    actual = (rng.random(50_000) < p).astype(float)
    assert metrics.calibration_error(p, actual) < 0.01
    assert metrics.calibration_error(np.clip(p + 0.2, 0, 1), actual) == pytest.approx(
        0.18, abs=0.02
    )
