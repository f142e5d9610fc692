"""Rolling accuracy per model version over a time window (pure; no I/O).

Accuracy events are added into one-second buckets of sums, so every metric over the window is
exact (to float rounding) and memory is bounded by the window length, whatever the rate.
Regression: MAE, RMSE, MAPE and the within-tolerance rate. Binary classification: accuracy,
log loss, AUC (from probability histograms of each class, 100 bins) and calibration error
(10 bins). Label coverage: labels received over predictions made in the same window. Skill:
the model against a constant on the same labels (``accuracy_metrics``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

BUCKET_MS = 1_000
PROBABILITY_BINS = 100
CALIBRATION_BINS = 10
EPSILON = 1e-7


@dataclass
class AccuracySums:
    """Sums of accuracy events (one second of them, or one window): every realised metric,
    and the constant baseline's on the same labels (``skill``), follow from them exactly."""

    second: int = 0
    count: int = 0
    abs_error: float = 0.0
    sq_error: float = 0.0
    pct_error: float = 0.0
    pct_count: int = 0
    correct: int = 0
    log_loss: float = 0.0
    label_sum: float = 0.0
    label_sq_sum: float = 0.0
    positives: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(PROBABILITY_BINS))
    negatives: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(PROBABILITY_BINS))
    predictions: int = 0

    def add(self, task: str, tolerance: float, threshold: float, predicted: float,
            actual: float) -> None:  # fmt: skip
        self.count += 1
        self.label_sum += actual
        self.label_sq_sum += actual * actual
        error = predicted - actual
        if task == "regression":
            self.abs_error += abs(error)
            self.sq_error += error * error
            if abs(actual) > EPSILON:
                self.pct_error += abs(error / actual)
                self.pct_count += 1
            self.correct += abs(error) <= tolerance
        else:
            p = min(max(predicted, EPSILON), 1 - EPSILON)
            positive = actual >= 0.5
            self.correct += (predicted >= threshold) == positive
            self.log_loss += -math.log(p) if positive else -math.log(1 - p)
            index = min(int(predicted * PROBABILITY_BINS), PROBABILITY_BINS - 1)
            (self.positives if positive else self.negatives)[index] += 1


def accuracy_metrics(task: str, sums: Sequence[AccuracySums]) -> dict[str, float]:
    """The task's metrics over some sums with at least one label, and ``skill``: how much
    better than a constant (the labels' own mean) on the same labels the model is: one minus
    the ratio of their losses (log loss for binary, squared error for regression, so R²
    there). Zero or less: no skill at all, whatever the validation figure was."""
    count = sum(b.count for b in sums)
    correct = sum(b.correct for b in sums)
    mean_label = sum(b.label_sum for b in sums) / count
    if task == "regression":
        pct_count = sum(b.pct_count for b in sums)
        mse = sum(b.sq_error for b in sums) / count
        variance = max(sum(b.label_sq_sum for b in sums) / count - mean_label**2, 0.0)
        return {
            "mae": sum(b.abs_error for b in sums) / count,
            "rmse": math.sqrt(mse),
            "mape": 100 * sum(b.pct_error for b in sums) / pct_count if pct_count else math.nan,
            "within_tolerance": correct / count,
            "skill": 1 - mse / variance if variance > 0 else math.nan,
        }
    positives = np.sum([b.positives for b in sums], axis=0)
    negatives = np.sum([b.negatives for b in sums], axis=0)
    loss = sum(b.log_loss for b in sums) / count
    prior = binary_entropy(mean_label)
    return {
        "accuracy": correct / count,
        "log_loss": loss,
        "auc": binned_auc(positives, negatives),
        "calibration": binned_calibration(positives, negatives),
        "skill": 1 - loss / prior if prior > 0 else math.nan,
    }


def binary_entropy(rate: float) -> float:
    """The log loss of always predicting ``rate`` on labels whose positive rate is ``rate``."""
    p = min(max(rate, EPSILON), 1 - EPSILON)
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


