"""librdkafka properties passed through the settings (``kafka.client_properties``).

Any property of librdkafka's CONFIGURATION.md can be given; it reaches every confluent-kafka
client of the project (consumers, producers, admin clients) and wins over the project's own
tuning of a client (``compression.type``, ``fetch.wait.max.ms``, ``client.id``, ...).

Refused, each with a one-line reason:

- properties that have a setting of their own (``bootstrap.servers``, ``security.protocol``,
  ``sasl.mechanism``/``username``/``password``, ``linger.ms``, the session and transaction
  timeouts): Faust, the local services and the error messages read those settings, and two
  places for one value would disagree;
- properties the project's guarantees rest on and that it sets itself, client by client
  (``group.id``, ``enable.auto.commit``, ``auto.offset.reset``, ``transactional.id``, ...), and
  values that would break them (``enable.idempotence`` false, ``acks`` other than all,
  ``isolation.level`` read_uncommitted);
- Python callbacks (``error_cb``, ``on_delivery``, ...), which no setting can hold.

A property whose name looks secret (:func:`is_secret`) is held as a ``SecretStr``, so it is
masked wherever the settings are shown, like every other secret of the settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from stream_app.errors import ConfigurationError

Scalar = str | int | float | bool
PropertyValue = Scalar | SecretStr

SETTING = "kafka.client_properties"

# Words of a property name that mark its value as a secret, and whole names that hold one.
_SECRET_WORDS = frozenset({"password", "secret", "passphrase", "token", "credentials"})
_SECRET_NAMES = frozenset({"ssl.key.pem", "sasl.oauthbearer.config"})

# Properties with a setting of their own: the setting is the one place for the value.
OWN_SETTINGS: dict[str, str] = {
    "bootstrap.servers": "kafka.bootstrap_servers",
    "metadata.broker.list": "kafka.bootstrap_servers",
    "security.protocol": "kafka.security_protocol",
    "sasl.mechanism": "kafka.sasl_mechanism",
    "sasl.mechanisms": "kafka.sasl_mechanism",
    "sasl.username": "kafka.sasl_username",
    "sasl.password": "kafka.sasl_password",
    "linger.ms": "kafka.output_linger_ms",
    "queue.buffering.max.ms": "kafka.output_linger_ms",
    "session.timeout.ms": "worker.session_timeout_s",
    "heartbeat.interval.ms": "worker.session_timeout_s",
    "transaction.timeout.ms": "consumer.transaction_timeout_s",
}

# Properties each client sets for what it does; another value would break a guarantee.
_SET_BY_THE_PROJECT: dict[str, str] = {
    "group.id": "each consumer's group is the project's (per use case and agent)",
    "group.instance.id": "every consumer of a worker would share it and fence the others",
    "enable.auto.commit": "offsets move only after an event's outputs are acknowledged",
    "enable.auto.offset.store": "offsets move only after an event's outputs are acknowledged",
    "auto.offset.reset": "each consumer chooses where a new group starts (the worker: the "
    "earliest offset, so no event is skipped)",
    "enable.partition.eof": "each consumer chooses whether it needs end-of-partition events",
    "transactional.id": "exactly_once derives one per consumer from worker.instance_id",
}

# Properties refused unless they keep the value a guarantee needs (accepted spellings).
_REQUIRED_VALUES: dict[str, tuple[set[str], str]] = {
    "enable.idempotence": ({"true"}, "outputs are written by idempotent producers"),
    "acks": ({"all", "-1"}, "an output counts as written once every in-sync replica has it"),
    "request.required.acks": (
        {"all", "-1"},
        "an output counts as written once every in-sync replica has it",
    ),
    "isolation.level": (
        {"read_committed"},
        "consumers never see aborted transactions' records (exactly_once)",
    ),
}

_CALLBACKS = frozenset({"on_delivery", "logger"})


def is_secret(name: str) -> bool:
    """Whether a property's value is a secret: a word of its name is one of ``password``,
    ``secret``, ``passphrase``, ``token``, ``credentials`` (``ssl.key.password``,
    ``ssl.keystore.password``, ``sasl.oauthbearer.client.secret``, ...), or it is
    ``ssl.key.pem`` (a private key) or ``sasl.oauthbearer.config``."""
    words = set(name.lower().replace("_", ".").split("."))
    return bool(words & _SECRET_WORDS) or name.lower() in _SECRET_NAMES


def refusal(name: str, value: Scalar) -> str | None:
    """Why ``name`` cannot be passed through with ``value``, or None if it can."""
    if name in OWN_SETTINGS:
        setting = OWN_SETTINGS[name]
        variable = "STREAM_APP_" + setting.upper().replace(".", "__")
        return f"it has a setting of its own: {setting} ({variable})"
    if name in _SET_BY_THE_PROJECT:
        return f"the project sets it itself: {_SET_BY_THE_PROJECT[name]}"
    if name in _REQUIRED_VALUES:
        allowed, why = _REQUIRED_VALUES[name]
        if str(value).lower() not in allowed:
            return f"only {' or '.join(sorted(allowed))} is accepted: {why}"
    if name.endswith("_cb") or name in _CALLBACKS:
        return "it is a Python callback of confluent-kafka, not a property"
    return None


def parse(raw: object) -> dict[str, PropertyValue]:
    """The passed-through properties, checked, with secret values as ``SecretStr``.

    Raises ``ConfigurationError`` (one line, never showing a value) for anything else than a
    map of property names to strings, numbers and booleans, and for refused properties.
    """
    if not isinstance(raw, Mapping):
        raise ConfigurationError(
            f"{SETTING}: expected a map (a JSON object) of librdkafka property names to values"
        )
    properties: dict[str, PropertyValue] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise ConfigurationError(f"{SETTING}: {name!r} is not a property name")
        if isinstance(value, SecretStr):  # already checked (a copy of the settings)
            properties[name] = value
            continue
        if not isinstance(value, str | int | float | bool):
            raise ConfigurationError(
                f"{SETTING}: {name} must be a string, a number or a boolean, "
                f"not {type(value).__name__}"
            )
        why = refusal(name, value)
        if why is not None:
            raise ConfigurationError(f"{SETTING}: {name} is refused: {why}")
        properties[name] = SecretStr(str(value)) if is_secret(name) else value
    return properties


def revealed(properties: Mapping[str, PropertyValue]) -> dict[str, Any]:
    """The properties as librdkafka takes them (secrets in clear)."""
    return {
        name: value.get_secret_value() if isinstance(value, SecretStr) else value
        for name, value in properties.items()
    }


def masked(text: str, properties: Mapping[str, PropertyValue]) -> str:
    """``text`` with the value of every secret property replaced by ``**********`` (for
    messages of libraries that may quote a value)."""
    for value in properties.values():
        if isinstance(value, SecretStr) and value.get_secret_value():
            text = text.replace(value.get_secret_value(), "**********")
    return text
