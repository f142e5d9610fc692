"""The composition root: ``create_app`` builds the Faust application from the settings.

No module creates an app at import time; the worker entry point (``stream_app.main``) and
the tests call this factory.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faust

from stream_app.agents import leader, scoring
from stream_app.agents.attach import attach
from stream_app.errors import ConfigurationError
from stream_app.kafka.consumer import BatchConsumer, BatchOptions, consumer_config
from stream_app.kafka.transactions import TransactionalProducer, transactional_id
from stream_app.monitoring.readiness import Readiness
from stream_app.monitoring.state import EstimatePublisher
from stream_app.monitoring.web import register_dashboard, register_health, register_pages
from stream_app.settings import KafkaSettings, Settings
from stream_app.use_cases.deployment import group_id

if TYPE_CHECKING:
    from stream_app.monitoring.liveness import Watchdog
    from stream_app.runtime.dependencies import Dependencies, UseCaseServices

WATCHDOG_EVERY_S = 5.0


def broker_credentials(kafka: KafkaSettings) -> Any:
    """Faust (aiokafka) credentials matching ``kafka.security_protocol``, or None.

    aiokafka takes no librdkafka properties: of the passed-through ones, the CA
    (``ssl.ca.location``), the client certificate (``ssl.certificate.location``,
    ``ssl.key.location``, ``ssl.key.password``) and ``ssl.endpoint.identification.algorithm``
    none go into its TLS context, so a cluster that requires client certificates takes the
    whole worker; every other property reaches the confluent-kafka clients only.
    """
    context = None
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        context = tls_context(kafka)
    if kafka.security_protocol.startswith("SASL"):
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=password,
            ssl_context=context,
            mechanism=kafka.sasl_mechanism or "PLAIN",
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def tls_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """The TLS context of Faust's clients, from the settings' CA and the passed-through
    ``ssl.*`` properties that Python's ``ssl`` module can use."""
    properties = kafka.client_config()
    ca = kafka.ca_location()
    context = ssl.create_default_context(
        cafile=str(ca) if ca and not ca.is_dir() else None,
        capath=str(ca) if ca and ca.is_dir() else None,
    )
    if str(properties.get("ssl.endpoint.identification.algorithm", "https")).lower() == "none":
        context.check_hostname = False
    certificate = properties.get("ssl.certificate.location")
    key = properties.get("ssl.key.location")
    if certificate or key:
        try:
            context.load_cert_chain(
                certfile=str(certificate or key),
                keyfile=str(key) if key else None,
                password=properties.get("ssl.key.password"),
            )
        except (OSError, ssl.SSLError) as exc:  # a file missing, a wrong key password
            raise ConfigurationError(
                f"kafka.client_properties: the client certificate {certificate} and key {key} "
                f"cannot be loaded: {exc}"
            ) from exc
    return context


def worker_datadir(settings: Settings) -> Path:
    """Faust's data folder (table state), under the project's git-ignored home."""
    return settings.services.home.resolve() / "worker"


def create_app(
    settings: Settings, deps: Dependencies | None = None, *, app_id: str | None = None
) -> faust.App:
    """A Faust app wired to the configured Kafka, with the web port on ``worker.web_host``,
    and every agent when ``deps`` (the worker's services) are given."""
    kafka = settings.kafka
    scheme = "kafka"
    brokers = ";".join(f"{scheme}://{host}:{port}" for host, port in kafka.bootstrap_list())
    app = faust.App(
        app_id or settings.worker.app_id,
        autodiscover=False,
        broker=brokers,
        broker_credentials=broker_credentials(kafka),
        store="memory://",
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        consumer_auto_offset_reset="earliest",
        # a killed worker's place in the app's group is freed after this, not Faust's 60 s
        broker_session_timeout=settings.worker.session_timeout_s,
        broker_heartbeat_interval=settings.worker.session_timeout_s / 3,
        web_enabled=True,
        web_bind=settings.worker.web_host,
        web_host=settings.worker.web_host,
        web_port=settings.worker.web_port,
        datadir=str(worker_datadir(settings)),
    )
    register_pages(app)
    if deps is None:
        register_health(app, None)
        return app
    watchdog = deps.watchdog
    readiness = Readiness()
    readiness.watch_dependency("kafka", deps.publisher.reachable)
    readiness.watch_dependency("cassandra", deps.cassandra_answers)
    for services in deps.use_cases:
        wire_use_case(app, services, watchdog, readiness)

    @app.timer(WATCHDOG_EVERY_S)  # type: ignore[untyped-decorator]
    async def watch_progress() -> None:
        watchdog.check()

    register_dashboard(app, {u.use_case.name: u.monitor for u in deps.use_cases})
    register_health(app, watchdog, readiness)
    return app


