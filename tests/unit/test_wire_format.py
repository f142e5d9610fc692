"""The Confluent wire format read without a registry: schemas put in the book by hand, values
written with fastavro and orjson as confluent-kafka's serializers write them."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Sequence

import fastavro
import orjson
import pytest

from stream_app.bundled import bundled_path
from stream_app.contracts import codes
from stream_app.contracts.decode import (
    decode_client_event,
    decode_ground_truth,
    decode_sensor_reading,
    parse_object,
)
from stream_app.contracts.wire import (
    Contract,
    SchemaBook,
    WireParser,
    frame,
    framed_id,
)
from stream_app.errors import InvalidEvent
from stream_app.kafka.schema_registry import FramedPublisher, OutputFraming
from stream_app.messages import Record

EVENT = {
    "schema_version": 1,
    "event_id": "e-1",
    "event_time": 1_795_783_200_000,
    "entities": {"courier_id": "c-7"},
    "fields": {"distance_km": 3.5, "items": 2, "express": True, "note": None},
}
AVRO_ID, JSON_ID = 11, 12


def shipped(name: str, kind: str) -> str:
    path = f"schemas/avro/{name}.avsc" if kind == "AVRO" else f"schemas/{name}.schema.json"
    return bundled_path(path).read_text()


def avro_bytes(text: str, value: dict[str, object]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(json.loads(text)), value)
    return out.getvalue()


@pytest.fixture
def book() -> SchemaBook:
    book = SchemaBook(Contract.shipped("client_event"))
    book.add(AVRO_ID, "AVRO", shipped("client_event", "AVRO"))
    book.add(JSON_ID, "JSON", shipped("client_event", "JSON"))
    return book


def refused(parse: WireParser, raw: bytes) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        decode_client_event(raw, 65_536, parse)
    return caught.value


def test_avro_and_json_schema_values_decode_to_the_same_event(book: SchemaBook) -> None:
    parse = WireParser(book)
    from_avro = decode_client_event(
        frame(AVRO_ID, avro_bytes(shipped("client_event", "AVRO"), EVENT)), 65_536, parse
    )
    from_json = decode_client_event(frame(JSON_ID, orjson.dumps(EVENT)), 65_536, parse)
    plain = decode_client_event(orjson.dumps(EVENT))
    assert from_avro == from_json == plain
    assert from_avro.fields["express"] is True
    assert from_avro.fields["note"] is None


def test_each_way_a_framed_value_is_wrong_has_its_own_code(book: SchemaBook) -> None:
    parse = WireParser(book)
    good = avro_bytes(shipped("client_event", "AVRO"), EVENT)
    assert refused(parse, orjson.dumps(EVENT)).code == codes.BAD_MAGIC_BYTE  # plain JSON
    assert refused(parse, b"\x01" + frame(AVRO_ID, good)[1:]).code == codes.BAD_MAGIC_BYTE
    assert refused(parse, b"\x00\x00\x00").code == codes.BAD_MAGIC_BYTE  # shorter than a header
    unknown = refused(parse, frame(999, good))
    assert unknown.code == codes.UNKNOWN_SCHEMA_ID
    assert "999" in unknown.message
    assert refused(parse, frame(AVRO_ID, good[:-3])).code == codes.INVALID_AVRO  # truncated
    assert refused(parse, frame(AVRO_ID, good + b"\x02")).code == codes.INVALID_AVRO  # trailing
    # past the frame, the same checks as plain JSON
    late = {**EVENT, "event_time": 12}
    assert refused(parse, frame(JSON_ID, orjson.dumps(late))).code == codes.INVALID_VALUE
    assert refused(parse, frame(JSON_ID, b"{")).code == codes.INVALID_JSON
    wrong = avro_bytes(shipped("client_event", "AVRO"), {**EVENT, "schema_version": 2})
    assert refused(parse, frame(AVRO_ID, wrong)).code == codes.UNKNOWN_SCHEMA_VERSION


def test_schemas_that_do_not_describe_the_topic_are_a_mismatch(book: SchemaBook) -> None:
    parse = WireParser(book)
    # a ground truth's Avro schema on the client-events topic: no entities, no fields
    book.add(21, "AVRO", shipped("ground_truth", "AVRO"))
    label = {"schema_version": 1, "event_id": "e", "label": 1.0, "label_time": 1_795_783_200_000}
    error = refused(parse, frame(21, avro_bytes(shipped("ground_truth", "AVRO"), label)))
    assert error.code == codes.SCHEMA_MISMATCH
    assert "event_time" in error.message
    book.add(22, "JSON", json.dumps({"type": "object", "properties": {"event_id": {}}}))
    assert refused(parse, frame(22, orjson.dumps(EVENT))).code == codes.SCHEMA_MISMATCH
    book.add(23, "PROTOBUF", 'syntax = "proto3"; message M { string a = 1; }')
    assert refused(parse, frame(23, b"\x00")).code == codes.SCHEMA_MISMATCH
    book.add(24, None, '"string"')  # the registry omits the type of Avro schemas
    assert refused(parse, frame(24, b"\x02a")).code == codes.SCHEMA_MISMATCH


def test_a_writer_record_of_its_own_reads_when_it_has_the_contracts_fields(
    book: SchemaBook,
) -> None:
    """A producer's own Avro record (another name, no schema_version, an extra field) reads:
    the contract's defaults fill what it lacks, extra fields are ignored."""
    own = {
        "type": "record",
        "name": "OrderPlaced",
        "namespace": "com.example",
        "fields": [
            {"name": "event_id", "type": "string"},
            {"name": "event_time", "type": "long"},
            {"name": "entities", "type": {"type": "map", "values": "string"}},
            {"name": "fields", "type": {"type": "map", "values": "double"}},
            {"name": "channel", "type": "string"},
        ],
    }
    book.add(31, "AVRO", json.dumps(own))
    value = {k: v for k, v in EVENT.items() if k != "schema_version"}
    value = {**value, "fields": {"distance_km": 3.5}, "channel": "app"}
    event = decode_client_event(frame(31, avro_bytes(json.dumps(own), value)), 65_536,
                                WireParser(book))  # fmt: skip
    assert event.event_id == "e-1"
    assert event.fields == {"distance_km": 3.5}


