"""`stream-app evaluate`: a challenger against the champion on the same recent labelled rows.

The holdout is every labelled, served feature vector scored since the challenger's training
split (rows its trees never learnt from; they chose its number of rounds). Both versions score
the same rows; their metrics are put side by side with their scoring latency, and the policy in
``settings.lifecycle`` decides: enough rows, a relative improvement of the primary metric of at
least ``min_improvement``, and a paired bootstrap over the per-row losses showing the
improvement is not chance (p below ``significance``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from cassandra.cluster import Session

from stream_app.models.compiled import Compilation
from stream_app.models.metrics import HIGHER_IS_BETTER, task_metrics
from stream_app.models.registry import ModelRegistry, load_scorer
from stream_app.models.scorer import Scorer
from stream_app.models.training import TrainingSet, load_training_set
from stream_app.settings import LifecycleSettings, Settings
from stream_app.storage.ground_truth import GroundTruthStore
from stream_app.storage.predictions import PredictionStore
from stream_app.use_cases.spec import UseCase

Array = np.ndarray[Any, Any]


def primary_metric(use_case: UseCase, settings: LifecycleSettings) -> str:
    """The metric decisions are made on: the setting, else MAE or log loss by task."""
    if settings.primary_metric:
        return settings.primary_metric
    return "mae" if use_case.task == "regression" else "log_loss"


def row_losses(
    metric: str, predicted: Array, actual: Array, tolerance: float | None, threshold: float
) -> Array:
    """Per-row loss whose mean the primary metric follows (lower is better): absolute error
    (mae), squared error (rmse), absolute percentage error (mape), a miss (within_tolerance,
    accuracy); log loss for the binary metrics that have no per-row form (auc, calibration)."""
    error = np.asarray(predicted - actual, dtype=np.float64)
    if metric == "mae":
        return np.abs(error)
    if metric == "rmse":
        return np.square(error)
    if metric == "mape":
        return np.abs(error) / np.maximum(np.abs(actual), 1e-12)
    if metric == "within_tolerance":
        return (np.abs(error) > (tolerance or 0.0)).astype(np.float64)
    if metric == "accuracy":
        missed: Array = (predicted >= threshold) != (actual >= 0.5)
        return missed.astype(np.float64)
    p = np.clip(predicted, 1e-7, 1 - 1e-7)
    return np.asarray(-(actual * np.log(p) + (1 - actual) * np.log(1 - p)), dtype=np.float64)


def paired_bootstrap(champion_loss: Array, challenger_loss: Array, rounds: int, seed: int) -> float:
    """One-sided p-value that the challenger's mean loss is not lower: the share of bootstrap
    resamples (rows drawn with replacement, the same rows for both) where it is not."""
    differences = champion_loss - challenger_loss  # > 0: the challenger is better on a row
    rng = np.random.default_rng(seed)
    n = len(differences)
    means = np.array([differences[rng.integers(0, n, n)].mean() for _ in range(rounds)])
    return float((means <= 0).mean())


@dataclass
class Decision:
    """A policy verdict and why."""

    promote: bool
    reasons: list[str]
    improvement: float
    p_value: float


def decide(
    metric: str,
    champion_value: float,
    challenger_value: float,
    rows: int,
    p_value: float,
    settings: LifecycleSettings,
) -> Decision:
    """Promote only with enough rows, enough improvement, and significance."""
    higher_is_better = HIGHER_IS_BETTER[metric]
    if higher_is_better:
        improvement = (challenger_value - champion_value) / max(abs(champion_value), 1e-12)
    else:
        improvement = (champion_value - challenger_value) / max(abs(champion_value), 1e-12)
    reasons = []
    ok = True
    if rows < settings.min_samples:
        ok = False
        reasons.append(
            f"only {rows} labelled rows in the holdout (the policy needs {settings.min_samples})"
        )
    else:
        reasons.append(f"{rows} labelled rows in the holdout (>= {settings.min_samples})")
    verb = "improves" if improvement > 0 else "worsens"
    change = (
        f"{metric} {champion_value:.4g} -> {challenger_value:.4g}: {verb} by {abs(improvement):.1%}"
    )
    if improvement < settings.min_improvement:
        ok = False
        reasons.append(f"{change}, below the {settings.min_improvement:.1%} the policy needs")
    else:
        reasons.append(f"{change} (>= {settings.min_improvement:.1%})")
    if p_value >= settings.significance:
        ok = False
        reasons.append(
            f"paired bootstrap p = {p_value:.3f}: not significant at {settings.significance}"
        )
    else:
        reasons.append(f"paired bootstrap p = {p_value:.3f} < {settings.significance}")
    return Decision(ok, reasons, improvement, p_value)


def _latency_us(scorer: Scorer, matrix: Array) -> dict[str, float]:
    batch = matrix[: min(len(matrix), 1000)]
    started = time.perf_counter()
    scorer.predict(batch)
    per_row_batched = (time.perf_counter() - started) / len(batch) * 1e6
    single = []
    for row in batch[:50]:
        started = time.perf_counter()
        scorer.predict(row[None, :])
        single.append((time.perf_counter() - started) * 1e6)
    return {
        "batch_us_per_row": round(per_row_batched, 2),
        "single_row_us": round(float(np.median(single)), 1),
    }


@dataclass
class Evaluation:
    challenger: str
    champion: str
    metric: str
    holdout_since: int
    holdout_rows: int
    metrics: dict[str, dict[str, float]]
    latency: dict[str, dict[str, float]]
    decision: Decision
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(
    session: Session,
    settings: Settings,
    use_case: UseCase,
    challenger_version: str,
    against: str | None = None,
    until_ms: int | None = None,
) -> Evaluation:
    """Score the holdout with both versions, apply the policy, and record the evaluation in
    the registry with the version judged.

    The holdout starts at the later of the two versions' training splits, so neither model
    learnt from a row of it (each one's validation rows only chose its number of rounds).
    """
    keyspace = settings.cassandra.keyspace
    registry = ModelRegistry(session, keyspace, use_case.name)
    challenger_model = registry.get(challenger_version)
    champion_version = against or registry.champion().version
    if champion_version == challenger_version:
        raise ValueError(f"{challenger_version} cannot be evaluated against itself")
    champion_model = registry.get(champion_version)
    since = max(
        int(challenger_model.training_window.get("split_time", 0)),
        int(champion_model.training_window.get("split_time", 0)),
    )
    until = until_ms or int(time.time() * 1000) + 1
    predictions = PredictionStore(session, keyspace, use_case.name)
    labels = GroundTruthStore(session, keyspace, use_case.name)
    names = list(dict.fromkeys(challenger_model.feature_names + champion_model.feature_names))
    holdout: TrainingSet = load_training_set(predictions, labels, names, since, until)
    compilation = Compilation.from_settings(settings, cached_only=True)
    # a holdout of a few thousand rows costs less to score than a compile: the compiled
    # code where the worker left it in the cache (checked on the holdout too), else LightGBM
    scorers = {
        role: load_scorer(
            registry, model.version, compilation,
            check_rows=holdout.features[:, [names.index(n) for n in model.feature_names]],
        )
        for role, model in (("champion", champion_model), ("challenger", challenger_model))
    }  # fmt: skip
    metric = primary_metric(use_case, settings.lifecycle)
    actual = holdout.labels
    if not len(actual):
        empty = Evaluation(
            challenger_version, champion_version, metric, since, 0, {}, {},
            Decision(False, ["no labelled rows since the models' training splits"], 0.0, 1.0),
        )  # fmt: skip
        registry.record_evaluation(empty.as_dict())
        return empty
    metrics, latency, losses = {}, {}, {}
    label = use_case.label
    for role, scorer in scorers.items():
        matrix = holdout.features[:, [names.index(n) for n in scorer.feature_names]]
        predicted = scorer.predict(matrix)
        metrics[role] = task_metrics(
            use_case.task, predicted, actual, label.tolerance, label.threshold
        )
        losses[role] = row_losses(metric, predicted, actual, label.tolerance, label.threshold)
        latency[role] = _latency_us(scorer, matrix)
    if metric not in metrics["champion"]:
        raise ValueError(f"primary metric {metric!r} is not one of {sorted(metrics['champion'])}")
    p_value = paired_bootstrap(
        losses["champion"], losses["challenger"], settings.lifecycle.bootstrap_rounds,
        settings.training.seed,
    )  # fmt: skip
    decision = decide(
        metric, metrics["champion"][metric], metrics["challenger"][metric], len(actual),
        p_value, settings.lifecycle,
    )  # fmt: skip
    result = Evaluation(
        challenger=challenger_version,
        champion=champion_version,
        metric=metric,
        holdout_since=since,
        holdout_rows=len(actual),
        metrics=metrics,
        latency=latency,
        decision=decision,
    )
    registry.record_evaluation(result.as_dict())
    return result
