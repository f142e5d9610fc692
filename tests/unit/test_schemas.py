"""The JSON Schemas in schemas/: valid schemas, valid examples, and our payloads conform."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from stream_app.contracts import outputs
from stream_app.contracts.dead_letter import DeadLetter, dead_letter_payload, original_bytes
from stream_app.contracts.decode import (
    decode_client_event,
    decode_ground_truth,
    decode_sensor_reading,
)
from stream_app.contracts.outputs import (
    DECISION_ACTIONS,
    model_decision_payload,
    model_update_payload,
    prediction_id,
    prediction_payload,
)
from stream_app.errors import InvalidEvent

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
NAMES = [
    "client_event",
    "sensor_reading",
    "ground_truth",
    "prediction",
    "accuracy_event",
    "dead_letter",
    "model_update",
    "model_decision",
    "performance_estimate",
]
DECODERS = {
    "client_event": decode_client_event,
    "sensor_reading": decode_sensor_reading,
    "ground_truth": decode_ground_truth,
}


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = orjson.loads((SCHEMAS / f"{name}.schema.json").read_bytes())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def examples(name: str) -> list[Path]:
    return sorted((SCHEMAS / "examples").glob(f"{name}.*.json"))


@pytest.mark.parametrize("name", NAMES)
def test_every_payload_has_a_schema_with_examples_that_validate(name: str) -> None:
    check = validator(name)
    assert check.schema["properties"]["schema_version"] == {"const": 1} or (
        check.schema["properties"]["schema_version"]["const"] == 1
    )
    paths = examples(name)
    assert paths, f"no example for {name}"
    for path in paths:
        check.validate(orjson.loads(path.read_bytes()))


def test_every_example_belongs_to_a_schema() -> None:
    for path in (SCHEMAS / "examples").glob("*.json"):
        assert path.name.split(".")[0] in NAMES, path


def test_fields_are_documented() -> None:
    for name in NAMES:
        schema = validator(name).schema
        assert schema["description"]
        for field, spec in schema["properties"].items():
            if field != "schema_version" and name in DECODERS:
                assert spec.get("description"), f"{name}.{field} has no description"


@pytest.mark.parametrize("name", list(DECODERS))
def test_input_examples_decode(name: str) -> None:
    for path in examples(name):
        DECODERS[name](path.read_bytes())


def test_prediction_payload_conforms() -> None:
    payload = prediction_payload(
        event_id="ord-1",
        use_case="delivery_eta",
        model_version="v1",
        role="champion",
        value=12.5,
        missing_features=["courier_speed_mean_10m"],
        feature_age_ms=1200,
        event_time=1795783200000,
        scored_at=1795783200050,
        latency_ms=3.2,
    )
    validator("prediction").validate(payload)
    assert payload["prediction_id"] == prediction_id("ord-1", "v1")
    assert prediction_id("ord-1", "v1") != prediction_id("ord-1", "v2")


def test_model_update_payload_conforms() -> None:
    payload = model_update_payload(
        use_case="delivery_eta",
        role="challenger",
        model_version="v2",
        announced_at=1795783200000,
        reason="trained",
        traffic_fraction=0.1,
    )
    validator("model_update").validate(payload)


@pytest.mark.parametrize("action", DECISION_ACTIONS)
def test_model_decision_payload_conforms(action: str) -> None:
    payload = model_decision_payload(
        decision_id="d-1",
        use_case="delivery_eta",
        action=action,
        model_version=None if action == "retrain_started" else "v2",
        champion_version="v1",
        reasons=["rolling mae 9.1 > 1.5 x validation mae 1.7"],
        decided_at=1795783200000,
        decided_by="orchestrator@host:1",
        details={"trigger": "degradation"},
    )
    validator("model_decision").validate(orjson.loads(orjson.dumps(payload)))


def test_model_decision_refuses_an_unknown_action() -> None:
    with pytest.raises(ValueError, match="unknown decision action"):
        model_decision_payload(
            decision_id="d", use_case="u", action="guess", model_version=None,
            champion_version=None, reasons=["x"], decided_at=0, decided_by="cli",
        )  # fmt: skip


@pytest.mark.parametrize("key", [b"ord-1", None])
def test_dead_letter_payload_conforms_and_keeps_the_bytes(key: bytes | None) -> None:
    original = b'{"schema_version": 1, "event_id": "\xff'
    try:
        decode_client_event(original)
    except InvalidEvent as error:
        payload: dict[str, Any] = dead_letter_payload(
            source_topic="client-events",
            partition=2,
            offset=17,
            key=key,
            value=original,
            error=error,
            agent="scoring",
            failed_at=1795783200000,
        )
    validator("dead_letter").validate(orjson.loads(orjson.dumps(payload)))
    assert payload["error_code"] == "invalid_utf8"
    assert original_bytes(payload) == (key, original)


@pytest.mark.parametrize(
    ("payload", "schema"),
    [
        (outputs.Prediction, "prediction"),
        (outputs.AccuracyEvent, "accuracy_event"),
        (outputs.ModelUpdate, "model_update"),
        (outputs.ModelDecision, "model_decision"),
        (outputs.PerformanceEstimate, "performance_estimate"),
        (DeadLetter, "dead_letter"),
    ],
)
def test_each_payload_type_has_exactly_its_schemas_fields(payload: Any, schema: str) -> None:
    """The typed payloads and the JSON Schemas consumers read name the same fields, and the
    same ones as required."""
    document = json.loads((SCHEMAS / f"{schema}.schema.json").read_text())
    fields = set(payload.__required_keys__) | set(payload.__optional_keys__)
    assert fields == set(document["properties"])
    assert set(payload.__required_keys__) == set(document["required"])


def test_published_performance_estimates_conform() -> None:
    import asyncio
    import time

    import numpy as np

    from stream_app.monitoring.estimates import Estimator
    from stream_app.monitoring.state import EstimatePublisher, Monitor
    from stream_app.settings import MonitoringSettings
    from stream_app.use_cases.spec import load_use_case
    from tests.fakes.stores import RecordingPublisher

    use_case = load_use_case("machine_failure")
    monitor = Monitor(use_case, MonitoringSettings(accuracy_window_s=60, estimate_min_labels=5))
    monitor.set_model("champion", "v1", use_case.feature_names, {}, Estimator("cbpe"))
    now = int(time.time() * 1000)
    p = np.linspace(0.05, 0.95, 50)
    monitor.scored("v1", "champion", np.zeros((50, len(use_case.feature_names))), p,
                   [1.0] * 50, now, np.full(50, now - 120_000, dtype=np.int64))  # fmt: skip
    for value in p.tolist():
        monitor.labelled("v1", "champion", value, float(value > 0.5), now, now - 120_000)
    recorder = RecordingPublisher()
    publisher = EstimatePublisher(monitor, recorder, "performance-estimates")
    assert asyncio.run(publisher.publish(now)) == 2
    payloads = [orjson.loads(r.value) for r in recorder.on("performance-estimates")]
    assert sorted(p["kind"] for p in payloads) == ["rolling", "window"]
    for payload in payloads:
        validator("performance_estimate").validate(payload)
    window = next(p for p in payloads if p["kind"] == "window")
    assert window["realised"]["accuracy"] == 1.0  # every label is its thresholded prediction
    assert window["error"]["accuracy"] == pytest.approx(1 - window["estimated"]["accuracy"])
    assert asyncio.run(publisher.publish(now)) == 1  # a settled window is published once
