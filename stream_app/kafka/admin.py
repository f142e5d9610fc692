"""Reaching Kafka with an admin client: the cluster's metadata, or a clear reason why not.

librdkafka retries a refused login or an untrusted certificate until its timeout and then
reports a bare "transport failure". Here the client's error callback catches those reasons
at once, so a wrong password or CA file fails in about a second and says so.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from stream_app.client_properties import SETTING, masked
from stream_app.errors import ConfigurationError
from stream_app.settings import KafkaSettings

# The reasons that retrying cannot cure: credentials, the TLS handshake, the protocol.
_REFUSALS = {
    KafkaError._AUTHENTICATION,
    KafkaError._SSL,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError.ILLEGAL_SASL_STATE,
    KafkaError.UNSUPPORTED_SASL_MECHANISM,
}

# The broker ends the handshake with an alert (mutual TLS: no client certificate, or one from
# a CA it does not trust); librdkafka reports it as a transport failure it would retry.
_CERTIFICATE_ALERTS = (
    "alert bad certificate",
    "alert certificate required",
    "alert certificate unknown",
    "alert unknown ca",
)


def _tls_alert(error: KafkaError) -> bool:
    return error.code() == KafkaError._TRANSPORT and "SSL alert number" in error.str()


# Properties naming a file librdkafka reads ("probe": the system's CA store).
_FILES = frozenset(
    {"ssl.ca.location", "ssl.certificate.location", "ssl.key.location",
     "ssl.keystore.location", "ssl.crl.location", "sasl.kerberos.keytab"}
)  # fmt: skip


def _who(kafka: KafkaSettings) -> str:
    if kafka.security_protocol.startswith("SASL"):
        return f"{kafka.security_protocol} as {kafka.sasl_username} ({kafka.sasl_mechanism})"
    if kafka.security_protocol == "SSL":
        certificate = kafka.client_properties.get("ssl.certificate.location")
        return f"SSL, client certificate {certificate or 'none'}"
    return kafka.security_protocol


def check_client_properties(kafka: KafkaSettings) -> None:
    """librdkafka's own check of the passed-through properties (names, values, the files they
    name), once at start: a typo is one clear line, not a traceback from the first client."""
    for name, value in kafka.client_properties.items():
        # librdkafka says only "system lib" of a file it cannot open
        if name in _FILES and str(value) != "probe" and not Path(str(value)).exists():
            raise ConfigurationError(f"{SETTING}: {name}: no such file {value}")
    try:
        AdminClient(kafka.client_config({"log_level": 0}))
    except KafkaException as exc:
        error = exc.args[0]
        reason = error.str() if isinstance(error, KafkaError) else str(exc)
        raise ConfigurationError(masked(f"{SETTING}: {reason}", kafka.client_properties)) from exc


def reach(
    kafka: KafkaSettings, timeout_s: float = 30.0, extra: dict[str, Any] | None = None
) -> tuple[AdminClient, Any]:
    """An admin client and the cluster's metadata (``list_topics``).

    Raises ``ConfigurationError`` as soon as the broker refuses the login or the TLS
    handshake fails, and after ``timeout_s`` if it does not answer at all.
    """
    refusals: list[KafkaError] = []

    def on_error(error: KafkaError) -> None:
        if error.code() in _REFUSALS or _tls_alert(error):
            refusals.append(error)

    # The refusal is reported here once, not logged by librdkafka at every retry.
    config = kafka.client_config({"error_cb": on_error, "log_level": 0, **(extra or {})})
    admin = AdminClient(config)
    where = f"Kafka at {kafka.bootstrap_servers} ({_who(kafka)})"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return admin, admin.list_topics(timeout=min(1.0, timeout_s))
        except KafkaException as exc:
            admin.poll(0)  # serve the error callback
            if refusals:
                reason = refusals[-1].str()
                if any(alert in reason for alert in _CERTIFICATE_ALERTS):
                    reason += (
                        "; the broker requires a client certificate signed by a CA it trusts "
                        "(ssl.certificate.location and ssl.key.location in "
                        "STREAM_APP_KAFKA__CLIENT_PROPERTIES)"
                    )
                raise ConfigurationError(f"{where} refused the connection: {reason}") from exc
            if time.monotonic() >= deadline:
                raise ConfigurationError(f"cannot reach {where}: {exc}") from exc


def topic_id(kafka: KafkaSettings, topic: str) -> str:
    """Kafka's id of a topic (a recreated topic gets a new one)."""
    from confluent_kafka import TopicCollection

    admin = AdminClient(kafka.client_config())
    description = admin.describe_topics(TopicCollection([topic]))[topic].result(timeout=30)
    return str(description.topic_id)
