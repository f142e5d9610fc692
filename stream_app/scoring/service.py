"""The scoring service: one batch of client events in, predictions and dead letters out.

Order of work for a batch: decode and check (invalid -> dead-letter), read the entities'
features (deduplicated, through the freshness-bounded cache), build vectors in the model's
column order, score them in one call, then publish to Kafka and store in Cassandra
concurrently. ``process`` returns only when Kafka and Cassandra acknowledged everything, so
the agent acknowledges offsets after that. Outages pause here with back-off; nothing accepted
is dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson

from stream_app.contracts import codes
from stream_app.contracts.decode import ClientEvent
from stream_app.errors import FeatureLookupError, InvalidEvent, StoreError
from stream_app.features.cache import FeatureCache
from stream_app.features.vector import FeatureVectorBuilder, ServedVector
from stream_app.models.scorer import Scorer
from stream_app.monitoring.metrics import WorkerMetrics, observe_many
from stream_app.monitoring.state import Monitor
from stream_app.publishing import KafkaPublisher, PublishError, Record
from stream_app.retry import retry_forever
from stream_app.scoring.batch import (
    InputMessage,
    Refused,
    dead_letter_records,
    decode_events,
    prediction_outputs,
)
from stream_app.settings import Settings
from stream_app.storage.cql import is_outage
from stream_app.storage.predictions import PredictionRow, PredictionStore
from stream_app.use_cases.spec import UseCase


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class ScoringModel:
    """A loaded model with the vector builder for its column order."""

    scorer: Scorer
    builder: FeatureVectorBuilder
    feature_set: str
    role: str = "champion"


@dataclass
class BatchResult:
    """Counts of one processed batch."""

    predictions: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)


class ScoringService:
    """Scores batches of client events for one use case."""

    def __init__(
        self,
        *,
        settings: Settings,
        use_case: UseCase,
        features: FeatureCache,
        predictions: PredictionStore,
        publisher: KafkaPublisher,
        champion: ScoringModel,
        metrics: WorkerMetrics,
        monitor: Monitor,
        agent: str = "scoring",
    ) -> None:
        self.settings = settings
        self.use_case = use_case
        self.features = features
        self.predictions = predictions
        self.publisher = publisher
        self.champion = champion
        self.metrics = metrics
        self.monitor = monitor
        self.agent = agent

    def model_for(self, scorer: Scorer, role: str) -> ScoringModel:
        """Wrap a loaded scorer with its vector builder (its feature set registered)."""
        builder = FeatureVectorBuilder(self.use_case, scorer.feature_names)
        feature_set = self.predictions.register_feature_set(scorer.feature_names)
        return ScoringModel(scorer, builder, feature_set, role)

    async def process(self, messages: Sequence[InputMessage]) -> BatchResult:
        """Score one batch; returns once every output is acknowledged."""
        started = time.perf_counter()
        model = self.champion  # a model swap takes effect at a batch boundary
        topics = self.settings.kafka.topics
        self.metrics.events_in.labels(topics.client_events).inc(len(messages))
        self.metrics.batch_size.observe(len(messages))
        accepted, refused = decode_events(
            messages, model.builder.entity_keys, self.settings.worker.max_message_bytes
        )
        scored, missing_refused = await self._vectors(accepted, model)
        refused += missing_refused
        records: list[Record] = []
        rows: list[PredictionRow] = []
        if scored:
            matrix = np.array([served.values for _, _, served in scored], dtype=np.float64)
            predict_started = time.perf_counter()
            predicted = model.scorer.predict(matrix)
            values = predicted.tolist()
            self.metrics.predict_seconds.observe(time.perf_counter() - predict_started)
            records, rows = prediction_outputs(
                scored,
                values,
                use_case=self.use_case.name,
                model_version=model.scorer.version,
                role=model.role,
                feature_set=model.feature_set,
                predictions_topic=topics.predictions,
                scored_at=_now_ms(),
            )
        if rows:
            latencies = [row.latency_ms or 0.0 for row in rows]
            event_times = np.fromiter((row.event_time for row in rows), np.int64, len(rows))
            entity_ids = {
                key: [event.entities[key] for _, event, _ in scored]
                for key in model.builder.entity_keys
            }
            self.monitor.scored(
                model.scorer.version, model.role, matrix, predicted, latencies,
                rows[0].scored_at, event_times, entity_ids,
            )  # fmt: skip
        dead = dead_letter_records(refused, topics.dead_letter, self.agent, _now_ms())
        for record in dead:
            self.monitor.dead_letter(orjson.loads(record[2]))
        records += dead
        await asyncio.gather(self._publish(records), self._store(rows))
        self._observe(scored, rows, refused, model, started)
        result = BatchResult(predictions=len(rows))
        for r in refused:
            result.dead_letters[r.error.code] = result.dead_letters.get(r.error.code, 0) + 1
        return result

    async def _vectors(
        self, accepted: list[tuple[InputMessage, ClientEvent]], model: ScoringModel
    ) -> tuple[list[tuple[InputMessage, ClientEvent, ServedVector]], list[Refused]]:
        keys = [
            (key, event.entities[key]) for _, event in accepted for key in model.builder.entity_keys
        ]
        read_started = time.perf_counter()
        stored = await retry_forever(
            lambda: self.features.get_many(keys),
            lambda exc: isinstance(exc, FeatureLookupError),
            "reading features",
            self.settings.scoring.retry_initial_s,
            self.settings.scoring.retry_max_s,
            lambda exc, attempt: self.metrics.retries.labels("feature_read").inc(),
        )
        self.metrics.feature_read_seconds.observe(time.perf_counter() - read_started)
        now = _now_ms()
        policy = self.use_case.missing_features.policy
        scored: list[tuple[InputMessage, ClientEvent, ServedVector]] = []
        refused: list[Refused] = []
        build = model.builder.build
        for message, event in accepted:
            served = build(event.fields, event.entities, stored, now)
            if served.missing and policy == "dead_letter":
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
                self.metrics.retries.labels("publish").inc()
                attempt += 1
                await asyncio.sleep(min(self.settings.scoring.retry_max_s, 0.1 * 2**attempt))

    async def _store(self, rows: list[PredictionRow]) -> None:
        if not rows:
            return

        def retryable(exc: BaseException) -> bool:
            return is_outage(exc) or isinstance(exc, StoreError) or "Timeout" in type(exc).__name__

        await retry_forever(
            lambda: self.predictions.write_async(rows),
            retryable,
            "storing predictions",
            self.settings.scoring.retry_initial_s,
            self.settings.scoring.retry_max_s,
            lambda exc, attempt: self.metrics.retries.labels("prediction_store").inc(),
        )

    def _observe(
        self,
        scored: list[tuple[InputMessage, ClientEvent, ServedVector]],
        rows: list[PredictionRow],
        refused: list[Refused],
        model: ScoringModel,
        started: float,
    ) -> None:
        metrics, topics = self.metrics, self.settings.kafka.topics
        metrics.scoring_seconds.observe(time.perf_counter() - started)
        self.monitor.count(topics.client_events, len(scored) + len(refused))
        if rows:
            self.monitor.count(topics.predictions, len(rows))
            metrics.events_out.labels(topics.predictions).inc(len(rows))
            metrics.predictions.labels(model.role, model.scorer.version).inc(len(rows))
        observe_many(metrics.feature_age_seconds, [s.age_ms / 1000 for _, _, s in scored])
        observe_many(metrics.end_to_end_seconds, [(r.latency_ms or 0.0) / 1000 for r in rows])
        missing = Counter(feature for _, _, served in scored for feature in served.missing)
        for feature, count in missing.items():
            metrics.missing_features.labels(feature).inc(count)
        for r in refused:
            metrics.dead_letters.labels(r.message.topic, r.error.code).inc()
        if refused:
            metrics.events_out.labels(topics.dead_letter).inc(len(refused))
            self.monitor.count(topics.dead_letter, len(refused))
