"""The worker's Prometheus metrics (served on ``/metrics``).

Names follow Prometheus conventions (``_total`` counters, base units: seconds); labels never
carry entity or event ids, so cardinality stays bounded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
AGE_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600)
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
STAGE_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
)  # fmt: skip


def observe_many(histogram: Histogram, values: Sequence[float]) -> None:
    """``histogram.observe(v)`` for every value, in one pass (the scoring path observes a
    whole batch at once). Uses the client's bucket storage; a unit test holds it equal to
    one ``observe`` per value. A few values are observed one by one: numpy's fixed cost per
    call (about 9 µs here) is more than ``observe``'s (about 1.3 µs) below eight values."""
    if len(values) < 8:
        for value in values:
            histogram.observe(value)
        return
    array = np.asarray(values, dtype=np.float64)
    bounds = histogram._upper_bounds
    counts = np.bincount(np.searchsorted(bounds, array, side="left"), minlength=len(bounds))
    for index in np.flatnonzero(counts).tolist():
        histogram._buckets[index].inc(int(counts[index]))
    histogram._sum.inc(float(array.sum()))


class WorkerMetrics:
    """Every metric of a worker, registered once on ``registry``."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        r = registry
        self.events_in = Counter(
            "stream_app_events_in_total", "Messages consumed, by topic.", ["topic"], registry=r
        )
        self.events_out = Counter(
            "stream_app_events_out_total", "Messages published, by topic.", ["topic"], registry=r
        )
        self.dead_letters = Counter(
            "stream_app_dead_letters_total",
            "Messages refused to the dead-letter topic, by source topic and code.",
            ["topic", "code"],
            registry=r,
        )
        self.predictions = Counter(
            "stream_app_predictions_total",
            "Predictions published, by model role and version.",
            ["role", "model_version"],
            registry=r,
        )
        self.missing_features = Counter(
            "stream_app_missing_features_total",
            "Features replaced by their defaults, by feature.",
            ["feature"],
            registry=r,
        )
        self.batch_size = Histogram(
            "stream_app_batch_size", "Client events per scoring batch.", buckets=BATCH_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.scoring_seconds = Histogram(
            "stream_app_scoring_duration_seconds",
            "Time to process one batch: decode, features, predict, publish, store.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predict_seconds = Histogram(
            "stream_app_predict_duration_seconds", "Model predict call per batch.",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.end_to_end_seconds = Histogram(
            "stream_app_end_to_end_latency_seconds",
            "From a client event's Kafka timestamp to its prediction being scored.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "stream_app_scoring_stage_seconds",
            "Where a client event's time goes on the scoring path, by stage (monitoring.stages): "
            "kafka_wait per event; decode, features, score, publish, store and commit per batch.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.feature_read_seconds = Histogram(
            "stream_app_cassandra_read_duration_seconds",
            "Feature reads of one batch (all entities, concurrently).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.feature_age_seconds = Histogram(
            "stream_app_feature_age_seconds",
            "Age of the oldest streaming feature used by a prediction.",
            buckets=AGE_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "stream_app_retries_total",
            "Retries after an outage, by operation.",
            ["operation"],
            registry=r,
        )
        self.accuracy_events = Counter(
            "stream_app_accuracy_events_total",
            "Accuracy events published (one per prediction joined with its label).",
            registry=r,
        )
        self.labels = Counter(
            "stream_app_labels_total",
            "Ground-truth labels by outcome: matched (joined), waiting (prediction not there "
            "yet) or expired (never matched within the use case's max_delay).",
            ["outcome"],
            registry=r,
        )
        self.readings_merged = Counter(
            "stream_app_readings_merged_total",
            "Sensor-reading values merged into windowed aggregates.",
            registry=r,
        )
        self.late_readings = Counter(
            "stream_app_late_readings_total",
            "Reading values later than every window's allowed lateness: counted, not merged.",
            registry=r,
        )
        self.duplicate_readings = Counter(
            "stream_app_duplicate_readings_total",
            "Reading values seen again after a restart or replay: already merged, skipped.",
            registry=r,
        )
        self.panes_written = Counter(
            "stream_app_panes_written_total", "Aggregate panes written to Cassandra.", registry=r
        )
        self.feature_cache_hits = Counter(
            "stream_app_feature_cache_hits_total", "Entity reads served by the cache.", registry=r
        )
        self.feature_cache_misses = Counter(
            "stream_app_feature_cache_misses_total", "Entity reads sent to Cassandra.", registry=r
        )
        self.model_switch_seconds = Histogram(
            "stream_app_model_switch_seconds",
            "From a role's announcement on model-updates to this worker serving the new set.",
            ["role"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.model_load_seconds = Histogram(
            "stream_app_model_load_seconds",
            "Reading a model version from the registry and loading it (in the background; "
            "compiling it when it is not in the cache).",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.scorer_fallbacks = Counter(
            "stream_app_scorer_fallbacks_total",
            "Model versions scored by LightGBM because compiling them failed, by reason "
            "(unavailable, unsupported, compile_error, mismatch).",
            ["reason"],
            registry=r,
        )
        self.scorers_loaded = Counter(
            "stream_app_scorers_loaded_total",
            "Model versions loaded, by the scorer that serves them (compiled or lightgbm).",
            ["kind"],
            registry=r,
        )
        self.last_retry: float | None = None  # monotonic time of the last outage retry
        self.lifecycle_decisions = Counter(
            "stream_app_lifecycle_decisions_total",
            "Decisions of the orchestrator, by action (retrain_started, promoted, rejected...).",
            ["action"],
            registry=r,
        )

    def retried(self, operation: str) -> None:
        """An outage was retried (the worker is waiting, not stuck)."""
        self.retries.labels(operation).inc()
        self.last_retry = time.monotonic()


class WorkerGauges:
    """The worker's own gauges, whatever use cases it serves (the liveness watchdog's)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.consumer_stalled = Gauge(
            "stream_app_consumer_stalled",
            "1 when a consumer made no progress for worker.stall_after_s while work waited "
            "(the worker then fails /healthz).",
            ["topic", "group"],
            registry=registry,
        )
        self.seconds_since_progress = Gauge(
            "stream_app_consumer_seconds_since_progress",
            "Seconds since a consumer last finished a batch while work waited (0 when idle).",
            ["topic", "group"],
            registry=registry,
        )


class UseCaseLabelled(Collector):
    """Each use case's metrics (a registry of its own) under one name, labelled
    ``use_case``: one worker may serve several use cases, and /metrics shows them apart."""

    def __init__(self) -> None:
        self.registries: dict[str, CollectorRegistry] = {}

    def add(self, use_case: str, registry: CollectorRegistry) -> None:
        self.registries[use_case] = registry

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for use_case, registry in self.registries.items():
            for family in registry.collect():
                target = merged.get(family.name)
                if target is None:
                    target = merged[family.name] = Metric(
                        family.name, family.documentation, family.type, family.unit
                    )
                for sample in family.samples:
                    target.add_sample(
                        sample.name, {**sample.labels, "use_case": use_case}, sample.value,
                        sample.timestamp, sample.exemplar,
                    )  # fmt: skip
        yield from merged.values()
