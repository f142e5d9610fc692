"""Decode and validate input payloads: bytes in, a typed event out, or ``InvalidEvent``.

Every way a message can be wrong raises ``InvalidEvent`` with its own code (see ``codes``);
nothing else escapes these functions, whatever the bytes. The checks mirror the JSON Schemas
in ``schemas/`` (``tests/unit/test_contracts_vs_schemas.py`` proves they agree).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import orjson

from stream_app.contracts import codes
from stream_app.errors import InvalidEvent

SCHEMA_VERSION = 1
MAX_ID_LENGTH = 128
MAX_ENTITIES = 16
MAX_VALUES = 256
# 2000-01-01 and 2100-01-01 in ms: anything outside is a unit mistake, not a real time.
MIN_TIME_MS = 946_684_800_000
MAX_TIME_MS = 4_102_444_800_000
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024

FieldValue = float | int | bool | None


class ClientEvent(NamedTuple):
    """A client event asking for a prediction."""

    event_id: str
    event_time: int
    entities: dict[str, str]
    fields: dict[str, FieldValue]


class SensorReading(NamedTuple):
    """A device's reading of one or more values for some entities."""

    sensor_id: str
    event_time: int
    entities: dict[str, str]
    values: dict[str, float]


class GroundTruth(NamedTuple):
    """The true outcome of an earlier client event."""

    event_id: str
    label: float
    label_time: int


_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), "number")


class ObjectParser(Protocol):
    """Bytes to the message's object (checked: a JSON-like object with ``schema_version`` 1),
    or ``InvalidEvent``: ``parse_object`` for plain JSON, ``contracts.wire.WireParser`` for
    the Confluent wire format."""

    def __call__(self, raw: bytes | None, max_bytes: int) -> dict[str, Any]: ...


def check_size(raw: bytes | None, max_bytes: int) -> bytes:
    """``raw`` if it is neither empty nor larger than ``max_bytes``, else ``InvalidEvent``."""
    if not raw:
        raise InvalidEvent(codes.EMPTY_MESSAGE, "the message is empty")
    if len(raw) > max_bytes:
        raise InvalidEvent(codes.OVERSIZED, f"{len(raw)} bytes, the limit is {max_bytes}")
    return raw


