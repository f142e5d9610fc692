"""Dead-letter reprocessing against the real Kafka and Cassandra: the dead-lettered originals
that now validate arrive in their source topic with their original bytes, once, whatever
the number of runs; a dry run writes nothing; filters narrow what is re-injected."""

from __future__ import annotations

import time
from typing import Any

import orjson
from confluent_kafka import Producer

from stream_app.contracts import codes
from stream_app.contracts.dead_letter import encode_dead_letter
from stream_app.errors import InvalidEvent
from stream_app.replay.dead_letters import (
    NOT_AN_INPUT_TOPIC,
    REINJECTED_HEADER,
    ReprocessOutcome,
    parse_filters,
    reprocess_dead_letters,
)
from stream_app.replay.plan import plan_replay
from stream_app.replay.reader import replay_group
from stream_app.settings import Settings
from tests.conftest import Deployment, consume_all


def client_event(event_id: str) -> bytes:
    return orjson.dumps({
        "schema_version": 1, "event_id": event_id, "event_time": 1795783200000,
        "entities": {"courier_id": "courier-1"}, "fields": {"distance_km": 3.5},
    })  # fmt: skip


SENSOR_READING = orjson.dumps({
    "schema_version": 1, "sensor_id": "gps-1", "event_time": 1795783195000,
    "entities": {"courier_id": "courier-1"}, "values": {"speed_kmh": 21.7},
})  # fmt: skip
STILL_INVALID = orjson.dumps({"schema_version": 1, "event_id": "ord-bad"})  # no event_time


def fill_dead_letter_topic(settings: Settings) -> dict[str, tuple[bytes | None, bytes]]:
    """Dead-letter records for a mix of originals, and one record that is not one; returns
    the client events that must be re-injected (key and value) by event id."""
    topics = settings.kafka.topics
    # (source topic, partition, offset, key, value, code, agent)
    originals = [
        (topics.client_events, 0, 5, b"ord-a1", client_event("ord-a1"), codes.WRONG_TYPE),
        (topics.client_events, 1, 7, None, client_event("ord-a2"), codes.INVALID_VALUE),
        (topics.client_events, 0, 9, b"ord-bad", STILL_INVALID, codes.MISSING_FIELD),
        (topics.sensor_readings, 1, 3, b"courier-1", SENSOR_READING, codes.INVALID_VALUE),
        # dead-lettered twice (e.g. by two runs of a worker): re-injected once
        (topics.client_events, 1, 11, b"ord-d", client_event("ord-d"), codes.WRONG_TYPE),
        (topics.client_events, 1, 11, b"ord-d", client_event("ord-d"), codes.WRONG_TYPE),
        # valid-looking, but not from an input topic: never written back
        (topics.predictions, 0, 1, b"ord-p", client_event("ord-p"), codes.WRONG_TYPE),
    ]
    producer = Producer(settings.kafka.client_config())
    now = int(time.time() * 1000)
    for i, (source, partition, offset, key, value, code) in enumerate(originals):
        record = encode_dead_letter(
            source_topic=source, partition=partition, offset=offset, key=key, value=value,
            error=InvalidEvent(code, "refused before the fix"),
            agent="features" if source == topics.sensor_readings else "scoring",
            failed_at=now - 60_000 + i,
        )  # fmt: skip
        producer.produce(topics.dead_letter, record, key, timestamp=now - 60_000 + i)
    producer.produce(topics.dead_letter, b"not a dead-letter record", timestamp=now - 50_000)
    assert producer.flush(30) == 0
    return {
        "ord-a1": (b"ord-a1", client_event("ord-a1")),
        "ord-a2": (None, client_event("ord-a2")),
        "ord-d": (b"ord-d", client_event("ord-d")),
    }


def run(
    settings: Settings, session: Any, filters: list[str], dry_run: bool = False
) -> ReprocessOutcome:
    topic = settings.kafka.topics.dead_letter
    now = int(time.time() * 1000)
    plan = plan_replay(settings.kafka, topic, now - 3_600_000, now + 3_600_000)
    seen: list[int] = []
    outcome = reprocess_dead_letters(
        settings, session, plan, parse_filters(filters), dry_run=dry_run,
        group_id=replay_group(f"test-{time.monotonic_ns()}"), progress=seen.append,
    )  # fmt: skip
    assert seen[-1] == outcome.read == plan.count
    return outcome


def test_valid_dead_letters_are_reinjected_once(
    deployment: Deployment, cassandra_session: Any
) -> None:
    settings = deployment.settings
    topics = settings.kafka.topics
    client_events = fill_dead_letter_topic(settings)

    dry = run(settings, cassandra_session, [], dry_run=True)
    assert dry.as_dict() == {
        "dry_run": True, "read": 8, "unreadable": 1, "matched": 7, "duplicates": 1,
        "already_reinjected": 0,
        "still_invalid": {codes.MISSING_FIELD: 1, NOT_AN_INPUT_TOPIC: 1},
        "reinjected": {topics.client_events: 3, topics.sensor_readings: 1},
        "reinjected_total": 4,
    }  # fmt: skip
    assert consume_all(settings, topics.client_events, 0, timeout_s=3) == []
    assert consume_all(settings, topics.sensor_readings, 0, timeout_s=1) == []

    # a filter on the code: the invalid_value ones only, whatever their source topic
    narrow = run(settings, cassandra_session, ["code=invalid_value"])
    assert (narrow.matched, narrow.already_reinjected) == (2, 0)
    assert narrow.reinjected == {topics.client_events: 1, topics.sensor_readings: 1}

    everything = run(settings, cassandra_session, [])
    assert everything.already_reinjected == 2  # the two of the filtered run
    assert everything.reinjected == {topics.client_events: 2}
    assert everything.still_invalid == {codes.MISSING_FIELD: 1, NOT_AN_INPUT_TOPIC: 1}

    again = run(settings, cassandra_session, [])
    assert sum(again.reinjected.values()) == 0
    assert again.already_reinjected == 4
    assert again.duplicates == 1

    # exactly the valid originals, once each, with their original key and value bytes
    arrived = consume_all(settings, topics.client_events, 3, timeout_s=30)
    assert sorted((m.key() or b"", m.value()) for m in arrived) == sorted(
        (key or b"", value) for key, value in client_events.values()
    )
    assert [m.key() for m in arrived if m.value() == client_event("ord-a2")] == [None]
    assert all(dict(m.headers() or [])[REINJECTED_HEADER] for m in arrived)
    readings = consume_all(settings, topics.sensor_readings, 1, timeout_s=30)
    assert [(m.key(), m.value(), m.partition()) for m in readings] == [
        (b"courier-1", SENSOR_READING, 1)  # the original partition
    ]
    for never in (topics.predictions, topics.ground_truth):
        assert consume_all(settings, never, 0, timeout_s=1) == []

    rows = cassandra_session.execute(
        f"SELECT source_topic, source_partition, source_offset, error_code, new_partition, "
        f"new_offset FROM {settings.cassandra.keyspace}.reprocessed_dead_letters"
    )
    recorded = {(r.source_topic, r.source_partition, r.source_offset): r for r in rows}
    assert set(recorded) == {
        (topics.client_events, 0, 5), (topics.client_events, 1, 7),
        (topics.client_events, 1, 11), (topics.sensor_readings, 1, 3),
    }  # fmt: skip
    assert recorded[(topics.sensor_readings, 1, 3)].error_code == codes.INVALID_VALUE
    landed = {(m.topic(), m.partition(), m.offset()) for m in [*arrived, *readings]}
    assert {(t, r.new_partition, r.new_offset) for (t, _, _), r in recorded.items()} == landed
