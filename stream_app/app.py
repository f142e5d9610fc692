"""The composition root: ``create_app`` builds the Faust application from the settings.

No module creates an app at import time; the worker entry point (``stream_app.main``) and
the tests call this factory.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faust

from stream_app.agents import batch_consumer, orchestrator, scoring
from stream_app.agents.attach import attach
from stream_app.monitoring.web import register_dashboard, register_pages
from stream_app.settings import KafkaSettings, Settings

if TYPE_CHECKING:
    from stream_app.worker import Dependencies


def broker_credentials(kafka: KafkaSettings) -> Any:
    """Faust (aiokafka) credentials matching ``kafka.security_protocol``, or None."""
    context = None
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            cafile=str(kafka.ssl_ca_file) if kafka.ssl_ca_file else None
        )
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
    if deps is not None:
        app_id = settings.worker.app_id
        monitor = deps.monitor

        def report_lag(topic: str, group: str, messages: int) -> None:
            monitor.lags[(topic, group)] = messages

        if deps.scoring is not None and settings.scoring.consumer == "batch":
            batch_consumer.register(
                app,
                batch_consumer.BatchConsumer(
                    settings,
                    deps.scoring,
                    topic=settings.kafka.topics.client_events,
                    group_id=f"{app_id}-scoring",
                    batch_size=settings.scoring.batch_size,
                    batches_in_flight=settings.scoring.batches_in_flight,
                    report_lag=report_lag,
                ),
            )
        elif deps.scoring is not None:
            scoring.register(app, settings, deps.scoring)
        if deps.watcher is not None:
            attach(app, "ModelWatcher", deps.watcher.start, deps.watcher.stop)
        if deps.features is not None:
            batch_consumer.register(
                app,
                batch_consumer.BatchConsumer(
                    settings,
                    deps.features,
                    topic=settings.kafka.topics.sensor_readings,
                    group_id=f"{app_id}-features",
                    batch_size=settings.features.batch_size,
                    batches_in_flight=settings.features.batches_in_flight,
                    report_lag=report_lag,
                ),
            )
        if deps.accuracy is not None:
            accuracy = deps.accuracy
            batch_consumer.register(
                app,
                batch_consumer.BatchConsumer(
                    settings,
                    accuracy,
                    topic=settings.kafka.topics.ground_truth,
                    group_id=f"{app_id}-accuracy",
                    batch_size=settings.scoring.batch_size,
                    batches_in_flight=1,  # labels join in order
                    report_lag=report_lag,
                ),
            )

            @app.timer(1.0)  # type: ignore[untyped-decorator]
            async def retry_waiting_labels() -> None:
                await accuracy.retry_waiting()

        if deps.orchestrator is not None:
            orchestrator.register(app, deps.orchestrator, settings.lifecycle.check_interval_s)
        register_dashboard(app, deps.monitor)
    return app
