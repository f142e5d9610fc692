"""Invalid client events, one kind per dead-letter code, for tests and demos.

``simulate --invalid-rate`` mixes these into the stream so the dead-letter path is exercised
the way real producers break it.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from stream_app.contracts import codes


def _edit(valid: bytes, change: Callable[[dict[str, object]], object]) -> bytes:
    payload = orjson.loads(valid)
    change(payload)
    return orjson.dumps(payload)


def _nan(valid: bytes) -> bytes:
    return valid.replace(b'"fields":{', b'"fields":{"nan_field":NaN,', 1)


# Each builder turns a valid client event into one refused with the code it is keyed by.
CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    codes.EMPTY_MESSAGE: lambda valid: b"",
    codes.OVERSIZED: lambda valid: valid[:-1] + b',"padding":"' + b"x" * 70_000 + b'"}',
    codes.INVALID_UTF8: lambda valid: valid[:-2] + b"\xff\xfe" + valid[-2:],
    codes.INVALID_JSON: lambda valid: valid[: len(valid) // 2],
    codes.TOO_DEEP: lambda valid: b"[" * 1100 + b"]" * 1100,
    codes.NON_FINITE_NUMBER: _nan,
    codes.NOT_AN_OBJECT: lambda valid: b"[" + valid + b"]",
    codes.UNKNOWN_SCHEMA_VERSION: lambda valid: _edit(
        valid, lambda p: p.__setitem__("schema_version", 99)
    ),
    codes.MISSING_FIELD: lambda valid: _edit(valid, lambda p: p.pop("event_time")),
    codes.WRONG_TYPE: lambda valid: _edit(valid, lambda p: p.__setitem__("fields", "distance")),
    codes.INVALID_VALUE: lambda valid: _edit(
        valid,
        lambda p: p.__setitem__("event_time", int(p["event_time"]) // 1000),  # type: ignore[call-overload]
    ),
}


def corrupt(valid: bytes, index: int) -> tuple[str, bytes]:
    """The ``index``-th corruption (cycling through the codes) of a valid client event."""
    code = list(CORRUPTIONS)[index % len(CORRUPTIONS)]
    return code, CORRUPTIONS[code](valid)


def _deep_object(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _random_bytes(valid: bytes, index: int) -> bytes:
    seed = (index * 2654435761) % 2**32
    return bytes((seed >> (i % 24)) & 0xFF ^ (i * 131) & 0xFF for i in range(64 + index % 200))


# Hostile input beyond the dead-letter codes' examples: what a fuzzer or a broken producer
# sends. Each is refused with some code; none may stop a worker.
HOSTILE: dict[str, Callable[[bytes, int], bytes]] = {
    "random_bytes": _random_bytes,
    "huge_float": lambda valid, i: valid.replace(b'"fields":{', b'"fields":{"h":1e400,', 1),
    "huge_integer": lambda valid, i: valid.replace(
        b'"fields":{', b'"fields":{"h":1' + b"0" * 4000 + b",", 1
    ),
    "deep_object": lambda valid, i: _deep_object(5000),
    "deep_array_in_fields": lambda valid, i: valid.replace(
        b'"fields":{', b'"fields":{"h":' + b"[" * 900 + b"]" * 900 + b",", 1
    ),
    "invalid_utf8_in_string": lambda valid, i: valid.replace(
        b'"event_id":"', b'"event_id":"\xc3\x28', 1
    ),
    "nul_bytes": lambda valid, i: b"\x00" * (1 + i % 100),
    "entity_not_a_string": lambda valid, i: _edit(
        valid,
        lambda p: p["entities"].__setitem__("zone_id", [1]),  # type: ignore[index]
    ),
    "fields_not_an_object": lambda valid, i: _edit(
        valid, lambda p: p.__setitem__("fields", [1, 2])
    ),
    "event_id_too_long": lambda valid, i: _edit(
        valid, lambda p: p.__setitem__("event_id", "x" * 5000)
    ),
    "time_as_string": lambda valid, i: _edit(
        valid, lambda p: p.__setitem__("event_time", "yesterday")
    ),
    "bare_number": lambda valid, i: b"12345678901234567890",
    "trailing_garbage": lambda valid, i: valid + b"}}}",
}


def hostile(valid: bytes, index: int) -> bytes:
    """The ``index``-th hostile message: the dead-letter kinds (one in a hundred oversized, so a
    run of many stays small) and the ``HOSTILE`` kinds, in turn."""
    kinds = [k for k in CORRUPTIONS if k != codes.OVERSIZED] + list(HOSTILE)
    if index % 100 == 99:
        return CORRUPTIONS[codes.OVERSIZED](valid)
    kind = kinds[index % len(kinds)]
    if kind in CORRUPTIONS:
        return CORRUPTIONS[kind](valid)
    return HOSTILE[kind](valid, index)
