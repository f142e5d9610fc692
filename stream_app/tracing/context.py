"""W3C trace context (https://www.w3.org/TR/trace-context/) in Kafka headers, as pure functions.

An input event may carry a ``traceparent`` header (version ``00``:
``00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>``, lowercase) and a
``tracestate``. The outputs made from it (its prediction, dead letter, accuracy event) carry
the same trace id with a span id of their own, the flags, and the ``tracestate`` unchanged. An
event without a valid ``traceparent`` (absent, malformed, another version, all-zero ids, more
than one) starts a new trace with random ids: an invalid header is never an error.

The hot path calls ``child_headers`` once per event: a header-less event costs two random
numbers and one formatted string.
"""

from __future__ import annotations

from random import getrandbits
from typing import NamedTuple

from stream_app.messages import Headers

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
MAX_TRACESTATE_BYTES = 512  # the specification's limit; a longer one is dropped
_HEX = b"0123456789abcdef"
_DASH = ord("-")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16


class TraceParent(NamedTuple):
    """A parsed ``traceparent``: lowercase hex ids and flags, as bytes."""

    trace_id: bytes  # 32 hex digits, not all zero
    span_id: bytes  # 16 hex digits, not all zero (the parent's span)
    flags: bytes  # 2 hex digits (bit 0: sampled)

    @property
    def sampled(self) -> bool:
        return bool(int(self.flags, 16) & 1)

    def header(self) -> bytes:
        return b"00-%s-%s-%s" % (self.trace_id, self.span_id, self.flags)


class Incoming(NamedTuple):
    """An input's trace context: its valid ``traceparent`` (or None) and ``tracestate``."""

    parent: TraceParent | None
    tracestate: bytes | None


NO_CONTEXT = Incoming(None, None)


def parse_traceparent(value: bytes | None) -> TraceParent | None:
    """``value`` parsed, or None when it is not a valid version-00 ``traceparent``."""
    if value is None or len(value) != 55 or value[:3] != b"00-":
        return None
    if value[35] != _DASH or value[52] != _DASH:
        return None
    trace_id, span_id, flags = value[3:35], value[36:52], value[53:55]
    # only lowercase hex digits: stripping them all leaves nothing (faster than a regex)
    if trace_id.strip(_HEX) or span_id.strip(_HEX) or flags.strip(_HEX):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return TraceParent(trace_id, span_id, flags)


def incoming(headers: Headers) -> Incoming:
    """The trace context of an input with ``headers``. A ``tracestate`` is kept only beside a
    valid ``traceparent`` (the specification: without one, the trace restarts)."""
    if not headers:
        return NO_CONTEXT
    if len(headers) == 1:  # the common case: a traceparent alone
        name, value = headers[0]
        parent = parse_traceparent(value) if name == TRACEPARENT else None
        return NO_CONTEXT if parent is None else Incoming(parent, None)
    parents = [value for name, value in headers if name == TRACEPARENT]
    if len(parents) != 1:  # none, or several (invalid)
        return NO_CONTEXT
    parent = parse_traceparent(parents[0])
    if parent is None:
        return NO_CONTEXT
    states = [value for name, value in headers if name == TRACESTATE and value]
    state = b",".join(states) if states else None  # several headers are one list
    if state is not None and len(state) > MAX_TRACESTATE_BYTES:
        state = None
    return Incoming(parent, state)


def new_trace_id() -> bytes:
    return b"%032x" % (getrandbits(128) or 1)


def new_span_id() -> bytes:
    return b"%016x" % (getrandbits(64) or 1)


def output_headers(traceparent: bytes, tracestate: bytes | None) -> Headers:
    """The headers of an output: its ``traceparent`` and, if any, the ``tracestate``."""
    if tracestate is None:
        return ((TRACEPARENT, traceparent),)
    return ((TRACEPARENT, traceparent), (TRACESTATE, tracestate))


def child_headers(headers: Headers) -> Headers:
    """The headers of an output made from an input with ``headers``: the input's trace (or a
    new one, not sampled: nothing recorded it) with a new span id, and its ``tracestate``."""
    if not headers:
        return ((TRACEPARENT, b"00-%032x-%016x-00" % (getrandbits(128) or 1,
                                                      getrandbits(64) or 1)),)  # fmt: skip
    context = incoming(headers)
    parent = context.parent
    if parent is None:
        return output_headers(b"00-%s-%s-00" % (new_trace_id(), new_span_id()), None)
    child = b"00-%s-%s-%s" % (parent.trace_id, new_span_id(), parent.flags)
    return output_headers(child, context.tracestate)


def traceparent_of(headers: Headers) -> TraceParent | None:
    """The valid ``traceparent`` among ``headers``, if exactly one."""
    return incoming(headers).parent
