"""What a worker needs, built once: per use case its services (agents, models, monitoring),
and what the use cases share (Cassandra, the producer, the liveness watchdog)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cassandra.cluster import Session
from prometheus_client import REGISTRY, CollectorRegistry

from stream_app.cassandra_session import open_cluster
from stream_app.errors import ConfigurationError
from stream_app.features.cache import FeatureCache
from stream_app.features.pane_store import PaneStore
from stream_app.features.service import FeatureService
from stream_app.features.store import CassandraFeatureStore
from stream_app.kafka.admin import topic_id
from stream_app.kafka.producer import KafkaPublisher, Publisher
from stream_app.kafka.schema_registry import RegistrySchemas, framed_outputs
from stream_app.kafka.transactions import BatchOutputs
from stream_app.lifecycle.accuracy_feed import AccuracyFeed
from stream_app.lifecycle.orchestrator import Orchestrator
from stream_app.lifecycle.watcher import ModelWatcher
from stream_app.models.registry import ModelRegistry
from stream_app.monitoring.accuracy import AccuracyService
from stream_app.monitoring.liveness import Watchdog
from stream_app.monitoring.prometheus import UseCaseLabelled, WorkerGauges, WorkerMetrics
from stream_app.monitoring.state import Monitor, MonitorCollector
from stream_app.provisioning.keyspace import pending_migrations
from stream_app.scoring.service import ScoringService
from stream_app.settings import Settings
from stream_app.storage.labels import LabelStore
from stream_app.storage.predictions import PredictionStore
from stream_app.tracing.spans import NO_SPANS, Tracer, tracer_for
from stream_app.use_cases.deployment import load
from stream_app.use_cases.spec import UseCase

log = logging.getLogger(__name__)


@dataclass
class UseCaseServices:
    """The services of one use case in a worker: its agents, models and monitoring."""

    use_case: UseCase
    settings: Settings  # as the use case sees them (its topics)
    metrics: WorkerMetrics  # in a registry of its own: /metrics labels it with the use case
    monitor: Monitor
    registry: ModelRegistry
    scoring: ScoringService | None = None
    features: FeatureService | None = None
    accuracy: AccuracyService | None = None
    watcher: ModelWatcher | None = None
    orchestrator: Orchestrator | None = None


@dataclass
class Dependencies:
    """What the agents need, built once per worker process: what the use cases share (the
    Cassandra cluster, the producer, the liveness watchdog) and each use case's services."""

    cluster: Any
    session: Session
    publisher: KafkaPublisher
    watchdog: Watchdog
    use_cases: list[UseCaseServices]
    tracer: Tracer = NO_SPANS

    def close(self) -> None:
        undelivered = self.publisher.close()
        if undelivered:
            log.error("%d output records were still undelivered at shutdown", undelivered)
        self.cluster.shutdown()
        self.tracer.shutdown()  # the spans still buffered are exported

    def cassandra_answers(self, timeout_s: float = 2.0) -> None:
        """Raise unless Cassandra answers a query in time (blocking: readiness runs it on a
        thread)."""
        self.session.execute("SELECT release_version FROM system.local", timeout=timeout_s)


def check_topics(settings: Settings) -> None:
    """Refuse to start when the topics the worker reads or writes do not exist."""
    from stream_app.kafka.admin import reach

    topics = settings.kafka.topics
    needed = [topics.dead_letter]
    if settings.lifecycle.orchestrator:
        needed += [topics.accuracy_events, topics.model_decisions]
    if "scoring" in settings.worker.agents:
        needed += [
            topics.client_events, topics.predictions, topics.predictions_shadow,
            topics.model_updates, topics.performance_estimates,
        ]  # fmt: skip
    if "features" in settings.worker.agents:
        needed += [topics.sensor_readings]
    if "accuracy" in settings.worker.agents:
        needed += [topics.ground_truth, topics.accuracy_events]
    _, metadata = reach(settings.kafka)
    existing = metadata.topics
    if missing := [t for t in needed if t not in existing]:
        raise ConfigurationError(f"topics {missing} do not exist: run `stream-app init` first")


def check_schema(session: Session, keyspace: str) -> None:
    """Refuse to start on a keyspace that lacks schema versions this code needs."""
    pending = pending_migrations(session, keyspace)
    if pending:
        names = ", ".join(f"V{m.version:03d} {m.name}" for m in pending)
        raise ConfigurationError(
            f"keyspace {keyspace} lacks schema versions {names}: run `stream-app init` first"
        )


def served_use_cases(
    settings: Settings, names: Sequence[str] = ()
) -> list[tuple[UseCase, Settings]]:
    """The use cases a worker serves (default: the settings' own), each with the settings it
    sees; refused when two share a name or a topic."""
    loaded = [load(name, settings) for name in (names or [settings.use_case])]
    seen: dict[str, str] = {}
    for use_case, own in loaded:
        if use_case.name in {u.name for u, _ in loaded if u is not use_case}:
            raise ConfigurationError(f"use case {use_case.name} is named twice")
        for topic in own.kafka.topics.all():
            if topic in seen and seen[topic] != use_case.name:
                raise ConfigurationError(
                    f"use cases {seen[topic]} and {use_case.name} would share topic {topic}: "
                    "give one of them its own topic_prefix in its spec"
                )
            seen[topic] = use_case.name
    return loaded


