"""Training sets from served features and ground truth, and LightGBM training.

A training row is a stored prediction's feature vector (exactly what was served, or what
simulated history says would have been) joined with the label of its event: point-in-time
correct by construction. The split is by time: the newest share validates.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from stream_app.errors import TrainingError
from stream_app.models.calibration import Calibration, choose_calibration
from stream_app.models.lgb import lgb
from stream_app.models.loss_estimation import fit_loss_models
from stream_app.models.metrics import task_metrics
from stream_app.progress import ProgressBar
from stream_app.settings import TrainingSettings
from stream_app.storage.ground_truth import GroundTruthStore
from stream_app.storage.predictions import PredictionStore
from stream_app.use_cases.spec import UseCase

Array = np.ndarray[Any, Any]
HISTOGRAM_BINS = 10

if TYPE_CHECKING:
    from lightgbm import Booster


def spec_hash(use_case: UseCase) -> str:
    """A fingerprint of the use-case spec a model was trained for."""
    return hashlib.sha256(use_case.model_dump_json().encode()).hexdigest()


@dataclass
class TrainingSet:
    """Labelled rows in a model's column order, oldest first."""

    feature_names: list[str]
    features: Array
    labels: Array
    event_times: Array
    event_ids: list[str]
    stored_rows: int = 0
    sources: dict[str, int] = field(default_factory=dict)  # rows per model version


def load_training_set(
    predictions: PredictionStore,
    labels: GroundTruthStore,
    feature_names: list[str],
    since_ms: int,
    until_ms: int,
) -> TrainingSet:
    """Stored vectors scored in ``[since_ms, until_ms)`` joined with their labels.

    One row per event (the first stored; every model version of an event was served the same
    stored features), mapped by name into ``feature_names`` order (absent names -> NaN).
    """
    seen: set[str] = set()
    rows = []
    stored = 0
    sources: dict[str, int] = {}
    layouts: dict[str, Array] = {}
    for row in predictions.scan(since_ms, until_ms):
        stored += 1
        if row.event_id in seen:
            continue
        seen.add(row.event_id)
        if row.feature_set not in layouts:
            names = predictions.feature_names(row.feature_set)
            layouts[row.feature_set] = np.array(
                [names.index(n) if n in names else -1 for n in feature_names]
            )
        rows.append((row.event_id, row.event_ms, row.feature_set, row.features, row.model_version))
    found = labels.read([r[0] for r in rows])
    ids, times, vectors, targets = [], [], [], []
    for event_id, event_ms, set_id, stored_vector, version in rows:
        label = found.get(event_id)
        if label is None:
            continue
        index = layouts[set_id]
        vectors.append(np.where(index >= 0, stored_vector[np.maximum(index, 0)], np.nan))
        ids.append(event_id)
        times.append(event_ms)
        targets.append(label.label)
        sources[version] = sources.get(version, 0) + 1
    order = np.argsort(np.array(times, dtype=np.int64), kind="stable")
    return TrainingSet(
        feature_names=list(feature_names),
        features=np.array(vectors, dtype=np.float64).reshape(len(vectors), len(feature_names))[
            order
        ],
        labels=np.array(targets, dtype=np.float64)[order],
        event_times=np.array(times, dtype=np.int64)[order],
        event_ids=[ids[i] for i in order],
        stored_rows=stored,
        sources=sources,
    )


def lightgbm_params(use_case: UseCase, settings: TrainingSettings) -> dict[str, Any]:
    return {
        "objective": "regression" if use_case.task == "regression" else "binary",
        "metric": "l1" if use_case.task == "regression" else "binary_logloss",
        "num_leaves": settings.num_leaves,
        "learning_rate": settings.learning_rate,
        "min_data_in_leaf": settings.min_data_in_leaf,
        "seed": settings.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "verbose": -1,
    }


def _progress_callback(bar: ProgressBar) -> Any:
    def callback(env: Any) -> None:
        score = env.evaluation_result_list[0][2] if env.evaluation_result_list else float("nan")
        bar(env.iteration + 1, f"valid {score:.4f}")

    return callback


def histograms(
    matrix: Array, names: list[str], hours: Array | None = None
) -> dict[str, dict[str, Any]]:
    """Per column: decile bin edges and the share of rows in each bin (the drift reference).

    With ``hours`` (each row's UTC hour of day), also the shares within each hour
    (``hourly``: 24 lists, null for an hour without rows), so that a monitoring window can be
    compared with the training data of the same hours (a seasonal reference).
    """
    result: dict[str, dict[str, Any]] = {}
    for column, name in enumerate(names):
        values = matrix[:, column]
        finite = np.isfinite(values)
        if not finite.any():
            continue
        edges = np.unique(np.quantile(values[finite], np.linspace(0, 1, HISTOGRAM_BINS + 1)))
        if len(edges) < 2:
            continue  # one value only: no distribution to compare
        bins = len(edges) - 1
        index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
        counts = np.bincount(index[finite], minlength=bins)
        result[name] = {
            "edges": [float(e) for e in edges],
            "shares": [float(c) / finite.sum() for c in counts],
        }
        if hours is not None:
            hourly = []
            for hour in range(24):
                rows = finite & (hours == hour)
                hour_counts = np.bincount(index[rows], minlength=bins)
                total = int(rows.sum())
                hourly.append([float(c) / total for c in hour_counts] if total else None)
            result[name]["hourly"] = hourly
    return result


