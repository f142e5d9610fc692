"""Payloads stream-app publishes: predictions, accuracy events, model updates and decisions.

Each is a ``TypedDict`` with exactly the fields of its JSON Schema in ``schemas/`` (a test holds
the two equal, field by field), built by one function from keyword arguments.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, TypedDict

SCHEMA_VERSION = 1


class Prediction(TypedDict):
    """A value of the predictions topic (schemas/prediction.schema.json)."""

    schema_version: int
    prediction_id: str
    event_id: str
    use_case: str
    model_version: str
    role: str
    value: float
    missing_features: list[str]
    feature_age_ms: int
    event_time: int
    scored_at: int
    latency_ms: float


class _ModelUpdateRequired(TypedDict):
    schema_version: int
    use_case: str
    role: str
    model_version: str | None
    announced_at: int


class ModelUpdate(_ModelUpdateRequired, total=False):
    """A value of the compacted model-updates topic (schemas/model_update.schema.json)."""

    reason: str  # optional in the contract; always written by stream-app
    traffic_fraction: float


class AccuracyEvent(TypedDict):
    """A value of the accuracy-events topic (schemas/accuracy_event.schema.json)."""

    schema_version: int
    prediction_id: str
    event_id: str
    use_case: str
    model_version: str
    role: str
    predicted: float
    actual: float
    error: float
    abs_error: float
    correct: bool
    label_delay_ms: int
    evaluated_at: int


class ModelDecision(TypedDict):
    """A value of the model-decisions topic (schemas/model_decision.schema.json)."""

    schema_version: int
    decision_id: str
    use_case: str
    action: str
    model_version: str | None
    champion_version: str | None
    reasons: list[str]
    details: dict[str, Any]
    decided_at: int
    decided_by: str


def prediction_id(event_id: str, model_version: str) -> str:
    """The idempotency key of a prediction: the same event and model always give the same id."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(event_id.encode())
    digest.update(b"\x00")
    digest.update(model_version.encode())
    return digest.hexdigest()


def prediction_payload(
    *,
    event_id: str,
    use_case: str,
    model_version: str,
    role: str,
    value: float,
    missing_features: list[str],
    feature_age_ms: int,
    event_time: int,
    scored_at: int,
    latency_ms: float,
) -> Prediction:
    """A prediction (see schemas/prediction.schema.json)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "prediction_id": prediction_id(event_id, model_version),
        "event_id": event_id,
        "use_case": use_case,
        "model_version": model_version,
        "role": role,
        "value": value,
        "missing_features": missing_features,
        "feature_age_ms": feature_age_ms,
        "event_time": event_time,
        "scored_at": scored_at,
        "latency_ms": latency_ms,
    }


def model_update_payload(
    *,
    use_case: str,
    role: str,
    model_version: str | None,
    announced_at: int,
    reason: str,
    traffic_fraction: float | None = None,
) -> ModelUpdate:
    """A role announcement for the compacted model-updates topic."""
    payload: ModelUpdate = {
        "schema_version": SCHEMA_VERSION,
        "use_case": use_case,
        "role": role,
        "model_version": model_version,
        "announced_at": announced_at,
        "reason": reason,
    }
    if traffic_fraction is not None:
        payload["traffic_fraction"] = traffic_fraction
    return payload


def model_update_key(use_case: str, role: str) -> bytes:
    """The compaction key: the latest announcement per use case and role survives."""
    return f"{use_case}:{role}".encode()


def accuracy_payload(
    *,
    prediction_id: str,
    event_id: str,
    use_case: str,
    model_version: str,
    role: str,
    predicted: float,
    actual: float,
    correct: bool,
    label_delay_ms: int,
    evaluated_at: int,
) -> AccuracyEvent:
    """An accuracy event (see schemas/accuracy_event.schema.json)."""
    error = predicted - actual
    return {
        "schema_version": SCHEMA_VERSION,
        "prediction_id": prediction_id,
        "event_id": event_id,
        "use_case": use_case,
        "model_version": model_version,
        "role": role,
        "predicted": predicted,
        "actual": actual,
        "error": error,
        "abs_error": abs(error),
        "correct": correct,
        "label_delay_ms": label_delay_ms,
        "evaluated_at": evaluated_at,
    }


class PerformanceEstimate(TypedDict):
    """A value of the performance-estimates topic (schemas/performance_estimate.schema.json)."""

    schema_version: int
    use_case: str
    model_version: str
    role: str
    method: str
    kind: str
    window_start: int
    window_end: int
    predictions: int
    labels: int
    estimated: dict[str, float | None]
    realised: dict[str, float | None]
    error: dict[str, float]
    calibrated: bool | None
    published_at: int


def performance_estimate_payload(
    *,
    use_case: str,
    model_version: str,
    role: str,
    method: str,
    kind: str,
    window_start: int,
    window_end: int,
    predictions: int,
    labels: int,
    estimated: dict[str, float | None],
    realised: dict[str, float | None],
    error: dict[str, float],
    calibrated: bool | None,
    published_at: int,
) -> PerformanceEstimate:
    """A performance estimate (see its schema); NaN figures become null."""
    return {
        "schema_version": SCHEMA_VERSION,
        "use_case": use_case,
        "model_version": model_version,
        "role": role,
        "method": method,
        "kind": kind,
        "window_start": window_start,
        "window_end": window_end,
        "predictions": predictions,
        "labels": labels,
        "estimated": {k: _number(v) for k, v in estimated.items()},
        "realised": {k: _number(v) for k, v in realised.items()},
        "error": {k: v for k, v in error.items() if _number(v) is not None},
        "calibrated": calibrated,
        "published_at": published_at,
    }


def performance_estimate_key(use_case: str, model_version: str) -> bytes:
    return f"{use_case}:{model_version}".encode()


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


DECISION_ACTIONS = (
    "retrain_started",  # a trigger fired; a training process was started
    "retrain_failed",  # the training or evaluation process failed (reasons say how)
    "promoted",  # a version became champion (the policy approved, or a person decided)
    "kept_challenger",  # the policy approved, but auto-promotion is off
    "rejected",  # the policy refused the challenger; the champion stays
    "rolled_back",  # the previous champion was restored
    "role_assigned",  # a person gave a version the challenger or shadow role, or cleared one
)


def model_decision_payload(
    *,
    decision_id: str,
    use_case: str,
    action: str,
    model_version: str | None,
    champion_version: str | None,
    reasons: list[str],
    decided_at: int,
    decided_by: str,
    details: dict[str, Any] | None = None,
) -> ModelDecision:
    """A lifecycle decision for the model-decisions topic (see its schema)."""
    if action not in DECISION_ACTIONS:
        raise ValueError(f"unknown decision action {action!r}")
    return {
        "schema_version": SCHEMA_VERSION,
        "decision_id": decision_id,
        "use_case": use_case,
        "action": action,
        "model_version": model_version,
        "champion_version": champion_version,
        "reasons": reasons,
        "details": details or {},
        "decided_at": decided_at,
        "decided_by": decided_by,
    }
