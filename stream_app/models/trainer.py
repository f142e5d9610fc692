"""`stream-app train`: a training set from the store, a LightGBM model, a registered version.

The first model of a use case becomes its champion; later ones become the challenger, for
`stream-app evaluate` and `stream-app promote` to decide on.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from cassandra.cluster import Session

from stream_app.errors import ModelNotFound
from stream_app.models.announce import announce
from stream_app.models.registry import ModelRegistry, ModelVersion, new_version
from stream_app.models.training import fit, lightgbm_params, load_training_set, spec_hash
from stream_app.settings import Settings
from stream_app.storage.ground_truth import GroundTruthStore
from stream_app.storage.predictions import PredictionStore
from stream_app.timeparse import format_ms
from stream_app.use_cases.spec import UseCase


@dataclass
class TrainOutcome:
    model: ModelVersion
    role: str


def describe_version(use_case: UseCase, params: dict[str, Any], **fields: Any) -> ModelVersion:
    """A new version of ``use_case``'s model, named and stamped now; ``fields`` are the rest
    of ``ModelVersion`` (parent, training window, metrics, distributions)."""
    now = int(time.time() * 1000)
    return ModelVersion(
        use_case=use_case.name,
        version=new_version(use_case.name, now),
        created_at=now,
        feature_names=use_case.feature_names,
        task=use_case.task,
        spec_hash=spec_hash(use_case),
        params=params,
        **fields,
    )


def train_and_register(
    session: Session,
    settings: Settings,
    use_case: UseCase,
    since_ms: int,
    until_ms: int,
    progress: TextIO = sys.stderr,
    trigger: str = "manual",
    regime_since: int | None = None,
) -> TrainOutcome:
    """Train on ``[since_ms, until_ms)``, register the version and give it a role.

    ``trigger`` records why (``manual``, or the orchestrator's degradation, drift or
    schedule); the orchestrator's cooldown counts only its own retrainings. ``regime_since``
    records where the current regime began (a change point) for later retrainings."""
    keyspace = settings.cassandra.keyspace
    registry = ModelRegistry(session, keyspace, use_case.name)
    predictions = PredictionStore(session, keyspace, use_case.name)
    labels = GroundTruthStore(session, keyspace, use_case.name)
    progress.write(
        f"reading served features and labels {format_ms(since_ms)} .. {format_ms(until_ms)}\n"
    )
    data = load_training_set(predictions, labels, use_case.feature_names, since_ms, until_ms)
    progress.write(f"{len(data.labels):,} labelled rows of {data.stored_rows:,} stored\n")
    result = fit(data, use_case, settings.training, progress)
    try:
        parent: str | None = registry.champion().version
    except ModelNotFound:
        parent = None
    model = describe_version(
        use_case,
        lightgbm_params(use_case, settings.training),
        parent_version=parent,
        training_window={
            "since": since_ms,
            "until": until_ms,
            "stored_rows": data.stored_rows,
            "labelled_rows": len(data.labels),
            "train_rows": result.train_rows,
            "validation_rows": result.validation_rows,
            "split_time": result.split_time,
            "sources": data.sources,
            "trigger": trigger,
            "regime_since": regime_since,
        },
        metrics=result.metrics,
        distributions=result.distributions,
        calibration=result.calibration,
        estimation=result.estimation,
    )
    registry.register(model, result.booster.model_to_string(), result.loss_models)
    role = "challenger" if parent else "champion"
    reason = "first model of the use case" if parent is None else f"trained to replace {parent}"
    if trigger != "manual":
        reason += f" (orchestrator: {trigger})"
    registry.assign(role, model.version, reason)
    announce(settings.kafka, use_case.name, role, model.version, reason)
    return TrainOutcome(registry.get(model.version), role)