def hours_of(event_times_ms: Array) -> Array:
    """The UTC hour of day of each time."""
    return (np.asarray(event_times_ms, dtype=np.int64) // 3_600_000) % 24


@dataclass
class FitResult:
    """A trained booster and what it was measured on."""

    booster: Booster
    metrics: dict[str, Any]
    split_time: int
    train_rows: int
    validation_rows: int
    distributions: dict[str, Any]
    calibration: dict[str, Any] = field(default_factory=dict)  # the map (binary), or {}
    estimation: dict[str, Any] = field(default_factory=dict)  # cbpe or dle, and its figures
    loss_models: dict[str, str] = field(default_factory=dict)  # dle's models by row term


def fit(
    data: TrainingSet, use_case: UseCase, settings: TrainingSettings, progress: TextIO = sys.stderr
) -> FitResult:
    """Train on the older rows, early-stop and measure on the newest ``validation_fraction``."""
    rows = len(data.labels)
    if rows < settings.min_rows:
        raise TrainingError(
            f"only {rows} labelled rows in the window (need {settings.min_rows}); widen it with "
            "--since, or let more predictions and labels accumulate"
        )
    cut = int(rows * (1 - settings.validation_fraction))
    x_train, y_train = data.features[:cut], data.labels[:cut]
    x_valid, y_valid = data.features[cut:], data.labels[cut:]
    params = lightgbm_params(use_case, settings)
    started = time.monotonic()
    bar = ProgressBar(settings.num_boost_round, "rounds", progress, label="training")
    booster = lgb.train(
        params,
        lgb.Dataset(x_train, y_train, feature_name=data.feature_names),
        num_boost_round=settings.num_boost_round,
        valid_sets=[lgb.Dataset(x_valid, y_valid, feature_name=data.feature_names)],
        callbacks=[
            lgb.early_stopping(settings.early_stopping_rounds, verbose=False),
            _progress_callback(bar),
        ],
    )
    bar.close()
    raw_valid = np.asarray(booster.predict(x_valid, num_threads=1), dtype=np.float64)
    raw_train = np.asarray(booster.predict(x_train, num_threads=1), dtype=np.float64)
    held_out = fit_held_out(use_case, x_valid, raw_valid, y_valid, settings.seed)
    predicted, predicted_train = held_out.values, held_out.apply(raw_train)
    constant = np.full(len(y_valid), float(y_train.mean()))
    tolerance, threshold = use_case.label.tolerance, use_case.label.threshold
    metrics = {
        "validation": task_metrics(use_case.task, predicted, y_valid, tolerance, threshold),
        "constant_baseline": task_metrics(use_case.task, constant, y_valid, tolerance, threshold),
        "best_iteration": booster.best_iteration,
        "training_seconds": round(time.monotonic() - started, 2),
    }
    if held_out.calibration_report:
        metrics["calibration_map"] = held_out.calibration_report
    hours = hours_of(data.event_times[:cut])
    distributions = {
        "features": histograms(x_train, data.feature_names, hours),
        "prediction": histograms(predicted_train[:, None], ["prediction"], hours).get(
            "prediction", {}
        ),
    }
    return FitResult(
        booster, metrics, int(data.event_times[cut]), cut, rows - cut, distributions,
        calibration=held_out.calibration, estimation=held_out.estimation,
        loss_models=held_out.loss_models,
    )  # fmt: skip


@dataclass
class HeldOut:
    """What a version learns from its held-out rows besides its metrics: the calibration map
    of a binary model (``values``: what it serves on those rows), and how it estimates its
    performance without labels (CBPE; or DLE, whose loss models are trained on them)."""

    values: Array
    map: Calibration | None
    calibration_report: dict[str, Any]
    estimation: dict[str, Any]
    loss_models: dict[str, str]

    @property
    def calibration(self) -> dict[str, Any]:
        return self.map.as_dict() if self.map else {}

    def apply(self, raw: Array) -> Array:
        return raw if self.map is None else self.map.apply(raw)


def fit_held_out(
    use_case: UseCase, features: Array, raw: Array, labels: Array, seed: int
) -> HeldOut:
    """Calibration (binary) and estimation fitted on labelled rows the model was not trained
    on: a training run's validation rows, or an imported model's stored labelled rows."""
    if use_case.task != "regression":
        chosen = choose_calibration(raw, labels)
        served = raw if chosen.calibration is None else chosen.calibration.apply(raw)
        estimation = {"method": "cbpe", "metrics": ["accuracy", "log_loss", "auc"]}
        return HeldOut(served, chosen.calibration, chosen.report, estimation, {})
    fitted = fit_loss_models(features, raw, labels, seed)
    if fitted is None:
        return HeldOut(raw, None, {}, {"method": "none", "reason": f"{len(labels)} rows"}, {})
    estimation = {**fitted.report, "metrics": ["mae", "rmse"]}
    return HeldOut(raw, None, {}, estimation, fitted.texts)
