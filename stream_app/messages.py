"""The records the services exchange, at the bottom of the layers: no service imports another's.

``InputMessage`` is a consumed Kafka record as a batch consumer hands it to a service;
``Record`` an output record a service hands to the producer; ``Refused`` an input refused with
the reason it goes to the dead-letter topic. Both records carry their Kafka headers (empty, the
shared ``NO_HEADERS``, when there are none); ``stream_app.tracing`` reads and writes the W3C
trace context in them.
"""

from __future__ import annotations

from typing import NamedTuple

from stream_app.errors import InvalidEvent

# Kafka headers as (name, value) pairs, in order (a name may repeat; a value may be null).
Headers = tuple[tuple[str, bytes | None], ...]
NO_HEADERS: Headers = ()


class InputMessage(NamedTuple):
    """A consumed Kafka record, as the agents hand it to the services."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: Headers = NO_HEADERS


class Record(NamedTuple):
    """An output record: its topic, key, value (bytes) and headers."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = NO_HEADERS


class Refused(NamedTuple):
    """An input message refused, and why (its dead-letter code and message)."""

    message: InputMessage
    error: InvalidEvent
