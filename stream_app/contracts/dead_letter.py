"""Dead-letter records: a refused message, where it came from and why."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any, TypedDict

import orjson

from stream_app.errors import InvalidEvent
from stream_app.messages import Headers, InputMessage, Record, Refused
from stream_app.tracing.context import child_headers

PREVIEW_CHARS = 200


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


class _DeadLetterRequired(TypedDict):
    schema_version: int
    source_topic: str
    partition: int
    offset: int
    key_b64: str | None
    value_b64: str | None
    error_code: str
    error_message: str
    failed_at: int


class DeadLetter(_DeadLetterRequired, total=False):
    """A value of the dead-letter topic (schemas/dead_letter.schema.json)."""

    value_preview: str  # optional in the contract; always written by stream-app
    agent: str


def dead_letter_payload(
    *,
    source_topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    error: InvalidEvent,
    agent: str,
    failed_at: int,
) -> DeadLetter:
    """The dead-letter record for one refused message (see schemas/dead_letter.schema.json)."""
    preview = "" if value is None else value[: PREVIEW_CHARS * 4].decode("utf-8", "replace")
    return {
        "schema_version": 1,
        "source_topic": source_topic,
        "partition": partition,
        "offset": offset,
        "key_b64": _b64(key),
        "value_b64": _b64(value),
        "value_preview": preview[:PREVIEW_CHARS],
        "error_code": error.code,
        "error_message": error.message,
        "failed_at": failed_at,
        "agent": agent,
    }


def encode_dead_letter(**fields: Any) -> bytes:
    """``dead_letter_payload`` encoded as JSON bytes."""
    return orjson.dumps(dead_letter_payload(**fields))


def original_bytes(record: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    """The original key and value of a dead-letter record, exactly as they were received."""
    key, value = record.get("key_b64"), record.get("value_b64")
    return (
        None if key is None else base64.b64decode(key),
        None if value is None else base64.b64decode(value),
    )


def _own_trace(message: InputMessage) -> Headers:
    return child_headers(message.headers)


def dead_letters(
    refused: Sequence[Refused],
    dead_letter_topic: str,
    agent: str,
    now_ms: int,
    headers_of: Callable[[InputMessage], Headers] = _own_trace,
) -> tuple[list[DeadLetter], list[Record]]:
    """One dead letter per refused message: its payload (for the monitor) and its record for
    the dead-letter topic, keyed by the original key, with the trace headers ``headers_of``
    gives the message (default: its own trace with a new span id, or a new trace)."""
    payloads = [
        dead_letter_payload(
            source_topic=r.message.topic,
            partition=r.message.partition,
            offset=r.message.offset,
            key=r.message.key,
            value=r.message.value,
            error=r.error,
            agent=agent,
            failed_at=now_ms,
        )
        for r in refused
    ]
    records = [
        Record(dead_letter_topic, r.message.key, orjson.dumps(payload), headers_of(r.message))
        for r, payload in zip(refused, payloads, strict=True)
    ]
    return payloads, records