def loads_json(raw: bytes) -> Any:
    """The JSON value of ``raw``, or ``InvalidEvent`` with the code of what is wrong."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _classify_json_error(raw, exc) from None


def parse_object(raw: bytes | None, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> dict[str, Any]:
    """The message as a JSON object with ``schema_version`` 1, or ``InvalidEvent``."""
    raw = check_size(raw, max_bytes)
    if raw[:1] == b"\0":  # never the start of JSON text
        raise InvalidEvent(
            codes.INVALID_JSON,
            "the message starts with byte 0: it looks like the Confluent wire format (a schema "
            "id before the value); read this topic as `wire` or `auto` (SCHEMA_REGISTRY__*)",
        )
    return check_object(loads_json(raw))


def check_object(obj: Any) -> dict[str, Any]:
    """``obj`` if it is an object whose ``schema_version`` this worker reads."""
    if type(obj) is not dict:
        raise InvalidEvent(codes.NOT_AN_OBJECT, f"expected a JSON object, got {_json_type(obj)}")
    version = obj.get("schema_version", _MISSING)
    if version is _MISSING:
        raise InvalidEvent(codes.MISSING_FIELD, "schema_version is missing")
    if type(version) not in (int, float):
        raise InvalidEvent(
            codes.WRONG_TYPE, f"schema_version must be a number, got {_json_type(version)}"
        )
    if version != SCHEMA_VERSION:
        raise InvalidEvent(
            codes.UNKNOWN_SCHEMA_VERSION,
            f"schema_version {version} is not supported (this worker reads {SCHEMA_VERSION})",
        )
    return obj


_MISSING: Any = object()


def _classify_json_error(raw: bytes, exc: orjson.JSONDecodeError) -> InvalidEvent:
    text = str(exc)
    if "UTF-8" in text:
        return InvalidEvent(codes.INVALID_UTF8, "the message is not valid UTF-8")
    if "depth limit" in text:
        return InvalidEvent(codes.TOO_DEEP, "the JSON nests deeper than 1024 levels")
    if "infinity" in text:
        return InvalidEvent(codes.NON_FINITE_NUMBER, f"a number overflows a double ({text})")
    at = exc.pos
    if raw[at : at + 3] == b"NaN" or raw[at : at + 8] == b"Infinity":
        return InvalidEvent(codes.NON_FINITE_NUMBER, f"NaN and Infinity are not JSON ({text})")
    return InvalidEvent(codes.INVALID_JSON, text)


def _string(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name, _MISSING)
    if type(value) is not str:
        if value is _MISSING:
            raise InvalidEvent(codes.MISSING_FIELD, f"{name} is missing")
        raise InvalidEvent(codes.WRONG_TYPE, f"{name} must be a string, got {_json_type(value)}")
    if not 0 < len(value) <= MAX_ID_LENGTH:
        raise InvalidEvent(codes.INVALID_VALUE, f"{name} must have 1 to {MAX_ID_LENGTH} characters")
    return value


def _time_ms(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name, _MISSING)
    kind = type(value)
    if kind is not int:
        if value is _MISSING:
            raise InvalidEvent(codes.MISSING_FIELD, f"{name} is missing")
        if kind is not float:
            raise InvalidEvent(
                codes.WRONG_TYPE,
                f"{name} must be an integer (ms since the epoch), got {_json_type(value)}",
            )
        if not value.is_integer():
            raise InvalidEvent(codes.WRONG_TYPE, f"{name} must be a whole number of milliseconds")
        value = int(value)
    if not MIN_TIME_MS <= value <= MAX_TIME_MS:
        hint = (
            " (it looks like seconds, not milliseconds)" if 0 < value < MIN_TIME_MS // 100 else ""
        )
        raise InvalidEvent(
            codes.INVALID_VALUE, f"{name}={value} is outside 2000..2100 in ms since the epoch{hint}"
        )
    return int(value)


def _object(obj: dict[str, Any], name: str, min_items: int, max_items: int) -> dict[str, Any]:
    value = obj.get(name, _MISSING)
    if type(value) is not dict:
        if value is _MISSING:
            raise InvalidEvent(codes.MISSING_FIELD, f"{name} is missing")
        raise InvalidEvent(codes.WRONG_TYPE, f"{name} must be an object, got {_json_type(value)}")
    if not min_items <= len(value) <= max_items:
        raise InvalidEvent(
            codes.INVALID_VALUE, f"{name} must have {min_items} to {max_items} entries"
        )
    return value


def _entities(obj: dict[str, Any], min_items: int) -> dict[str, str]:
    entities = _object(obj, "entities", min_items, MAX_ENTITIES)
    for key, value in entities.items():
        if type(value) is not str:
            raise InvalidEvent(
                codes.WRONG_TYPE, f"entities.{key} must be a string, got {_json_type(value)}"
            )
        if not 0 < len(value) <= MAX_ID_LENGTH:
            raise InvalidEvent(
                codes.INVALID_VALUE, f"entities.{key} must have 1 to {MAX_ID_LENGTH} characters"
            )
    return entities


def decode_client_event(
    raw: bytes | None,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    parse: ObjectParser = parse_object,
) -> ClientEvent:
    """A valid client event, or ``InvalidEvent``."""
    obj = parse(raw, max_bytes)
    fields = _object(obj, "fields", 0, MAX_VALUES)
    for name, value in fields.items():
        if type(value) not in (float, int, bool) and value is not None:
            raise InvalidEvent(
                codes.WRONG_TYPE,
                f"fields.{name} must be a number, boolean or null, got {_json_type(value)}",
            )
    return ClientEvent(
        _string(obj, "event_id"), _time_ms(obj, "event_time"), _entities(obj, 0), fields
    )


def decode_sensor_reading(
    raw: bytes | None,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    parse: ObjectParser = parse_object,
) -> SensorReading:
    """A valid sensor reading, or ``InvalidEvent``."""
    obj = parse(raw, max_bytes)
    values = _object(obj, "values", 1, MAX_VALUES)
    for name, value in values.items():
        if type(value) not in (float, int):
            raise InvalidEvent(
                codes.WRONG_TYPE, f"values.{name} must be a number, got {_json_type(value)}"
            )
    return SensorReading(
        _string(obj, "sensor_id"), _time_ms(obj, "event_time"), _entities(obj, 1), values
    )


def decode_ground_truth(
    raw: bytes | None,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    parse: ObjectParser = parse_object,
) -> GroundTruth:
    """A valid ground-truth label, or ``InvalidEvent``."""
    obj = parse(raw, max_bytes)
    label = obj.get("label", _MISSING)
    if type(label) not in (float, int):
        if label is _MISSING:
            raise InvalidEvent(codes.MISSING_FIELD, "label is missing")
        raise InvalidEvent(codes.WRONG_TYPE, f"label must be a number, got {_json_type(label)}")
    return GroundTruth(_string(obj, "event_id"), float(label), _time_ms(obj, "label_time"))
