"""Tracing: the W3C trace context as pure functions, its way from an input's headers to the
outputs of the scoring and accuracy services, the OpenTelemetry spans (an in-memory exporter
of the SDK), the settings, and the OTLP/HTTP export to a local HTTP server."""

from __future__ import annotations

import asyncio
import http.server
import re
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from stream_app.agents.scoring import faust_headers
from stream_app.kafka.consumer import to_input
from stream_app.messages import Headers, InputMessage
from stream_app.settings import Settings, TracingSettings, load_settings
from stream_app.tracing.context import (
    TraceParent,
    child_headers,
    incoming,
    parse_traceparent,
)
from stream_app.tracing.spans import (
    NO_SPANS,
    OtelTracer,
    Propagation,
    provider_for,
    tracer_for,
    traces_url,
)
from tests.fakes.kafka import FakeMessage
from tests.unit import test_accuracy_service_core as accuracy_core
from tests.unit.test_scoring_service_core import TOPICS, Harness, event

TRACE = b"4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = b"00f067aa0ba902b7"
VALID = b"00-" + TRACE + b"-" + PARENT + b"-01"
W3C = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def parsed(headers: Headers) -> TraceParent:
    values = [v for name, v in headers if name == "traceparent"]
    assert len(values) == 1
    parent = parse_traceparent(values[0])
    assert parent is not None, values
    return parent


# -- the W3C header, pure ------------------------------------------------------------------


def test_a_valid_traceparent_is_parsed() -> None:
    assert parse_traceparent(VALID) == TraceParent(TRACE, PARENT, b"01")
    assert parse_traceparent(VALID).sampled  # type: ignore[union-attr]
    assert parse_traceparent(VALID).header() == VALID  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"garbage",
        VALID.upper(),  # hex must be lowercase
        b"01" + VALID[2:],  # another version
        b"ff" + VALID[2:],  # the forbidden version
        b"00-" + b"0" * 32 + b"-" + PARENT + b"-01",  # all-zero trace id
        b"00-" + TRACE + b"-" + b"0" * 16 + b"-01",  # all-zero span id
        VALID + b"-extra",
        VALID[:-1],
        VALID.replace(b"-", b"_"),
        b"00-" + TRACE[:-1] + b"g-" + PARENT + b"-01",  # not hex
    ],
)
def test_an_invalid_traceparent_is_none(value: bytes | None) -> None:
    assert parse_traceparent(value) is None


def test_an_output_keeps_the_trace_id_flags_and_tracestate_with_a_new_span_id() -> None:
    headers = (("other", b"x"), ("traceparent", VALID), ("tracestate", b"vendor=abc"))
    out = child_headers(headers)
    child = parsed(out)
    assert (child.trace_id, child.flags) == (TRACE, b"01")
    assert child.span_id != PARENT
    assert dict(out)["tracestate"] == b"vendor=abc"
    assert "other" not in dict(out)  # only the trace context is carried
    assert parsed(child_headers(headers)).span_id != child.span_id  # a new span each time


@pytest.mark.parametrize(
    "headers",
    [
        (),
        (("other", b"x"),),
        (("traceparent", b"00-bad"), ("tracestate", b"vendor=abc")),
        (("traceparent", VALID), ("traceparent", VALID)),  # two: invalid
        (("traceparent", None),),
    ],
)
def test_without_a_valid_traceparent_an_output_starts_a_new_trace(headers: Headers) -> None:
    out = child_headers(headers)
    assert [name for name, _ in out] == ["traceparent"]  # a tracestate goes with its parent
    child = parsed(out)
    assert child.trace_id != TRACE
    assert child.flags == b"00"  # nothing recorded it
    assert parsed(child_headers(headers)).trace_id != child.trace_id  # random per event


def test_several_tracestate_headers_are_one_list_and_an_oversized_one_is_dropped() -> None:
    state = incoming((("tracestate", b"a=1"), ("traceparent", VALID), ("tracestate", b"b=2")))
    assert state.tracestate == b"a=1,b=2"
    big = incoming((("traceparent", VALID), ("tracestate", b"a=" + b"x" * 600)))
    assert big.parent is not None
    assert big.tracestate is None


def test_both_consumer_paths_keep_the_headers() -> None:
    plain = to_input(FakeMessage("client-events", 1, 7, b"{}"))
    assert plain.headers == ()
    carried = to_input(FakeMessage("client-events", 1, 7, b"{}", None, [("traceparent", VALID)]))
    assert carried.headers == (("traceparent", VALID),)
    assert faust_headers(None) == ()
    assert faust_headers([("traceparent", VALID)]) == (("traceparent", VALID),)
    assert faust_headers({"traceparent": VALID}) == (("traceparent", VALID),)


