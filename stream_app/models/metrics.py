"""Accuracy metrics of the use-case specs (pure numpy functions)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata

Array = np.ndarray[Any, Any]
EPSILON = 1e-12


def mae(predicted: Array, actual: Array) -> float:
    return float(np.mean(np.abs(predicted - actual)))


def rmse(predicted: Array, actual: Array) -> float:
    return float(np.sqrt(np.mean((predicted - actual) ** 2)))


def mape(predicted: Array, actual: Array) -> float:
    """Mean absolute percentage error, in percent; rows with a zero label are skipped."""
    nonzero = np.abs(actual) > EPSILON
    if not nonzero.any():
        return float("nan")
    return float(100 * np.mean(np.abs((predicted[nonzero] - actual[nonzero]) / actual[nonzero])))


def within_tolerance(predicted: Array, actual: Array, tolerance: float) -> float:
    """Share of predictions within ``tolerance`` of the label."""
    return float(np.mean(np.abs(predicted - actual) <= tolerance))


def accuracy(probability: Array, actual: Array, threshold: float = 0.5) -> float:
    return float(np.mean((probability >= threshold) == (actual >= 0.5)))


def log_loss(probability: Array, actual: Array) -> float:
    p = np.clip(probability, 1e-7, 1 - 1e-7)
    return float(-np.mean(actual * np.log(p) + (1 - actual) * np.log(1 - p)))


def auc(probability: Array, actual: Array) -> float:
    """Area under the ROC curve: the Mann-Whitney rank statistic, ties given their average
    rank (``scipy.stats.rankdata``); NaN with one class only."""
    positive = actual >= 0.5
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(probability)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def calibration_error(probability: Array, actual: Array, bins: int = 10) -> float:
    """Expected calibration error: |mean predicted - observed rate|, weighted over bins."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(probability, edges) - 1, 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(probability[members].mean() - actual[members].mean())
    return float(error)


def task_metrics(
    task: str, predicted: Array, actual: Array, tolerance: float | None, threshold: float
) -> dict[str, float]:
    """Every metric of a task, by name (the names the spec's ``metrics`` list uses)."""
    if task == "regression":
        return {
            "mae": mae(predicted, actual),
            "rmse": rmse(predicted, actual),
            "mape": mape(predicted, actual),
            "within_tolerance": within_tolerance(predicted, actual, tolerance or 0.0),
        }
    return {
        "accuracy": accuracy(predicted, actual, threshold),
        "log_loss": log_loss(predicted, actual),
        "auc": auc(predicted, actual),
        "calibration": calibration_error(predicted, actual),
    }


def skill_of(task: str, metrics: dict[str, Any]) -> float | None:
    """A version's validation skill against the constant baseline of its training run (the
    same definition as the live ``skill``: 1 - log loss ratio, or 1 - squared error ratio);
    None when its metrics do not say (an imported model)."""
    validation, constant = metrics.get("validation", {}), metrics.get("constant_baseline", {})
    name = "rmse" if task == "regression" else "log_loss"
    model, baseline = validation.get(name), constant.get(name)
    if model is None or baseline is None or not baseline > 0:
        return None
    ratio = model / baseline
    return float(1 - (ratio * ratio if task == "regression" else ratio))


# For each metric: is a larger value better?
HIGHER_IS_BETTER = {
    "mae": False,
    "rmse": False,
    "mape": False,
    "within_tolerance": True,
    "accuracy": True,
    "log_loss": False,
    "auc": True,
    "calibration": False,
}
