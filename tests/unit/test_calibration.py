"""Calibrated probabilities: the maps, their choice out of fold, and their use in scoring."""

from __future__ import annotations

import io

import numpy as np
import pytest

from stream_app.models.calibration import (
    CalibratedScorer,
    Calibration,
    choose_calibration,
    fit_isotonic,
    fit_platt,
    uncalibrated,
)
from stream_app.models.compiled import Compilation
from stream_app.models.metrics import calibration_error
from stream_app.models.registry import load_scorer
from stream_app.models.trainer import describe_version
from stream_app.models.training import TrainingSet, fit
from stream_app.settings import TrainingSettings
from stream_app.simulation.history import labelled_frame
from stream_app.simulation.world import World
from stream_app.use_cases.spec import load_use_case
from tests.fakes.stores import MemoryRegistry


def _overconfident(rows: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from true probabilities; the 'model' pushes them towards 0 and 1."""
    rng = np.random.default_rng(seed)
    true = rng.uniform(0.02, 0.98, rows)
    labels = (rng.random(rows) < true).astype(float)
    logit = np.log(true / (1 - true))
    raw = 1 / (1 + np.exp(-3 * logit))  # three times too sure of itself
    return raw, labels


def test_a_miscalibrated_model_gets_a_map_that_lowers_its_calibration_error() -> None:
    raw, labels = _overconfident(6000)
    chosen = choose_calibration(raw, labels)
    assert chosen.calibration is not None
    report = chosen.report
    assert report["method"] in ("isotonic", "platt")
    assert report["ece_before"] > 0.1
    assert report["ece_after"] < report["ece_before"] / 3  # measured out of fold
    assert report["log_loss_after"] < report["log_loss_before"]
    fresh_raw, fresh_labels = _overconfident(6000, seed=4)
    after = chosen.calibration.apply(fresh_raw)
    assert calibration_error(after, fresh_labels) < calibration_error(fresh_raw, fresh_labels) / 3


def test_platt_recovers_the_logit_scale_and_isotonic_is_monotone() -> None:
    raw, labels = _overconfident(20000)
    platt = fit_platt(raw, labels)
    assert platt.slope == pytest.approx(1 / 3, abs=0.03)
    assert platt.intercept == pytest.approx(0.0, abs=0.05)
    isotonic = fit_isotonic(raw, labels)
    grid = np.linspace(0, 1, 501)
    mapped = isotonic.apply(grid)
    assert np.all(np.diff(mapped) >= 0)
    assert len(isotonic.knots_x) < 2000  # steps, not one knot per row
    assert mapped.min() > 0
    assert mapped.max() < 1


def test_a_calibrated_model_keeps_its_probabilities() -> None:
    rng = np.random.default_rng(5)
    raw = rng.uniform(0.01, 0.99, 4000)
    labels = (rng.random(4000) < raw).astype(float)
    chosen = choose_calibration(raw, labels)
    # nothing beats the raw probabilities by much; whichever is kept, it moves little
    served = raw if chosen.calibration is None else chosen.calibration.apply(raw)
    assert np.mean(np.abs(served - raw)) < 0.03


def test_too_few_rows_or_one_class_fit_no_map() -> None:
    assert choose_calibration(np.full(50, 0.3), np.zeros(50)).calibration is None
    single = choose_calibration(np.linspace(0, 1, 500), np.ones(500))
    assert single.calibration is None
    assert single.report["reason"] == "one class only"


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_a_map_survives_the_registry_round_trip(method: str) -> None:
    raw, labels = _overconfident(3000)
    fitted = fit_isotonic(raw, labels) if method == "isotonic" else fit_platt(raw, labels)
    again = Calibration.from_dict(fitted.as_dict())
    assert again is not None
    np.testing.assert_array_equal(again.apply(raw), fitted.apply(raw))
    assert Calibration.from_dict({}) is None


def test_training_a_binary_use_case_stores_a_map_that_scoring_applies() -> None:
    use_case = load_use_case("machine_failure")
    x, y = labelled_frame(World(use_case, 11), 1_795_000_000_000, 1, 12_000)
    times = 1_795_000_000_000 + np.arange(len(y), dtype=np.int64) * 1000
    data = TrainingSet(use_case.feature_names, x, y, times, [str(i) for i in range(len(y))])
    # 15 rounds at the default learning rate: probabilities still huddle near the base rate
    settings = TrainingSettings(num_boost_round=15, early_stopping_rounds=15)
    result = fit(data, use_case, settings, io.StringIO())
    report = result.metrics["calibration_map"]
    assert report["rows"] == result.validation_rows
    assert {"ece_before", "ece_after", "method"} <= set(report)
    assert result.estimation["method"] == "cbpe"
    assert report["method"] in ("isotonic", "platt"), report
    assert report["ece_after"] < report["ece_before"]
    calibration = Calibration.from_dict(result.calibration)
    assert calibration is not None
    valid = slice(result.train_rows, None)
    served = calibration.apply(result.booster.predict(x[valid]))
    # the validation metrics are those of what is served: the calibrated probabilities
    assert result.metrics["validation"]["calibration"] == pytest.approx(
        calibration_error(served, y[valid])
    )
    registry = MemoryRegistry(use_case.name)
    model = describe_version(use_case, {}, calibration=result.calibration)
    registry.add(model, result.booster.model_to_string(), role="champion")
    scorer = load_scorer(registry, model.version, Compilation.off())
    assert isinstance(scorer, CalibratedScorer)
    raw = result.booster.predict(x[:200])
    np.testing.assert_allclose(scorer.predict(x[:200]), scorer.calibration.apply(raw))
    assert uncalibrated(scorer) is scorer.inner
