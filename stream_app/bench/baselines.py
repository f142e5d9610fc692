"""Baselines for `stream-app bench e2e`, each a process of its own, as users would write them.

- ``naive``: a Faust agent that, per event, decodes it, awaits one Cassandra query, predicts
  one row and awaits the send (Faust applications as commonly written).
- ``passthrough``: a Faust agent that sends every event on unchanged (no work at all).
- ``raw``: a confluent-kafka consume -> produce loop (no Faust).
- ``naive-features``: a Faust agent that merges each reading into its panes and awaits one
  Cassandra write per pane, per reading.
- ``ceiling``: a hand-written confluent-kafka loop with the worker's guarantees and no
  framework: per batch one feature read, one predict, produce, acknowledgements, commit.

Run as ``python -m stream_app.bench.baselines KIND``; settings come from the environment
(input = the client-events topic, output = the predictions topic). Stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import Any

import numpy as np
import orjson

from stream_app.kafka.producer import output_producer_config, produce_when_room
from stream_app.settings import Settings, load_settings


def _faust_app(settings: Settings, kind: str) -> Any:
    from stream_app.runtime.app import create_app, worker_datadir

    worker_datadir(settings).mkdir(parents=True, exist_ok=True)
    app = create_app(settings, app_id=f"{settings.worker.app_id}-{kind}")
    topics = settings.kafka.topics
    source = app.topic(topics.client_events, key_serializer="raw", value_serializer="raw")
    sink = app.topic(topics.predictions, key_serializer="raw", value_serializer="raw")
    return app, source, sink


def run_passthrough(settings: Settings) -> None:
    import faust

    app, source, sink = _faust_app(settings, "passthrough")

    @app.agent(source)  # type: ignore[untyped-decorator]
    async def passthrough(stream: Any) -> None:
        async for key, value in stream.items():
            await sink.send(key=key, value=value)

    faust.Worker(app, loglevel="WARNING").execute_from_commandline()


def run_naive(settings: Settings) -> None:
    import faust

    from stream_app.cassandra_session import open_cluster
    from stream_app.contracts.decode import decode_client_event
    from stream_app.models.compiled import Compilation
    from stream_app.models.registry import ModelRegistry, load_scorer
    from stream_app.storage.cql import execute_async
    from stream_app.use_cases.spec import load_use_case

    use_case = load_use_case(settings.use_case)
    cluster = open_cluster(settings.cassandra)
    session = cluster.connect()
    registry = ModelRegistry(session, settings.cassandra.keyspace, use_case.name)
    scorer = load_scorer(registry, registry.champion().version, Compilation.from_settings(settings))
    names = scorer.feature_names
    read = session.prepare(
        f"SELECT feature, value FROM {settings.cassandra.keyspace}.entity_features "
        "WHERE use_case = ? AND entity_key = ? AND entity_id = ?"
    )
    entity = use_case.entities.split_key
    app, source, sink = _faust_app(settings, "naive")

    @app.agent(source)  # type: ignore[untyped-decorator]
    async def naive(stream: Any) -> None:
        async for key, value in stream.items():
            event = decode_client_event(value)
            rows = await execute_async(
                session, read, (use_case.name, entity, event.entities[entity])
            )
            stored = {row.feature: row.value for row in rows}
            vector = [
                float(event.fields.get(n) or stored.get(n) or use_case.features[n].default)
                for n in names
            ]
            prediction = float(scorer.predict(np.array([vector]))[0])
            payload = {"event_id": event.event_id, "value": prediction}
            await (await sink.send(key=key, value=orjson.dumps(payload)))

    faust.Worker(app, loglevel="WARNING").execute_from_commandline()


def run_naive_features(settings: Settings) -> None:
    """Per reading: decode, merge into its panes, await one Cassandra write per pane."""
    import faust

    from stream_app.cassandra_session import open_cluster
    from stream_app.contracts.decode import decode_sensor_reading
    from stream_app.features.pane_store import PaneStore
    from stream_app.features.panes import PaneAggregator, aggregate_groups
    from stream_app.monitoring.prometheus import WorkerMetrics
    from stream_app.use_cases.spec import load_use_case

    use_case = load_use_case(settings.use_case)
    session = open_cluster(settings.cassandra).connect()
    panes = PaneStore(session, settings.cassandra.keyspace, use_case.name, 3600)
    aggregator = PaneAggregator(aggregate_groups(use_case))
    metrics = WorkerMetrics()
    topic = settings.kafka.topics.sensor_readings
    app = _faust_app(settings, "naive-features")[0]
    source = app.topic(topic, key_serializer="raw", value_serializer="raw")

    @app.agent(source)  # type: ignore[untyped-decorator]
    async def naive_features(stream: Any) -> None:
        async for event in stream.events():
            reading = decode_sensor_reading(event.message.value)
            partition, offset = event.message.partition, event.message.offset
            aggregator.load(aggregator.unknown_panes([(partition, reading)]), {})
            aggregator.apply(partition, offset, reading)
            for key, state in aggregator.take_dirty():
                await panes.write(panes.snapshot([(key, state)]))
            metrics.events_in.labels(topic).inc()

    faust.Worker(app, loglevel="WARNING").execute_from_commandline()


def run_raw(settings: Settings) -> None:
    from confluent_kafka import Consumer, Producer

    topics = settings.kafka.topics
    consumer = Consumer(
        settings.kafka.client_config(
            {
                "group.id": f"{settings.worker.app_id}-raw",
                "auto.offset.reset": "earliest",
            }
        )
    )
    producer = Producer(settings.kafka.client_config({"linger.ms": 5}))
    consumer.subscribe([topics.client_events])
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    while running[0]:
        for message in consumer.consume(500, timeout=0.2):
            if message.error() is None:
                produce_when_room(
                    producer, topics.predictions, message.value(), message.key(), 0.01
                )
        producer.poll(0)
    producer.flush(30)
    consumer.close()


def run_ceiling(settings: Settings) -> None:
    """The fastest honest scoring loop with the worker's guarantees, no framework: per batch
    (the worker's ``batch_size`` and ``batch_wait_s``), decode (invalid events and events
    lacking an entity key go to dead-letter, as in the worker), ONE concurrent feature read
    for the batch's distinct entities (``CassandraFeatureStore.read_entities``, the worker's
    queries: one per entity key and 100 ids, plus the pane reads, all at once), vectors with
    the worker's builder, ONE predict with the worker's scorer (compiled when cached), the
    same prediction payloads produced (idempotent, acks=all, the worker's producer settings),
    every acknowledgement awaited, then the batch's offsets committed synchronously: at least
    once, nothing committed before its outputs are acknowledged.

    What the worker does and this does not: store predictions and served vectors in
    Cassandra; the read-through feature cache (each batch here reads Cassandra); monitoring
    (metrics, drift, stage timings); model swaps, challenger and shadow models; features
    served at event time and the ``dead_letter`` missing-features policy (features here are
    served as of now, defaults when missing); several batches in flight (one at a time here);
    retries through outages (an error here ends the process, uncommitted).
    """
    from confluent_kafka import Consumer, Producer, TopicPartition

    from stream_app.cassandra_session import open_cluster
    from stream_app.contracts.dead_letter import dead_letters
    from stream_app.contracts.outputs import prediction_payload
    from stream_app.errors import BenchError
    from stream_app.features.pane_store import PaneStore
    from stream_app.features.store import CassandraFeatureStore
    from stream_app.features.vector import FeatureVectorBuilder
    from stream_app.kafka.consumer import consumer_config, to_input
    from stream_app.models.compiled import Compilation
    from stream_app.models.registry import ModelRegistry, load_scorer
    from stream_app.scoring.batch import decode_events
    from stream_app.use_cases.spec import load_use_case

    use_case = load_use_case(settings.use_case)
    keyspace, topics = settings.cassandra.keyspace, settings.kafka.topics
    cluster = open_cluster(settings.cassandra)
    session = cluster.connect()
    registry = ModelRegistry(session, keyspace, use_case.name)
    version = registry.champion().version
    scorer = load_scorer(registry, version, Compilation.from_settings(settings))
    builder = FeatureVectorBuilder(use_case, scorer.feature_names)
    timeout_s = settings.scoring.feature_read_timeout_s
    retention_s = int(settings.features.retention_days * 86_400)
    panes = PaneStore(session, keyspace, use_case.name, retention_s, timeout_s)
    store = CassandraFeatureStore(session, keyspace, use_case, panes, timeout_s)
    required = sorted({*builder.entity_keys, use_case.entities.split_key})
    group = f"{settings.worker.app_id}-ceiling"
    consumer = Consumer(consumer_config(settings.kafka, group, settings.worker.session_timeout_s))
    producer = Producer(output_producer_config(settings.kafka))
    errors: list[str] = []

    def delivered(err: Any, message: Any) -> None:
        if err is not None:
            errors.append(str(err))

    loop = asyncio.get_event_loop()  # main's (uvloop, as the worker): the reads are coroutines
    consumer.subscribe([topics.client_events])
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    while running[0]:
        consumed = consumer.consume(
            settings.scoring.batch_size, timeout=settings.consumer.batch_wait_s
        )
        batch = [to_input(m) for m in consumed if m.error() is None]
        if not batch:
            continue
        accepted, refused = decode_events(batch, required, settings.worker.max_message_bytes)
        keys = [(k, event.entities[k]) for _, event in accepted for k in builder.entity_keys]
        stored = loop.run_until_complete(store.read_entities(keys))
        now = int(time.time() * 1000)
        served = [builder.build(e.fields, e.entities, stored, now) for _, e in accepted]
        matrix = np.array([s.values for s in served], dtype=np.float64)
        values = scorer.predict(matrix).tolist() if served else []  # ONE predict
        scored_at = int(time.time() * 1000)
        for (message, event), vector, value in zip(accepted, served, values, strict=True):
            payload = prediction_payload(
                event_id=event.event_id, use_case=use_case.name, model_version=version,
                role="champion", value=value, missing_features=vector.missing,
                feature_age_ms=vector.age_ms, event_time=event.event_time, scored_at=scored_at,
                latency_ms=float(max(scored_at - message.timestamp_ms, 0)),
            )  # fmt: skip
            producer.produce(topics.predictions, orjson.dumps(payload), event.event_id.encode(),
                             on_delivery=delivered)  # fmt: skip
        for _, key, value, _ in dead_letters(refused, topics.dead_letter, "ceiling", scored_at)[1]:
            producer.produce(topics.dead_letter, value, key, on_delivery=delivered)
        producer.flush()  # every delivery acknowledged (or failed)
        if errors:
            raise BenchError(f"{len(errors)} outputs not delivered: {errors[:3]}")
        last = {(m.topic, m.partition): m.offset for m in batch}
        commits = [TopicPartition(t, p, offset + 1) for (t, p), offset in last.items()]
        consumer.commit(offsets=commits, asynchronous=False)
    consumer.close()
    cluster.shutdown()


def main(argv: list[str]) -> int:
    kind = argv[1]
    settings = load_settings()
    if kind == "raw":
        run_raw(settings)
    else:
        import uvloop

        uvloop.install()  # the same event loop as the worker, for a fair comparison
        asyncio.set_event_loop(asyncio.new_event_loop())
        {"naive": run_naive, "passthrough": run_passthrough,
         "naive-features": run_naive_features, "ceiling": run_ceiling}[kind](settings)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
