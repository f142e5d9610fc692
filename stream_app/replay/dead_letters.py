"""Re-injecting dead-lettered input that now validates, once (`stream-app replay --reprocess`).

After a decoder or schema fix, some records of the dead-letter topic would now be accepted.
For a time range of that topic, each record whose original (source topic, partition, offset)
matches the filters and now decodes is produced again to its source topic with its original
key and value bytes, and recorded in the ``reprocessed_dead_letters`` table; a record found
there is never produced again, so a second run over the same range re-injects nothing.

Only the three input topics (client events, sensor readings, ground truth) are ever written
to. A record is recorded only after the broker acknowledged its copy (idempotent producer,
acks=all); a crash between the acknowledgement and the write to Cassandra can therefore
re-inject that batch once more on the next run, and two runs at the same time over the same
range are not protected from each other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, NamedTuple

import orjson
from cassandra.cluster import Session

from stream_app.contracts import codes
from stream_app.contracts.dead_letter import original_bytes
from stream_app.contracts.decode import (
    ObjectParser,
    decode_client_event,
    decode_ground_truth,
    decode_sensor_reading,
    parse_object,
)
from stream_app.errors import ConfigurationError, InvalidEvent, TopicSetupError
from stream_app.kafka.producer import PublishError, produce_when_room
from stream_app.kafka.schema_registry import RegistrySchemas
from stream_app.messages import Record
from stream_app.replay.plan import ReplayPlan
from stream_app.replay.reader import read_range
from stream_app.settings import Settings, TopicNames
from stream_app.storage.cql import write_all

# Why a dead-letter record is not re-injected, besides the decoders' own codes. These are not
# in ``codes.ALL_CODES``: no worker refuses a message for these reasons.
NOT_AN_INPUT_TOPIC = "not_an_input_topic"
NOT_A_DEAD_LETTER = "not_a_dead_letter"

FILTER_KEYS = ("code", "source", "agent")
REINJECTED_HEADER = "stream-app-reinjected-from"
LOOKUP_CHUNK = 100  # offsets per IN (...) query
DELIVERY_TIMEOUT_S = 60.0

Origin = tuple[str, int, int]  # the original's source topic, partition, offset


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead-letter records to consider: values of one key OR together, keys AND
    together, and a key without values matches everything."""

    codes: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset()
    agents: frozenset[str] = frozenset()

    def matches(self, record: dict[str, Any]) -> bool:
        """Whether a (decoded) dead-letter record passes every filter."""
        return all(
            not allowed or record.get(name) in allowed
            for name, allowed in (
                ("error_code", self.codes),
                ("source_topic", self.sources),
                ("agent", self.agents),
            )
        )

    def as_dict(self) -> dict[str, list[str]]:
        """The filters for a JSON summary (keys as on the command line)."""
        return {"code": sorted(self.codes), "source": sorted(self.sources),
                "agent": sorted(self.agents)}  # fmt: skip


def parse_filters(values: Iterable[str]) -> DeadLetterFilter:
    """``--filter KEY=VALUE`` options as a filter; ``ConfigurationError`` for anything else.

    ``code`` takes an error code of ``codes.ALL_CODES`` (any case), ``source`` a source
    topic's name as it appears in the records, ``agent`` the name of the refusing agent.
    """
    chosen: dict[str, set[str]] = {key: set() for key in FILTER_KEYS}
    for item in values:
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not value:
            raise ConfigurationError(
                f"--filter {item!r}: expected KEY=VALUE with KEY one of {', '.join(FILTER_KEYS)}"
            )
        if key not in chosen:
            raise ConfigurationError(
                f"--filter {item!r}: unknown key {key!r}, expected one of {', '.join(FILTER_KEYS)}"
            )
        if key == "code":
            value = value.lower()
            if value not in codes.ALL_CODES:
                raise ConfigurationError(
                    f"--filter {item!r}: unknown error code, expected one of "
                    f"{', '.join(codes.ALL_CODES)}"
                )
        chosen[key].add(value)
    return DeadLetterFilter(
        frozenset(chosen["code"]), frozenset(chosen["source"]), frozenset(chosen["agent"])
    )


