"""`stream-app bench estimates`: do the label-free estimates (CBPE, DLE) see a degradation
before the labels do, and how far off are they?

Offline, in memory, three worlds of the use case's simulation:

- **covariate**: no drift of the spec; from half way, events are kept by their inputs alone
  (the upper 30% of the feature the trained model gains most from, and a fifth of the rest):
  the inputs move and the outcome of every input stays what it was, by construction. The
  shift the methods assume, inside the range the model was trained on.
- **covariate_spec**: the spec's ``[drift]`` event and reading formulas only. Its inputs may
  move where the model never saw any (then no method that learns from the validation rows can
  see it); reported, not judged.
- **concept**: the spec's ``[drift]`` label and derived formulas only: the relation changes,
  what the methods cannot see; the report says by how much the estimate missed.

In each:

1. a version is trained on ``--train-days`` of history before the drift, by the same
   ``models.training.fit`` as `stream-app train` (calibration map, DLE's loss models);
2. ``--hours`` of events after it are scored, the drift starting half way;
3. every prediction feeds the estimator the worker uses (``monitoring.estimates``), and every
   label, at its simulated arrival time, the realised metrics (``monitoring.rolling``);
4. each window of event time is compared with its realised value once all its labels are in
   (``EstimateLedger``): the mean absolute error of the estimate, against the realised change
   (post-drift windows' mean against pre-drift windows' mean);
5. the rolling figures a worker would show (estimates by prediction time, realised metrics by
   label arrival) are followed in steps of a sixth of a window, and each one's signal is the
   first step, after the drift began, from which it stays beyond the midpoint between the
   realised levels before and after for a whole window (a noisy blip is no signal); the lead
   of the estimate is the realised signal's time minus the estimate's, against the world's
   median label delay. The same run follows a perfect estimate too (the realised metric as if
   each label came with its prediction): its lead is the most this measure allows in the
   world, the baseline for the estimate's.

Targets: in the covariate world the estimate's error is at most 20% of the realised change and
its lead at least one median label delay. In the concept world the report says how much the
estimate missed. ``noise_floor`` is the error a perfect estimate would still have against each
window's realised value (the realised metric's own sampling error): where it is above 20% of
the change, the windows hold too few events for the target to be judged (widen ``--window-s``
or raise ``--events-per-day``).
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream_app.models.calibration import Calibration
from stream_app.models.loss_estimation import version_estimator
from stream_app.models.training import TrainingSet, fit
from stream_app.monitoring.estimates import (
    ESTIMATED,
    EstimateLedger,
    EstimateSums,
    Estimator,
    estimated_metrics,
)
from stream_app.monitoring.rolling import AccuracySums, accuracy_metrics
from stream_app.settings import Settings
from stream_app.simulation.history import history_chunks
from stream_app.simulation.world import DAY_MS, World
from stream_app.use_cases.spec import Drift, UseCase

START_MS = 1_795_000_000_000
HOUR_MS = 3_600_000
STEPS_PER_WINDOW = 6
TARGET_ERROR_SHARE = 0.2  # of the realised change
PRIMARY = {"cbpe": "accuracy", "dle": "mae"}  # the metric the targets are judged on
SELECTED_QUANTILE = 0.7  # covariate: the upper 30% of the most important feature is kept ...
KEEP_BELOW = 0.2  # ... and a fifth of the rest


@dataclass
class Stream:
    """Scored events after training: times, label arrival, what was served and the truth."""

    event_ms: np.ndarray[Any, Any]
    arrival_ms: np.ndarray[Any, Any]
    labelled: np.ndarray[Any, Any]
    predictions: np.ndarray[Any, Any]
    labels: np.ndarray[Any, Any]
    features: np.ndarray[Any, Any]


@dataclass(frozen=True)
class Selection:
    """A covariate shift by selection on the inputs: from the drift on, an event whose
    ``feature`` is below ``threshold`` is kept with probability ``keep_below`` (1 above), so
    the inputs move towards the upper values of the feature the model leans on most while the
    outcome of every input stays what it was."""

    feature: str
    column: int
    threshold: float
    keep_below: float = KEEP_BELOW

    def keep(self, features: np.ndarray[Any, Any], rng: np.random.Generator) -> Any:
        values = features[:, self.column]
        return (values >= self.threshold) | (rng.random(len(values)) < self.keep_below)


def worlds(use_case: UseCase) -> dict[str, UseCase]:
    """The worlds of the bench: ``covariate`` (inputs resampled on the most important feature,
    no drift of the spec), and from the spec's drift ``covariate_spec`` (its event and reading
    formulas) and ``concept`` (its label and derived formulas), those its drift has."""
    simulation = use_case.simulation
    assert simulation is not None
    drift = simulation.drift
    found = {"covariate": Drift()}
    if drift.event or drift.reading:
        found["covariate_spec"] = Drift(event=drift.event, reading=drift.reading)
    if drift.label or drift.derived:
        found["concept"] = Drift(label=drift.label, derived=drift.derived)
    return {
        kind: use_case.model_copy(
            update={"simulation": simulation.model_copy(update={"drift": changed})}
        )
        for kind, changed in found.items()
    }


def _frame(world: World, start_ms: int, end_ms: int, drift_ms: int | None,
           per_day: int) -> dict[str, Any]:  # fmt: skip
    parts: dict[str, list[Any]] = {k: [] for k in ("x", "y", "t", "delay", "labelled")}
    for chunk in history_chunks(world, start_ms, end_ms, "bench", drift_ms, per_day):
        parts["x"] += chunk.vectors
        parts["y"].append(chunk.events.labels)
        parts["t"].append(chunk.events.times_ms)
        parts["delay"].append(chunk.events.label_delays_ms)
        parts["labelled"].append(chunk.events.labelled)
    order = np.argsort(np.concatenate(parts["t"]), kind="stable")
    return {
        "x": np.array(parts["x"], dtype=np.float64)[order],
        "y": np.concatenate(parts["y"]).astype(np.float64)[order],
        "t": np.concatenate(parts["t"]).astype(np.int64)[order],
        "delay": np.concatenate(parts["delay"]).astype(np.int64)[order],
        "labelled": np.concatenate(parts["labelled"])[order],
    }


def _train(
    use_case: UseCase, settings: Settings, world: World, train_days: float, per_day: int
) -> tuple[Any, Calibration | None, Estimator, dict[str, Any], Selection]:
    history = _frame(world, START_MS, START_MS + int(train_days * DAY_MS), None, per_day)
    rows = history["labelled"]
    data = TrainingSet(
        use_case.feature_names, history["x"][rows], history["y"][rows], history["t"][rows],
        [str(i) for i in range(int(rows.sum()))],
    )  # fmt: skip
    result = fit(data, use_case, settings.training, io.StringIO())
    calibration = Calibration.from_dict(result.calibration)
    estimator = version_estimator(use_case.task, use_case.label.threshold, result.estimation,
                                  calibration is not None, result.loss_models)  # fmt: skip
    if estimator is None:
        raise ValueError(f"{use_case.name}: the trained version cannot estimate "
                         f"({result.estimation})")  # fmt: skip
    gains = result.booster.feature_importance("gain")
    column = int(np.argmax(gains))
    values = data.features[:, column]
    threshold = float(np.nanquantile(values, SELECTED_QUANTILE))
    selection = Selection(use_case.feature_names[column], column, threshold)
    return result.booster, calibration, estimator, result.metrics, selection


def _stream(
    world: World, booster: Any, calibration: Calibration | None, start_ms: int, hours: float,
    per_day: int, selection: Selection | None,
) -> Stream:  # fmt: skip
    """Events of ``hours`` from ``start_ms``, the drift (or the selection) from half way."""
    end = start_ms + int(hours * HOUR_MS)
    drift_ms = start_ms + (end - start_ms) // 2
    if selection is None:
        frame = _frame(world, start_ms, end, drift_ms, per_day)
    else:  # as dense after the drift as before: more events made, the selection's kept
        before = _frame(world, start_ms, drift_ms, None, per_day)
        kept_share = 1 - SELECTED_QUANTILE * (1 - selection.keep_below)
        after = _frame(world, drift_ms, end, None, int(per_day / kept_share))
        keep = selection.keep(after["x"], np.random.default_rng(world.seed))
        frame = {k: np.concatenate([before[k], after[k][keep]]) for k in before}
    raw = np.asarray(booster.predict(frame["x"], num_threads=1), dtype=np.float64)
    served = raw if calibration is None else calibration.apply(raw)
    return Stream(frame["t"], frame["t"] + frame["delay"], frame["labelled"], served,
                  frame["y"], frame["x"])  # fmt: skip


def _judge(
    use_case: UseCase, stream: Stream, estimator: Estimator, window_ms: int, drift_ms: int,
    median_delay_ms: float,
) -> dict[str, Any]:  # fmt: skip
    task, label = use_case.task, use_case.label
    method = estimator.method
    metric = PRIMARY[method]
    terms = estimator.terms(stream.features, stream.predictions)
    probabilities = stream.predictions if method == "cbpe" else None
    # 1. each window of event time, estimate against realised once its labels are all in
    ledger = EstimateLedger(task, label.tolerance, label.threshold, window_ms, settle_ms=0,
                            min_labels=30)  # fmt: skip
    ledger.add_estimates("v", "champion", method, stream.event_ms, terms, probabilities)
    rows = np.flatnonzero(stream.labelled)
    for i in rows.tolist():
        ledger.add_label("v", "champion", int(stream.event_ms[i]), float(stream.predictions[i]),
                         float(stream.labels[i]))  # fmt: skip
    ledger.settle(int(stream.arrival_ms.max()) + window_ms)  # every label is in by then
    compared = list(ledger.settled.get(("v", "champion"), []))
    before = [c for c in compared if c["window_end"] <= drift_ms]
    after = [c for c in compared if c["window_start"] >= drift_ms]

    def mean_of(windows: list[dict[str, Any]], side: str) -> float:
        return float(np.mean([c[side][metric] for c in windows])) if windows else math.nan

    realised_before, realised_after = mean_of(before, "realised"), mean_of(after, "realised")
    change = abs(realised_after - realised_before)
    errors = {
        m: float(np.mean([c["error"][m] for c in compared if m in c["error"]]))
        for m in ESTIMATED[method]
    }
    floor = float(np.mean([_noise(c, metric) for c in compared])) if compared else math.nan
    after_errors = [c["error"][metric] for c in after if metric in c["error"]]
    error_after = float(np.mean(after_errors)) if after_errors else math.nan
    error = errors[metric]
    # 2. the rolling figures a worker shows, and when each crosses the midpoint
    midpoint = (realised_before + realised_after) / 2
    signals = _signals(use_case, method, metric, stream, terms, probabilities, rows,
                       window_ms, drift_ms, midpoint,
                       worse_is_up=realised_after > realised_before)  # fmt: skip
    lead = _lead(signals, "estimated")
    best = _lead(signals, "instant")
    return {
        "metric": metric,
        "windows": len(compared),
        "events_per_window": round(len(stream.event_ms) / max(len(compared), 1)),
        "realised_before": round(realised_before, 4),
        "realised_after": round(realised_after, 4),
        "estimated_before": round(mean_of(before, "estimated"), 4),
        "estimated_after": round(mean_of(after, "estimated"), 4),
        "realised_change": round(change, 4),
        "estimate_mae": round(error, 4),
        "estimate_mae_after_drift": round(error_after, 4),
        "estimate_mae_by_metric": {m: round(v, 4) for m, v in errors.items()},
        "estimate_mae_vs_change": round(error / change, 3) if change > 0 else None,
        "noise_floor": round(floor, 4),
        "noise_floor_vs_change": round(floor / change, 3) if change > 0 else None,
        "missed_by_after_drift": round(mean_of(after, "realised") - mean_of(after, "estimated"), 4),
        "signal_s_after_drift": {
            k: None if v is None else round((v - drift_ms) / 1000) for k, v in signals.items()
        },
        "lead_s": None if lead is None else round(lead / 1000),
        "lead_vs_median_label_delay": None if lead is None else round(lead / median_delay_ms, 2),
        "perfect_lead_vs_median_label_delay": (
            None if best is None else round(best / median_delay_ms, 2)
        ),
    }


def _lead(signals: dict[str, int | None], name: str) -> int | None:
    """How long before the realised metric's signal ``name``'s came (None: one never did)."""
    realised, other = signals["realised"], signals[name]
    return None if realised is None or other is None else realised - other


def _noise(compared: dict[str, Any], metric: str) -> float:
    """The mean absolute error even a perfect estimate has against a window's realised value:
    the realised metric's own sampling error, sqrt(2/pi) standard errors (accuracy: a
    binomial share; MAE: a mean of absolute errors, whose spread RMSE and MAE give)."""
    realised, labels = compared["realised"], compared["labels"]
    if metric == "accuracy":
        variance = realised["accuracy"] * (1 - realised["accuracy"])
    else:
        variance = max(realised["rmse"] ** 2 - realised["mae"] ** 2, 0.0)
    return math.sqrt(2 / math.pi) * math.sqrt(variance / labels)


def _signals(
    use_case: UseCase, method: str, metric: str, stream: Stream, terms: dict[str, Any],
    probabilities: Any, labelled_rows: Any, window_ms: int, drift_ms: int, midpoint: float,
    worse_is_up: bool,
) -> dict[str, int | None]:  # fmt: skip
    """When the rolling estimate (by prediction time) and the rolling realised metric (by
    label arrival) first cross ``midpoint`` after the drift began; and ``instant``, the
    realised metric as if every label arrived with its prediction (by prediction time): what
    a perfect estimate would signal, the best lead this measure allows."""
    step = window_ms // STEPS_PER_WINDOW
    first = int(stream.event_ms.min()) // step
    last = int(stream.arrival_ms.max()) // step + 1
    estimate_bins = [EstimateSums() for _ in range(last - first + 1)]
    index = stream.event_ms // step - first
    for b in np.unique(index).tolist():
        chosen = index == b
        estimate_bins[b].add({k: v[chosen] for k, v in terms.items()},
                             None if probabilities is None else probabilities[chosen])  # fmt: skip
    task, label = use_case.task, use_case.label
    realised_bins = [AccuracySums() for _ in range(last - first + 1)]
    instant_bins = [AccuracySums() for _ in range(last - first + 1)]
    arrival = stream.arrival_ms // step - first
    for i in labelled_rows.tolist():
        predicted, actual = float(stream.predictions[i]), float(stream.labels[i])
        tolerance = label.tolerance or 0.0
        realised_bins[int(arrival[i])].add(task, tolerance, label.threshold, predicted, actual)
        instant_bins[int(index[i])].add(task, tolerance, label.threshold, predicted, actual)
    crossed_since: dict[str, int | None] = {"estimated": None, "realised": None, "instant": None}
    found: dict[str, int | None] = {"estimated": None, "realised": None, "instant": None}
    for b in range(STEPS_PER_WINDOW - 1, len(estimate_bins)):
        at = (first + b + 1) * step
        if at <= drift_ms:
            continue
        span = slice(b - STEPS_PER_WINDOW + 1, b + 1)
        values = {
            "estimated": estimated_metrics(method, estimate_bins[span]).get(metric, math.nan),
            "realised": _realised(task, realised_bins[span], metric),
            "instant": _realised(task, instant_bins[span], metric),
        }
        for name, value in values.items():
            if found[name] is not None:
                continue
            crossed = math.isfinite(value) and (value > midpoint if worse_is_up
                                                else value < midpoint)  # fmt: skip
            if not crossed:
                crossed_since[name] = None
                continue
            since = crossed_since[name] = crossed_since[name] or at
            if at - since >= window_ms:  # beyond it for a whole window: not noise
                found[name] = since
    return found


def _realised(task: str, sums: list[AccuracySums], metric: str) -> float:
    if sum(s.count for s in sums) == 0:
        return math.nan
    return accuracy_metrics(task, sums)[metric]


def run(
    settings: Settings, use_case: UseCase, train_days: float = 6.0, hours: float = 48.0,
    events_per_day: int | None = None, window_s: float = 3600.0, seed: int = 42,
) -> dict[str, Any]:  # fmt: skip
    """Both worlds of the use case's drift, each trained, streamed and judged."""
    simulation = use_case.simulation
    assert simulation is not None
    per_day = events_per_day or simulation.history_events_per_day
    window_ms = int(window_s * 1000)
    started = time.monotonic()
    results: dict[str, Any] = {}
    median_delay = math.nan
    method = ""
    for kind, changed in worlds(use_case).items():
        world = World(changed, seed)
        booster, calibration, estimator, metrics, selection = _train(
            changed, settings, world, train_days, per_day
        )
        stream_start = START_MS + int(train_days * DAY_MS)
        chosen = selection if kind == "covariate" else None
        stream = _stream(world, booster, calibration, stream_start, hours, per_day, chosen)
        drift_ms = stream_start + int(hours * HOUR_MS) // 2
        median_delay = float(np.median(stream.arrival_ms - stream.event_ms))
        method = estimator.method
        judged = _judge(changed, stream, estimator, window_ms, drift_ms, median_delay)
        judged["calibration"] = metrics.get("calibration_map", {}).get("method")
        if chosen is not None:
            judged["selection"] = {
                "feature": chosen.feature, "kept_below": chosen.keep_below,
                "threshold": round(chosen.threshold, 4),
                "quantile": SELECTED_QUANTILE,
            }  # fmt: skip
        results[kind] = judged
    covariate = results.get("covariate")
    targets: dict[str, Any] = {}
    if covariate is not None:
        share = covariate["estimate_mae_vs_change"]
        lead = covariate["lead_vs_median_label_delay"]
        targets = {
            "covariate_error_within_20pct_of_change": share is not None
            and share <= TARGET_ERROR_SHARE,
            "covariate_signal_a_label_delay_earlier": lead is not None and lead >= 1.0,
        }
    concept = results.get("concept")
    return {
        "benchmark": "estimates",
        "use_case": use_case.name,
        "method": method,
        "train_days": train_days,
        "stream_hours": hours,
        "events_per_day": per_day,
        "window_s": window_ms / 1000,
        "median_label_delay_s": round(median_delay / 1000),
        "worlds": results,
        "targets": targets,
        "concept_drift": None
        if concept is None
        else (
            f"the estimate missed the concept drift by {abs(concept['missed_by_after_drift']):.4g} "
            f"{concept['metric']} after it (realised change {concept['realised_change']:.4g}); "
            "the methods assume the relation between inputs and outcome holds"
        ),
        "seconds": round(time.monotonic() - started, 1),
    }
