"""The Confluent wire format: a magic byte 0, the schema's id in the registry (4 bytes, big
endian), then the value, JSON for a JSON Schema and Avro's binary encoding for an Avro schema.

Pure: the schemas come in through a ``SchemaBook`` that the Kafka layer
(``kafka.schema_registry``) fills from the registry before a batch is decoded, so decoding
never waits on the network. Every way a framed message can be wrong has its own dead-letter
code: not framed (``bad_magic_byte``), an id the registry does not know
(``unknown_schema_id``), a schema that does not describe this topic's records
(``schema_mismatch``), bytes that are not a value of their Avro schema (``invalid_avro``).
After that, the object goes through the same checks as a plain JSON message.
"""

from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import fastavro

from stream_app.bundled import bundled_path
from stream_app.contracts import codes
from stream_app.contracts.decode import check_object, check_size, loads_json, parse_object
from stream_app.errors import InvalidEvent

MAGIC = 0
HEADER = struct.Struct(">bI")
InputFormat = Literal["json", "wire", "auto"]
SchemaType = Literal["JSON", "AVRO"]


def frame(schema_id: int, payload: bytes) -> bytes:
    """``payload`` in the wire format, under ``schema_id``."""
    return HEADER.pack(MAGIC, schema_id) + payload


def json_text(raw: bytes) -> bytes:
    """The JSON text of a value written as JSON: itself, or past the frame of a JSON Schema
    wire-format value (the project's own outputs with ``outputs = "wire"``)."""
    return raw[HEADER.size :] if framed_id(raw) is not None else raw


def framed_id(raw: bytes | None) -> int | None:
    """The schema id of a framed message, or None when ``raw`` is not framed."""
    if raw is None or len(raw) < HEADER.size or raw[0] != MAGIC:
        return None
    return int(HEADER.unpack_from(raw)[1])


@dataclass(frozen=True)
class Contract:
    """What a topic's records must be: the JSON Schema's required properties and the Avro
    schema the worker reads Avro values as (a writer's schema is resolved against it)."""

    name: str
    required: frozenset[str]
    avro: dict[str, Any] = field(hash=False, compare=False)

    @classmethod
    def shipped(cls, name: str) -> Contract:
        """The contract of ``schemas/<name>.schema.json`` and ``schemas/avro/<name>.avsc``."""
        spec = json.loads(bundled_path(f"schemas/{name}.schema.json").read_text())
        avro = json.loads(bundled_path(f"schemas/avro/{name}.avsc").read_text())
        parsed: dict[str, Any] = fastavro.parse_schema(avro)  # type: ignore[assignment]
        return cls(name, frozenset(spec["required"]), parsed)


@dataclass(frozen=True)
class WriterSchema:
    """A schema the registry holds, as this worker reads it for one contract."""

    schema_id: int
    schema_type: str
    avro: Any = None  # the parsed Avro schema (AVRO only)
    mismatch: str | None = None  # why it does not describe the contract's records, if so


def writer_schema(
    schema_id: int, schema_type: str | None, text: str, contract: Contract
) -> WriterSchema:
    """Judge a registered schema against ``contract`` once, when it is first seen."""
    kind = (schema_type or "AVRO").upper()  # the registry omits the type of Avro schemas
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = text  # an Avro primitive given bare, e.g. "string"
    if kind == "JSON":
        return WriterSchema(schema_id, kind, mismatch=_json_mismatch(parsed, contract))
    if kind != "AVRO":
        return WriterSchema(schema_id, kind, mismatch=f"{kind} schemas are not read")
    try:
        avro = fastavro.parse_schema(parsed)
    except Exception as exc:  # fastavro raises several kinds for a schema it cannot parse
        return WriterSchema(schema_id, kind, mismatch=f"not an Avro schema: {exc}")
    return WriterSchema(schema_id, kind, avro=avro, mismatch=_avro_mismatch(avro, contract))


def _json_mismatch(schema: Any, contract: Contract) -> str | None:
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        return "a JSON Schema of something other than an object"
    declared = set(schema.get("properties") or {})
    absent = sorted(contract.required - declared)
    if absent:
        return f"the JSON Schema does not declare {absent}, which a {contract.name} needs"
    return None


