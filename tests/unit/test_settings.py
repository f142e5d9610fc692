from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from stream_app.errors import ConfigurationError
from stream_app.settings import KafkaSettings, Settings, known_variables, load_settings


def test_defaults_point_at_the_local_services() -> None:
    settings = load_settings({})
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.cassandra.contact_points == ["127.0.0.1"]
    assert settings.cassandra.port == 9042
    assert settings.worker.web_host == "127.0.0.1"
    assert settings.kafka.partitions == 6


def test_nested_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_APP_KAFKA__PARTITIONS", "3")
    monkeypatch.setenv("STREAM_APP_KAFKA__TOPICS__PREDICTIONS", "preds-v2")
    monkeypatch.setenv("STREAM_APP_CASSANDRA__CONTACT_POINTS", '["10.0.0.1","10.0.0.2"]')
    settings = load_settings()
    assert settings.kafka.partitions == 3
    assert settings.kafka.topics.predictions == "preds-v2"
    assert settings.cassandra.contact_points == ["10.0.0.1", "10.0.0.2"]


def test_an_unknown_variable_is_an_error_not_a_silent_default() -> None:
    with pytest.raises(ConfigurationError, match="STREAM_APP_KAFKA__PARTITONS"):
        load_settings({"STREAM_APP_KAFKA__PARTITONS": "3"})


def test_known_variables_cover_nested_sections() -> None:
    names = known_variables()
    assert "STREAM_APP_KAFKA__SASL_PASSWORD" in names
    assert "STREAM_APP_KAFKA__TOPICS__MODEL_UPDATES" in names
    assert "STREAM_APP_CASSANDRA__PASSWORD" in names


def test_secrets_are_masked_when_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_APP_KAFKA__SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("STREAM_APP_CASSANDRA__PASSWORD", "swordfish")
    settings = load_settings()
    printed = json.dumps(settings.masked()) + repr(settings) + str(settings)
    assert "hunter2" not in printed
    assert "swordfish" not in printed
    assert "**********" in printed
    assert settings.kafka.client_config()["sasl.password"] == "hunter2"


def test_secrets_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "STREAM_APP_KAFKA__SASL_PASSWORD").write_text("from-a-file")
    settings = load_settings({"STREAM_APP_SECRETS_DIR": str(tmp_path)})
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == "from-a-file"


def test_security_fields_reach_the_kafka_client_config() -> None:
    kafka = KafkaSettings(
        bootstrap_servers="broker-1:9093,broker-2:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="stream-app",
        sasl_password="pw",  # type: ignore[arg-type]
        ssl_ca_file=Path("/etc/ca.pem"),
    )
    config = kafka.client_config()
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert config["ssl.ca.location"] == "/etc/ca.pem"
    assert kafka.bootstrap_list() == [("broker-1", 9093), ("broker-2", 9093)]


@pytest.mark.parametrize("bad", ["localhost", "host:", ":9092", "a:9092,b"])
def test_bootstrap_servers_must_be_host_port(bad: str) -> None:
    with pytest.raises(ValidationError, match="host:port"):
        KafkaSettings(bootstrap_servers=bad)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.kafka.partitions = 1  # type: ignore[misc]


def test_keyspace_must_be_a_plain_identifier() -> None:
    with pytest.raises(ValidationError):
        Settings(cassandra={"keyspace": "drop table x;"})  # type: ignore[arg-type]
