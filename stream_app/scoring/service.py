"""The scoring service: one batch of client events in, predictions and dead letters out.

Order of work for a batch: decode and check (invalid -> dead-letter), read the entities'
features once (deduplicated, through the freshness-bounded cache), then per model of the
batch's ``ModelSet`` (champion, an A/B challenger on its share, a shadow on everything):
build vectors in that model's column order and score them in one call; then publish to Kafka
and store in Cassandra concurrently. ``process`` returns only when Kafka and Cassandra
acknowledged everything, so the agent acknowledges offsets after that. Outages pause here with
back-off; nothing accepted is dropped.

A model swap (``swap``) replaces the whole set; a batch keeps the set it started with, so the
switch happens at a batch boundary and no event is scored twice or by no model.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from stream_app.contracts import codes
from stream_app.contracts.dead_letter import dead_letters
from stream_app.contracts.decode import ClientEvent
from stream_app.errors import FeatureLookupError, InvalidEvent
from stream_app.features.cache import FeatureReader
from stream_app.features.vector import FeatureVectorBuilder, ServedVector, StoredFeatures
from stream_app.features.windows import served_window_start
from stream_app.kafka.producer import Publisher, PublishError
from stream_app.kafka.schema_registry import RegistrySchemas
from stream_app.messages import InputMessage, Record, Refused
from stream_app.models.registry import role_kind
from stream_app.models.scorer import Scorer
from stream_app.monitoring.prometheus import WorkerMetrics, observe_many
from stream_app.monitoring.state import Monitor
from stream_app.retry import retry_forever
from stream_app.scoring.batch import decode_events, prediction_outputs
from stream_app.scoring.model_set import ModelSet, ScoringModel, split_traffic
from stream_app.settings import Settings
from stream_app.storage.cql import worth_retrying
from stream_app.storage.predictions import PredictionRow, PredictionWriter
from stream_app.tracing.spans import NO_SPANS, BatchTrace, Tracer
from stream_app.use_cases.spec import AggregateFeature, UseCase


def _now_ms() -> int:
    return int(time.time() * 1000)


Scored = list[tuple[InputMessage, ClientEvent, ServedVector]]
# per event: the stored features it is served, and the time they are served for
ServedAt = Callable[[ClientEvent], tuple[StoredFeatures, int]]
ReadAt = Callable[[list[tuple[str, str]], int], Awaitable[StoredFeatures]]
T = TypeVar("T")


@dataclass
class BatchResult:
    """Counts of one processed batch."""

    predictions: int = 0
    shadow_predictions: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)  # role slot -> version that scored


class ScoringService:
    """Scores batches of client events for one use case."""

    def __init__(
        self,
        *,
        settings: Settings,
        use_case: UseCase,
        features: FeatureReader,
        predictions: PredictionWriter,
        publisher: Publisher,
        models: ModelSet | None = None,
        metrics: WorkerMetrics,
        monitor: Monitor,
        agent: str = "scoring",
        read_at: ReadAt | None = None,
        schemas: RegistrySchemas | None = None,
        tracer: Tracer = NO_SPANS,
    ) -> None:
        self.settings = settings
        self.use_case = use_case
        self.features = features
        self.predictions = predictions
        self.publisher = publisher
        self.models: ModelSet = models  # type: ignore[assignment]  # None until `swap`
        self.metrics = metrics
        self.monitor = monitor
        self.agent = agent
        self.read_at = read_at  # features as of a time (use cases served at event time)
        self.reader = (schemas or RegistrySchemas(settings.schema_registry)).reader("client_events")
        self.tracer = tracer
        windows = use_case.features_of(AggregateFeature).values()
        self._windows = sorted({(f.window.size_ms, f.window.step_ms) for f in windows})

    def model_for(self, scorer: Scorer, role: str) -> ScoringModel:
        """Wrap a loaded scorer with its vector builder (its feature set registered); ``role``
        is its registry slot (``challenger-2`` publishes as a ``challenger``)."""
        builder = FeatureVectorBuilder(self.use_case, scorer.feature_names)
        feature_set = self.predictions.register_feature_set(scorer.feature_names)
        return ScoringModel(scorer, builder, feature_set, role_kind(role), role)

    def swap(self, models: ModelSet) -> ModelSet | None:
        """Serve ``models`` from the next batch on; returns the set it replaces."""
        previous: ModelSet | None = self.models
        self.models = models
        return previous

    async def process(self, messages: Sequence[InputMessage]) -> BatchResult:
        """Score one batch; returns once every output is acknowledged."""
        topics = self.settings.kafka.topics
        trace = self.tracer.batch(topics.client_events, messages)
        result = await self._process(messages, trace)
        trace.end(
            {
                "stream_app.predictions": result.predictions,
                "stream_app.shadow_predictions": result.shadow_predictions,
                "stream_app.dead_letters": sum(result.dead_letters.values()),
            }
        )
        return result

    async def _process(self, messages: Sequence[InputMessage], trace: BatchTrace) -> BatchResult:
        started = time.perf_counter()
        began_ms = _now_ms()
        models = self.models  # the whole batch is scored by the set current at its start
        topics = self.settings.kafka.topics
        self.metrics.events_in.labels(topics.client_events).inc(len(messages))
        self.metrics.batch_size.observe(len(messages))
        self._stage("kafka_wait", [max(began_ms - m.timestamp_ms, 0) / 1000 for m in messages])
        entity_keys = models.champion.builder.entity_keys
        if self.reader.framed:  # the registry's answer for ids not seen yet
            await self.reader.prepare([m.value for m in messages])
        accepted, refused = decode_events(
            messages,
            self._required_entities(entity_keys),
            self.settings.worker.max_message_bytes,
            self.reader.parse,
        )
        self._stage("decode", [time.perf_counter() - started], trace)
        served_at = await self._read_features(accepted, entity_keys, trace)
        score_started = time.perf_counter()
        groups: list[tuple[ScoringModel, list[tuple[InputMessage, ClientEvent]]]]
        arms = models.live_arms
        if arms:
            split_key = self.use_case.entities.split_key
            chosen = split_traffic(
                [event.entities[split_key] for _, event in accepted], [a.fraction for a in arms]
            )
            models_by_arm = [models.champion, *(arm.model for arm in arms)]
            grouped: list[list[tuple[InputMessage, ClientEvent]]] = [[] for _ in models_by_arm]
            for item, arm_index in zip(accepted, chosen, strict=True):
                grouped[arm_index + 1].append(item)
            groups = list(zip(models_by_arm, grouped, strict=True))
        else:
            groups = [(models.champion, accepted)]
        records: list[Record] = []
        rows: list[PredictionRow] = []
        live: Scored = []
        result = BatchResult()
        for model, items in groups:
            scored, missing_refused = self._vectors(items, model, served_at, refuse=True)
            refused += missing_refused
            model_records, model_rows = self._score(model, scored, topics.predictions, trace)
            records += model_records
            rows += model_rows
            live += scored
            if model_rows:
                result.versions[model.slot] = model.version
        shadow_rows: list[PredictionRow] = []
        if models.shadow is not None and live:
            shadow = models.shadow
            items = [(message, event) for message, event, _ in live]
            scored, _ = self._vectors(items, shadow, served_at, refuse=False)
            shadow_records, shadow_rows = self._score(
                shadow, scored, topics.predictions_shadow, trace
            )
            records += shadow_records
            if shadow_rows:
                result.versions[shadow.slot] = shadow.version
        self._stage("score", [time.perf_counter() - score_started], trace)
        payloads, dead = dead_letters(
            refused, topics.dead_letter, self.agent, _now_ms(), trace.headers_of
        )
        for payload in payloads:
            self.monitor.dead_letter(payload)
        records += dead
        await asyncio.gather(
            self._timed("publish", self._publish(records), trace),
            self._timed("store", self._store(rows + shadow_rows), trace),
        )
        self._observe(live, rows, shadow_rows, refused, started)
        result.predictions = len(rows)
        result.shadow_predictions = len(shadow_rows)
        for r in refused:
            result.dead_letters[r.error.code] = result.dead_letters.get(r.error.code, 0) + 1
        return result

    def _stage(self, stage: str, seconds: Sequence[float], trace: BatchTrace | None = None) -> None:
        """Time spent in ``stage`` (``monitoring.stages``): the histogram and the monitor, and
        the batch's span of a stage timed once per batch."""
        observe_many(self.metrics.stage_seconds.labels(stage), seconds)
        self.monitor.stage(stage, [value * 1000 for value in seconds])
        if trace is not None:
            trace.stage(stage, seconds[0])

    async def _timed(self, stage: str, work: Awaitable[None], trace: BatchTrace) -> None:
        began = time.perf_counter()
        await work
        self._stage(stage, [time.perf_counter() - began], trace)

    def _required_entities(self, entity_keys: Sequence[str]) -> list[str]:
        """The entities an event must name: those its features are looked up by, and the key
        that splits traffic between champion and challenger."""
        return sorted({*entity_keys, self.use_case.entities.split_key})

    def _score(
        self, model: ScoringModel, scored: Scored, topic: str, trace: BatchTrace
    ) -> tuple[list[Record], list[PredictionRow]]:
        """One LightGBM call for ``scored``, its outputs, and the monitor fed."""
        if not scored:
            return [], []
        matrix = np.array([served.values for _, _, served in scored], dtype=np.float64)
        predict_started = time.perf_counter()
        predicted = model.scorer.predict(matrix)
        self.metrics.predict_seconds.observe(time.perf_counter() - predict_started)
        records, rows = prediction_outputs(
            scored,
            predicted.tolist(),
            use_case=self.use_case.name,
            model_version=model.version,
            role=model.role,
            feature_set=model.feature_set,
            predictions_topic=topic,
            scored_at=_now_ms(),
            headers_of=trace.headers_of,
        )
        latencies = [row.latency_ms or 0.0 for row in rows]
        event_times = np.fromiter((row.event_time for row in rows), np.int64, len(rows))
        entity_ids = {
            key: [event.entities[key] for _, event, _ in scored]
            for key in model.builder.entity_keys
        }
        self.monitor.scored(
            model.version, model.role, matrix, predicted, latencies, rows[0].scored_at,
            event_times, entity_ids,
        )  # fmt: skip
        self.metrics.predictions.labels(model.role, model.version).inc(len(rows))
        return records, rows

    async def _read_features(
        self,
        accepted: list[tuple[InputMessage, ClientEvent]],
        entity_keys: Sequence[str],
        trace: BatchTrace,
    ) -> ServedAt:
        """The stored features every event of the batch is served, and the time they are
        served for: now (each entity read once, through the cache), or with the use case's
        ``features_at = "event_time"`` each event's own time (entities read once per group
        of events that are served the same windows)."""
        read_started = time.perf_counter()
        if self.use_case.serving.features_at == "event_time" and self.read_at is not None:
            served_at = await self._read_at_event_times(accepted, entity_keys)
        else:
            keys = [(key, event.entities[key]) for _, event in accepted for key in entity_keys]
            stored = await self._retrying(lambda: self.features.get_many(keys))
            now = _now_ms()

            def served_at(event: ClientEvent) -> tuple[StoredFeatures, int]:
                return stored, now

        elapsed = time.perf_counter() - read_started
        self.metrics.feature_read_seconds.observe(elapsed)
        self._stage("features", [elapsed], trace)
        return served_at

    async def _read_at_event_times(
        self, accepted: list[tuple[InputMessage, ClientEvent]], entity_keys: Sequence[str]
    ) -> ServedAt:
        read_at = self.read_at
        assert read_at is not None
        now = _now_ms()
        groups: dict[tuple[int, ...], tuple[int, list[tuple[str, str]]]] = {}
        for _, event in accepted:
            at = min(event.event_time, now)
            key = self._served_windows(at)
            earliest, keys = groups.get(key, (at, []))
            keys += [(k, event.entities[k]) for k in entity_keys]
            groups[key] = (min(earliest, at), keys)

        def reader(keys: list[tuple[str, str]], at: int) -> Callable[[], Awaitable[StoredFeatures]]:
            return lambda: read_at(keys, at)

        results = await asyncio.gather(
            *(self._retrying(reader(keys, at)) for at, keys in groups.values())
        )
        stored = dict(zip(groups, results, strict=True))

        def served_at(event: ClientEvent) -> tuple[StoredFeatures, int]:
            at = min(event.event_time, now)
            return stored[self._served_windows(at)], at

        return served_at

    def _served_windows(self, at_ms: int) -> tuple[int, ...]:
        """The windows served at ``at_ms`` (events with the same are served the same)."""
        return tuple(served_window_start(at_ms, size, step) for size, step in self._windows)

    async def _retrying(self, read: Callable[[], Awaitable[T]]) -> T:
        return await retry_forever(
            read,
            lambda exc: isinstance(exc, FeatureLookupError),
            "reading features",
            self.settings.consumer.retry_initial_s,
            self.settings.consumer.retry_max_s,
            lambda exc, attempt: self.metrics.retried("feature_read"),
        )

    def _vectors(
        self,
        accepted: list[tuple[InputMessage, ClientEvent]],
        model: ScoringModel,
        served_at: ServedAt,
        refuse: bool,
    ) -> tuple[Scored, list[Refused]]:
        """Vectors in ``model``'s column order; with ``refuse`` (live models), events missing
        features go to the dead-letter topic when the use case's policy says so."""
        refusing = refuse and self.use_case.missing_features.policy == "dead_letter"
        scored: Scored = []
        refused: list[Refused] = []
        build = model.builder.build
        for message, event in accepted:
            stored, at = served_at(event)
            served = build(event.fields, event.entities, stored, at)
            if served.missing and refusing:
                error = InvalidEvent(
                    codes.MISSING_FEATURES,
                    f"features {served.missing} are missing or older than "
                    f"{self.use_case.missing_features.max_age}, and the use case refuses defaults",
                )
                refused.append(Refused(message, error))
                continue
            scored.append((message, event, served))
        return scored, refused

    async def _publish(self, records: list[Record]) -> None:
        pending = records
        attempt = 0
        while pending:
            try:
                await self.publisher.publish(pending)
                return
            except PublishError as exc:
                pending = exc.failed
                self.metrics.retried("publish")
                attempt += 1
                await asyncio.sleep(min(self.settings.consumer.retry_max_s, 0.1 * 2**attempt))

    async def _store(self, rows: list[PredictionRow]) -> None:
        if not rows:
            return

        await retry_forever(
            lambda: self.predictions.write_async(rows),
            worth_retrying,
            "storing predictions",
            self.settings.consumer.retry_initial_s,
            self.settings.consumer.retry_max_s,
            lambda exc, attempt: self.metrics.retried("prediction_store"),
        )

    def _observe(
        self,
        live: Scored,
        rows: list[PredictionRow],
        shadow_rows: list[PredictionRow],
        refused: list[Refused],
        started: float,
    ) -> None:
        metrics, topics = self.metrics, self.settings.kafka.topics
        metrics.scoring_seconds.observe(time.perf_counter() - started)
        self.monitor.count(topics.client_events, len(live) + len(refused))
        if rows:
            self.monitor.count(topics.predictions, len(rows))
            metrics.events_out.labels(topics.predictions).inc(len(rows))
        if shadow_rows:
            self.monitor.count(topics.predictions_shadow, len(shadow_rows))
            metrics.events_out.labels(topics.predictions_shadow).inc(len(shadow_rows))
        observe_many(metrics.feature_age_seconds, [s.age_ms / 1000 for _, _, s in live])
        observe_many(metrics.end_to_end_seconds, [(r.latency_ms or 0.0) / 1000 for r in rows])
        missing = Counter(feature for _, _, served in live for feature in served.missing)
        for feature, count in missing.items():
            metrics.missing_features.labels(feature).inc(count)
        for r in refused:
            metrics.dead_letters.labels(r.message.topic, r.error.code).inc()
        if refused:
            metrics.events_out.labels(topics.dead_letter).inc(len(refused))
            self.monitor.count(topics.dead_letter, len(refused))
