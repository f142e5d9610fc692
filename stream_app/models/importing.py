"""`stream-app models import`: a LightGBM model trained elsewhere becomes a registered version.

The model file is LightGBM's text format (``Booster.save_model``) or its JSON dump
(``Booster.dump_model``, converted losslessly). Its task must match the use case's, and its
feature names the spec's column order, exactly: a mismatch is refused naming the features
that differ (a model with unnamed columns is taken in the spec's order only when asked to).
Validation metrics come from the stored labelled rows of a time range, where there are any;
from then on the version is like any other (promote, shadow, rollback, replay).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from stream_app.errors import ConfigurationError
from stream_app.models.lgb import lgb
from stream_app.models.lightgbm_json import text_from_json_dump
from stream_app.models.metrics import task_metrics
from stream_app.models.registry import ModelVersion
from stream_app.models.trainer import describe_version
from stream_app.models.training import HeldOut, TrainingSet, fit_held_out, histograms, hours_of
from stream_app.timeparse import format_ms
from stream_app.use_cases.spec import UseCase

BINARY_OBJECTIVES = ("binary", "cross_entropy", "xentropy")
REGRESSION_OBJECTIVES = ("regression", "regression_l2", "l2", "mean_squared_error", "mse",
                         "regression_l1", "l1", "mean_absolute_error", "mae", "huber", "fair",
                         "poisson", "quantile", "mape", "gamma", "tweedie")  # fmt: skip
UNNAMED = "Column_"  # LightGBM's names for columns trained without names

if TYPE_CHECKING:
    from lightgbm import Booster


@dataclass(frozen=True)
class ModelFile:
    """A model read from a file: its text form, objective and feature names."""

    path: Path
    text: str
    objective: str
    feature_names: list[str]
    sha256: str


def read_model_file(path: Path) -> ModelFile:
    """A LightGBM model from a text or JSON file (refused in one line if it is neither)."""
    if not path.is_file():
        raise ConfigurationError(f"{path} does not exist")
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if raw.lstrip()[:1] == b"{":
        try:
            dump = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ConfigurationError(f"{path}: not valid JSON: {exc}") from None
        text = text_from_json_dump(dump)
    else:
        text = raw.decode("utf-8", "replace")
    try:
        booster = lgb.Booster(model_str=text)
    except lgb.basic.LightGBMError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise ConfigurationError(f"{path}: not a LightGBM model ({first})") from None
    objective = next((line.split("=", 1)[1] for line in text.splitlines()
                      if line.startswith("objective=")), "")  # fmt: skip
    return ModelFile(path, text, objective, list(booster.feature_name()), digest)


def check_task(model: ModelFile, use_case: UseCase) -> None:
    """The model's objective must fit the use case's task."""
    name = model.objective.split()[0] if model.objective else "unknown"
    allowed = BINARY_OBJECTIVES if use_case.task == "binary_classification" else (
        REGRESSION_OBJECTIVES
    )  # fmt: skip
    if name not in allowed:
        raise ConfigurationError(
            f"{model.path}: the model's objective is {name!r}, which does not fit the "
            f"{use_case.task} use case {use_case.name} (expected one of {', '.join(allowed)})"
        )


def feature_mismatch(model_names: list[str], spec_names: list[str]) -> str | None:
    """Why the model's features are not the spec's, in the spec's column order; None if they
    are exactly the same."""
    if model_names == spec_names:
        return None
    problems = []
    missing = [n for n in spec_names if n not in model_names]
    extra = [n for n in model_names if n not in spec_names]
    if missing:
        problems.append(f"the model lacks {missing}")
    if extra:
        problems.append(f"the spec has no {extra}")
    if not missing and not extra:
        moved = [f"{i}: model {m!r}, spec {s!r}"
                 for i, (m, s) in enumerate(zip(model_names, spec_names, strict=True))
                 if m != s]  # fmt: skip
        problems.append(f"the order differs at column {'; '.join(moved[:5])}")
    if len(model_names) != len(spec_names):
        problems.append(f"{len(model_names)} features in the model, {len(spec_names)} in the spec")
    return "; ".join(problems)


def aligned_text(model: ModelFile, use_case: UseCase, assume_spec_order: bool) -> str:
    """The model's text, its features checked against the spec (or named after it)."""
    spec_names = use_case.feature_names
    unnamed = all(n.startswith(UNNAMED) for n in model.feature_names)
    if unnamed and assume_spec_order:
        if len(model.feature_names) != len(spec_names):
            raise ConfigurationError(
                f"{model.path}: {len(model.feature_names)} unnamed features in the model, "
                f"{len(spec_names)} in the spec ({', '.join(spec_names)})"
            )
        return "\n".join(
            f"feature_names={' '.join(spec_names)}" if line.startswith("feature_names=") else line
            for line in model.text.splitlines()
        ) + "\n"  # fmt: skip
    problem = feature_mismatch(model.feature_names, spec_names)
    if problem is None:
        return model.text
    hint = (" The model's columns are unnamed: pass --assume-spec-order if they follow the "
            "spec's order.") if unnamed else ""  # fmt: skip
    raise ConfigurationError(
        f"{model.path} does not fit use case {use_case.name}: {problem}. The spec's columns, "
        f"in order: {', '.join(spec_names)}.{hint}"
    )


