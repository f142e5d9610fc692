"""The report of a replay, from what it scored (pure; no I/O).

Metrics are the use case's, per version, over the replayed events that have a label. With two
versions the better one is named on the primary metric, with the relative improvement and a
paired bootstrap over the per-event losses (the same events for both). The series feed the
HTML page's charts: the primary metric per time bucket, the error distribution, one version
against the other (or against production), and PSI of each monitored feature per bucket
against the first version's training distributions.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np

from stream_app.models.compiled import TOLERANCE
from stream_app.models.evaluation import paired_bootstrap, primary_metric, row_losses
from stream_app.models.metrics import HIGHER_IS_BETTER, task_metrics
from stream_app.monitoring.drift import PREDICTION, ModelDrift
from stream_app.monitoring.estimates import EstimateSums, Estimator, estimated_metrics
from stream_app.settings import Settings
from stream_app.use_cases.spec import UseCase

Array = np.ndarray[Any, Any]
NICE_BUCKETS_MS = [
    1_000, 5_000, 10_000, 30_000, 60_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000,
    3 * 3_600_000, 6 * 3_600_000, 12 * 3_600_000, 86_400_000, 7 * 86_400_000,
]  # fmt: skip
HISTOGRAM_BINS = 40
SCATTER_POINTS = 2_000


def finite(value: float | None) -> float | None:
    """``value`` for JSON: None when it is missing, NaN or infinite."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def bucket_ms(from_ms: int, to_ms: int, max_buckets: int) -> int:
    """The smallest round bucket size giving at most ``max_buckets`` buckets over the range."""
    span = max(to_ms - from_ms, 1)
    for size in NICE_BUCKETS_MS:
        if math.ceil(span / size) <= max_buckets:
            return size
    return math.ceil(span / max_buckets)


@dataclass
class Scored:
    """What a replay scored, in event order (arrays of equal length)."""

    event_ids: list[str]
    event_times: Array  # int64 ms
    predictions: dict[str, Array]  # version -> values
    labels: Array  # float64, NaN where the event has no label
    vectors: Array  # the first version's input rows
    entities: dict[str, list[str]] = field(default_factory=dict)  # entity key -> id per event


def production_agreement(
    event_ids: list[str], replayed: Array, production: dict[str, float]
) -> dict[str, Any] | None:
    """How the replayed values compare with what the same version gave in production:
    ``identical`` counts values equal within the compiled scorer's bound (``TOLERANCE``
    relative: production and the replay may score one version with LightGBM and with its
    compiled code, which sum the trees in another order); ``max_abs_difference`` is exact."""
    pairs = [(v, production[e]) for e, v in zip(event_ids, replayed.tolist(), strict=True)
             if e in production]  # fmt: skip
    if not pairs:
        return None
    ours = np.array([p[0] for p in pairs])
    theirs = np.array([p[1] for p in pairs])
    return {
        "compared": len(pairs),
        "identical": int(
            (np.abs(ours - theirs) <= TOLERANCE * np.maximum(1.0, np.abs(theirs))).sum()
        ),
        "max_abs_difference": float(np.max(np.abs(ours - theirs))),
    }