def test_without_spans_an_event_gets_one_trace_for_all_its_outputs() -> None:
    first, second = event(1), event(2)
    batch = Propagation().batch("client-events", [first, second])
    assert batch.headers_of(first) is batch.headers_of(first)  # champion and shadow: one trace
    assert parsed(batch.headers_of(first)).trace_id != parsed(batch.headers_of(second)).trace_id


# -- the scoring service's outputs --------------------------------------------------------


def traced(i: int, headers: Headers = ()) -> InputMessage:
    return event(i)._replace(headers=headers)


def test_predictions_and_dead_letters_carry_their_event_s_trace() -> None:
    h = Harness()
    messages = [
        traced(0, (("traceparent", VALID), ("tracestate", b"v=1"))),
        traced(1),
        traced(2, (("traceparent", VALID),))._replace(value=b"not json"),
    ]
    asyncio.run(h.service.process(messages))
    (prediction_0, prediction_1) = h.publisher.on(TOPICS.predictions)
    (dead,) = h.publisher.on(TOPICS.dead_letter)
    assert parsed(prediction_0.headers).trace_id == TRACE
    assert dict(prediction_0.headers)["tracestate"] == b"v=1"
    assert parsed(prediction_1.headers).trace_id != TRACE  # a new trace of its own
    assert parsed(dead.headers).trace_id == TRACE
    assert orjson.loads(dead.value)["error_code"] == "invalid_json"


# -- OpenTelemetry spans ------------------------------------------------------------------


