"""The records the services exchange, at the bottom of the layers: no service imports another's.

``InputMessage`` is a consumed Kafka record as a batch consumer hands it to a service;
``Record`` an output record a service hands to the producer; ``Refused`` an input refused with
the reason it goes to the dead-letter topic.
"""

from __future__ import annotations

from typing import NamedTuple

from stream_app.errors import InvalidEvent


class InputMessage(NamedTuple):
    """A consumed Kafka record, as the agents hand it to the services."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


class Record(NamedTuple):
    """An output record: its topic, key and value (bytes)."""

    topic: str
    key: bytes | None
    value: bytes


class Refused(NamedTuple):
    """An input message refused, and why (its dead-letter code and message)."""

    message: InputMessage
    error: InvalidEvent
