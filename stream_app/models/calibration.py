"""Calibrated probabilities for binary use cases: a map fitted on held-out rows at training time.

LightGBM's probabilities are often over- or under-confident, and the label-free estimates of
``monitoring.estimates`` (CBPE) assume that a predicted 0.8 comes true eight times in ten. A
training run fits two maps from the raw probability to the observed rate on its validation
rows: isotonic (``scipy.optimize.isotonic_regression``: monotone, no shape assumed) and Platt
(a logistic curve on the raw logit, two parameters, robust on few rows). Each is judged out of
fold (two folds of the validation rows, each map fitted on one and scored by log loss on the
other) against leaving the probabilities as they are; the best of the three is refitted on
every validation row and stored with the version. Scoring applies it after the model
(``CalibratedScorer``), so the worker, replay and evaluation all serve calibrated values.

Expected calibration error before and after (the after figure out of fold, never on the rows a
map was fitted on) goes into the version's metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import isotonic_regression, minimize

from stream_app.models.metrics import calibration_error, log_loss
from stream_app.models.scorer import Matrix, Scorer

Array = np.ndarray[Any, Any]
EPSILON = 1e-6  # calibrated probabilities stay inside (EPSILON, 1 - EPSILON)
MIN_ROWS = 100  # fewer held-out rows (or one class only): no map is fitted
METHODS = ("isotonic", "platt")


@dataclass(frozen=True)
class Calibration:
    """A monotone map from the model's raw probability to a calibrated one."""

    method: str  # isotonic or platt
    knots_x: tuple[float, ...] = ()  # isotonic: raw probabilities ...
    knots_y: tuple[float, ...] = ()  # ... and their calibrated values (linear between)
    slope: float = 1.0  # platt: sigmoid(slope * logit(p) + intercept)
    intercept: float = 0.0

    def apply(self, probability: Array) -> Array:
        p = np.asarray(probability, dtype=np.float64)
        if self.method == "isotonic":
            result = np.interp(p, self.knots_x, self.knots_y)
        else:
            result = _sigmoid(self.slope * _logit(p) + self.intercept)
        return np.clip(result, EPSILON, 1 - EPSILON)

    def as_dict(self) -> dict[str, Any]:
        if self.method == "isotonic":
            return {"method": self.method, "x": list(self.knots_x), "y": list(self.knots_y)}
        return {"method": self.method, "slope": self.slope, "intercept": self.intercept}

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> Calibration | None:
        """The map a registry row holds (``{}``: none)."""
        method = stored.get("method")
        if method == "isotonic":
            return cls(method, tuple(stored["x"]), tuple(stored["y"]))
        if method == "platt":
            return cls(method, slope=float(stored["slope"]), intercept=float(stored["intercept"]))
        return None


def _logit(p: Array) -> Array:
    q = np.clip(p, EPSILON, 1 - EPSILON)
    return np.asarray(np.log(q / (1 - q)))


def _sigmoid(z: Array) -> Array:
    return np.asarray(1 / (1 + np.exp(-z)))


def fit_isotonic(raw: Array, labels: Array) -> Calibration:
    """The isotonic map of ``labels`` on ``raw``, kept as the ends of its constant steps."""
    order = np.argsort(raw, kind="stable")
    x, y = raw[order], labels[order].astype(np.float64)
    fitted = isotonic_regression(y, increasing=True).x
    # one knot per distinct raw value, then only where the step changes (both of its ends)
    distinct, first = np.unique(x, return_index=True)
    levels = fitted[first]
    keep = np.ones(len(distinct), dtype=bool)
    keep[1:-1] = (levels[1:-1] != levels[:-2]) | (levels[1:-1] != levels[2:])
    return Calibration(
        "isotonic",
        tuple(float(v) for v in distinct[keep]),
        tuple(float(v) for v in np.clip(levels[keep], EPSILON, 1 - EPSILON)),
    )


def fit_platt(raw: Array, labels: Array) -> Calibration:
    """Logistic regression of ``labels`` on the logit of ``raw`` (maximum likelihood)."""
    z, y = _logit(raw), labels.astype(np.float64)

    def loss(params: Array) -> tuple[float, Array]:
        p = np.clip(_sigmoid(params[0] * z + params[1]), 1e-12, 1 - 1e-12)
        value = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
        gradient = np.array([np.mean((p - y) * z), np.mean(p - y)])
        return float(value), gradient

    found = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    return Calibration("platt", slope=float(found.x[0]), intercept=float(found.x[1]))


FITTERS = {"isotonic": fit_isotonic, "platt": fit_platt}


@dataclass(frozen=True)
class CalibrationFit:
    """The chosen map (None: the raw probabilities are kept) and the figures behind it."""

    calibration: Calibration | None
    report: dict[str, Any]


def choose_calibration(raw: Array, labels: Array) -> CalibrationFit:
    """Fit isotonic and Platt maps on held-out rows and keep the best by out-of-fold log loss
    (or none, when neither beats the raw probabilities)."""
    raw = np.asarray(raw, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    rows = len(labels)
    positives = int((labels >= 0.5).sum())
    before = {
        "rows": rows,
        "ece_before": calibration_error(raw, labels),
        "log_loss_before": log_loss(raw, labels),
    }
    if rows < MIN_ROWS or positives in (0, rows):
        reason = f"{rows} held-out rows" if rows < MIN_ROWS else "one class only"
        return CalibrationFit(None, {**before, "method": "none", "reason": reason})
    # two interleaved folds (the rows are in time order: both folds span the whole period)
    folds = np.arange(rows) % 2
    out_of_fold = {m: np.empty(rows) for m in METHODS}
    for method, fitter in FITTERS.items():
        for fold in (0, 1):
            fitted = fitter(raw[folds != fold], labels[folds != fold])
            out_of_fold[method][folds == fold] = fitted.apply(raw[folds == fold])
    scores = {m: log_loss(out_of_fold[m], labels) for m in METHODS}
    scores["none"] = before["log_loss_before"]
    method = min(scores, key=lambda m: (scores[m], m != "none"))
    after = raw if method == "none" else out_of_fold[method]
    report = {
        **before,
        "method": method,
        "ece_after": calibration_error(after, labels),
        "log_loss_after": scores[method],
        "log_loss_out_of_fold": {m: round(v, 6) for m, v in scores.items()},
    }
    if method == "none":
        return CalibrationFit(None, {**report, "reason": "no map beat the raw probabilities"})
    return CalibrationFit(FITTERS[method](raw, labels), report)


class CalibratedScorer:
    """A scorer whose probabilities go through the version's calibration map."""

    def __init__(self, inner: Scorer, calibration: Calibration) -> None:
        self.inner = inner
        self.calibration = calibration

    @property
    def version(self) -> str:
        return self.inner.version

    @property
    def feature_names(self) -> list[str]:
        return self.inner.feature_names

    def predict(self, matrix: Matrix) -> Matrix:
        return self.calibration.apply(self.inner.predict(matrix))


def calibrated(scorer: Scorer, stored: dict[str, Any]) -> Scorer:
    """``scorer`` with the stored map applied (itself when the version has none)."""
    calibration = Calibration.from_dict(stored)
    return scorer if calibration is None else CalibratedScorer(scorer, calibration)


def uncalibrated(scorer: Scorer) -> Scorer:
    """The model's own scorer under a calibration map (what is compiled, or not)."""
    return scorer.inner if isinstance(scorer, CalibratedScorer) else scorer