def services_publisher(settings: Settings, publisher: KafkaPublisher) -> Publisher:
    """What the services publish through: the worker's producer (at least once), or each
    batch's outputs, sent in its commit's transaction (exactly once)."""
    if settings.consumer.guarantee == "at_least_once":
        return publisher
    if settings.scoring.consumer != "batch":
        raise ConfigurationError(
            "consumer.guarantee exactly_once needs the batch consumer: unset "
            "STREAM_APP_SCORING__CONSUMER (faust)"
        )
    return BatchOutputs(publisher)


def build_dependencies(
    settings: Settings, registry: CollectorRegistry = REGISTRY, use_cases: Sequence[str] = ()
) -> Dependencies:
    """Connect to Cassandra, load each use case's champion (refusing to start without one),
    and wire the services of the agents this worker runs. Raises ``ModelNotFound`` with what
    to do when a use case has no model."""
    served = served_use_cases(settings, use_cases)
    for _, own in served:
        check_topics(own)
    keyspace = settings.cassandra.keyspace
    cluster = open_cluster(settings.cassandra)
    publisher: KafkaPublisher | None = None
    try:
        session = cluster.connect()
        check_schema(session, keyspace)
        for use_case, _ in served:
            if "scoring" in settings.worker.agents:  # refuse to start without one, saying how
                ModelRegistry(session, keyspace, use_case.name).champion()
        publisher = KafkaPublisher(settings.kafka, client_id=f"{settings.worker.app_id}-outputs")
        outputs = services_publisher(settings, publisher)
        tracer = tracer_for(settings.tracing)
        labelled = UseCaseLabelled()
        services = []
        for use_case, own in served:
            metrics_registry = CollectorRegistry()
            services.append(
                use_case_services(session, own, use_case, outputs, metrics_registry, tracer)
            )
            labelled.add(use_case.name, metrics_registry)
        registry.register(labelled)
    except BaseException:
        if publisher is not None:
            publisher.close()
        cluster.shutdown()
        raise

    def last_retry() -> float | None:
        retries = [u.metrics.last_retry for u in services if u.metrics.last_retry is not None]
        return max(retries, default=None)

    watchdog = Watchdog(settings.worker.stall_after_s, last_retry, WorkerGauges(registry))
    return Dependencies(cluster, session, publisher, watchdog, services, tracer)


def use_case_services(
    session: Session,
    settings: Settings,
    use_case: UseCase,
    publisher: Publisher,
    metrics_registry: CollectorRegistry,
    tracer: Tracer = NO_SPANS,
) -> UseCaseServices:
    """The services of one use case (``settings`` as it sees them)."""
    keyspace = settings.cassandra.keyspace
    publisher = framed_outputs(publisher, settings.schema_registry, settings.kafka.topics)
    schemas = RegistrySchemas(settings.schema_registry)
    metrics = WorkerMetrics(metrics_registry)
    monitor = Monitor(use_case, settings.monitoring)
    metrics_registry.register(MonitorCollector(monitor))
    models = ModelRegistry(session, keyspace, use_case.name)
    services = UseCaseServices(use_case, settings, metrics, monitor, models)
    agents = settings.worker.agents
    panes = PaneStore(
        session,
        keyspace,
        use_case.name,
        retention_s=int(settings.features.retention_days * 86_400),
        read_timeout_s=settings.scoring.feature_read_timeout_s,
    )
    if "scoring" in agents:
        store = CassandraFeatureStore(
            session, keyspace, use_case, panes, settings.scoring.feature_read_timeout_s
        )
        services.scoring = ScoringService(
            settings=settings,
            use_case=use_case,
            features=FeatureCache(store.read_entities, settings.scoring.feature_cache_ms),
            read_at=store.read_entities_at,
            predictions=PredictionStore(session, keyspace, use_case.name),
            publisher=publisher,
            metrics=metrics,
            monitor=monitor,
            schemas=schemas,
            tracer=tracer,
        )
        services.watcher = ModelWatcher(settings, models, services.scoring, monitor, metrics)
        services.watcher.load()  # the registry's roles now; model-updates keeps them current
    if "features" in agents:
        panes.source_topic_id = topic_id(settings.kafka, settings.kafka.topics.sensor_readings)
        services.features = FeatureService(
            settings=settings,
            use_case=use_case,
            panes=panes,
            publisher=publisher,
            metrics=metrics,
            monitor=monitor,
            schemas=schemas,
        )
    if "accuracy" in agents:
        services.accuracy = AccuracyService(
            settings=settings,
            use_case=use_case,
            labels=LabelStore(session, keyspace, use_case.name),
            publisher=publisher,
            monitor=monitor,
            metrics=metrics,
            schemas=schemas,
            tracer=tracer,
        )
    if settings.lifecycle.orchestrator:
        services.orchestrator = Orchestrator(
            settings, use_case, models, monitor, metrics, AccuracyFeed(settings, use_case)
        )
    return services
