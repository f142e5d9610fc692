"""What the system will do with a use-case spec (`stream-app spec check`), in plain words.

A pure function of the spec and the settings: the topics and consumer groups it gets, the
features by source (with windows and how they are fed), the label join and delay, the
missing-feature policy, the metrics, how a first model can be made, and an example of each
input message and of the history file's header.
"""

from __future__ import annotations

from typing import Any

from stream_app.settings import Settings
from stream_app.use_cases.deployment import group_id, topic_names
from stream_app.use_cases.spec import AggregateFeature, BatchFeature, EventFeature, UseCase

EXAMPLE_TIME_MS = 1_795_783_200_000  # 2026-11-27T08:00:00Z


def plan(use_case: UseCase, settings: Settings) -> dict[str, Any]:
    """The spec as the system reads it, as JSON-able data."""
    topics = topic_names(settings, use_case)
    event = use_case.features_of(EventFeature)
    aggregate = use_case.features_of(AggregateFeature)
    batch = use_case.features_of(BatchFeature)
    label = use_case.label
    return {
        "use_case": use_case.name,
        "task": use_case.task,
        "metrics": use_case.metrics,
        "topics": topics.model_dump(),
        "consumer_groups": {
            agent: group_id(settings, use_case, agent)
            for agent in ("scoring", "features", "accuracy")
        },
        "entities": {"keys": use_case.entities.keys, "split_key": use_case.entities.split_key},
        "features": {
            "column_order": use_case.feature_names,
            "event": {name: f.field or name for name, f in event.items()},
            "aggregate": {
                name: {
                    "entity": f.entity,
                    "reading": f.reading,
                    "function": f.function,
                    "window": f.window.kind,
                    "size": f.window.size,
                    "step": f.window.step or f.window.size,
                    "allowed_lateness": f.allowed_lateness,
                }
                for name, f in aggregate.items()
            },
            "batch": {name: f.entity for name, f in batch.items()},
            "defaults": {name: f.default for name, f in use_case.features.items()},
        },
        "readings": dict(use_case.readings),
        "label": {
            "name": label.name,
            "join": label.join,
            "max_delay": label.max_delay,
            "tolerance": label.tolerance,
            "threshold": label.threshold if use_case.task == "binary_classification" else None,
        },
        "missing_features": use_case.missing_features.model_dump(),
        "serving": use_case.serving.model_dump(),
        "first_model": (
            "simulated history: `stream-app bootstrap`"
            if use_case.simulation is not None
            else "import labelled history (`stream-app history import`) and `stream-app "
            "train`, or a model (`stream-app models import`)"
        ),
        "examples": examples(use_case),
    }


def _reading_entities(use_case: UseCase) -> list[str]:
    keys = {f.entity for f in use_case.features_of(AggregateFeature).values()}
    return [k for k in use_case.entities.keys if k in keys]


def examples(use_case: UseCase) -> dict[str, Any]:
    """One message of each input topic, and the columns of a history file."""
    event_fields = {f.field or name: f.default
                    for name, f in use_case.features_of(EventFeature).items()}  # fmt: skip
    entities = {key: f"{key.removesuffix('_id')}-1" for key in use_case.entities.keys}
    found: dict[str, Any] = {
        "client_event": {
            "schema_version": 1,
            "event_id": "e-1",
            "event_time": EXAMPLE_TIME_MS,
            "entities": entities,
            "fields": event_fields,
        },
        "ground_truth": {
            "schema_version": 1,
            "event_id": "e-1",
            "label": 1 if use_case.task == "binary_classification" else 0.0,
            "label_time": EXAMPLE_TIME_MS + 60_000,
        },
        "history_columns": ["event_id", "event_time", *use_case.entities.keys,
                            *event_fields, use_case.label.name, "label_time (optional)"],
    }  # fmt: skip
    reading_keys = _reading_entities(use_case)
    if use_case.readings:
        found["sensor_reading"] = {
            "schema_version": 1,
            "sensor_id": "sensor-1",
            "event_time": EXAMPLE_TIME_MS - 30_000,
            "entities": {key: entities[key] for key in reading_keys},
            "values": {name: 1.0 for name in use_case.readings},
        }
        found["readings_columns"] = ["event_time", *reading_keys, *use_case.readings,
                                     "sensor_id (optional)"]  # fmt: skip
    batch_by_entity: dict[str, list[str]] = {}
    for name, feature in use_case.features_of(BatchFeature).items():
        batch_by_entity.setdefault(feature.entity, []).append(name)
    if batch_by_entity:
        found["batch_feature_columns"] = {k: [k, *v] for k, v in batch_by_entity.items()}
    return found


def render(described: dict[str, Any]) -> str:
    """``plan``'s result as text for a person."""
    import json

    lines = [f"use case {described['use_case']}: {described['task']}, metrics "
             f"{', '.join(described['metrics'])}"]  # fmt: skip
    label = described["label"]
    extra = (f", correct within {label['tolerance']}" if label["tolerance"] is not None
             else f", class 1 at probability >= {label['threshold']}")  # fmt: skip
    lines.append(f"label {label['name']}: joined by {label['join']}, waited for up to "
                 f"{label['max_delay']}{extra}")  # fmt: skip
    entities = described["entities"]
    lines.append(f"entities {', '.join(entities['keys'])} (A/B split by {entities['split_key']})")
    features = described["features"]
    lines.append(f"features, in model column order ({len(features['column_order'])}):")
    defaults = features["defaults"]
    for name in features["column_order"]:
        if name in features["event"]:
            source = f"event field {features['event'][name]!r}"
        elif name in features["aggregate"]:
            a = features["aggregate"][name]
            source = (f"{a['function']} of reading {a['reading']} per {a['entity']}, "
                      f"{a['window']} window {a['size']} every {a['step']} (late by up to "
                      f"{a['allowed_lateness']} accepted), fed by the feature agent")  # fmt: skip
        else:
            source = (f"batch feature of {features['batch'][name]}, loaded by "
                      "`stream-app features load`")  # fmt: skip
        lines.append(f"  {name:<28} {source}; default {defaults[name]:g}")
    missing = described["missing_features"]
    lines.append(f"missing or older than {missing['max_age']}: {missing['policy']} "
                 f"(features served at: {described['serving']['features_at']})")  # fmt: skip
    lines.append("topics:")
    for role, topic in described["topics"].items():
        lines.append(f"  {role:<20} {topic}")
    groups = described["consumer_groups"]
    lines.append("consumer groups: " + ", ".join(f"{a} {g}" for a, g in groups.items()))
    lines.append(f"first model: {described['first_model']}")
    examples = described["examples"]
    lines.append(f"a client event: {json.dumps(examples['client_event'])}")
    if "sensor_reading" in examples:
        lines.append(f"a sensor reading: {json.dumps(examples['sensor_reading'])}")
    lines.append(f"a ground-truth label: {json.dumps(examples['ground_truth'])}")
    lines.append(f"history file columns: {', '.join(examples['history_columns'])}")
    if "readings_columns" in examples:
        lines.append(f"readings file columns: {', '.join(examples['readings_columns'])}")
    for key, columns in examples.get("batch_feature_columns", {}).items():
        lines.append(f"batch feature file for {key}: {', '.join(columns)}")
    return "\n".join(lines)
