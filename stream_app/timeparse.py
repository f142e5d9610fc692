"""Times on the command line: ISO 8601, epoch milliseconds, or a duration ago ("7d")."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from stream_app.errors import ConfigurationError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str) -> int:
    """``"500ms"``, ``"30s"``, ``"5m"``, ``"2h"``, ``"7d"`` in milliseconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 2h or 7d")
    return int(float(match.group(1)) * _UNIT_MS[match.group(2)])


def parse_time_ms(text: str, now_ms: int) -> int:
    """``2026-11-20T08:00:00Z``, ``2026-11-20``, ``1795783200000`` or ``7d`` / ``90m`` (ago)."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        return now_ms - parse_duration_ms(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigurationError(
            f"{text!r} is not a time: use ISO 8601 (2026-11-20T08:00:00Z), epoch ms, "
            "or a duration ago (90m, 7d)"
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def format_ms(ms: int) -> str:
    """An epoch-ms time as ISO 8601 UTC."""
    return (
        datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )
