"""The schema registry, for topics in the Confluent wire format (``contracts.wire``).

``RegistrySchemas`` fills each input topic's ``SchemaBook`` before a batch is decoded: the
ids the book has no answer for are asked of the registry once each (on a thread, so the event
loop never waits on HTTP), an id the registry does not know is remembered as unknown, and an
outage is retried with back-off until the registry answers, like a Cassandra outage: the
batch waits, nothing is dead-lettered for it. ``Registry`` also registers the project's
schemas (``init``) and gives an output subject's latest id (wire outputs).

The client is confluent-kafka's own ``SchemaRegistryClient``: it speaks the Confluent API that
Apicurio (``/apis/ccompat/v7``), Karapace and Confluent serve, with its caches and auth.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from stream_app.bundled import bundled_path
from stream_app.contracts.decode import ObjectParser, parse_object
from stream_app.contracts.wire import Contract, SchemaBook, WireParser, frame
from stream_app.errors import StreamAppError
from stream_app.kafka.producer import Publisher
from stream_app.messages import Record
from stream_app.retry import backoff_delays
from stream_app.settings import SchemaRegistrySettings, TopicNames

log = logging.getLogger(__name__)
T = TypeVar("T")

SUBJECT_NOT_FOUND = 40401
# The input topics, the contract of their records, and their Avro equivalents.
INPUT_CONTRACTS = {
    "client_events": "client_event",
    "sensor_readings": "sensor_reading",
    "ground_truth": "ground_truth",
}
# The outputs framed with their subject's latest schema when ``outputs = "wire"``.
OUTPUT_CONTRACTS = {"predictions": "prediction", "accuracy_events": "accuracy_event"}
OTHER_CONTRACTS = {
    "dead_letter": "dead_letter",
    "model_updates": "model_update",
    "model_decisions": "model_decision",
    "performance_estimates": "performance_estimate",
}


class RegistryError(StreamAppError):
    """The schema registry refused a request (a message from the registry, one line)."""


def subject(topic: str) -> str:
    """The subject of ``topic``'s values under the default TopicNameStrategy."""
    return f"{topic}-value"


def _outage(exc: BaseException) -> bool:
    """A failure to retry: anything but the registry's own answer to a bad request."""
    if isinstance(exc, SchemaRegistryError):
        return exc.http_status_code >= 500 or exc.http_status_code in (408, 429, -1)
    return True


@dataclass
class Registry:
    """A client of the registry at ``settings.url``."""

    settings: SchemaRegistrySettings
    client: SchemaRegistryClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = SchemaRegistryClient(self.settings.client_config())

    def schema(self, schema_id: int) -> tuple[str | None, str] | None:
        """The type and text of the schema under ``schema_id``, None if the registry knows
        no such id."""
        try:
            found: Schema = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return None
            raise
        return found.schema_type, found.schema_str or ""

    def fill(self, book: SchemaBook, ids: set[int], now: Callable[[], float]) -> None:
        fill_book(book, ids, self.schema, now)

    def _answer(self, what: str, call: Callable[[], T]) -> T:
        """``call()``, its failures as one-line ``RegistryError``s saying ``what`` failed."""
        try:
            return call()
        except SchemaRegistryError as exc:
            if exc.error_code == SUBJECT_NOT_FOUND:
                raise RegistryError(
                    f"{what}: the subject has no schema in the registry; run `stream-app init` "
                    "with SCHEMA_REGISTRY__URL set"
                ) from None
            raise RegistryError(f"{what}: the registry refused: {exc.error_message}") from None
        except Exception as exc:  # down or unreachable
            raise RegistryError(
                f"{what}: the schema registry at {self.settings.url} did not answer "
                f"({type(exc).__name__}: {exc})"
            ) from None

    def register(self, topic: str, schema_type: str, text: str) -> int:
        """Register ``text`` under ``topic``'s subject (the same schema again: its id)."""
        schema = Schema(text, schema_type)
        return self._answer(
            f"registering the {schema_type} schema of {topic} (subject {subject(topic)})",
            lambda: int(self.client.register_schema(subject(topic), schema)),
        )

    def set_compatibility(self, topic: str, level: str) -> None:
        self._answer(
            f"setting {subject(topic)}'s compatibility to {level}",
            lambda: self.client.set_compatibility(subject(topic), level),
        )

    def latest_id(self, topic: str) -> int:
        """The id of ``topic``'s subject's latest schema."""
        latest = self._answer(
            f"the latest schema of {subject(topic)}",
            lambda: self.client.get_latest_version(subject(topic)),
        )
        if latest.schema_id is None:
            raise RegistryError(f"the registry gave no id for {subject(topic)}'s latest schema")
        return latest.schema_id


SchemaLookup = Callable[[int], "tuple[str | None, str] | None"]


