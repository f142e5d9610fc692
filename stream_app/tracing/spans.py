"""Tracing of batches: the output headers of each event, and OpenTelemetry spans.

A service asks its ``Tracer`` for a ``BatchTrace`` when a batch starts, takes each output's
headers from it (``headers_of``: the event's trace, a new span id), reports its stages
(``stage``) and ends it. Two tracers:

- ``Propagation`` (tracing off, the default): headers only (``context.child_headers``, once
  per event that has an output); no OpenTelemetry call at all;
- ``OtelTracer`` (``tracing.endpoint`` set, or tests with an in-memory exporter): a span per
  batch (``<topic> process``, kind consumer, a root of its own trace) with a link to each
  event's context (a batch holds many traces: links are OpenTelemetry's way), a child span per
  stage (timed by the service: ``decode``, ``features``, ``score``, ``publish``, ``store``),
  and a span per event (``<topic> event``), child of the event's ``traceparent`` (or the root
  of a new trace), whose id the outputs carry, so a trace runs from the producer through the
  worker to the consumer of the prediction.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from stream_app.messages import Headers, InputMessage
from stream_app.tracing.context import (
    Incoming,
    child_headers,
    incoming,
    output_headers,
)

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span
    from opentelemetry.trace import Tracer as OtelApiTracer

    from stream_app.settings import TracingSettings

Attributes = Mapping[str, str | int | float | bool | Sequence[int]]


class BatchTrace(Protocol):
    """One batch's tracing."""

    def headers_of(self, message: InputMessage) -> Headers:
        """The trace headers of the outputs made from ``message`` (the same every call)."""
        ...

    def stage(self, name: str, seconds: float) -> None:
        """A stage of the batch that lasted ``seconds`` and ended now."""
        ...

    def end(self, attributes: Attributes | None = None) -> None:
        """The batch is done (its outputs acknowledged)."""
        ...


class Tracer(Protocol):
    """Makes a ``BatchTrace`` per batch."""

    def batch(self, topic: str, messages: Sequence[InputMessage]) -> BatchTrace: ...

    def shutdown(self) -> None:
        """Export what is left (at worker shutdown)."""
        ...


class _PropagatingBatch:
    """Headers only: each event's output headers made once, when first asked for."""

    __slots__ = ("_out",)

    def __init__(self) -> None:
        self._out: dict[int, Headers] = {}

    def headers_of(self, message: InputMessage) -> Headers:
        key = id(message)  # the batch's messages live as long as the batch
        headers = self._out.get(key)
        if headers is None:
            headers = self._out[key] = child_headers(message.headers)
        return headers

    def stage(self, name: str, seconds: float) -> None:
        pass

    def end(self, attributes: Attributes | None = None) -> None:
        pass


class Propagation:
    """Tracing off: W3C headers carried, no spans."""

    def batch(self, topic: str, messages: Sequence[InputMessage]) -> BatchTrace:
        return _PropagatingBatch()

    def shutdown(self) -> None:
        pass


NO_SPANS = Propagation()


def _remote_context(context: Incoming) -> Any:
    """An OpenTelemetry context whose parent is the event's remote span."""
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

    parent = context.parent
    assert parent is not None
    state = TraceState.from_header([context.tracestate.decode("ascii", "replace")]) if (
        context.tracestate
    ) else None  # fmt: skip
    span_context = SpanContext(
        trace_id=int(parent.trace_id, 16),
        span_id=int(parent.span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(parent.flags, 16)),
        trace_state=state,
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context))


class _SpanBatch:
    """A batch span with links to its events, stage spans, and a span per event."""

    def __init__(self, tracer: OtelApiTracer, topic: str, messages: Sequence[InputMessage]):
        from opentelemetry import trace
        from opentelemetry.trace import Link, SpanKind

        self._tracer = tracer
        self._started_ns = start = time.time_ns()
        self._events: dict[int, tuple[Span, bytes | None]] = {}
        links = []
        for message in messages:
            context = incoming(message.headers)
            parent = None if context.parent is None else _remote_context(context)
            span = tracer.start_span(
                f"{topic} event",
                context=parent,
                kind=SpanKind.CONSUMER,
                start_time=start,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.destination.name": topic,
                    "messaging.destination.partition.id": str(message.partition),
                    "messaging.kafka.offset": message.offset,
                },
            )
            self._events[id(message)] = (span, context.tracestate)
            if parent is not None:
                links.append(Link(trace.get_current_span(parent).get_span_context()))
            else:
                links.append(Link(span.get_span_context()))
        partitions = sorted({m.partition for m in messages})
        self._batch = tracer.start_span(
            f"{topic} process",
            context=trace.set_span_in_context(trace.INVALID_SPAN),  # a root: many traces in
            kind=SpanKind.CONSUMER,
            start_time=start,
            links=links,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": topic,
                "messaging.batch.message_count": len(messages),
                "stream_app.partitions": partitions,
            },
        )
        self._context = trace.set_span_in_context(self._batch)

    def headers_of(self, message: InputMessage) -> Headers:
        span, tracestate = self._events[id(message)]
        ids = span.get_span_context()
        traceparent = b"00-%032x-%016x-%02x" % (ids.trace_id, ids.span_id, ids.trace_flags)
        return output_headers(traceparent, tracestate)

    def stage(self, name: str, seconds: float) -> None:
        end = time.time_ns()
        span = self._tracer.start_span(
            name, context=self._context, start_time=end - int(seconds * 1e9)
        )
        span.end(end_time=end)

    def end(self, attributes: Attributes | None = None) -> None:
        end = time.time_ns()
        if attributes:
            self._batch.set_attributes(dict(attributes))
        self._batch.end(end_time=end)
        for span, _ in self._events.values():
            span.end(end_time=end)


class OtelTracer:
    """Spans through an OpenTelemetry ``TracerProvider`` of the worker's own."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("stream_app")

    def batch(self, topic: str, messages: Sequence[InputMessage]) -> BatchTrace:
        return _SpanBatch(self._tracer, topic, messages)

    def shutdown(self) -> None:
        self.provider.shutdown()


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of ``endpoint`` (``/v1/traces`` added unless there)."""
    trimmed = endpoint.rstrip("/")
    return trimmed if trimmed.endswith("/v1/traces") else f"{trimmed}/v1/traces"


def provider_for(settings: TracingSettings, exporter: Any | None = None) -> TracerProvider:
    """A provider sampling ``settings.sample_ratio`` of new traces (an incoming parent's flag
    decides for its children), exporting in batches to ``exporter`` (default: OTLP/HTTP to
    ``settings.endpoint``); a given exporter (tests' in-memory one) gets spans as they end."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.service_name}),
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        assert settings.endpoint is not None
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(settings.endpoint)))
        )
    return provider


def tracer_for(settings: TracingSettings) -> Tracer:
    """The worker's tracer: spans exported over OTLP when an endpoint is set, else none."""
    if settings.endpoint is None:
        return NO_SPANS
    return OtelTracer(provider_for(settings))