def winner(
    use_case: UseCase,
    metric: str,
    metrics: dict[str, dict[str, float]],
    predicted: dict[str, Array],
    actual: Array,
    rounds: int,
    seed: int,
    significance: float,
) -> dict[str, Any] | None:
    """The better of two versions on ``metric``, with how much better and how surely."""
    if len(predicted) != 2 or not len(actual):
        return None
    first, second = predicted
    label = use_case.label
    values = {first: metrics[first][metric], second: metrics[second][metric]}
    higher = HIGHER_IS_BETTER[metric]
    if values[first] == values[second]:
        tie = [f"{metric} is {values[first]:.4g} for both"]
        return {"version": None, "metric": metric, "values": values, "improvement": 0.0,
                "p_value": 1.0, "reasons": tie}  # fmt: skip
    best, other = (first, second) if (values[first] > values[second]) == higher else (second, first)
    losses = {
        v: row_losses(metric, p, actual, label.tolerance, label.threshold)
        for v, p in predicted.items()
    }
    p_value = paired_bootstrap(losses[other], losses[best], rounds, seed)
    improvement = abs(values[best] - values[other]) / max(abs(values[other]), 1e-12)
    direction = "higher" if higher else "lower"
    sure = (
        f"paired bootstrap p = {p_value:.3f} < {significance}: not chance"
        if p_value < significance
        else f"paired bootstrap p = {p_value:.3f}: not significant at {significance}"
    )
    return {
        "version": best,
        "metric": metric,
        "values": values,
        "improvement": improvement,
        "p_value": p_value,
        "reasons": [
            f"{metric} {values[best]:.4g} against {values[other]:.4g} for {other}: "
            f"{improvement:.1%} {direction} ({direction} is better)",
            f"on the same {len(actual):,} labelled events",
            sure,
        ],
    }


def estimate_of(
    estimator: Estimator, vectors: Array, predicted: Array, realised: dict[str, float | None]
) -> dict[str, Any]:
    """A version's metrics estimated from every replayed prediction (no label used), and the
    absolute difference from the labelled events' metrics."""
    sums = EstimateSums()
    probabilities = predicted if estimator.method == "cbpe" else None
    sums.add(estimator.terms(vectors, predicted), probabilities)
    estimated = {m: finite(v) for m, v in estimated_metrics(estimator.method, [sums]).items()}
    error = {
        m: abs(v - r) for m, v in estimated.items()
        if v is not None and (r := realised.get(m)) is not None
    }  # fmt: skip
    return {
        "method": estimator.method,
        "calibrated": estimator.calibrated if estimator.method == "cbpe" else None,
        "metrics": estimated,
        "error": error,
    }


def metric_over_time(
    use_case: UseCase,
    metric: str,
    times: Array,
    predicted: dict[str, Array],
    actual: Array,
    start_ms: int,
    size_ms: int,
    buckets: int,
) -> dict[str, Any]:
    """The primary metric of each version per time bucket (labelled events only)."""
    index = (times - start_ms) // size_ms
    label = use_case.label
    labelled: list[int] = []
    series: dict[str, list[float | None]] = {v: [] for v in predicted}
    for bucket in range(buckets):
        rows = index == bucket
        labelled.append(int(rows.sum()))
        for version, values in predicted.items():
            if not rows.any():
                series[version].append(None)
                continue
            scores = task_metrics(
                use_case.task, values[rows], actual[rows], label.tolerance, label.threshold
            )
            series[version].append(finite(scores.get(metric)))
    return {
        "metric": metric,
        "bucket_ms": size_ms,
        "buckets": [start_ms + b * size_ms for b in range(buckets)],
        "labelled": labelled,
        "by_version": series,
    }


def error_distribution(task: str, predicted: dict[str, Array], actual: Array) -> dict[str, Any]:
    """A histogram of prediction minus label per version, on shared bins (1st-99th pct)."""
    errors = {v: p - actual for v, p in predicted.items()}
    every = np.concatenate(list(errors.values())) if errors else np.empty(0)
    if task != "regression":
        low, high = -1.0, 1.0
    elif len(every):
        low, high = (float(x) for x in np.quantile(every, [0.01, 0.99]))
    else:
        low, high = -1.0, 1.0
    if high <= low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    return {
        "quantity": "prediction - label" if task == "regression" else "probability - label",
        "edges": edges.tolist(),
        "by_version": {
            v: np.histogram(np.clip(e, low, high), bins=edges)[0].tolist()
            for v, e in errors.items()
        },
    }


