"""Trace context end to end: a worker (the default batch consumer) on the real Kafka and
Cassandra carries an input event's W3C ``traceparent`` to its prediction and, for an event it
refuses, to its dead letter; an event without one gets a fresh trace; a ground-truth message's
trace reaches its accuracy event."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
from confluent_kafka import Producer

from stream_app.messages import Headers
from tests.conftest import Deployment, consume_all
from tests.e2e.conftest import wait_assigned
from tests.e2e.test_scoring_path import start_worker, stop_worker
from tests.integration.scoring_helpers import client_messages, ready_world

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
LABEL_TRACE = "0af7651916cd43dd8448eb211c80319c"
W3C = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def traceparent(headers: Headers | None) -> tuple[str, str, str]:
    values = [v for k, v in headers or () if k == "traceparent"]
    assert len(values) == 1, headers
    match = W3C.fullmatch((values[0] or b"").decode())
    assert match is not None, values
    trace_id, span_id, flags = match.groups()
    assert trace_id != "0" * 32
    assert span_id != "0" * 16
    return trace_id, span_id, flags


def test_a_traceparent_survives_from_input_to_prediction_dead_letter_and_accuracy_event(
    deployment: Deployment, tmp_path: Path
) -> None:
    settings = deployment.settings
    topics = settings.kafka.topics
    world = ready_world(settings)  # a champion and features for every entity
    (traced, plain) = client_messages(world, 2, "trace", settings)
    worker = start_worker(deployment.env, tmp_path / "worker.log")
    try:
        wait_assigned(settings.worker.web_port, {topics.client_events, topics.ground_truth})
        producer = Producer(settings.kafka.client_config())
        incoming = f"00-{TRACE}-00f067aa0ba902b7-01".encode()
        with_state = [("traceparent", incoming), ("tracestate", b"vendor=1")]
        producer.produce(topics.client_events, traced.value, traced.key, headers=with_state)
        producer.produce(topics.client_events, plain.value, plain.key)
        producer.produce(topics.client_events, b"{not json", b"broken",
                         headers=[("traceparent", incoming)])  # fmt: skip
        assert producer.flush(10) == 0
        predictions = consume_all(settings, topics.predictions, 2, timeout_s=30)
        dead = consume_all(settings, topics.dead_letter, 1, timeout_s=30)

        label = orjson.dumps({"schema_version": 1, "event_id": "trace-0", "label": 30.0,
                              "label_time": traced.timestamp_ms + 60_000})  # fmt: skip
        label_parent = f"00-{LABEL_TRACE}-b7ad6b7169203331-01"
        producer.produce(topics.ground_truth, label, b"trace-0",
                         headers=[("traceparent", label_parent)])  # fmt: skip
        assert producer.flush(10) == 0
        accuracy = consume_all(settings, topics.accuracy_events, 1, timeout_s=30)
    finally:
        code = stop_worker(worker)
    assert code == 0, (tmp_path / "worker.log").read_text()[-3000:]

    by_event = {orjson.loads(m.value())["event_id"]: m for m in predictions}
    assert set(by_event) == {"trace-0", "trace-1"}
    carried = traceparent(by_event["trace-0"].headers())
    assert carried[0] == TRACE  # the same trace ...
    assert carried[1] != "00f067aa0ba902b7"  # ... from a span of the worker's
    assert carried[2] == "01"
    assert dict(by_event["trace-0"].headers())["tracestate"] == b"vendor=1"
    fresh = traceparent(by_event["trace-1"].headers())
    assert fresh[0] != TRACE  # none came in: a new trace, valid

    (letter,) = dead
    assert orjson.loads(letter.value())["error_code"] == "invalid_json"
    assert traceparent(letter.headers())[0] == TRACE

    (event,) = accuracy
    assert orjson.loads(event.value())["event_id"] == "trace-0"
    assert traceparent(event.headers())[0] == LABEL_TRACE  # the ground truth's own trace