def wire_use_case(
    app: faust.App, services: UseCaseServices, watchdog: Watchdog, readiness: Readiness
) -> None:
    """One use case's agents in the app: its consumers (in groups of its own), the watcher
    of its models, its label retries and its orchestrator; what readiness watches of them."""
    settings, use_case, monitor = services.settings, services.use_case, services.monitor
    topics = settings.kafka.topics

    def report_lag(topic: str, group: str, messages: int) -> None:
        monitor.lags[(topic, group)] = messages

    def report_commit(seconds: float) -> None:  # the scoring path's last stage
        services.metrics.stage_seconds.labels("commit").observe(seconds)
        monitor.stage("commit", [seconds * 1000])

    def consume(topic: str, agent: str, service: Any, size: int, in_flight: int) -> None:
        options = BatchOptions(
            batch_size=size,
            batches_in_flight=in_flight,
            batch_wait_s=settings.consumer.batch_wait_s,
            commit_interval_s=settings.consumer.commit_interval_s,
        )
        group = group_id(settings, use_case, agent)
        config = consumer_config(settings.kafka, group, settings.worker.session_timeout_s)
        transactions = None
        if settings.consumer.guarantee == "exactly_once":
            transactions = TransactionalProducer(settings, transactional_id(settings, group))
        consumer = BatchConsumer(
            config, service, topic=topic, options=options, report_lag=report_lag,
            report_commit=report_commit if agent == "scoring" else None,
            transactions=transactions,
        )  # fmt: skip
        attach(app, f"BatchConsumer_{consumer.topic}", consumer.start, consumer.stop)
        watchdog.watch(consumer.progress)
        readiness.watch_consumer(consumer.state)

    if (scoring_service := services.scoring) is not None:
        readiness.watch_champion(
            use_case.name, lambda: None if scoring_service.models is None else
            scoring_service.models.champion.version,
        )  # fmt: skip
    if services.scoring is not None:
        estimates = EstimatePublisher(
            monitor, services.scoring.publisher, topics.performance_estimates
        )

        @app.timer(settings.monitoring.estimate_publish_s)  # type: ignore[untyped-decorator]
        async def publish_estimates() -> None:
            await estimates.publish()

    if services.scoring is not None and settings.scoring.consumer == "batch":
        consume(topics.client_events, "scoring", services.scoring, settings.scoring.batch_size,
                settings.scoring.batches_in_flight)  # fmt: skip
    elif services.scoring is not None:
        scoring.register(app, settings, services.scoring, name=f"{use_case.prefix}scoring")
    if services.watcher is not None:
        watcher = services.watcher
        attach(app, f"ModelWatcher_{use_case.name}", watcher.start, watcher.stop)
    if services.features is not None:
        consume(topics.sensor_readings, "features", services.features,
                settings.features.batch_size, settings.features.batches_in_flight)  # fmt: skip
    if services.accuracy is not None:
        accuracy = services.accuracy
        # labels join in order: one batch at a time
        consume(topics.ground_truth, "accuracy", accuracy, settings.accuracy.batch_size, 1)

        @app.timer(1.0)  # type: ignore[untyped-decorator]
        async def retry_waiting_labels() -> None:
            await accuracy.retry_waiting()

    if services.orchestrator is not None:
        leader.register(app, services.orchestrator, settings.lifecycle.check_interval_s,
                              name=f"Orchestrator_{use_case.name}")  # fmt: skip