class RollingAccuracy:
    """Accuracy events of the last ``window_ms``, per (model version, role)."""

    def __init__(
        self, task: str, tolerance: float | None, threshold: float, window_ms: int
    ) -> None:
        self.task = task
        self.tolerance = tolerance or 0.0
        self.threshold = threshold
        self.window_ms = window_ms
        self._buckets: dict[tuple[str, str], deque[AccuracySums]] = {}

    def _bucket(self, key: tuple[str, str], at_ms: int) -> AccuracySums:
        return newest_bucket(self._buckets.setdefault(key, deque()), at_ms, AccuracySums)

    def record_predictions(self, version: str, role: str, count: int, at_ms: int) -> None:
        """Predictions made (the denominator of label coverage)."""
        self._bucket((version, role), at_ms).predictions += count

    def add(self, version: str, role: str, predicted: float, actual: float, at_ms: int) -> None:
        """One accuracy event."""
        bucket = self._bucket((version, role), at_ms)
        bucket.add(self.task, self.tolerance, self.threshold, predicted, actual)

    def snapshot(self, now_ms: int) -> dict[tuple[str, str], dict[str, float]]:
        """Per (version, role): count, the task's metrics and label coverage."""
        prune(self._buckets.values(), now_ms, self.window_ms)
        result = {}
        for key, buckets in self._buckets.items():
            count = sum(b.count for b in buckets)
            predictions = sum(b.predictions for b in buckets)
            values: dict[str, float] = {
                "labels": float(count),
                "predictions": float(predictions),
                "label_coverage": count / predictions if predictions else float("nan"),
            }
            if count:
                values.update(accuracy_metrics(self.task, buckets))
            result[key] = values
        return result


class _Timed(Protocol):
    second: int


B = TypeVar("B", bound=_Timed)


def newest_bucket(buckets: deque[B], at_ms: int, make: Callable[[], B]) -> B:
    """The bucket of ``at_ms``'s second at the end of ``buckets`` (added when new; a time
    older than the newest bucket goes into the newest)."""
    second = at_ms // BUCKET_MS
    if not buckets or buckets[-1].second < second:
        bucket = make()
        bucket.second = second
        buckets.append(bucket)
    return buckets[-1]


def prune(per_key: Iterable[deque[B]], now_ms: int, window_ms: int) -> None:
    """Drop the buckets older than the window."""
    oldest = (now_ms - window_ms) // BUCKET_MS
    for buckets in per_key:
        while buckets and buckets[0].second <= oldest:
            buckets.popleft()


def binned_auc(positives: np.ndarray[Any, Any], negatives: np.ndarray[Any, Any]) -> float:
    """AUC from per-bin counts of each class (ties within a bin count half)."""
    n_pos, n_neg = positives.sum(), negatives.sum()
    if n_pos == 0 or n_neg == 0:
        return math.nan
    below = np.cumsum(negatives) - negatives  # negatives in lower bins
    wins = (positives * (below + 0.5 * negatives)).sum()
    return float(wins / (n_pos * n_neg))


def binned_calibration(positives: np.ndarray[Any, Any], negatives: np.ndarray[Any, Any]) -> float:
    """Expected calibration error over ``CALIBRATION_BINS`` probability bins."""
    total = positives.sum() + negatives.sum()
    if total == 0:
        return math.nan
    per = PROBABILITY_BINS // CALIBRATION_BINS
    centres = (np.arange(PROBABILITY_BINS) + 0.5) / PROBABILITY_BINS
    error = 0.0
    for start in range(0, PROBABILITY_BINS, per):
        pos, neg = positives[start : start + per], negatives[start : start + per]
        n = pos.sum() + neg.sum()
        if n:
            mean_p = float(((pos + neg) * centres[start : start + per]).sum() / n)
            error += n / total * abs(mean_p - pos.sum() / n)
    return float(error)