def test_sensor_readings_and_labels_read_as_avro() -> None:
    readings = SchemaBook(Contract.shipped("sensor_reading"))
    readings.add(1, "AVRO", shipped("sensor_reading", "AVRO"))
    reading = {"schema_version": 1, "sensor_id": "s", "event_time": 1_795_783_200_000,
               "entities": {"courier_id": "c"},
               "values": {"speed_kmh": 12.5, "count": 3}}  # fmt: skip
    raw = frame(1, avro_bytes(shipped("sensor_reading", "AVRO"), reading))
    assert decode_sensor_reading(raw, 65_536, WireParser(readings)).values == reading["values"]
    labels = SchemaBook(Contract.shipped("ground_truth"))
    labels.add(2, "AVRO", shipped("ground_truth", "AVRO"))
    label = {"schema_version": 1, "event_id": "e", "label": 7.0, "label_time": 1_795_783_200_000}
    raw = frame(2, avro_bytes(shipped("ground_truth", "AVRO"), label))
    assert decode_ground_truth(raw, 65_536, WireParser(labels)).label == 7.0


def test_auto_reads_plain_json_beside_framed_values_and_json_topics_say_what_they_saw(
    book: SchemaBook,
) -> None:
    auto = WireParser(book, accept_plain_json=True)
    assert decode_client_event(orjson.dumps(EVENT), 65_536, auto).event_id == "e-1"
    assert decode_client_event(frame(JSON_ID, orjson.dumps(EVENT)), 65_536, auto).event_id
    assert refused(auto, frame(999, b"{}")).code == codes.UNKNOWN_SCHEMA_ID
    with pytest.raises(InvalidEvent) as caught:
        parse_object(frame(JSON_ID, orjson.dumps(EVENT)))
    assert caught.value.code == codes.INVALID_JSON
    assert "wire format" in caught.value.message
    # size limits hold before anything is looked up
    assert refused(auto, b"").code == codes.EMPTY_MESSAGE
    with pytest.raises(InvalidEvent) as big:
        decode_client_event(frame(JSON_ID, b" " * 2000), 1024, auto)
    assert big.value.code == codes.OVERSIZED


