"""The secured local services' pure parts: certificates, secrets files, configurations."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import SecretStr

from stream_app.errors import ConfigurationError
from stream_app.services.admin_secret import admin_password
from stream_app.services.cassandra_server import _yaml, wants_authentication
from stream_app.services.kafka_security import BrokerSecurity, wants_security
from stream_app.services.kafka_server import _properties
from stream_app.services.tls import (
    TlsFiles,
    ensure_certificates,
    issue_client_certificate,
    local_server_files,
    server_certificate_usable,
)
from stream_app.settings import CassandraSettings, KafkaSettings, Settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_server_certificate_chains_to_the_ca_and_names_the_local_addresses(
    tmp_path: Path,
) -> None:
    files = ensure_certificates(tmp_path / "tls")
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(files.server.read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # the key comes first, unencrypted PKCS#8, as Kafka's PEM keystore and Cassandra read it
    assert files.server.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert files.server.read_text().count("BEGIN CERTIFICATE") == 2  # server, then CA


def test_private_files_are_owner_only(tmp_path: Path) -> None:
    files = ensure_certificates(tmp_path / "tls")
    assert mode(files.ca_key) == 0o600
    assert mode(files.server) == 0o600
    assert mode(tmp_path / "tls") == 0o700
    assert mode(files.ca_cert) == 0o644  # public: clients under other users must read it


def test_certificates_are_kept_across_calls(tmp_path: Path) -> None:
    first = ensure_certificates(tmp_path / "tls")
    ca, server = first.ca_cert.read_bytes(), first.server.read_bytes()
    again = ensure_certificates(tmp_path / "tls")
    assert again.ca_cert.read_bytes() == ca
    assert again.server.read_bytes() == server


def test_a_server_certificate_near_its_end_or_from_another_ca_is_made_again(
    tmp_path: Path,
) -> None:
    files = ensure_certificates(tmp_path / "tls")
    assert server_certificate_usable(files)
    in_a_year = dt.datetime.now(dt.UTC) + dt.timedelta(days=380)
    assert not server_certificate_usable(files, now=in_a_year)

    other = ensure_certificates(tmp_path / "other")
    files.server.write_bytes(other.server.read_bytes())
    assert not server_certificate_usable(files)
    ensure_certificates(tmp_path / "tls")
    assert server_certificate_usable(files)


def test_clients_must_trust_the_projects_ca(tmp_path: Path) -> None:
    files = local_server_files(tmp_path, tmp_path / "tls" / "ca.pem", "VARIABLE")
    assert files == TlsFiles.under((tmp_path / "tls").resolve())
    with pytest.raises(ConfigurationError, match="set VARIABLE to it"):
        local_server_files(tmp_path, tmp_path / "elsewhere.pem", "VARIABLE")


def test_admin_password_is_made_once_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "kafka" / "admin.password"
    password = admin_password(path)
    assert len(password) >= 40
    assert mode(path) == 0o600
    assert admin_password(path) == password
    assert admin_password(tmp_path / "other.password") != password


def secured_kafka(**changes: object) -> KafkaSettings:
    values: dict[str, object] = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "stream-app",
        "sasl_password": SecretStr("pw"),
        "ssl_ca_file": Path("/x/ca.pem"),
    }
    values.update(changes)
    return KafkaSettings.model_validate(values)


def test_plaintext_needs_no_broker_security() -> None:
    assert wants_security(KafkaSettings()) is False
    assert wants_security(secured_kafka()) is True


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"security_protocol": "SASL_PLAINTEXT"}, "PLAINTEXT, SASL_SSL or SSL"),
        ({"sasl_mechanism": "PLAIN"}, "SCRAM"),
        ({"sasl_mechanism": None}, "SCRAM"),
        ({"sasl_password": None}, "STREAM_APP_KAFKA__SASL_PASSWORD"),
        ({"ssl_ca_file": None}, "STREAM_APP_KAFKA__SSL_CA_FILE"),
        ({"sasl_username": "stream-app-broker"}, "broker's own user"),
    ],
)
def test_a_broker_that_cannot_be_secured_as_asked_is_refused(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        wants_security(secured_kafka(**changes))


def test_the_secured_broker_has_no_plaintext_listener(tmp_path: Path) -> None:
    settings = Settings(kafka=secured_kafka())
    security = BrokerSecurity(TlsFiles.under(tmp_path), "admin-pw")
    lines = _properties(settings, tmp_path, security).splitlines()
    assert "listeners=SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093" in lines
    assert "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL" in lines
    assert "listener.name.controller.ssl.client.auth=required" in lines
    # the broker's own login does not follow the clients' mechanism
    assert "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512" in lines
    settings_256 = Settings(kafka=secured_kafka(sasl_mechanism="SCRAM-SHA-256"))
    assert (
        "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512"
        in _properties(settings_256, tmp_path, security).splitlines()
    )
    assert not any("PLAINTEXT" in line for line in lines)
    jaas = [line for line in lines if ".sasl.jaas.config=" in line]
    assert len(jaas) == 2  # both SCRAM mechanisms
    assert all('username="stream-app-broker" password="admin-pw"' in line for line in jaas)

    plain = _properties(Settings(), tmp_path, None).splitlines()
    assert "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093" in plain
    assert not any("SASL" in line or "ssl" in line for line in plain)


def test_cassandra_authenticates_when_clients_log_in(tmp_path: Path) -> None:
    assert wants_authentication(CassandraSettings()) is False
    secured = CassandraSettings(username="app", password=SecretStr("pw"))
    assert wants_authentication(secured) is True
    assert "authenticator: PasswordAuthenticator" in _yaml(Settings(cassandra=secured))
    assert "authenticator: AllowAllAuthenticator" in _yaml(Settings())
    assert "client_encryption_options" not in _yaml(Settings())
    tls = TlsFiles.under(tmp_path)
    with_tls = _yaml(Settings(), tls)
    assert "client_encryption_options:\n  enabled: true\n  optional: false" in with_tls
    assert f"keystore: {tls.server}" in with_tls


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        ("app", None, "without a password"),
        ("cassandra", "pw", "node's own role"),
        ("stream_app_admin", "pw", "node's own role"),
    ],
)
def test_cassandra_roles_that_cannot_be_made_are_refused(
    username: str, password: str | None, message: str
) -> None:
    settings = CassandraSettings(
        username=username, password=SecretStr(password) if password else None
    )
    with pytest.raises(ConfigurationError, match=message):
        wants_authentication(settings)


def test_a_broker_formatted_plain_is_not_silently_secured(tmp_path: Path) -> None:
    from stream_app.errors import ServiceError
    from stream_app.services.kafka_server import kafka_spec
    from stream_app.settings import ServicesSettings

    home = tmp_path / "home"
    (home / "kafka" / "data").mkdir(parents=True)
    (home / "kafka" / "data" / "meta.properties").write_text("formatted plain\n")
    settings = Settings(
        kafka=secured_kafka(ssl_ca_file=home / "tls" / "ca.pem"),
        services=ServicesSettings(home=home),
    )
    spec = kafka_spec(settings, tmp_path / "lib", Path("java"))
    with pytest.raises(ServiceError, match="formatted without SCRAM users"):
        spec.prepare()
    assert not (home / "kafka" / "admin.password").exists()


def test_cluster_ids_never_look_like_an_option(tmp_path: Path) -> None:
    from stream_app.services.kafka_server import _cluster_id, new_cluster_id

    ids = {new_cluster_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    unusable = tmp_path / "cluster.id"
    unusable.write_text("-abcdefghijklmnopqrstu\n")  # written by an earlier version
    replaced = _cluster_id(unusable)
    assert not replaced.startswith("-")
    assert _cluster_id(unusable) == replaced  # kept from then on


def test_a_client_certificate_is_signed_by_the_projects_ca_for_client_auth_only(
    tmp_path: Path,
) -> None:
    client = issue_client_certificate(tmp_path / "tls", tmp_path / "out", "analyst")
    files = TlsFiles.under(tmp_path / "tls")  # the CA was made on the way
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    first = client.certificate.read_bytes()
    cert = x509.load_pem_x509_certificate(first)
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "analyst"
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [x509.ExtendedKeyUsageOID.CLIENT_AUTH]
    assert mode(client.key) == 0o600
    assert client.key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert client.properties()["ssl.ca.location"] == str(files.ca_cert)
    again = issue_client_certificate(tmp_path / "tls", tmp_path / "out", "analyst")
    assert again.certificate.read_bytes() != first  # a new pair, the same CA
    assert files.ca_cert.read_bytes() == ca.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(ConfigurationError, match="not a client name"):
        issue_client_certificate(tmp_path / "tls", tmp_path / "out", "../x")


def mutual_tls_kafka(**properties: object) -> KafkaSettings:
    return KafkaSettings.model_validate(
        {"security_protocol": "SSL", "client_properties": properties}
    )


def test_an_ssl_broker_requires_the_clients_ca_and_certificate() -> None:
    complete = {"ssl.ca.location": "/x/ca.pem", "ssl.certificate.location": "/x/c.pem",
                "ssl.key.location": "/x/c.key"}  # fmt: skip
    assert wants_security(mutual_tls_kafka(**complete)) is True
    with pytest.raises(ConfigurationError, match=r"ssl\.ca\.location"):
        wants_security(mutual_tls_kafka(**{**complete, "ssl.ca.location": None}))
    without_key = {k: v for k, v in complete.items() if k != "ssl.key.location"}
    with pytest.raises(ConfigurationError, match="services client-cert"):
        wants_security(mutual_tls_kafka(**without_key))


def test_the_ssl_broker_requires_client_certificates_on_every_listener(tmp_path: Path) -> None:
    settings = Settings(kafka=mutual_tls_kafka())
    security = BrokerSecurity(TlsFiles.under(tmp_path), None, "SSL")
    lines = _properties(settings, tmp_path, security).splitlines()
    assert "listeners=SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093" in lines
    assert "listener.security.protocol.map=SSL:SSL,CONTROLLER:SSL" in lines
    assert "inter.broker.listener.name=SSL" in lines
    assert "ssl.client.auth=required" in lines
    assert f"ssl.truststore.location={tmp_path / 'ca.pem'}" in lines
    assert not any("PLAINTEXT" in line or "sasl" in line.lower() for line in lines)