def versus(x_name: str, x: Array, y_name: str, y: Array, seed: int) -> dict[str, Any]:
    """At most ``SCATTER_POINTS`` pairs, sampled evenly at random, of two prediction series."""
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) > SCATTER_POINTS:
        chosen = np.sort(np.random.default_rng(seed).choice(len(x), SCATTER_POINTS, replace=False))
        x, y = x[chosen], y[chosen]
    return {
        "x": x_name,
        "y": y_name,
        "metric": "prediction",
        "points": [[float(a), float(b)] for a, b in zip(x, y, strict=True)],
    }


def drift_over_time(
    use_case: UseCase,
    feature_names: list[str],
    distributions: dict[str, Any],
    scored: Scored,
    predictions: Array,
    start_ms: int,
    size_ms: int,
    buckets: int,
    min_entities: int,
) -> dict[str, Any]:
    """PSI per monitored feature (and the prediction) per bucket against the training data."""
    monitored = {n for n, f in use_case.features.items() if f.monitor_drift}
    entities_of = {n: f.entity for n, f in use_case.features.items() if hasattr(f, "entity")}
    index = (scored.event_times - start_ms) // size_ms
    series: dict[str, list[float | None]] = {}
    for bucket in range(buckets):
        rows = np.flatnonzero(index == bucket)
        drift = ModelDrift(
            feature_names, distributions, monitored, size_ms + 1, min_entities, entities_of
        )
        if len(rows):
            drift.observe(
                scored.vectors[rows], predictions[rows], start_ms + bucket * size_ms,
                scored.event_times[rows],
                {k: [ids[i] for i in rows] for k, ids in scored.entities.items()},
            )  # fmt: skip
        report = drift.report(start_ms + bucket * size_ms)
        for name, values in report.items():
            psi = values["psi"] if values["values"] else float("nan")
            series.setdefault(name, []).append(finite(psi))
    ordered = {n: series[n] for n in feature_names if n in series}
    if PREDICTION in series:
        ordered[PREDICTION] = series[PREDICTION]
    return {
        "metric": "psi",
        "bucket_ms": size_ms,
        "buckets": [start_ms + b * size_ms for b in range(buckets)],
        "features": ordered,
    }


class EventCounts(TypedDict):
    messages: int  # records read from the range
    scored: int
    labelled: int
    labels_from: dict[str, int]  # topic / table
    invalid: dict[str, int]  # refused records by dead-letter code


class _VersionRequired(TypedDict):
    version: str
    metrics: dict[str, float | None]
    labelled: int
    production: dict[str, Any] | None  # agreement with what production served


class VersionResult(_VersionRequired, total=False):
    # what the version's own estimator (CBPE, DLE) says of every replayed event without
    # labels, and how far that is from the labelled events' metrics
    estimated: dict[str, Any]


class Timing(TypedDict):
    seconds: float
    events_per_s: int
    phases: dict[str, float]


class _ReportRequired(TypedDict):
    run_id: str
    use_case: str
    task: str
    topic: str
    # "from" is a keyword: the field is set and read by its name in the mapping
    to: int
    created_at: int
    interrupted: bool
    primary_metric: str
    higher_is_better: list[str]
    plan: dict[str, Any]
    events: EventCounts
    features: dict[str, int]  # served / point_in_time
    versions: list[VersionResult]
    winner: dict[str, Any] | None
    series: dict[str, Any]  # the HTML page's charts


class ReplayReport(_ReportRequired, total=False):
    """A replay's report: report.json, the HTML page and the command's summary read it."""

    timing: Timing


@dataclass
class ReplayInputs:
    """What a replay scored and where it came from, for ``assemble``."""

    run_id: str
    plan: Any  # replay.plan.ReplayPlan
    scored: Scored
    messages: int
    invalid: dict[str, int]
    sources: dict[str, int]
    label_sources: dict[str, int]
    production: dict[str, dict[str, float]]  # version -> event id -> production's value
    first: Any  # models.registry.ModelVersion of the first version
    second: str | None  # the compared version
    estimators: dict[str, Estimator] = field(default_factory=dict)  # version -> estimator