@pytest.fixture
def exported() -> Iterator[tuple[OtelTracer, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    tracer = OtelTracer(provider_for(TracingSettings(), exporter))
    yield tracer, exporter
    tracer.shutdown()


def test_a_batch_has_a_span_with_stage_children_and_links_to_each_event(
    exported: tuple[OtelTracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = exported
    h = Harness()
    h.service.tracer = tracer
    messages = [
        traced(0, (("traceparent", VALID),)),
        traced(1),
        traced(2, (("traceparent", VALID),))._replace(value=b"{}", partition=3),
    ]
    asyncio.run(h.service.process(messages))
    spans = exporter.get_finished_spans()
    (batch,) = [s for s in spans if s.name == f"{TOPICS.client_events} process"]
    assert batch.kind is SpanKind.CONSUMER
    assert batch.parent is None  # a root: the batch holds many traces
    assert batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 3
    assert batch.attributes["messaging.destination.name"] == TOPICS.client_events
    assert tuple(batch.attributes["stream_app.partitions"]) == (0, 3)  # type: ignore[arg-type]
    assert batch.attributes["stream_app.predictions"] == 2
    assert batch.attributes["stream_app.dead_letters"] == 1
    stages = {s.name: s for s in spans if s.parent is not None
              and s.parent.span_id == batch.context.span_id}  # fmt: skip
    assert set(stages) == {"decode", "features", "score", "publish", "store"}
    assert all(s.context.trace_id == batch.context.trace_id for s in stages.values())
    assert all(s.start_time is not None and s.end_time is not None
               and batch.start_time is not None and batch.end_time is not None
               and batch.start_time <= s.start_time <= s.end_time <= batch.end_time
               for s in stages.values())  # fmt: skip

    events = [s for s in spans if s.name == f"{TOPICS.client_events} event"]
    assert len(events) == 3
    by_offset = {s.attributes["messaging.kafka.offset"]: s for s in events}  # type: ignore[index]
    assert by_offset[0].parent is not None
    assert by_offset[0].parent.span_id == int(PARENT, 16)
    assert by_offset[0].context.trace_id == int(TRACE, 16)
    assert by_offset[1].parent is None  # no traceparent: the root of a new trace
    assert by_offset[2].attributes["messaging.destination.partition.id"] == "3"  # type: ignore[index]
    linked = [(link.context.trace_id, link.context.span_id) for link in batch.links]
    assert linked == [
        (int(TRACE, 16), int(PARENT, 16)),  # the incoming context
        (by_offset[1].context.trace_id, by_offset[1].context.span_id),  # the new trace
        (int(TRACE, 16), int(PARENT, 16)),
    ]

    # the outputs carry their event span: a trace runs producer -> worker -> consumer
    (first, second) = h.publisher.on(TOPICS.predictions)
    (dead,) = h.publisher.on(TOPICS.dead_letter)
    for record, span in ((first, by_offset[0]), (second, by_offset[1]), (dead, by_offset[2])):
        child = parsed(record.headers)
        assert (int(child.trace_id, 16), int(child.span_id, 16)) == (
            span.context.trace_id, span.context.span_id)  # fmt: skip
        assert child.sampled  # (a new trace may also set the level-2 "random" bit)


def test_an_unsampled_ratio_records_nothing_but_outputs_keep_valid_headers() -> None:
    exporter = InMemorySpanExporter()
    tracer = OtelTracer(provider_for(TracingSettings(sample_ratio=0.0), exporter))
    h = Harness()
    h.service.tracer = tracer
    asyncio.run(h.service.process([traced(0), traced(1, (("traceparent", VALID),))]))
    names = {s.name for s in exporter.get_finished_spans()}
    # the incoming context was sampled (flags 01): its event span is, nothing else is
    assert names == {f"{TOPICS.client_events} event"}
    new, carried = h.publisher.on(TOPICS.predictions)
    assert not parsed(new.headers).sampled
    assert parsed(carried.headers).trace_id == TRACE
    tracer.shutdown()


# -- accuracy events ----------------------------------------------------------------------


def test_accuracy_events_carry_the_ground_truth_s_trace_even_after_waiting(
    exported: tuple[OtelTracer, InMemorySpanExporter],
) -> None:
    tracer, exporter = exported

    async def scenario() -> None:
        service, labels, publisher, clock = accuracy_core.harness()
        service.tracer = tracer
        labels.predictions["e1"] = [accuracy_core.predicted("e1", 31.0)]
        with_trace = accuracy_core.truth("e1", 33.0)._replace(headers=(("traceparent", VALID),))
        waiting = accuracy_core.truth("e2", 20.0, 1)._replace(headers=(("traceparent", VALID),))
        await service.process([with_trace, waiting, accuracy_core.truth("e3", 1.0, 2)])
        labels.predictions["e2"] = [accuracy_core.predicted("e2", 21.0)]
        labels.predictions["e3"] = [accuracy_core.predicted("e3", 2.0)]
        clock.ms += accuracy_core.FIRST_RETRY_MS
        await service.retry_waiting()
        by_event = {orjson.loads(r.value)["event_id"]: r.headers
                    for r in publisher.on(accuracy_core.TOPICS.accuracy_events)}  # fmt: skip
        assert set(by_event) == {"e1", "e2", "e3"}
        assert parsed(by_event["e1"]).trace_id == TRACE
        assert parsed(by_event["e2"]).trace_id == TRACE  # kept while the label waited
        assert parsed(by_event["e3"]).trace_id != TRACE

    asyncio.run(scenario())
    (batch,) = [s for s in exporter.get_finished_spans() if s.name.endswith(" process")]
    assert batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 3
    assert batch.attributes["stream_app.accuracy_events"] == 1  # e1 at once; e2, e3 wait


# -- settings and export ------------------------------------------------------------------


def test_no_endpoint_no_spans_and_the_standard_variables_are_honoured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert tracer_for(Settings().tracing) is NO_SPANS
    assert load_settings().tracing.endpoint is None
    monkeypatch.setenv("STREAM_APP_TRACING__SERVICE_NAME", "eta")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    otel = load_settings()
    assert (otel.tracing.endpoint, otel.tracing.service_name) == ("http://collector:4318", "eta")
    monkeypatch.setenv("STREAM_APP_TRACING__ENDPOINT", "http://mine:4318")
    assert load_settings().tracing.endpoint == "http://mine:4318"  # ours wins
    assert traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert traces_url("http://c:4318/v1/traces") == "http://c:4318/v1/traces"


def test_spans_are_exported_over_otlp_http_when_an_endpoint_is_set() -> None:
    received: list[tuple[str, str, bytes]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_port}"
        tracer = tracer_for(TracingSettings(endpoint=endpoint, service_name="eta-test"))
        assert isinstance(tracer, OtelTracer)
        batch = tracer.batch("client-events", [traced(0, (("traceparent", VALID),))])
        batch.stage("decode", 0.001)
        batch.end()
        tracer.shutdown()  # flushes the batch processor
    finally:
        server.shutdown()
        thread.join(5)
    assert received, "no OTLP request"
    path, content_type, body = received[0]
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    for name in (b"eta-test", b"client-events process", b"decode"):
        assert name in body
