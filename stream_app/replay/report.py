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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream_app.models.evaluation import paired_bootstrap, row_losses
from stream_app.models.metrics import HIGHER_IS_BETTER, task_metrics
from stream_app.monitoring.drift import PREDICTION, ModelDrift
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
    """How the replayed values compare with what the same version gave in production."""
    pairs = [(v, production[e]) for e, v in zip(event_ids, replayed.tolist(), strict=True)
             if e in production]  # fmt: skip
    if not pairs:
        return None
    ours = np.array([p[0] for p in pairs])
    theirs = np.array([p[1] for p in pairs])
    return {
        "compared": len(pairs),
        "identical": int((ours == theirs).sum()),
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
