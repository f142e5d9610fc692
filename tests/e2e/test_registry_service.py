"""`stream-app services up registry`: the real schema registry, built and run in a home folder
and on a port of this test's own, spoken to by confluent-kafka's own client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from tests.conftest import free_port
from tests.e2e.conftest import Run, run_cli
from tests.e2e.test_services_command import project_jvms

AVRO = '{"type":"record","name":"Order","fields":[{"name":"id","type":"string"}]}'
AVRO_INCOMPATIBLE = '{"type":"record","name":"Order","fields":[{"name":"id","type":"int"}]}'
JSON_SCHEMA = '{"type":"object","properties":{"eta_s":{"type":"number"}},"required":["eta_s"]}'


@pytest.fixture
def own_registry(tmp_path: Path) -> Iterator[dict[str, str]]:
    home = tmp_path / "home"
    env = {
        "STREAM_APP_SERVICES__HOME": str(home),
        "STREAM_APP_SCHEMA_REGISTRY__URL": f"http://127.0.0.1:{free_port()}/apis/ccompat/v6",
        "STREAM_APP_SERVICES__REGISTRY_HEAP_MB": "192",
    }
    yield env
    run_cli("services", "down", "registry", env=env)
    assert project_jvms(home) == []


@pytest.mark.own_services
def test_registry_up_serves_confluents_api_and_keeps_ids(
    stream_app: Run, own_registry: dict[str, str]
) -> None:
    home = Path(own_registry["STREAM_APP_SERVICES__HOME"])
    up = stream_app("services", "up", "registry", env=own_registry)
    assert up.returncode == 0, up.stderr + up.stdout
    assert "registry: app built into" in up.stdout
    assert "registry: ready in" in up.stdout
    assert len(project_jvms(home)) == 1  # the registry alone: no Kafka, no Cassandra

    client = SchemaRegistryClient({"url": own_registry["STREAM_APP_SCHEMA_REGISTRY__URL"]})
    avro_id = client.register_schema("orders-value", Schema(AVRO, "AVRO"))
    json_id = client.register_schema("etas-value", Schema(JSON_SCHEMA, "JSON"))
    assert avro_id != json_id
    assert client.get_schema(json_id).schema_type == "JSON"
    assert client.lookup_schema("orders-value", Schema(AVRO, "AVRO")).schema_id == avro_id
    client.set_compatibility("orders-value", "BACKWARD")
    assert client.get_compatibility("orders-value") == "BACKWARD"
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema("orders-value", Schema(AVRO_INCOMPATIBLE, "AVRO"))
    assert refused.value.http_status_code == 409

    status = stream_app("services", "status", "registry", env=own_registry)
    assert status.returncode == 0, status.stdout
    assert "ready True" in status.stdout

    down = stream_app("services", "down", env=own_registry)  # a running registry included
    assert "registry: stopped" in down.stdout, down.stdout + down.stderr
    assert project_jvms(home) == []

    again = stream_app("services", "up", "registry", env=own_registry)
    assert again.returncode == 0, again.stderr + again.stdout
    assert "registry: app cached in" in again.stdout  # nothing built the second time
    # The schemas, their ids and the subject's level survive the restart (H2 file).
    client = SchemaRegistryClient({"url": own_registry["STREAM_APP_SCHEMA_REGISTRY__URL"]})
    assert client.get_schema(avro_id).schema_str == AVRO
    assert client.get_schema(json_id).schema_str == JSON_SCHEMA
    assert client.get_compatibility("orders-value") == "BACKWARD"
    assert sorted(client.get_subjects()) == ["etas-value", "orders-value"]
