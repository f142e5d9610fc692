"""Every way a message can be refused has its own code; valid messages come out typed."""

from __future__ import annotations

import orjson
import pytest

from stream_app.contracts import codes
from stream_app.contracts.decode import (
    ClientEvent,
    decode_client_event,
    decode_ground_truth,
    decode_sensor_reading,
)
from stream_app.errors import InvalidEvent
from stream_app.simulation.corrupt import CORRUPTIONS, HOSTILE, hostile

VALID = {
    "schema_version": 1,
    "event_id": "ord-1",
    "event_time": 1795783200000,
    "entities": {"courier_id": "courier-1"},
    "fields": {"distance_km": 3.5, "items": 2, "express": True, "note": None},
}


def encode(**changes: object) -> bytes:
    payload = {**VALID, **changes}
    return orjson.dumps({k: v for k, v in payload.items() if v is not ...})


def refused(raw: bytes | None, decoder=decode_client_event, **kw: object) -> InvalidEvent:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidEvent) as err:
        decoder(raw, **kw)
    assert err.value.code in codes.ALL_CODES
    return err.value


def test_a_valid_event() -> None:
    event = decode_client_event(encode())
    assert isinstance(event, ClientEvent)
    assert event.event_id == "ord-1"
    assert event.event_time == 1795783200000
    assert event.entities == {"courier_id": "courier-1"}
    assert event.fields["express"] is True
    assert event.fields["note"] is None


def test_an_integral_float_time_is_accepted() -> None:
    assert decode_client_event(encode(event_time=1795783200000.0)).event_time == 1795783200000


@pytest.mark.parametrize("code", list(CORRUPTIONS))
def test_each_corruption_has_its_code(code: str) -> None:
    assert refused(CORRUPTIONS[code](encode())).code == code


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_each_hostile_kind_is_refused_with_a_code(kind: str) -> None:
    for index in range(3):
        refused(HOSTILE[kind](encode(), index))


def test_a_long_hostile_run_is_all_refused() -> None:
    valid = encode()
    found = {refused(hostile(valid, index)).code for index in range(2_000)}
    assert codes.OVERSIZED in found
    assert len(found) >= 10


@pytest.mark.parametrize(
    ("raw", "code", "words"),
    [
        (None, codes.EMPTY_MESSAGE, "empty"),
        (b'{"schema_version": 1, "x": Infinity}', codes.NON_FINITE_NUMBER, "NaN and Infinity"),
        (b'{"schema_version": 1, "x": -Infinity}', codes.NON_FINITE_NUMBER, "NaN and Infinity"),
        (b'{"schema_version": 1, "x": 1e999}', codes.NON_FINITE_NUMBER, "overflows"),
        (b'"just a string"', codes.NOT_AN_OBJECT, "got string"),
        (b"42", codes.NOT_AN_OBJECT, "got number"),
        (b'{"event_id": "x"}', codes.MISSING_FIELD, "schema_version is missing"),
        (b'{"schema_version": "1"}', codes.WRONG_TYPE, "schema_version must be a number"),
        (b'{"schema_version": true}', codes.WRONG_TYPE, "schema_version must be a number"),
        (b'{"schema_version": 2}', codes.UNKNOWN_SCHEMA_VERSION, "not supported"),
    ],
)
def test_envelope_errors(raw: bytes | None, code: str, words: str) -> None:
    error = refused(raw)
    assert error.code == code
    assert words in error.message


@pytest.mark.parametrize(
    ("changes", "code", "words"),
    [
        ({"event_id": ...}, codes.MISSING_FIELD, "event_id is missing"),
        ({"event_id": 7}, codes.WRONG_TYPE, "event_id must be a string"),
        ({"event_id": ""}, codes.INVALID_VALUE, "1 to 128 characters"),
        ({"event_id": "x" * 129}, codes.INVALID_VALUE, "1 to 128 characters"),
        ({"event_time": "2026-11-27"}, codes.WRONG_TYPE, "must be an integer"),
        ({"event_time": True}, codes.WRONG_TYPE, "must be an integer"),
        ({"event_time": 1795783200.5}, codes.WRONG_TYPE, "whole number"),
        ({"event_time": 1.5}, codes.WRONG_TYPE, "whole number"),
        ({"event_time": 1795783200}, codes.INVALID_VALUE, "looks like seconds"),
        ({"event_time": 2**63 - 1}, codes.INVALID_VALUE, "outside 2000..2100"),
        ({"event_time": 1e30}, codes.INVALID_VALUE, "outside 2000..2100"),
        ({"entities": ["courier-1"]}, codes.WRONG_TYPE, "entities must be an object"),
        ({"entities": {"courier_id": 1}}, codes.WRONG_TYPE, "entities.courier_id"),
        ({"entities": {"courier_id": ""}}, codes.INVALID_VALUE, "entities.courier_id"),
        ({"fields": {"distance_km": "3.5"}}, codes.WRONG_TYPE, "fields.distance_km"),
        ({"fields": {"nested": {"a": 1}}}, codes.WRONG_TYPE, "fields.nested"),
        ({"fields": {f"f{i}": 1 for i in range(300)}}, codes.INVALID_VALUE, "0 to 256"),
    ],
)
def test_field_errors_name_the_field(changes: dict[str, object], code: str, words: str) -> None:
    error = refused(encode(**changes))
    assert (error.code, words in error.message) == (code, True), error.message


def test_oversized_uses_the_configured_limit() -> None:
    raw = encode()
    assert refused(raw, max_bytes=len(raw) - 1).code == codes.OVERSIZED
    decode_client_event(raw, max_bytes=len(raw))


def test_sensor_reading() -> None:
    raw = orjson.dumps(
        {
            "schema_version": 1,
            "sensor_id": "gps-1",
            "event_time": 1795783200000,
            "entities": {"courier_id": "courier-1"},
            "values": {"speed_kmh": 20},
        }
    )
    reading = decode_sensor_reading(raw)
    assert reading.values == {"speed_kmh": 20}
    no_values = raw.replace(b'{"speed_kmh":20}', b"{}")
    assert refused(no_values, decode_sensor_reading).code == codes.INVALID_VALUE
    text_value = raw.replace(b'"speed_kmh":20', b'"speed_kmh":"fast"')
    assert refused(text_value, decode_sensor_reading).code == codes.WRONG_TYPE
    no_entities = raw.replace(b'{"courier_id":"courier-1"}', b"{}")
    assert refused(no_entities, decode_sensor_reading).code == codes.INVALID_VALUE


def test_ground_truth() -> None:
    raw = b'{"schema_version":1,"event_id":"ord-1","label":31,"label_time":1795783200000}'
    assert decode_ground_truth(raw).label == 31.0
    assert refused(raw.replace(b"31", b'"late"'), decode_ground_truth).code == codes.WRONG_TYPE
    no_label = b'{"schema_version":1,"event_id":"ord-1","label_time":1795783200000}'
    assert refused(no_label, decode_ground_truth).code == codes.MISSING_FIELD