def read_dead_letter(raw: bytes | None) -> dict[str, Any]:
    """A dead-letter record's JSON, checked enough to find and rebuild its original, or
    ``InvalidEvent`` (``NOT_A_DEAD_LETTER``)."""
    try:
        record = orjson.loads(raw or b"")
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(NOT_A_DEAD_LETTER, f"not JSON: {exc}") from None
    if type(record) is not dict:
        raise InvalidEvent(NOT_A_DEAD_LETTER, "not a JSON object")
    if type(record.get("source_topic")) is not str or not record["source_topic"]:
        raise InvalidEvent(NOT_A_DEAD_LETTER, "source_topic is missing or not a string")
    for name in ("partition", "offset"):
        if type(record.get(name)) is not int or record[name] < 0:
            raise InvalidEvent(NOT_A_DEAD_LETTER, f"{name} is missing or not an integer >= 0")
    for name in ("key_b64", "value_b64"):
        encoded = record.get(name)
        if encoded is not None:
            try:
                base64.b64decode(encoded, validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise InvalidEvent(NOT_A_DEAD_LETTER, f"{name} is not base64") from None
    return record


def revalidate(
    record: dict[str, Any],
    topics: TopicNames,
    max_bytes: int,
    schemas: RegistrySchemas | None = None,
) -> InvalidEvent | None:
    """Why the original of a dead-letter record would still be refused, or ``None`` when it
    now decodes (read as the worker reads its topic, with ``schemas``: a framed value whose
    schema was registered since passes). Only originals of an input topic can pass; others
    get ``NOT_AN_INPUT_TOPIC``."""
    decoders: dict[str, tuple[str, Callable[[bytes | None, int, ObjectParser], object]]] = {
        topics.client_events: ("client_events", decode_client_event),
        topics.sensor_readings: ("sensor_readings", decode_sensor_reading),
        topics.ground_truth: ("ground_truth", decode_ground_truth),
    }
    source = record.get("source_topic")
    role, decoder = decoders.get(source, ("", None)) if isinstance(source, str) else ("", None)
    if decoder is None:
        return InvalidEvent(
            NOT_AN_INPUT_TOPIC,
            f"{source!r} is not an input topic ({', '.join(decoders)}); only input is re-injected",
        )
    try:
        _, value = original_bytes(record)
    except (binascii.Error, TypeError, ValueError):
        return InvalidEvent(NOT_A_DEAD_LETTER, "the original bytes are not base64")
    parse: ObjectParser = parse_object
    if schemas is not None:
        reader = schemas.reader(role)
        reader.prepare_blocking([value])
        parse = reader.parse
    try:
        decoder(value, max_bytes, parse)
    except InvalidEvent as refusal:
        return refusal
    return None


def original_digest(key: bytes | None, value: bytes | None) -> str:
    """sha256 hex of an original key and value (a missing key differs from an empty one)."""
    digest = hashlib.sha256()
    for part in (key, value):
        digest.update(b"\x00" if part is None else b"\x01%d:" % len(part) + part)
    return digest.hexdigest()


class Candidate(NamedTuple):
    """A dead-lettered original that now validates, to be re-injected."""

    origin: Origin
    key: bytes | None
    value: bytes
    digest: str
    error_code: str
    dead_letter: str  # <topic>/<partition>/<offset> of the dead-letter record


@dataclass
class ReprocessOutcome:
    """What a run read and did (in a dry run, ``reinjected`` is what would be re-injected)."""

    dry_run: bool
    read: int = 0  # dead-letter records in the range
    unreadable: int = 0  # not dead-letter records (NOT_A_DEAD_LETTER)
    matched: int = 0  # readable and passing the filters
    duplicates: int = 0  # the same original, seen earlier in this run
    already_reinjected: int = 0  # by an earlier run
    still_invalid: Counter[str] = field(default_factory=Counter)  # by error code
    reinjected: Counter[str] = field(default_factory=Counter)  # by source topic

    def as_dict(self) -> dict[str, Any]:
        """The counts for JSON output."""
        return {
            "dry_run": self.dry_run,
            "read": self.read,
            "unreadable": self.unreadable,
            "matched": self.matched,
            "duplicates": self.duplicates,
            "already_reinjected": self.already_reinjected,
            "still_invalid": dict(sorted(self.still_invalid.items())),
            "reinjected": dict(sorted(self.reinjected.items())),
            "reinjected_total": sum(self.reinjected.values()),
        }


class ReinjectionLog:
    """The ``reprocessed_dead_letters`` table: which originals were re-injected."""

    def __init__(self, session: Session, keyspace: str) -> None:
        self._session = session
        table = f"{keyspace}.reprocessed_dead_letters"
        self._select = session.prepare(
            f"SELECT source_offset, original_digest FROM {table} "
            "WHERE source_topic = ? AND source_partition = ? AND source_offset IN ?"
        )
        self._insert = session.prepare(
            f"INSERT INTO {table} (source_topic, source_partition, source_offset, "
            "original_digest, error_code, reinjected_at, new_partition, new_offset, "
            "replay_group) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )

    def already(self, candidates: list[Candidate]) -> set[Origin]:
        """The origins of ``candidates`` re-injected before (same offset and same bytes)."""
        wanted: dict[tuple[str, int], dict[int, str]] = {}
        for c in candidates:
            topic, partition, offset = c.origin
            wanted.setdefault((topic, partition), {})[offset] = c.digest
        found: set[Origin] = set()
        for (topic, partition), digests in wanted.items():
            offsets = sorted(digests)
            for at in range(0, len(offsets), LOOKUP_CHUNK):
                chunk = offsets[at : at + LOOKUP_CHUNK]
                for offset, digest in self._session.execute(
                    self._select, (topic, partition, chunk)
                ):
                    if digests.get(offset) == digest:
                        found.add((topic, partition, offset))
        return found

    def record(self, done: list[tuple[Candidate, int, int]], replay_group: str) -> None:
        """Record re-injected candidates with the partition and offset their copy got."""
        now = datetime.now(UTC)
        write_all(
            self._session,
            self._insert,
            [(*c.origin, c.digest, c.error_code, now, partition, offset, replay_group)
             for c, partition, offset in done],
        )  # fmt: skip


class Reinjector:
    """One idempotent producer writing originals back to input topics, and nowhere else."""

    def __init__(self, settings: Settings, client_id: str) -> None:
        from confluent_kafka import Producer

        topics = settings.kafka.topics
        self._allowed = {topics.client_events, topics.sensor_readings, topics.ground_truth}
        self._producer = Producer(
            settings.kafka.client_config(
                {
                    "client.id": client_id,
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 5,
                    "log_level": 4,
                }
            )
        )
        self._partitions: dict[str, set[int]] = {}

    def _partitions_of(self, topic: str) -> set[int]:
        if topic not in self._partitions:
            metadata = self._producer.list_topics(topic, timeout=30).topics.get(topic)
            if metadata is None or metadata.error is not None or not metadata.partitions:
                raise TopicSetupError(f"source topic {topic} does not exist; nothing re-injected")
            self._partitions[topic] = set(metadata.partitions)
        return self._partitions[topic]

    def send(
        self, candidates: list[Candidate]
    ) -> tuple[list[tuple[Candidate, int, int]], list[str]]:
        """Produce every candidate and wait for every delivery report: the delivered ones
        with their new partition and offset, and the errors of the others."""
        reports: list[tuple[Any, Any] | None] = [None] * len(candidates)
        for index, c in enumerate(candidates):
            topic, partition, _ = c.origin
            if topic not in self._allowed:  # revalidate refuses these; never write elsewhere
                raise ConfigurationError(f"refusing to write to {topic}: not an input topic")
            # The original partition keeps the key's partition as its producer chose it.
            target = partition if partition in self._partitions_of(topic) else None
            options: dict[str, Any] = {} if target is None else {"partition": target}
            produce_when_room(
                self._producer, topic, c.value, c.key,
                headers=[(REINJECTED_HEADER, c.dead_letter.encode())],
                on_delivery=partial(_store_report, reports, index), **options,
            )  # fmt: skip
        self._producer.flush(DELIVERY_TIMEOUT_S)
        delivered: list[tuple[Candidate, int, int]] = []
        errors: list[str] = []
        for c, report in zip(candidates, reports, strict=True):
            if report is None:
                errors.append(f"{c.dead_letter}: no delivery report in {DELIVERY_TIMEOUT_S}s")
            elif report[0] is not None:
                errors.append(f"{c.dead_letter}: {report[0]}")
            else:
                delivered.append((c, report[1].partition(), report[1].offset()))
        return delivered, errors

    def close(self) -> None:
        self._producer.flush(DELIVERY_TIMEOUT_S)


def _store_report(reports: list[tuple[Any, Any] | None], index: int, err: Any, msg: Any) -> None:
    reports[index] = (err, msg)


def reprocess_dead_letters(
    settings: Settings,
    session: Session,
    plan: ReplayPlan,
    filters: DeadLetterFilter,
    *,
    dry_run: bool,
    group_id: str,
    progress: Callable[[int], None] | None = None,
    batch_size: int = 1000,
) -> ReprocessOutcome:
    """Re-inject the dead-letter records of ``plan`` that match ``filters`` and now validate,
    each original once; a dry run counts the same and writes nothing.

    ``session`` is a Cassandra session (the table lives in ``settings.cassandra.keyspace``);
    ``group_id`` is the replay's (``replay_group(run_id)``), never a worker's; ``progress``
    (e.g. a ``ProgressBar(plan.count)``) is called with the records read so far. Raises
    ``PublishError`` when some copies were not acknowledged (those acknowledged are recorded
    first, so running again re-injects only the others).
    """
    if plan.topic != settings.kafka.topics.dead_letter:
        raise ConfigurationError(
            f"--reprocess reads the dead-letter topic ({settings.kafka.topics.dead_letter}), "
            f"not {plan.topic}"
        )
    outcome = ReprocessOutcome(dry_run=dry_run)
    log = ReinjectionLog(session, settings.cassandra.keyspace)
    reinjector = None if dry_run else Reinjector(settings, client_id=group_id)
    seen: set[Origin] = set()
    schemas = RegistrySchemas(settings.schema_registry)
    try:
        for batch in read_range(settings.kafka, plan, group_id, batch_size):
            candidates: list[Candidate] = []
            for message in batch:
                outcome.read += 1
                try:
                    record = read_dead_letter(message.value)
                except InvalidEvent:
                    outcome.unreadable += 1
                    continue
                if not filters.matches(record):
                    continue
                outcome.matched += 1
                origin = (record["source_topic"], record["partition"], record["offset"])
                if origin in seen:
                    outcome.duplicates += 1
                    continue
                seen.add(origin)
                refusal = revalidate(
                    record, settings.kafka.topics, settings.worker.max_message_bytes, schemas
                )
                if refusal is not None:
                    outcome.still_invalid[refusal.code] += 1
                    continue
                key, value = original_bytes(record)
                if value is None:  # never: an empty message does not validate
                    outcome.still_invalid[codes.EMPTY_MESSAGE] += 1
                    continue
                where = f"{message.topic}/{message.partition}/{message.offset}"
                code = str(record.get("error_code", ""))
                candidates.append(
                    Candidate(origin, key, value, original_digest(key, value), code, where)
                )
            _reinject(candidates, log, reinjector, outcome, group_id)
            if progress is not None:
                progress(outcome.read)
    finally:
        if reinjector is not None:
            reinjector.close()
    return outcome


def _reinject(
    candidates: list[Candidate],
    log: ReinjectionLog,
    reinjector: Reinjector | None,
    outcome: ReprocessOutcome,
    group_id: str,
) -> None:
    if not candidates:
        return
    done_before = log.already(candidates)
    outcome.already_reinjected += len(done_before)
    fresh = [c for c in candidates if c.origin not in done_before]
    if reinjector is None:  # a dry run
        outcome.reinjected.update(c.origin[0] for c in fresh)
        return
    if not fresh:
        return
    delivered, errors = reinjector.send(fresh)
    log.record(delivered, group_id)
    outcome.reinjected.update(c.origin[0] for c, _, _ in delivered)
    if errors:
        sent = {c.origin for c, _, _ in delivered}
        failed: list[Record] = [Record(c.origin[0], c.key, c.value) for c in fresh
                                if c.origin not in sent]  # fmt: skip
        raise PublishError(failed, errors)
