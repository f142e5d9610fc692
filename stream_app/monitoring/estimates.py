"""Performance estimated before the labels arrive, per model version (pure; no I/O).

Two of NannyML's published methods, computed live over the same rolling window as the
realised metrics (``rolling``), from what the scoring path already has:

- **CBPE** (confidence-based performance estimation), binary: with calibrated probabilities a
  prediction ``p`` is right with probability ``p`` when ``p >= threshold`` and ``1 - p``
  otherwise, so the expected accuracy is the mean of that; the expected log loss is the mean
  binary entropy of ``p``; the expected ROC AUC counts each prediction as ``p`` of a positive
  and ``1 - p`` of a negative in 100 probability bins (as ``rolling`` bins the real ones).
  Assumes the probabilities are calibrated (``models.calibration`` fits a map with every
  version) and that the relation between inputs and outcome holds (covariate shift only).
- **DLE** (direct loss estimation), regression: loss models trained with the version on its
  validation rows (``models.loss_estimation``) predict each row's absolute and squared error;
  their means estimate MAE and RMSE. Same assumption about the relation.

Neither sees concept drift (the outcome changing for the same inputs): ``EstimateLedger``
therefore compares each window's estimate with its realised value once the window's labels
are in, and the error of the estimate is itself reported, so a team knows when to trust it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from stream_app.monitoring.rolling import (
    PROBABILITY_BINS,
    AccuracySums,
    accuracy_metrics,
    binned_auc,
    newest_bucket,
    prune,
)

Array = np.ndarray[Any, Any]
EPSILON = 1e-7
SETTLED_KEPT = 200  # compared windows kept per version and role
ESTIMATED = {  # the metrics each method estimates
    "cbpe": ("accuracy", "log_loss", "auc"),
    "dle": ("mae", "rmse"),
}


class LossPredictor(Protocol):
    """DLE's loss models of one version (``models.loss_estimation.LossEstimator``)."""

    def row_terms(self, matrix: Array, predictions: Array) -> dict[str, Array]: ...


def cbpe_terms(probabilities: Array, threshold: float) -> dict[str, Array]:
    """Per prediction: the probability it is right, and its expected log loss."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, 1 - EPSILON)
    return {
        "correct": np.where(p >= threshold, p, 1 - p),
        "log_loss": -(p * np.log(p) + (1 - p) * np.log(1 - p)),
    }


@dataclass
class Estimator:
    """How one version's performance is estimated: CBPE from its probabilities, or DLE through
    its loss models (``loss``)."""

    method: str  # cbpe or dle
    threshold: float = 0.5
    loss: LossPredictor | None = None
    calibrated: bool = True  # cbpe: the version has a calibration map (or was checked)

    def terms(self, matrix: Array, predictions: Array) -> dict[str, Array]:
        if self.method == "cbpe":
            return cbpe_terms(predictions, self.threshold)
        assert self.loss is not None
        return self.loss.row_terms(matrix, predictions)


def estimator_for(
    task: str, threshold: float, estimation: dict[str, Any], loss: LossPredictor | None
) -> Estimator | None:
    """The estimator a version's stored ``estimation`` describes (None: it cannot estimate:
    a regression version without loss models)."""
    if task != "regression":
        calibrated = bool(estimation.get("calibrated", estimation.get("method") == "cbpe"))
        return Estimator("cbpe", threshold, calibrated=calibrated)
    if loss is None:
        return None
    return Estimator("dle", threshold, loss)


@dataclass
class EstimateSums:
    """Sums of per-prediction estimate terms (one second, or one window)."""

    second: int = 0
    count: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    positives: Array | None = None  # cbpe: expected positives per probability bin
    negatives: Array | None = None

    def add(self, terms: dict[str, Array], probabilities: Array | None) -> None:
        n = len(next(iter(terms.values()))) if terms else 0
        self.count += n
        for name, values in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(np.sum(values))
        if probabilities is not None and n:
            p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
            index = np.minimum((p * PROBABILITY_BINS).astype(np.int64), PROBABILITY_BINS - 1)
            positives = np.bincount(index, weights=p, minlength=PROBABILITY_BINS)
            negatives = np.bincount(index, weights=1 - p, minlength=PROBABILITY_BINS)
            if self.positives is None or self.negatives is None:
                self.positives, self.negatives = positives, negatives
            else:
                self.positives += positives
                self.negatives += negatives


def estimated_metrics(method: str, sums: list[EstimateSums]) -> dict[str, float]:
    """The estimated metrics over some sums (empty: nothing predicted)."""
    count = sum(s.count for s in sums)
    if not count:
        return {}

    def mean(term: str) -> float:
        return sum(s.sums.get(term, 0.0) for s in sums) / count

    if method == "dle":
        return {"mae": mean("abs_error"), "rmse": math.sqrt(max(mean("sq_error"), 0.0))}
    positives = [s.positives for s in sums if s.positives is not None]
    negatives = [s.negatives for s in sums if s.negatives is not None]
    auc = math.nan
    if positives:
        auc = binned_auc(np.sum(positives, axis=0), np.sum(negatives, axis=0))
    return {"accuracy": mean("correct"), "log_loss": mean("log_loss"), "auc": auc}


class RollingEstimates:
    """Estimated metrics of the predictions of the last ``window_ms``, per (version, role)."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self.methods: dict[tuple[str, str], str] = {}
        self._buckets: dict[tuple[str, str], deque[EstimateSums]] = {}

    def add(self, version: str, role: str, method: str, terms: dict[str, Array],
            probabilities: Array | None, at_ms: int) -> None:  # fmt: skip
        key = (version, role)
        self.methods[key] = method
        bucket = newest_bucket(self._buckets.setdefault(key, deque()), at_ms, EstimateSums)
        bucket.add(terms, probabilities)

    def snapshot(self, now_ms: int) -> dict[tuple[str, str], dict[str, float]]:
        prune(self._buckets.values(), now_ms, self.window_ms)
        result = {}
        for key, buckets in self._buckets.items():
            predictions = sum(b.count for b in buckets)
            result[key] = {
                "predictions": float(predictions),
                **estimated_metrics(self.methods[key], list(buckets)),
            }
        return result


