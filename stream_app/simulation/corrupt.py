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
