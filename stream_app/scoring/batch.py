"""Pure steps of scoring a batch: decode and check, then shape outputs. No I/O here."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import orjson

from stream_app.contracts import codes
from stream_app.contracts.decode import ClientEvent, ObjectParser, decode_client_event, parse_object
from stream_app.contracts.outputs import prediction_payload
from stream_app.errors import InvalidEvent
from stream_app.features.vector import ServedVector
from stream_app.messages import Headers, InputMessage, Record, Refused
from stream_app.storage.predictions import PredictionRow, pack


def decode_events(
    messages: Sequence[InputMessage],
    required_entities: Sequence[str],
    max_bytes: int,
    parse: ObjectParser = parse_object,
) -> tuple[list[tuple[InputMessage, ClientEvent]], list[Refused]]:
    """Valid client events (with their messages) and the refused messages with reasons."""
    accepted: list[tuple[InputMessage, ClientEvent]] = []
    refused: list[Refused] = []
    for message in messages:
        try:
            event = decode_client_event(message.value, max_bytes, parse)
        except InvalidEvent as error:
            refused.append(Refused(message, error))
            continue
        absent = [key for key in required_entities if key not in event.entities]
        if absent:
            missing = InvalidEvent(
                codes.MISSING_ENTITY, f"entities lacks {absent}, which the use case looks up"
            )
            refused.append(Refused(message, missing))
            continue
        accepted.append((message, event))
    return accepted, refused


def prediction_outputs(
    scored: Sequence[tuple[InputMessage, ClientEvent, ServedVector]],
    values: Sequence[float],
    *,
    use_case: str,
    model_version: str,
    role: str,
    feature_set: str,
    predictions_topic: str,
    scored_at: int,
    headers_of: Callable[[InputMessage], Headers],
) -> tuple[list[Record], list[PredictionRow]]:
    """The Kafka records and the Cassandra rows of a scored batch; each record carries the
    trace headers ``headers_of`` gives its event's message, each row the message it was
    scored from and its event's entities (a replay matches records to rows by them)."""
    records: list[Record] = []
    rows: list[PredictionRow] = []
    for (message, event, served), value in zip(scored, values, strict=True):
        latency_ms = float(max(scored_at - message.timestamp_ms, 0))
        payload = prediction_payload(
            event_id=event.event_id,
            use_case=use_case,
            model_version=model_version,
            role=role,
            value=value,
            missing_features=served.missing,
            feature_age_ms=served.age_ms,
            event_time=event.event_time,
            scored_at=scored_at,
            latency_ms=latency_ms,
        )
        records.append(
            Record(
                predictions_topic,
                event.event_id.encode(),
                orjson.dumps(payload),
                headers_of(message),
            )
        )
        rows.append(
            PredictionRow(
                event_id=event.event_id,
                model_version=model_version,
                prediction_id=payload["prediction_id"],
                role=role,
                value=value,
                feature_set=feature_set,
                features=pack(served.values),
                missing_features=served.missing,
                feature_age_ms=served.age_ms,
                event_time=event.event_time,
                scored_at=scored_at,
                latency_ms=latency_ms,
                source=message,
                entities=event.entities,
            )
        )
    return records, rows
