"""`stream-app bench simulation`: is the simulated world learnable, and does drift hurt?

Trains LightGBM on simulated history (in memory, no services), then reports its loss against a
constant baseline (the training mean) on fresh events, and on events after the drift.
Regression: mean absolute error; binary classification: log loss.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stream_app.models.lgb import lgb
from stream_app.simulation.history import labelled_frame
from stream_app.simulation.world import DAY_MS, World
from stream_app.use_cases.spec import UseCase

START_MS = 1_795_000_000_000


def loss(use_case: UseCase, predicted: Any, actual: Any) -> float:
    """MAE for regression, log loss for binary classification."""
    if use_case.task == "regression":
        return float(np.abs(predicted - actual).mean())
    p = np.clip(predicted, 1e-6, 1 - 1e-6)
    return float(-(actual * np.log(p) + (1 - actual) * np.log(1 - p)).mean())


def run(
    use_case: UseCase, days: float = 7, events_per_day: int = 10_000, seed: int = 42
) -> dict[str, Any]:
    world = World(use_case, seed)
    x, y = labelled_frame(world, START_MS, days, events_per_day)
    objective = "regression" if use_case.task == "regression" else "binary"
    params = {"objective": objective, "num_threads": 1, "verbose": -1, "seed": seed}
    model = lgb.train(params, lgb.Dataset(x, y), num_boost_round=200)
    test_start = START_MS + int(days * DAY_MS)
    x_test, y_test = labelled_frame(world, test_start, 1, events_per_day)
    drift_start = test_start + DAY_MS
    x_drift, y_drift = labelled_frame(world, drift_start, 1, events_per_day, drift_start)
    metric = "mae" if use_case.task == "regression" else "log_loss"
    model_loss = loss(use_case, model.predict(x_test), y_test)
    constant_loss = loss(use_case, np.full(len(y_test), y.mean()), y_test)
    drift_loss = loss(use_case, model.predict(x_drift), y_drift)
    return {
        "benchmark": "simulation",
        "use_case": use_case.name,
        "metric": metric,
        "train_events": len(y),
        "test_events": len(y_test),
        f"model_{metric}": round(model_loss, 4),
        f"constant_{metric}": round(constant_loss, 4),
        f"model_{metric}_after_drift": round(drift_loss, 4),
        "model_vs_constant": round(model_loss / constant_loss, 3),
        "after_drift_vs_before": round(drift_loss / model_loss, 3),
    }
