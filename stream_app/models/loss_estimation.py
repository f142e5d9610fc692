"""Direct loss estimation (DLE) for regression: a second model that predicts the first one's loss.

NannyML's DLE: on rows whose labels are known (the version's own validation rows), train a
model of the absolute error and one of the squared error from the features and the
prediction. On live rows, where no label has arrived yet, their mean predictions estimate the
MAE and (square root) the RMSE. It assumes the relation between inputs and outcome has not
changed (covariate shift, not concept drift), and that the live inputs lie where the
validation rows did; it says nothing of a change in the outcome the inputs cannot see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from stream_app.models.lgb import lgb
from stream_app.models.scorer import Matrix
from stream_app.monitoring.estimates import Estimator, estimator_for

Array = np.ndarray[Any, Any]
LOSSES = {"abs_error": "mae", "sq_error": "rmse"}  # row term -> the metric it estimates
MIN_ROWS = 200
# Few, large leaves: the absolute error is a noisy target whose mean moves smoothly with the
# inputs; 15 leaves of 20 rows fitted the noise and shrank the estimates towards the overall
# mean (measured on delivery_eta's longest distances: 1.89 estimated against 2.02 realised
# minutes, 1.93 with these). Linear leaves did a little better inside the training range and
# far worse outside it (they extrapolate), so they are not used.
PARAMS = {
    "objective": "regression",
    "num_leaves": 7,
    "learning_rate": 0.1,
    "min_data_in_leaf": 200,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 1,
    "verbose": -1,
}
ROUNDS = 300
EARLY_STOPPING = 20


def _inputs(features: Matrix, predictions: Array) -> Matrix:
    return np.column_stack([features, predictions]).astype(np.float64)


def loss_targets(predictions: Array, labels: Array) -> dict[str, Array]:
    error = np.asarray(predictions, dtype=np.float64) - np.asarray(labels, dtype=np.float64)
    return {"abs_error": np.abs(error), "sq_error": error * error}


@dataclass(frozen=True)
class LossModelFit:
    """The loss models (LightGBM texts by row term) and how well they estimated held-out
    rows."""

    texts: dict[str, str]
    report: dict[str, Any]


def fit_loss_models(
    features: Matrix, predictions: Array, labels: Array, seed: int = 42
) -> LossModelFit | None:
    """Train DLE's loss models on labelled held-out rows (None: too few rows). Two interleaved
    folds: trained on one, early-stopped and checked on the other, then refitted on all with
    the rounds found."""
    rows = len(labels)
    if rows < MIN_ROWS:
        return None
    x = _inputs(features, predictions)
    targets = loss_targets(predictions, labels)
    fold = np.arange(rows) % 2 == 1
    texts: dict[str, str] = {}
    check: dict[str, Any] = {}
    params = {**PARAMS, "seed": seed}
    for term, target in targets.items():
        booster = lgb.train(
            params,
            lgb.Dataset(x[~fold], target[~fold]),
            num_boost_round=ROUNDS,
            valid_sets=[lgb.Dataset(x[fold], target[fold])],
            callbacks=[lgb.early_stopping(EARLY_STOPPING, verbose=False)],
        )
        estimated = float(np.mean(booster.predict(x[fold], num_threads=1)))
        realised = float(np.mean(target[fold]))
        metric = LOSSES[term]
        if metric == "rmse":
            estimated, realised = float(np.sqrt(max(estimated, 0.0))), float(np.sqrt(realised))
        check[metric] = {"estimated": estimated, "realised": realised}
        rounds = max(booster.best_iteration, 1)
        final = lgb.train(params, lgb.Dataset(x, target), num_boost_round=rounds)
        texts[term] = final.model_to_string()
    report = {"method": "dle", "rows": rows, "held_out_check": check}
    return LossModelFit(texts, report)


class LossEstimator:
    """Loaded loss models: per row, the expected absolute and squared error of a prediction."""

    method = "dle"

    def __init__(self, texts: dict[str, str]) -> None:
        self._boosters = {term: lgb.Booster(model_str=text) for term, text in texts.items()}

    def row_terms(self, matrix: Matrix, predictions: Array) -> dict[str, Array]:
        x = _inputs(matrix, predictions)
        terms = {}
        for term, booster in self._boosters.items():
            terms[term] = np.maximum(np.asarray(booster.predict(x, num_threads=1)), 0.0)
        return terms


def loss_estimator(texts: dict[str, str]) -> LossEstimator | None:
    return LossEstimator(texts) if texts else None


def version_estimator(
    task: str, threshold: float, estimation: dict[str, Any], calibrated: bool,
    loss_models: dict[str, str],
) -> Estimator | None:  # fmt: skip
    """How a version estimates its performance without labels: CBPE on its (``calibrated``
    or not) probabilities, DLE through its ``loss_models``; None when it cannot."""
    described = {**estimation, "calibrated": calibrated}
    return estimator_for(task, threshold, described, loss_estimator(loss_models))