@dataclass
class _Window:
    start_ms: int
    estimate: EstimateSums = field(default_factory=EstimateSums)
    realised: AccuracySums = field(default_factory=AccuracySums)


class EstimateLedger:
    """Each window's estimate beside its realised value, by event time.

    Predictions add to the window of their event time; labels, when they arrive, to the window
    of their prediction's event time. A window is settled once ``settle_coverage`` of its
    predictions have labels (or ``settle_ms`` after it ended, when late labels no longer
    come); then its estimate and realised metrics are compared, and the absolute difference is
    the error of the estimate for that window.
    """

    def __init__(
        self,
        task: str,
        tolerance: float | None,
        threshold: float,
        window_ms: int,
        settle_ms: int,
        settle_coverage: float = 0.9,
        min_labels: int = 30,
    ) -> None:
        self.task = task
        self.tolerance = tolerance or 0.0
        self.threshold = threshold
        self.window_ms = window_ms
        self.settle_ms = settle_ms
        self.settle_coverage = settle_coverage
        self.min_labels = min_labels
        self.methods: dict[tuple[str, str], str] = {}
        self._open: dict[tuple[str, str], dict[int, _Window]] = {}
        self.settled: dict[tuple[str, str], deque[dict[str, Any]]] = {}
        self.unpublished: deque[dict[str, Any]] = deque(maxlen=SETTLED_KEPT)

    def _window(self, key: tuple[str, str], event_ms: int) -> _Window:
        start = event_ms // self.window_ms * self.window_ms
        windows = self._open.setdefault(key, {})
        window = windows.get(start)
        if window is None:
            window = windows[start] = _Window(start)
        return window

    def add_estimates(self, version: str, role: str, method: str, event_ms: Array,
                      terms: dict[str, Array], probabilities: Array | None) -> None:  # fmt: skip
        key = (version, role)
        self.methods[key] = method
        starts = np.asarray(event_ms, dtype=np.int64) // self.window_ms * self.window_ms
        for start in np.unique(starts).tolist():
            rows = starts == start
            if rows.all():
                self._window(key, start).estimate.add(terms, probabilities)
                continue
            part = {name: values[rows] for name, values in terms.items()}
            some = None if probabilities is None else probabilities[rows]
            self._window(key, start).estimate.add(part, some)

    def add_label(self, version: str, role: str, event_ms: int, predicted: float,
                  actual: float) -> None:  # fmt: skip
        key = (version, role)
        if key not in self._open:
            return  # no estimate of this version here (scored elsewhere, or before a restart)
        window = self._open[key].get(event_ms // self.window_ms * self.window_ms)
        if window is not None:
            window.realised.add(self.task, self.tolerance, self.threshold, predicted, actual)

    def settle(self, now_ms: int) -> list[dict[str, Any]]:
        """Compare the windows whose labels are in; returns the new comparisons."""
        found = []
        for key, windows in self._open.items():
            for start in sorted(windows):
                window = windows[start]
                end = start + self.window_ms
                if end > now_ms:
                    break
                predictions, labels = window.estimate.count, window.realised.count
                covered = predictions > 0 and labels >= self.settle_coverage * predictions
                if not covered and now_ms < end + self.settle_ms:
                    continue
                del windows[start]
                if labels < self.min_labels or not predictions:
                    continue
                method = self.methods[key]
                estimated = estimated_metrics(method, [window.estimate])
                realised = accuracy_metrics(self.task, [window.realised])
                compared = {
                    "model_version": key[0], "role": key[1], "method": method,
                    "window_start": start, "window_end": end, "predictions": predictions,
                    "labels": labels, "estimated": estimated,
                    "realised": {m: realised[m] for m in estimated},
                    "error": {m: abs(estimated[m] - realised[m]) for m in estimated
                              if math.isfinite(estimated[m]) and math.isfinite(realised[m])},
                }  # fmt: skip
                self.settled.setdefault(key, deque(maxlen=SETTLED_KEPT)).append(compared)
                self.unpublished.append(compared)
                found.append(compared)
        return found

    def take_unpublished(self) -> list[dict[str, Any]]:
        """The comparisons settled since the last call (for the performance-estimates topic)."""
        taken = list(self.unpublished)
        self.unpublished.clear()
        return taken

    def errors(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Per (version, role): windows compared, the mean absolute error of the estimate per
        metric, and the latest comparison."""
        result = {}
        for key, compared in self.settled.items():
            if not compared:
                continue
            metrics = {m for c in compared for m in c["error"]}
            result[key] = {
                "windows": len(compared),
                "mean_abs_error": {
                    m: float(np.mean([c["error"][m] for c in compared if m in c["error"]]))
                    for m in sorted(metrics)
                },
                "last": compared[-1],
            }
        return result
