"""Producers that write through a schema registry: confluent-kafka's own Avro and JSON Schema
serializers publish client events in the Confluent wire format, the worker reads them by
schema id from the real registry (``stream-app services up registry``), and writes its
predictions framed with their subject's schema for a registry-aware consumer.
"""

from __future__ import annotations

import io
import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import (
    Schema,
    SchemaRegistryClient,
    record_subject_name_strategy,
)
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from stream_app.bench.decode import sample_events
from stream_app.contracts import codes
from stream_app.contracts.wire import frame, framed_id
from stream_app.settings import Settings
from stream_app.use_cases.spec import load_use_case
from tests.conftest import Deployment, consume_all
from tests.e2e.conftest import Run, wait_assigned
from tests.e2e.test_scoring_path import start_worker, stop_worker

pytestmark = pytest.mark.registry  # make test-services, which starts the local registry

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
EVENTS = 40  # half through each serializer


@pytest.fixture
def registry_url() -> str:
    """The local registry `make test-services` starts (or the one the environment names)."""
    url = os.environ.get("STREAM_APP_SCHEMA_REGISTRY__URL") or Settings().schema_registry.url
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=10) as answer:
            assert answer.status == 200
    except OSError as exc:
        pytest.fail(f"no schema registry at {url} ({exc}): `stream-app services up registry`")
    return url


def label_bytes() -> bytes:
    """A ground-truth label in Avro's binary encoding (a record of another topic)."""
    schema = fastavro.parse_schema(json.loads((SCHEMAS / "avro" / "ground_truth.avsc").read_text()))
    out = io.BytesIO()
    label = {"schema_version": 1, "event_id": "e", "label": 1.0, "label_time": 1_795_783_200_000}
    fastavro.schemaless_writer(out, schema, label)
    return out.getvalue()


@pytest.fixture
def env(trained: Deployment, registry_url: str, stream_app: Run) -> Iterator[dict[str, str]]:
    env = {
        **trained.env,
        "STREAM_APP_SCHEMA_REGISTRY__URL": registry_url,
        "STREAM_APP_SCHEMA_REGISTRY__CLIENT_EVENTS": "wire",
        "STREAM_APP_SCHEMA_REGISTRY__INPUT_SCHEMA_TYPE": "AVRO",
        "STREAM_APP_SCHEMA_REGISTRY__OUTPUTS": "wire",
    }
    init = stream_app("init", env=env)
    assert init.returncode == 0, init.stderr
    topics = trained.settings.kafka.topics
    assert f"schema of {topics.client_events}: id " in init.stdout
    again = stream_app("init", env=env)  # idempotent: the same ids
    assert again.returncode == 0, again.stderr
    assert [line for line in again.stdout.splitlines() if line.startswith("schema of")] == [
        line for line in init.stdout.splitlines() if line.startswith("schema of")
    ]
    yield env
    client = SchemaRegistryClient({"url": registry_url})
    for subject in client.get_subjects():  # this test's subjects carry its tag
        if trained.tag in subject or subject == "Client event":
            client.delete_subject(subject, permanent=False)


def test_registry_serializers_get_predictions_back_and_bad_frames_their_codes(
    trained: Deployment, env: dict[str, str], registry_url: str, tmp_path: Path
) -> None:
    settings = trained.settings
    topics = settings.kafka.topics
    client = SchemaRegistryClient({"url": registry_url})
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        wait_assigned(settings.worker.web_port, {topics.client_events})
        events = [orjson.loads(v) for v in sample_events(load_use_case("delivery_eta"), EVENTS)]
        for i, event in enumerate(events):
            event["event_id"] = f"sr-{i}"
        to = SerializationContext(topics.client_events, MessageField.VALUE)
        # Avro: the schema `init` registered under the topic's subject
        avro = AvroSerializer(
            client,
            (SCHEMAS / "avro" / "client_event.avsc").read_text(),
            conf={"auto.register.schemas": False, "use.latest.version": True},
        )
        # JSON Schema: the producer registers its own, under its record's subject
        json_schema = JSONSerializer(
            (SCHEMAS / "client_event.schema.json").read_text(),
            client,
            conf={"subject.name.strategy": record_subject_name_strategy},
        )
        # a schema of another record (a label), registered beside this test's subjects
        label_id = client.register_schema(
            f"{trained.tag}-labels-value",
            Schema((SCHEMAS / "avro" / "ground_truth.avsc").read_text(), "AVRO"),
        )
        producer = Producer(settings.kafka.client_config())
        for i, event in enumerate(events):
            serializer = avro if i % 2 else json_schema
            producer.produce(topics.client_events, key=event["event_id"].encode(),
                             value=serializer(event, to))  # fmt: skip
        wrong = {
            codes.UNKNOWN_SCHEMA_ID: frame(2**31 - 7, orjson.dumps(events[0])),
            codes.BAD_MAGIC_BYTE: orjson.dumps({**events[0], "event_id": "plain"}),
            codes.SCHEMA_MISMATCH: frame(label_id, label_bytes()),
        }
        for value in wrong.values():
            producer.produce(topics.client_events, key=b"wrong", value=value)
        assert producer.flush(30) == 0

        predictions = consume_all(settings, topics.predictions, EVENTS, timeout_s=120)
        dead = consume_all(settings, topics.dead_letter, len(wrong), timeout_s=60)
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        if worker.poll() is None:
            stop_worker(worker)

    # a registry-aware consumer reads the predictions with the registry's schema
    latest = client.get_latest_version(f"{topics.predictions}-value").schema_id
    assert {framed_id(m.value()) for m in predictions} == {latest}
    reader = JSONDeserializer(None, schema_registry_client=client)
    into = SerializationContext(topics.predictions, MessageField.VALUE)
    payloads: list[Any] = [reader(m.value(), into) for m in predictions]
    assert sorted(p["event_id"] for p in payloads) == sorted(e["event_id"] for e in events)
    refused = {orjson.loads(m.value())["error_code"]: orjson.loads(m.value()) for m in dead}
    assert set(refused) == set(wrong)
    assert str(2**31 - 7) in refused[codes.UNKNOWN_SCHEMA_ID]["error_message"]
    # every subject `init` registered holds the project's schema
    subjects = set(client.get_subjects())
    assert {f"{t}-value" for t in (topics.client_events, topics.predictions)} <= subjects
    registered = client.get_latest_version(f"{topics.client_events}-value").schema
    assert registered.schema_type == "AVRO"
    assert json.loads(registered.schema_str)["name"] == "ClientEvent"
