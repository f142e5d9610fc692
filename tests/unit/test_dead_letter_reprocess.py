"""Dead-letter reprocessing without Kafka or Cassandra: filters, revalidation per source topic,
and the refusal to re-inject anything that did not come from an input topic."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from stream_app.contracts import codes
from stream_app.contracts.dead_letter import dead_letter_payload
from stream_app.errors import ConfigurationError, InvalidEvent
from stream_app.replay.dead_letters import (
    NOT_A_DEAD_LETTER,
    NOT_AN_INPUT_TOPIC,
    DeadLetterFilter,
    ReprocessOutcome,
    original_digest,
    parse_filters,
    read_dead_letter,
    revalidate,
)
from stream_app.settings import TopicNames

TOPICS = TopicNames()
MAX_BYTES = 64 * 1024
CLIENT_EVENT = {
    "schema_version": 1,
    "event_id": "ord-1",
    "event_time": 1795783200000,
    "entities": {"courier_id": "courier-1"},
    "fields": {"distance_km": 3.5},
}
SENSOR_READING = {
    "schema_version": 1,
    "sensor_id": "gps-1",
    "event_time": 1795783195000,
    "entities": {"courier_id": "courier-1"},
    "values": {"speed_kmh": 21.7},
}
GROUND_TRUTH = {
    "schema_version": 1,
    "event_id": "ord-1",
    "label": 31.5,
    "label_time": 1795785090000,
}


def dead_letter(
    source: str,
    value: bytes | None,
    *,
    code: str = codes.INVALID_VALUE,
    agent: str = "scoring",
    key: bytes | None = b"k",
) -> dict[str, Any]:
    """A dead-letter record as the workers write it, decoded back from its JSON."""
    payload = dead_letter_payload(
        source_topic=source, partition=1, offset=42, key=key, value=value,
        error=InvalidEvent(code, "refused"), agent=agent, failed_at=1795783200000,
    )  # fmt: skip
    return read_dead_letter(orjson.dumps(payload))


# --- filters ---------------------------------------------------------------------------


def test_no_filter_matches_everything() -> None:
    assert parse_filters([]) == DeadLetterFilter()
    assert DeadLetterFilter().matches(dead_letter(TOPICS.client_events, b"{}"))


def test_repeated_keys_or_together_and_different_keys_and_together() -> None:
    chosen = parse_filters(
        ["code=invalid_value", "code=MISSING_FIELD", f"source={TOPICS.client_events}"]
    )
    assert chosen.codes == {"invalid_value", "missing_field"}  # codes in any case
    assert chosen.matches(dead_letter(TOPICS.client_events, b"{}", code="missing_field"))
    assert chosen.matches(dead_letter(TOPICS.client_events, b"{}", code="invalid_value"))
    assert not chosen.matches(dead_letter(TOPICS.client_events, b"{}", code="wrong_type"))
    assert not chosen.matches(dead_letter(TOPICS.sensor_readings, b"{}", code="invalid_value"))


def test_agent_filter() -> None:
    chosen = parse_filters(["agent=features"])
    assert chosen.matches(dead_letter(TOPICS.sensor_readings, b"{}", agent="features"))
    assert not chosen.matches(dead_letter(TOPICS.sensor_readings, b"{}", agent="scoring"))
    assert chosen.as_dict() == {"code": [], "source": [], "agent": ["features"]}


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("colour=red", "unknown key 'colour'"),
        ("code", "expected KEY=VALUE"),
        ("code=", "expected KEY=VALUE"),
        ("code=no_such_code", "unknown error code"),
    ],
)
def test_a_bad_filter_is_a_configuration_error(value: str, words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        parse_filters([value])


# --- reading dead-letter records ---------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        orjson.dumps({"partition": 0, "offset": 1}),
        orjson.dumps({"source_topic": "t", "partition": -1, "offset": 1}),
        orjson.dumps({"source_topic": "t", "partition": 0, "offset": "1"}),
        orjson.dumps({"source_topic": "t", "partition": 0, "offset": 1, "value_b64": "@@"}),
    ],
)
def test_what_is_not_a_dead_letter_record_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidEvent) as err:
        read_dead_letter(raw)
    assert err.value.code == NOT_A_DEAD_LETTER


# --- revalidation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "valid"),
    [
        (TOPICS.client_events, CLIENT_EVENT),
        (TOPICS.sensor_readings, SENSOR_READING),
        (TOPICS.ground_truth, GROUND_TRUTH),
    ],
)
def test_each_input_topic_is_revalidated_by_its_own_decoder(
    source: str, valid: dict[str, Any]
) -> None:
    assert revalidate(dead_letter(source, orjson.dumps(valid)), TOPICS, MAX_BYTES) is None
    broken = {**valid, "schema_version": 2}
    refusal = revalidate(dead_letter(source, orjson.dumps(broken)), TOPICS, MAX_BYTES)
    assert refusal is not None
    assert refusal.code == codes.UNKNOWN_SCHEMA_VERSION
    # what is valid for one topic is not for another: the decoder follows the source topic
    others = {TOPICS.client_events, TOPICS.sensor_readings, TOPICS.ground_truth} - {source}
    for other in others:
        assert revalidate(dead_letter(other, orjson.dumps(valid)), TOPICS, MAX_BYTES) is not None


def test_revalidation_uses_the_configured_topic_names_and_size_limit() -> None:
    topics = TopicNames(client_events="ce-scratch")
    record = dead_letter("ce-scratch", orjson.dumps(CLIENT_EVENT))
    assert revalidate(record, topics, MAX_BYTES) is None
    refusal = revalidate(record, topics, max_bytes=10)
    assert refusal is not None
    assert refusal.code == codes.OVERSIZED
    assert revalidate(record, TOPICS, MAX_BYTES) is not None  # not an input topic there


@pytest.mark.parametrize(
    "source",
    [TOPICS.dead_letter, TOPICS.predictions, TOPICS.model_updates, TOPICS.accuracy_events, "x"],
)
def test_originals_of_other_topics_are_never_reinjected(source: str) -> None:
    refusal = revalidate(dead_letter(source, orjson.dumps(CLIENT_EVENT)), TOPICS, MAX_BYTES)
    assert refusal is not None
    assert refusal.code == NOT_AN_INPUT_TOPIC
    assert source in refusal.message


def test_an_empty_original_still_fails() -> None:
    refusal = revalidate(dead_letter(TOPICS.client_events, None), TOPICS, MAX_BYTES)
    assert refusal is not None
    assert refusal.code == codes.EMPTY_MESSAGE


# --- digests and the outcome ---------------------------------------------------------------


def test_the_digest_tells_keys_and_values_apart() -> None:
    assert original_digest(b"k", b"v") == original_digest(b"k", b"v")
    assert len({
        original_digest(b"k", b"v"), original_digest(None, b"v"), original_digest(b"", b"v"),
        original_digest(b"kv", b""), original_digest(b"k", b"w"),
    }) == 5  # fmt: skip


def test_the_outcome_as_json() -> None:
    outcome = ReprocessOutcome(dry_run=True, read=5, matched=4, duplicates=1)
    outcome.still_invalid["wrong_type"] += 2
    outcome.reinjected[TOPICS.client_events] += 1
    assert outcome.as_dict() == {
        "dry_run": True, "read": 5, "unreadable": 0, "matched": 4, "duplicates": 1,
        "already_reinjected": 0, "still_invalid": {"wrong_type": 2},
        "reinjected": {TOPICS.client_events: 1}, "reinjected_total": 1,
    }  # fmt: skip
    orjson.dumps(outcome.as_dict())