def _avro_mismatch(avro: Any, contract: Contract) -> str | None:
    if not isinstance(avro, dict) or avro.get("type") != "record":
        return "an Avro schema of something other than a record"
    written = {f["name"] for f in avro["fields"]}
    needed = [f["name"] for f in contract.avro["fields"] if "default" not in f]
    absent = sorted(set(needed) - written)
    if absent:
        return f"the Avro record has no {absent}, which a {contract.name} needs"
    return None


@dataclass
class SchemaBook:
    """The schemas seen so far, by id, for one contract. Ids the registry said it does not
    know are remembered for ``retry_unknown_s`` (a flood of them costs one lookup; a schema
    registered late is found after that long)."""

    contract: Contract
    retry_unknown_s: float = 60.0
    known: dict[int, WriterSchema] = field(default_factory=dict)
    unknown: dict[int, float] = field(default_factory=dict)  # id -> when it was asked (s)

    def add(self, schema_id: int, schema_type: str | None, text: str) -> WriterSchema:
        schema = writer_schema(schema_id, schema_type, text, self.contract)
        self.known[schema_id] = schema
        self.unknown.pop(schema_id, None)
        return schema

    def not_found(self, schema_id: int, now_s: float) -> None:
        self.unknown[schema_id] = now_s

    def missing(self, values: Iterable[bytes | None], now_s: float) -> set[int]:
        """The ids of framed ``values`` to ask the registry for: never seen, or unknown
        when last asked more than ``retry_unknown_s`` ago."""
        ids = {i for i in map(framed_id, values) if i is not None and i not in self.known}
        return {i for i in ids if now_s - self.unknown.get(i, -math.inf) > self.retry_unknown_s}


@dataclass(frozen=True)
class WireParser:
    """An ``ObjectParser`` for a topic read as ``wire`` (every value framed) or ``auto``
    (framed values and plain JSON side by side, told apart by the first byte)."""

    book: SchemaBook
    accept_plain_json: bool = False

    def __call__(self, raw: bytes | None, max_bytes: int) -> dict[str, Any]:
        raw = check_size(raw, max_bytes)
        schema_id = framed_id(raw)
        if schema_id is None:
            if self.accept_plain_json and raw[:1] != b"\0":
                return parse_object(raw, max_bytes)
            raise InvalidEvent(
                codes.BAD_MAGIC_BYTE,
                f"not in the Confluent wire format (first byte {raw[0]}, {len(raw)} bytes; "
                f"expected byte 0 and a 4-byte schema id)",
            )
        schema = self.book.known.get(schema_id)
        if schema is None:
            raise InvalidEvent(
                codes.UNKNOWN_SCHEMA_ID, f"schema id {schema_id} is not in the schema registry"
            )
        if schema.mismatch is not None:
            raise InvalidEvent(codes.SCHEMA_MISMATCH, f"schema id {schema_id}: {schema.mismatch}")
        if schema.avro is None:  # JSON Schema: the value is JSON text (its size checked above)
            return check_object(loads_json(raw[HEADER.size :]))
        return check_object(_read_avro(raw, schema, self.book.contract))


def _read_avro(raw: bytes, schema: WriterSchema, contract: Contract) -> Any:
    """The value as the writer wrote it (any record with the contract's fields reads; its
    values then meet the same checks as JSON's), with the contract's defaults filled in."""
    buffer = io.BytesIO(raw)
    buffer.seek(HEADER.size)
    try:
        value: Any = fastavro.schemaless_reader(buffer, schema.avro, None)
    except Exception as exc:  # truncated or corrupt bytes raise EOFError, ValueError, ...
        raise InvalidEvent(
            codes.INVALID_AVRO,
            f"not a value of schema id {schema.schema_id}: {type(exc).__name__}: {exc}",
        ) from None
    if buffer.tell() != len(raw):
        raise InvalidEvent(
            codes.INVALID_AVRO,
            f"{len(raw) - buffer.tell()} bytes left after a value of schema id {schema.schema_id}",
        )
    for spec in contract.avro["fields"]:
        if "default" in spec and spec["name"] not in value:
            value[spec["name"]] = spec["default"]
    return value
