"""Rolling accuracy per model version over a time window (pure; no I/O).

Accuracy events are added into one-second buckets of sums, so every metric over the window is
exact (to float rounding) and memory is bounded by the window length, whatever the rate.
Regression: MAE, RMSE, MAPE and the within-tolerance rate. Binary classification: accuracy,
log loss, AUC (from probability histograms of each class, 100 bins) and calibration error
(10 bins). Label coverage: labels received over predictions made in the same window.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BUCKET_MS = 1_000
PROBABILITY_BINS = 100
CALIBRATION_BINS = 10
EPSILON = 1e-7


@dataclass
class _Bucket:
    second: int
    count: int = 0
    abs_error: float = 0.0
    sq_error: float = 0.0
    pct_error: float = 0.0
    pct_count: int = 0
    correct: int = 0
    log_loss: float = 0.0
    positives: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(PROBABILITY_BINS))
    negatives: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(PROBABILITY_BINS))
    predictions: int = 0


class RollingAccuracy:
    """Accuracy events of the last ``window_ms``, per (model version, role)."""

    def __init__(
        self, task: str, tolerance: float | None, threshold: float, window_ms: int
    ) -> None:
        self.task = task
        self.tolerance = tolerance or 0.0
        self.threshold = threshold
        self.window_ms = window_ms
        self._buckets: dict[tuple[str, str], deque[_Bucket]] = {}

    def _bucket(self, key: tuple[str, str], at_ms: int) -> _Bucket:
        second = at_ms // BUCKET_MS
        buckets = self._buckets.setdefault(key, deque())
        if not buckets or buckets[-1].second < second:
            buckets.append(_Bucket(second))
        elif buckets[-1].second > second:  # an out-of-order time: keep it in the newest bucket
            return buckets[-1]
        return buckets[-1]

    def record_predictions(self, version: str, role: str, count: int, at_ms: int) -> None:
        """Predictions made (the denominator of label coverage)."""
        self._bucket((version, role), at_ms).predictions += count

    def add(self, version: str, role: str, predicted: float, actual: float, at_ms: int) -> None:
        """One accuracy event."""
        b = self._bucket((version, role), at_ms)
        b.count += 1
        error = predicted - actual
        if self.task == "regression":
            b.abs_error += abs(error)
            b.sq_error += error * error
            if abs(actual) > EPSILON:
                b.pct_error += abs(error / actual)
                b.pct_count += 1
            b.correct += abs(error) <= self.tolerance
        else:
            p = min(max(predicted, EPSILON), 1 - EPSILON)
            positive = actual >= 0.5
            b.correct += (predicted >= self.threshold) == positive
            b.log_loss += -math.log(p) if positive else -math.log(1 - p)
            index = min(int(predicted * PROBABILITY_BINS), PROBABILITY_BINS - 1)
            (b.positives if positive else b.negatives)[index] += 1

    def _prune(self, now_ms: int) -> None:
        oldest = (now_ms - self.window_ms) // BUCKET_MS
        for buckets in self._buckets.values():
            while buckets and buckets[0].second <= oldest:
                buckets.popleft()

    def snapshot(self, now_ms: int) -> dict[tuple[str, str], dict[str, float]]:
        """Per (version, role): count, the task's metrics and label coverage."""
        self._prune(now_ms)
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
                values.update(self._metrics(buckets, count))
            result[key] = values
        return result

    def _metrics(self, buckets: deque[_Bucket], count: int) -> dict[str, float]:
        correct = sum(b.correct for b in buckets)
        if self.task == "regression":
            pct_count = sum(b.pct_count for b in buckets)
            return {
                "mae": sum(b.abs_error for b in buckets) / count,
                "rmse": math.sqrt(sum(b.sq_error for b in buckets) / count),
                "mape": 100 * sum(b.pct_error for b in buckets) / pct_count
                if pct_count
                else math.nan,
                "within_tolerance": correct / count,
            }
        positives = np.sum([b.positives for b in buckets], axis=0)
        negatives = np.sum([b.negatives for b in buckets], axis=0)
        return {
            "accuracy": correct / count,
            "log_loss": sum(b.log_loss for b in buckets) / count,
            "auc": binned_auc(positives, negatives),
            "calibration": binned_calibration(positives, negatives),
        }


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