def fill_book(
    book: SchemaBook,
    ids: set[int],
    lookup: SchemaLookup,
    now: Callable[[], float],
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Ask ``lookup`` for each id of ``ids`` until it answers: an outage (the registry down,
    a 5xx) is retried with back-off, for ever, as a Cassandra outage is; a refusal (4xx but
    not found) raises ``RegistryError`` (misconfigured credentials, say)."""
    for schema_id in sorted(ids):
        attempt = 0
        while True:
            try:
                found = lookup(schema_id)
                break
            except Exception as exc:
                if not _outage(exc):
                    raise RegistryError(
                        f"the schema registry refused id {schema_id}: {exc}"
                    ) from None
                delay = backoff_delays(0.2, 10.0, attempt)
                log.warning("schema registry: asking for id %d failed (%s: %s); retry %d in "
                            "%.1f s", schema_id, type(exc).__name__, exc, attempt + 1,
                            delay)  # fmt: skip
                attempt += 1
                sleep(delay)
        if found is None:
            book.not_found(schema_id, now())
        else:
            book.add(schema_id, *found)


def shipped_schema(contract: str, schema_type: str) -> str:
    """The text of the shipped JSON Schema or Avro schema of ``contract``."""
    if schema_type == "AVRO":
        return bundled_path(f"schemas/avro/{contract}.avsc").read_text()
    return bundled_path(f"schemas/{contract}.schema.json").read_text()


def register_shipped(
    registry: Registry, topics: TopicNames, settings: SchemaRegistrySettings
) -> dict[str, int]:
    """Every topic's schema under its subject, with the compatibility level set: the inputs as
    ``input_schema_type`` says, every other topic as its JSON Schema. Returns the ids."""
    names = topics.model_dump()
    ids = {}
    for role, contract in {**INPUT_CONTRACTS, **OUTPUT_CONTRACTS, **OTHER_CONTRACTS}.items():
        kind = settings.input_schema_type if role in INPUT_CONTRACTS else "JSON"
        text = shipped_schema(contract, kind)
        if kind == "AVRO":
            text = json.dumps(json.loads(text))  # one line, as serializers send it
        ids[names[role]] = registry.register(names[role], kind, text)
        registry.set_compatibility(names[role], settings.compatibility)
    return ids


@dataclass
class RegistrySchemas:
    """The parser of each input topic and, for the framed ones, their schema books."""

    settings: SchemaRegistrySettings
    registry: Registry | None = None
    books: dict[str, SchemaBook] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic

    def parser(self, topic: str) -> ObjectParser:
        """The parser of the input topic ``topic`` (client_events, sensor_readings, ...)."""
        form = self.settings.input_format(topic)
        if form == "json":
            return parse_object
        if self.registry is None:
            self.registry = Registry(self.settings)
        book = self.books.setdefault(
            topic,
            SchemaBook(Contract.shipped(INPUT_CONTRACTS[topic]), self.settings.unknown_id_retry_s),
        )
        return WireParser(book, accept_plain_json=form == "auto")

    def reader(self, topic: str) -> TopicReader:
        """The parser of the input topic ``topic`` and, if it is framed, its registry lookup."""
        parse = self.parser(topic)
        return TopicReader(topic, parse, self if topic in self.books else None)

    def missing(self, topic: str, values: Sequence[bytes | None]) -> set[int]:
        book = self.books.get(topic)
        return set() if book is None else book.missing(values, self.clock())

    def prepare_blocking(self, topic: str, values: Sequence[bytes | None]) -> None:
        """Ask the registry for the ids of ``values`` not seen yet (replay, off the loop)."""
        ids = self.missing(topic, values)
        if ids and self.registry is not None:
            self.registry.fill(self.books[topic], ids, self.clock)

    async def prepare(self, topic: str, values: Sequence[bytes | None]) -> None:
        """``prepare_blocking`` on a thread: the event loop goes on while the registry answers."""
        ids = self.missing(topic, values)
        if ids and self.registry is not None:
            await asyncio.to_thread(self.registry.fill, self.books[topic], ids, self.clock)


@dataclass(frozen=True)
class TopicReader:
    """How one input topic's values are read: ``parse``, and for a framed topic the registry
    lookup (``prepare``) to run before a batch is decoded (``framed`` says whether there is
    one; a plain JSON topic has nothing to ask)."""

    topic: str
    parse: ObjectParser
    schemas: RegistrySchemas | None = None

    @property
    def framed(self) -> bool:
        return self.schemas is not None

    async def prepare(self, values: Sequence[bytes | None]) -> None:
        if self.schemas is not None:
            await self.schemas.prepare(self.topic, values)

    def prepare_blocking(self, values: Sequence[bytes | None]) -> None:
        if self.schemas is not None:
            self.schemas.prepare_blocking(self.topic, values)


@dataclass(frozen=True)
class OutputFraming:
    """The 5-byte header each framed output topic's values get (``outputs = "wire"``)."""

    headers: dict[str, bytes]

    @classmethod
    def of(cls, settings: SchemaRegistrySettings, topics: TopicNames) -> OutputFraming:
        if settings.outputs != "wire":
            return cls({})
        registry = Registry(settings)
        names = topics.model_dump()
        return cls({names[r]: frame(registry.latest_id(names[r]), b"") for r in OUTPUT_CONTRACTS})

    def value(self, topic: str, payload: bytes) -> bytes:
        """``payload`` framed if ``topic`` is framed (once: a framed value is left alone, so
        records handed back by a failed publish can be published again)."""
        header = self.headers.get(topic)
        if header is None or payload[:1] == b"\0":  # JSON text never starts with byte 0
            return payload
        return header + payload


@dataclass(frozen=True)
class FramedPublisher:
    """A ``Publisher`` that frames the values of the framed output topics."""

    inner: Publisher
    framing: OutputFraming

    async def publish(self, records: Sequence[Record]) -> None:
        value = self.framing.value
        await self.inner.publish([r._replace(value=value(r.topic, r.value)) for r in records])


def framed_outputs(
    publisher: Publisher, settings: SchemaRegistrySettings, topics: TopicNames
) -> Publisher:
    """``publisher``, framing outputs when ``outputs = "wire"``."""
    framing = OutputFraming.of(settings, topics)
    return FramedPublisher(publisher, framing) if framing.headers else publisher
