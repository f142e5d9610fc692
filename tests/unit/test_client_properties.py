"""librdkafka properties passed through the settings: the merge, the refusals, the masking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from stream_app.client_properties import is_secret
from stream_app.errors import ConfigurationError
from stream_app.kafka.admin import check_client_properties
from stream_app.kafka.consumer import consumer_config
from stream_app.kafka.producer import output_producer_config
from stream_app.main import main
from stream_app.settings import KafkaSettings, load_settings

PROPERTIES = "STREAM_APP_KAFKA__CLIENT_PROPERTIES"


def test_properties_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        PROPERTIES,
        json.dumps({"client.rack": "eu-1a", "socket.timeout.ms": 5000, "enable.idempotence": True}),
    )
    config = load_settings().kafka.client_config()
    assert config["client.rack"] == "eu-1a"
    assert config["socket.timeout.ms"] == 5000
    assert config["enable.idempotence"] is True
    assert config["bootstrap.servers"] == "127.0.0.1:9092"


def test_they_win_over_a_clients_tuning_but_not_over_its_guarantees() -> None:
    kafka = KafkaSettings(
        client_properties={"compression.type": "zstd", "fetch.wait.max.ms": 100, "client.id": "x"}
    )
    producer = output_producer_config(kafka, {"client.id": "outputs-1"})
    assert producer["compression.type"] == "zstd"  # the project's lz4 gives way
    assert producer["client.id"] == "x"
    assert (producer["enable.idempotence"], producer["acks"]) == (True, "all")
    consumer = consumer_config(kafka, "group-1", 10.0)
    assert consumer["fetch.wait.max.ms"] == 100
    assert (consumer["group.id"], consumer["enable.auto.commit"]) == ("group-1", False)
    assert consumer["session.timeout.ms"] == 10_000


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("group.id", "mine", "the project sets it itself"),
        ("enable.auto.commit", True, "outputs are acknowledged"),
        ("enable.auto.offset.store", True, "outputs are acknowledged"),
        ("auto.offset.reset", "latest", "no event is skipped"),
        ("transactional.id", "t", "worker.instance_id"),
        ("group.instance.id", "w1", "fence"),
        ("enable.idempotence", False, "idempotent producers"),
        ("acks", 1, "in-sync replica"),
        ("request.required.acks", "0", "in-sync replica"),
        ("isolation.level", "read_uncommitted", "aborted"),
        ("bootstrap.servers", "h:1", "STREAM_APP_KAFKA__BOOTSTRAP_SERVERS"),
        ("security.protocol", "SSL", "STREAM_APP_KAFKA__SECURITY_PROTOCOL"),
        ("sasl.password", "pw", "STREAM_APP_KAFKA__SASL_PASSWORD"),
        ("linger.ms", 50, "kafka.output_linger_ms"),
        ("session.timeout.ms", 30000, "worker.session_timeout_s"),
        ("transaction.timeout.ms", 1, "consumer.transaction_timeout_s"),
        ("error_cb", "x", "callback"),
    ],
)
def test_properties_the_project_owns_are_refused_in_one_line(
    name: str, value: object, reason: str
) -> None:
    with pytest.raises(ConfigurationError, match=f"{name} is refused") as refused:
        KafkaSettings(client_properties={name: value})
    assert reason in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [("acks", "all"), ("acks", -1), ("enable.idempotence", "true"),
     ("isolation.level", "read_committed")],
)  # fmt: skip
def test_values_that_keep_the_guarantee_are_accepted(name: str, value: object) -> None:
    assert KafkaSettings(client_properties={name: value}).client_config()[name] == value


def test_anything_but_a_map_of_scalars_is_refused_without_showing_the_value() -> None:
    with pytest.raises(ConfigurationError, match="not list"):
        KafkaSettings(client_properties={"ssl.key.password": ["hunter2"]})
    with pytest.raises(ConfigurationError, match="expected a map"):
        KafkaSettings(client_properties=["ssl.key.password=hunter2"])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="not a property name"):
        KafkaSettings(client_properties={" client.id": "x"})


def test_two_different_ca_files_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="set one of them"):
        KafkaSettings(ssl_ca_file=Path("/a.pem"), client_properties={"ssl.ca.location": "/b.pem"})
    same = KafkaSettings(
        ssl_ca_file=Path("/a.pem"), client_properties={"ssl.ca.location": "/a.pem"}
    )
    assert same.ca_location() == Path("/a.pem")
    assert KafkaSettings(client_properties={"ssl.ca.location": "/b.pem"}).ca_location() == Path(
        "/b.pem"
    )


@pytest.mark.parametrize(
    "name",
    ["ssl.key.password", "ssl.keystore.password", "sasl.oauthbearer.client.secret",
     "ssl.key.pem", "sasl.oauthbearer.config", "https.client.password"],
)  # fmt: skip
def test_secret_looking_names(name: str) -> None:
    assert is_secret(name)


@pytest.mark.parametrize(
    "name", ["ssl.key.location", "ssl.certificate.location", "ssl.ca.pem", "client.rack"]
)
def test_names_that_hold_no_secret(name: str) -> None:
    assert not is_secret(name)


def test_secret_values_are_masked_wherever_the_settings_show(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(
        PROPERTIES,
        json.dumps({"ssl.key.password": "hunter2", "sasl.oauthbearer.client.secret": "s3cr3t",
                    "client.rack": "eu-1a"}),
    )  # fmt: skip
    settings = load_settings()
    shown = json.dumps(settings.masked()) + repr(settings) + str(settings)
    assert "hunter2" not in shown
    assert "s3cr3t" not in shown
    assert settings.masked()["kafka"]["client_properties"] == {
        "ssl.key.password": "**********",
        "sasl.oauthbearer.client.secret": "**********",
        "client.rack": "eu-1a",
    }
    assert isinstance(settings.kafka.client_properties["ssl.key.password"], SecretStr)
    assert settings.kafka.client_config()["ssl.key.password"] == "hunter2"
    assert main(["config"]) == 0
    printed = capsys.readouterr().out
    assert "hunter2" not in printed
    assert '"client.rack": "eu-1a"' in printed


def test_invalid_settings_never_print_a_given_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # pydantic's own message quotes the input, here the whole Kafka section with the password
    monkeypatch.setenv("STREAM_APP_KAFKA__SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("STREAM_APP_KAFKA__MIN_INSYNC_REPLICAS", "3")
    assert main(["config"]) == 2
    printed = capsys.readouterr().err
    assert "min_insync_replicas (3) exceeds replication_factor" in printed
    assert "hunter2" not in printed


def test_librdkafka_checks_names_values_and_files_at_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(
        ConfigurationError, match=r'No such configuration property: "ssl\.certficate'
    ):
        check_client_properties(KafkaSettings(client_properties={"ssl.certficate.location": "x"}))
    with pytest.raises(ConfigurationError, match=r"socket\.timeout\.ms"):
        check_client_properties(KafkaSettings(client_properties={"socket.timeout.ms": "soon"}))
    missing = tmp_path / "client.pem"
    monkeypatch.setenv(
        PROPERTIES,
        json.dumps({"ssl.certificate.location": str(missing), "ssl.key.location": str(missing),
                    "ssl.key.password": "hunter2"}),
    )  # fmt: skip
    monkeypatch.setenv("STREAM_APP_KAFKA__SECURITY_PROTOCOL", "SSL")
    assert main(["config"]) == 2
    error = capsys.readouterr().err
    assert "kafka.client_properties:" in error
    assert "ssl.certificate.location" in error
    assert "Traceback" not in error
    assert "hunter2" not in error


def test_a_file_that_is_not_there_or_json_that_does_not_parse_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv(PROPERTIES, '{"ssl.key.password": "hunter2", "client.rack":')
    assert main(["config"]) == 2
    error = capsys.readouterr().err
    assert "Expecting value" in error
    assert "hunter2" not in error
    assert "Traceback" not in error
    monkeypatch.setenv(PROPERTIES, json.dumps({"ssl.key.location": str(tmp_path / "k.pem")}))
    assert main(["config"]) == 2
    assert f"ssl.key.location: no such file {tmp_path / 'k.pem'}" in capsys.readouterr().err


def test_faust_presents_the_passed_through_client_certificate(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    from stream_app.runtime.app import broker_credentials, tls_context
    from stream_app.services.tls import issue_client_certificate

    client = issue_client_certificate(tmp_path / "tls", tmp_path / "out", "worker")
    # the key encrypted, as a deployment might keep it: ssl.key.password opens it
    key = serialization.load_pem_private_key(client.key.read_bytes(), password=None)
    encrypted = tmp_path / "worker-encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"hunter2"),
        )
    )
    properties = {**client.properties(), "ssl.key.location": str(encrypted)}
    kafka = KafkaSettings(
        security_protocol="SSL", client_properties={**properties, "ssl.key.password": "hunter2"}
    )
    context = tls_context(kafka)
    assert context.check_hostname
    assert len(context.get_ca_certs()) == 1  # the project's CA, from ssl.ca.location
    assert broker_credentials(kafka).context is not None  # faust.SSLCredentials
    wrong = KafkaSettings(
        security_protocol="SSL", client_properties={**properties, "ssl.key.password": "wrong"}
    )
    with pytest.raises(ConfigurationError, match="cannot be loaded"):
        tls_context(wrong)
    unchecked = KafkaSettings(
        security_protocol="SSL",
        client_properties={**client.properties(), "ssl.endpoint.identification.algorithm": "none"},
    )
    assert not tls_context(unchecked).check_hostname


def test_the_map_can_come_from_a_file_of_the_secrets_folder(tmp_path: Path) -> None:
    (tmp_path / PROPERTIES).write_text(json.dumps({"sasl.oauthbearer.client.secret": "s3cr3t"}))
    settings = load_settings({"STREAM_APP_SECRETS_DIR": str(tmp_path)})
    assert settings.kafka.client_config()["sasl.oauthbearer.client.secret"] == "s3cr3t"
    assert "s3cr3t" not in json.dumps(settings.masked())
