"""Dead-letter records: a refused message, where it came from and why."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from stream_app.errors import InvalidEvent

PREVIEW_CHARS = 200


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


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
) -> dict[str, Any]:
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