def test_unknown_ids_are_asked_again_only_after_the_retry_interval() -> None:
    book = SchemaBook(Contract.shipped("client_event"), retry_unknown_s=60)
    values = [frame(5, b"{}"), frame(5, b"[]"), frame(6, b"{}"), b"{}", None]
    assert book.missing(values, now_s=0) == {5, 6}
    book.add(5, "JSON", shipped("client_event", "JSON"))
    book.not_found(6, now_s=0)
    assert book.missing(values, now_s=59) == set()
    assert book.missing(values, now_s=61) == {6}
    assert framed_id(frame(2**32 - 1, b"")) == 2**32 - 1


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Record] = []

    async def publish(self, records: Sequence[Record]) -> None:
        self.sent.extend(records)


def test_wire_outputs_are_framed_once_even_when_published_again() -> None:
    framing = OutputFraming({"predictions": frame(41, b"")})
    inner = Recorder()
    publisher = FramedPublisher(inner, framing)
    payload = orjson.dumps({"event_id": "e"})
    asyncio.run(publisher.publish([Record("predictions", b"k", payload), Record("x", None, b"1")]))
    asyncio.run(publisher.publish(inner.sent[:1]))  # a failed record handed back
    framed, other, again = inner.sent
    assert framed.value == again.value == frame(41, payload)
    assert framed_id(framed.value) == 41
    assert other.value == b"1"


def test_bench_decode_reports_each_wire_format_against_plain_json() -> None:
    from stream_app.bench.decode import sample_events, wire_formats
    from stream_app.use_cases.spec import load_use_case

    formats = wire_formats(sample_events(load_use_case("delivery_eta"), 200), rounds=1)
    assert set(formats) == {"json", "wire_json_schema", "wire_avro"}
    assert formats["json"]["vs_json"] == 1.0
    for name in ("wire_json_schema", "wire_avro"):
        assert formats[name]["decode_eps"] > 0
        assert formats[name]["vs_json"] == pytest.approx(
            formats[name]["decode_eps"] / formats["json"]["decode_eps"], rel=0.01
        )
    # Avro's binary encoding is smaller than the JSON text it carries
    assert formats["wire_avro"]["mean_bytes"] < formats["wire_json_schema"]["mean_bytes"]


def test_the_registry_is_asked_until_it_answers_and_refusals_say_so() -> None:
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    from stream_app.kafka.schema_registry import RegistryError, fill_book

    answers: list[object] = [
        ConnectionRefusedError("registry down"),
        SchemaRegistryError(503, 50003, "unavailable"),
        ("JSON", shipped("client_event", "JSON")),
        None,  # id 8: not in the registry
    ]
    asked: list[int] = []
    waited: list[float] = []

    def lookup(schema_id: int) -> tuple[str | None, str] | None:
        asked.append(schema_id)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    book = SchemaBook(Contract.shipped("client_event"))
    fill_book(book, {7, 8}, lookup, now=lambda: 100.0, sleep=waited.append)
    assert asked == [7, 7, 7, 8]
    assert len(waited) == 2  # two outages, two waits, nothing dead-lettered for them
    assert book.known[7].mismatch is None
    assert book.unknown == {8: 100.0}

    def unauthorized(schema_id: int) -> None:
        raise SchemaRegistryError(401, 40101, "Unauthorized")

    with pytest.raises(RegistryError, match="refused id 9"):
        fill_book(book, {9}, unauthorized, now=lambda: 0.0, sleep=waited.append)