def assemble(inputs: ReplayInputs, use_case: UseCase, settings: Settings) -> ReplayReport:
    """The report of a replay: metrics per version, the winner, and the charts' series."""
    plan, scored = inputs.plan, inputs.scored
    ids, predictions = scored.event_ids, scored.predictions
    labelled = np.isfinite(scored.labels)
    actual = scored.labels[labelled]
    metric = primary_metric(use_case, settings.lifecycle)
    label = use_case.label
    metrics = {
        v: {k: finite(x) for k, x in task_metrics(
            use_case.task, p[labelled], actual, label.tolerance, label.threshold).items()}
        if len(actual) else {}
        for v, p in predictions.items()
    }  # fmt: skip
    versions: list[VersionResult] = [
        {
            "version": v,
            "metrics": metrics[v],
            "labelled": int(labelled.sum()),
            "production": production_agreement(ids, predictions[v], inputs.production[v]),
        }
        for v in predictions
    ]
    for result in versions:
        estimator = inputs.estimators.get(result["version"])
        if estimator is not None and len(ids):
            result["estimated"] = estimate_of(
                estimator,
                scored.vectors,
                predictions[result["version"]],
                metrics[result["version"]],
            )
    best = winner(
        use_case, metric, metrics,  # type: ignore[arg-type]
        {v: p[labelled] for v, p in predictions.items()}, actual,
        settings.lifecycle.bootstrap_rounds, settings.training.seed,
        settings.lifecycle.significance,
    )  # fmt: skip
    size = bucket_ms(plan.from_ms, plan.to_ms, settings.replay.report_buckets)
    buckets = max(-(-(plan.to_ms - plan.from_ms) // size), 1)
    first = inputs.first
    if inputs.second is not None:
        x_name, x = first.version, predictions[first.version]
        y_name, y = inputs.second, predictions[inputs.second]
    else:
        production = inputs.production[first.version]
        x_name, y_name, y = "production", first.version, predictions[first.version]
        x = np.array([production.get(e, np.nan) for e in ids], dtype=np.float64)
        if not np.isfinite(x).any():
            x_name, x = "label", scored.labels
    report: dict[str, Any] = {
        "run_id": inputs.run_id,
        "use_case": use_case.name,
        "task": use_case.task,
        "topic": plan.topic,
        "from": plan.from_ms,
        "to": plan.to_ms,
        "created_at": int(time.time() * 1000),
        "interrupted": False,
        "primary_metric": metric,
        "higher_is_better": sorted(m for m, up in HIGHER_IS_BETTER.items() if up),
        "plan": plan.as_dict(),
        "events": {
            "messages": inputs.messages,
            "scored": len(ids),
            "labelled": int(labelled.sum()),
            "labels_from": inputs.label_sources,
            "invalid": inputs.invalid,
        },
        "features": {
            "served": inputs.sources.get("served", 0),
            "point_in_time": inputs.sources.get("point_in_time", 0),
        },
        "versions": versions,
        "winner": best,
        "series": {
            "error_over_time": metric_over_time(
                use_case, metric, scored.event_times[labelled],
                {v: p[labelled] for v, p in predictions.items()}, actual,
                plan.from_ms, size, buckets,
            ),
            "error_distribution": error_distribution(
                use_case.task, {v: p[labelled] for v, p in predictions.items()}, actual
            ),
            "versus": versus(x_name, x, y_name, y, settings.training.seed),
            "drift": {
                "threshold": settings.monitoring.psi_threshold,
                **drift_over_time(
                    use_case, first.feature_names, first.distributions, scored,
                    predictions[first.version], plan.from_ms, size, buckets,
                    settings.monitoring.drift_min_entities,
                ),
            },
        },
    }  # fmt: skip
    return report  # type: ignore[return-value]  # "from": see _ReportRequired
