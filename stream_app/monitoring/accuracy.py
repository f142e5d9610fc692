"""The accuracy service: ground truth in, accuracy events out, rolling metrics updated.

Per batch: decode labels (invalid -> dead-letter), store them, join each with the stored
predictions of its event (one per model version and role), publish one accuracy event per
prediction, and feed the rolling metrics. Each accuracy event carries the trace of its
ground-truth message (``traceparent`` with a new span id, or a new trace; a waiting label keeps
its message's in memory). A label whose prediction is not stored yet waits:
it is written to ``pending_labels`` (so a restarted worker keeps waiting for it) and tried
again with growing pauses until the use case's ``label.max_delay`` after it arrived; then it
is counted as unmatched and dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import orjson

from stream_app.contracts.dead_letter import dead_letters
from stream_app.contracts.decode import decode_ground_truth
from stream_app.contracts.outputs import accuracy_payload
from stream_app.errors import InvalidEvent
from stream_app.kafka.producer import Publisher
from stream_app.kafka.schema_registry import RegistrySchemas
from stream_app.messages import NO_HEADERS, Headers, InputMessage, Record, Refused
from stream_app.monitoring.prometheus import WorkerMetrics
from stream_app.monitoring.state import Monitor
from stream_app.retry import retry_forever
from stream_app.settings import Settings
from stream_app.storage.cql import worth_retrying
from stream_app.storage.labels import Label, LabelStorage, StoredPrediction
from stream_app.timeparse import parse_duration_ms
from stream_app.tracing.context import child_headers
from stream_app.tracing.spans import NO_SPANS, Tracer
from stream_app.use_cases.spec import UseCase

log = logging.getLogger(__name__)
FIRST_RETRY_MS = 1_000


def is_correct(
    task: str, predicted: float, actual: float, tolerance: float, threshold: float
) -> bool:
    """Within tolerance (regression), or the thresholded class (binary)."""
    if task == "regression":
        return abs(predicted - actual) <= tolerance
    return (predicted >= threshold) == (actual >= 0.5)


@dataclass
class Waiting:
    label: Label
    attempts: int
    next_attempt_ms: int
    headers: Headers = NO_HEADERS  # the trace of its accuracy events


class AccuracyService:
    """Joins ground truth with predictions for one use case."""

    def __init__(
        self,
        *,
        settings: Settings,
        use_case: UseCase,
        labels: LabelStorage,
        publisher: Publisher,
        monitor: Monitor,
        metrics: WorkerMetrics,
        agent: str = "accuracy",
        clock: Callable[[], float] = time.time,
        schemas: RegistrySchemas | None = None,
        tracer: Tracer = NO_SPANS,
    ) -> None:
        self.clock = clock  # seconds since the epoch (label ages, expiry)
        self.settings = settings
        self.use_case = use_case
        self.labels = labels
        self.publisher = publisher
        self.monitor = monitor
        self.metrics = metrics
        self.agent = agent
        self.max_delay_ms = parse_duration_ms(use_case.label.max_delay)
        self.waiting: dict[str, Waiting] = {}
        self.reader = (schemas or RegistrySchemas(settings.schema_registry)).reader("ground_truth")
        self.tracer = tracer

    async def _io(self, action: str, make: object) -> None:
        await retry_forever(
            make,  # type: ignore[arg-type]
            worth_retrying,
            action,
            self.settings.consumer.retry_initial_s,
            self.settings.consumer.retry_max_s,
            lambda exc, attempt: self.metrics.retried(action),
        )

    async def process(self, messages: Sequence[InputMessage]) -> int:
        """Store, join and publish one batch of labels; returns the accuracy events made."""
        now = int(self.clock() * 1000)
        started = time.perf_counter()
        trace = self.tracer.batch(self.settings.kafka.topics.ground_truth, messages)
        labels: list[Label] = []
        refused: list[Refused] = []
        if self.reader.framed:  # the registry's answer for ids not seen yet
            await self.reader.prepare([m.value for m in messages])
        max_bytes = self.settings.worker.max_message_bytes
        traces: dict[str, Headers] = {}  # event id -> its accuracy events' trace headers
        for message in messages:
            try:
                truth = decode_ground_truth(message.value, max_bytes, self.reader.parse)
            except InvalidEvent as error:
                refused.append(Refused(message, error))
                continue
            labels.append(
                Label(truth.event_id, truth.label, truth.label_time, now, message.partition)
            )
            traces[truth.event_id] = trace.headers_of(message)
        trace.stage("decode", time.perf_counter() - started)
        self.metrics.events_in.labels(self.settings.kafka.topics.ground_truth).inc(len(messages))
        self.monitor.count(self.settings.kafka.topics.ground_truth, len(messages), now)
        began = time.perf_counter()
        await self._io("label_store", lambda: self.labels.store(labels))
        records, unmatched = await self._join(labels, now, traces)
        trace.stage("join", time.perf_counter() - began)
        payloads, dead = dead_letters(
            refused, self.settings.kafka.topics.dead_letter, self.agent, now, trace.headers_of
        )
        for payload in payloads:
            self.monitor.dead_letter(payload)
        for r in refused:
            self.metrics.dead_letters.labels(r.message.topic, r.error.code).inc()
        if refused:
            self.monitor.count(self.settings.kafka.topics.dead_letter, len(refused), now)
        began = time.perf_counter()
        await asyncio.gather(
            self.publisher.publish(records + dead),
            self._io("label_wait", lambda: self.labels.wait(unmatched))
            if unmatched
            else _nothing(),
        )
        trace.stage("publish", time.perf_counter() - began)
        for label in unmatched:
            self.waiting[label.event_id] = Waiting(
                label, 1, now + FIRST_RETRY_MS, traces.get(label.event_id, NO_HEADERS)
            )
        self.metrics.labels.labels("waiting").inc(len(unmatched))
        trace.end({"stream_app.accuracy_events": len(records),
                   "stream_app.dead_letters": len(refused)})  # fmt: skip
        return len(records)

    async def _join(
        self, labels: Sequence[Label], now: int, traces: Mapping[str, Headers]
    ) -> tuple[list[Record], list[Label]]:
        """Accuracy events of the labels whose predictions are stored; the others."""
        found: dict[str, list[StoredPrediction]] = {}

        async def read() -> None:
            found.update(await self.labels.predictions_of(label.event_id for label in labels))

        if labels:
            await self._io("prediction_read", read)
        records: list[Record] = []
        unmatched: list[Label] = []
        label_spec = self.use_case.label
        topic = self.settings.kafka.topics.accuracy_events
        for label in labels:
            predictions = found.get(label.event_id)
            if not predictions:
                unmatched.append(label)
                continue
            headers = traces.get(label.event_id) or child_headers(NO_HEADERS)  # a new trace
            for p in predictions:
                payload = accuracy_payload(
                    prediction_id=p.prediction_id,
                    event_id=p.event_id,
                    use_case=self.use_case.name,
                    model_version=p.model_version,
                    role=p.role,
                    predicted=p.value,
                    actual=label.label,
                    correct=is_correct(
                        self.use_case.task, p.value, label.label,
                        label_spec.tolerance or 0.0, label_spec.threshold,
                    ),
                    label_delay_ms=label.label_time - p.event_time,
                    evaluated_at=now,
                )  # fmt: skip
                records.append(Record(topic, p.event_id.encode(), orjson.dumps(payload), headers))
                self.monitor.labelled(p.model_version, p.role, p.value, label.label, now,
                                     p.event_time)  # fmt: skip
        matched = len(labels) - len(unmatched)
        self.monitor.labels_matched += matched
        self.metrics.labels.labels("matched").inc(matched)
        self.metrics.accuracy_events.inc(len(records))
        if records:
            self.metrics.events_out.labels(topic).inc(len(records))
            self.monitor.count(topic, len(records), now)
        return records, unmatched

    async def retry_waiting(self) -> None:
        """Join the waiting labels whose time has come; expire those past ``max_delay``."""
        now = int(self.clock() * 1000)
        due = [w for w in self.waiting.values() if w.next_attempt_ms <= now]
        if not due:
            return
        expired = [w.label for w in due if now - w.label.received_at > self.max_delay_ms]
        trying = [w.label for w in due if now - w.label.received_at <= self.max_delay_ms]
        traces = {w.label.event_id: w.headers for w in due}
        records, still = await self._join(trying, now, traces)
        still_ids = {label.event_id for label in still}
        joined = [label for label in trying if label.event_id not in still_ids]
        await self.publisher.publish(records)
        finished = joined + expired
        if finished:
            await self._io("label_done", lambda: self.labels.done(finished))
        for label in finished:
            self.waiting.pop(label.event_id, None)
        for label in still:
            entry = self.waiting[label.event_id]
            entry.attempts += 1
            pause = min(
                FIRST_RETRY_MS * 2**entry.attempts,
                self.settings.accuracy.label_retry_max_s * 1000,
            )
            entry.next_attempt_ms = now + int(pause)
        if expired:
            self.monitor.labels_unmatched += len(expired)
            self.metrics.labels.labels("expired").inc(len(expired))
            log.info("%d labels expired without a prediction", len(expired))

    async def on_partitions_assigned(self, partitions: list[int]) -> None:
        """Take over the labels waiting on these partitions (after a restart or a rebalance).
        A read that times out is tried again: an overloaded cluster (a restarted worker
        catching up, replicas answering slowly) once ended the worker here."""
        now = int(self.clock() * 1000)
        for partition in partitions:
            waiting = await retry_forever(
                lambda p=partition: self.labels.waiting(p, now - self.max_delay_ms),  # type: ignore[misc]
                worth_retrying,
                "taking over waiting labels",
                self.settings.consumer.retry_initial_s,
                self.settings.consumer.retry_max_s,
                lambda exc, attempt: self.metrics.retried("take_over"),
            )
            for label in waiting:
                self.waiting.setdefault(label.event_id, Waiting(label, 1, now))

    def on_partitions_revoked(self, partitions: list[int]) -> None:
        gone = set(partitions)
        self.waiting = {k: w for k, w in self.waiting.items() if w.label.partition not in gone}


async def _nothing() -> None:
    return None