def validation(
    booster: Booster,
    data: TrainingSet,
    use_case: UseCase,
    since: int,
    until: int,
    seed: int = 42,
) -> tuple[dict[str, Any], dict[str, Any], HeldOut | None]:
    """Metrics and drift reference on stored labelled rows (none: said so), and the
    calibration map and estimation fitted on them (``models.training.fit_held_out``: they
    should be rows the model was not trained on)."""
    where = f"{format_ms(since)} .. {format_ms(until)}"
    rows = len(data.labels)
    if not rows:
        note = (f"no stored labelled rows in {where}: no validation metrics (import labelled "
                "history, or pass --since/--until where there is some)")  # fmt: skip
        return {"validation": {}, "validation_rows": 0, "validation_note": note}, {}, None
    raw = np.asarray(booster.predict(data.features, num_threads=1), dtype=np.float64)
    held_out = fit_held_out(use_case, data.features, raw, data.labels, seed)
    predicted = held_out.values
    label = use_case.label
    constant = np.full(rows, float(data.labels.mean()))
    metrics = {
        "validation": task_metrics(use_case.task, predicted, data.labels, label.tolerance,
                                   label.threshold),
        "constant_baseline": task_metrics(use_case.task, constant, data.labels,
                                          label.tolerance, label.threshold),
        "validation_rows": rows,
        "validation_note": f"{rows} stored labelled rows in {where}",
    }  # fmt: skip
    if held_out.calibration_report:
        metrics["calibration_map"] = held_out.calibration_report
    hours = hours_of(data.event_times)
    distributions = {
        "features": histograms(data.features, data.feature_names, hours),
        "prediction": histograms(predicted[:, None], ["prediction"], hours).get("prediction", {}),
    }
    return metrics, distributions, held_out


def describe_import(
    model: ModelFile,
    use_case: UseCase,
    metrics: dict[str, Any],
    distributions: dict[str, Any],
    parent: str | None,
    held_out: HeldOut | None = None,
) -> ModelVersion:
    """The registry's record of an imported model. Its training split is its import: rows
    scored from then on are new to it, whatever it was trained on."""
    now = int(time.time() * 1000)
    return describe_version(
        use_case,
        {"objective": model.objective, "imported_from": model.path.name, "sha256": model.sha256},
        parent_version=parent,
        training_window={
            "source": "imported", "file": str(model.path), "sha256": model.sha256,
            "imported_at": now, "split_time": now,
        },
        metrics=metrics,
        distributions=distributions,
        calibration=held_out.calibration if held_out else {},
        estimation=held_out.estimation if held_out else {},
    )  # fmt: skip
