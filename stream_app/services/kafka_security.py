"""How the local broker is secured: what the clients' settings ask for, the listeners and TLS
lines of ``server.properties`` that serve it, and the SCRAM users of a SASL_SSL broker.

``PLAINTEXT`` needs nothing. ``SASL_SSL`` serves TLS with the project's own CA and
authenticates every client with SCRAM; the broker's administrator (a SCRAM user written into
the storage when it is formatted) creates the clients' user at every start. ``SSL`` is served
as mutual TLS: every client, the broker itself included, presents a certificate signed by the
project's CA (``stream-app services client-cert``). The controller listener is mutual TLS
whenever the broker is secured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

from stream_app.errors import ConfigurationError
from stream_app.services.tls import TlsFiles
from stream_app.settings import KafkaSettings

ADMIN_USER = "stream-app-broker"
# The administrator's own mechanism, whatever the clients use: a later change of the clients'
# mechanism must not lock the broker out of its own listener.
ADMIN_MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192
_SCRAM = {"SCRAM-SHA-256": 1, "SCRAM-SHA-512": 2}  # confluent_kafka.admin.ScramMechanism


CA_VARIABLE = "STREAM_APP_KAFKA__SSL_CA_FILE (or ssl.ca.location in kafka.client_properties)"
# Any of these presents a client certificate to librdkafka.
_CERTIFICATES = (
    ("ssl.certificate.location", "ssl.key.location"),
    ("ssl.certificate.pem", "ssl.key.pem"),
    ("ssl.keystore.location",),
)


@dataclass(frozen=True)
class BrokerSecurity:
    """What a secured broker needs: its TLS files, and for SASL_SSL its administrator's
    password."""

    tls: TlsFiles
    admin_password: str | None
    protocol: Literal["SASL_SSL", "SSL"] = "SASL_SSL"


def wants_security(kafka: KafkaSettings) -> bool:
    """Whether the clients' settings ask the local broker for TLS (SASL_SSL or SSL).

    Only PLAINTEXT, SASL_SSL with SCRAM and SSL with client certificates can be served
    locally; anything else, or either without what the clients need to connect (CA file,
    user and password, certificate), is a configuration error.
    """
    if kafka.security_protocol == "PLAINTEXT":
        return False
    if kafka.security_protocol == "SSL":
        return _wants_mutual_tls(kafka)
    if kafka.security_protocol != "SASL_SSL":
        raise ConfigurationError(
            "the local broker serves PLAINTEXT, SASL_SSL or SSL (mutual TLS), not "
            f"{kafka.security_protocol}"
        )
    if kafka.sasl_mechanism not in _SCRAM:
        raise ConfigurationError(
            "the local SASL_SSL broker authenticates with SCRAM: set "
            "STREAM_APP_KAFKA__SASL_MECHANISM to SCRAM-SHA-256 or SCRAM-SHA-512"
        )
    missing = [
        variable
        for variable, value in (
            ("STREAM_APP_KAFKA__SASL_USERNAME", kafka.sasl_username),
            ("STREAM_APP_KAFKA__SASL_PASSWORD", kafka.sasl_password),
            (CA_VARIABLE, kafka.ca_location()),
        )
        if not value
    ]
    if missing:
        raise ConfigurationError(f"a SASL_SSL broker needs {', '.join(missing)}")
    if kafka.sasl_username == ADMIN_USER:
        raise ConfigurationError(f"{ADMIN_USER} is the broker's own user; pick another name")
    return True


def _wants_mutual_tls(kafka: KafkaSettings) -> bool:
    if kafka.ca_location() is None:
        raise ConfigurationError(f"an SSL broker needs {CA_VARIABLE}")
    given = kafka.client_properties
    if not any(all(name in given for name in names) for names in _CERTIFICATES):
        raise ConfigurationError(
            "the local SSL broker requires a client certificate: make one with `stream-app "
            "services client-cert --out DIR` and pass it in STREAM_APP_KAFKA__CLIENT_PROPERTIES "
            "as it prints"
        )
    return True


def _tls_lines(security: BrokerSecurity) -> list[str]:
    return [
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={security.tls.server}",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={security.tls.ca_cert}",
        "ssl.endpoint.identification.algorithm=https",
    ]


def security_lines(
    host: str, port: int, controller: int, security: BrokerSecurity | None
) -> list[str]:
    """The listener and TLS lines of ``server.properties`` for ``security`` (None: PLAINTEXT)."""
    if security is None:
        return [
            f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller}",
            f"advertised.listeners=PLAINTEXT://{host}:{port}",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
        ]
    if security.protocol == "SSL":
        return [
            f"listeners=SSL://{host}:{port},CONTROLLER://{host}:{controller}",
            f"advertised.listeners=SSL://{host}:{port}",
            "listener.security.protocol.map=SSL:SSL,CONTROLLER:SSL",
            "inter.broker.listener.name=SSL",
            *_tls_lines(security),
            # Mutual TLS on every listener: a client (the broker itself included) without a
            # certificate from the project's CA fails the handshake.
            "ssl.client.auth=required",
        ]
    jaas = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{ADMIN_USER}" password="{security.admin_password}";'
    )
    return [
        f"listeners=SASL_SSL://{host}:{port},CONTROLLER://{host}:{controller}",
        f"advertised.listeners=SASL_SSL://{host}:{port}",
        # The controller listener is TLS too, and only takes a client holding a certificate
        # from the project's CA: nothing reaches the cluster's metadata without one.
        "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL",
        "inter.broker.listener.name=SASL_SSL",
        "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512",
        f"sasl.mechanism.inter.broker.protocol={ADMIN_MECHANISM}",
        # Every enabled mechanism needs a login module; the credentials are the broker's own.
        *(f"listener.name.sasl_ssl.{name.lower()}.sasl.jaas.config={jaas}" for name in _SCRAM),
        *_tls_lines(security),
        "listener.name.controller.ssl.client.auth=required",
    ]


def admin_scram(security: BrokerSecurity) -> list[str]:
    """StorageTool's ``--add-scram`` values for the administrator, one per mechanism (its
    password is URL-safe, so it needs no quoting)."""
    if security.admin_password is None:
        return []
    return [
        f"{mechanism}=[name={ADMIN_USER},password={security.admin_password}]"
        for mechanism in _SCRAM
    ]


def create_client_user(kafka: KafkaSettings, password: str) -> None:
    """Create the clients' SCRAM user, or set its password, as the administrator."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported, untyped
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    from stream_app.kafka.admin import reach

    user, secret, name = kafka.sasl_username, kafka.sasl_password, kafka.sasl_mechanism
    if not (user and secret and name and wants_security(kafka)):
        raise ConfigurationError("the clients' SCRAM user needs a name, a password, a mechanism")
    mechanism = ScramMechanism(_SCRAM[name])
    upsert = UserScramCredentialUpsertion(
        user,
        ScramCredentialInfo(mechanism, SCRAM_ITERATIONS),
        secret.get_secret_value().encode(),
    )
    as_admin = kafka.model_copy(
        update={
            "sasl_username": ADMIN_USER,
            "sasl_password": SecretStr(password),
            "sasl_mechanism": ADMIN_MECHANISM,
        }
    )
    admin, _ = reach(as_admin, timeout_s=5)
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=10)
