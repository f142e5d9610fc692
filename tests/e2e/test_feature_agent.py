"""The feature agent end to end: readings -> panes in Cassandra, equal to a reference
computed from the topic itself, including after a worker is killed (-9) mid-run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from stream_app.contracts.decode import decode_sensor_reading
from stream_app.features.pane_store import PaneStore
from stream_app.features.panes import PaneAggregator, aggregate_groups
from stream_app.simulation.payloads import reading_records
from stream_app.simulation.world import World
from stream_app.use_cases.spec import load_use_case
from tests.conftest import Deployment
from tests.e2e.conftest import CLI, wait_assigned

FEATURES_ONLY = {"STREAM_APP_WORKER__AGENTS": '["features"]'}
# small batches: many writes and commits, so a kill lands between them
SMALL_BATCHES = {"STREAM_APP_FEATURES__BATCH_SIZE": "200"}


def produce_readings(deployment: Deployment, count: int) -> None:
    """Simulated readings of the last few minutes, produced in a shuffled time order."""
    world = World(load_use_case("delivery_eta"), 5)
    now = int(time.time() * 1000)
    rng = np.random.default_rng(1)
    times = now - rng.integers(0, 240_000, count)  # out of order, within lateness of each other
    records = reading_records(world, world.readings(times))
    producer = Producer(deployment.settings.kafka.client_config())
    topic = deployment.settings.kafka.topics.sensor_readings
    for key, value in records:
        producer.produce(topic, value, key)
    producer.produce(topic, b"not json", b"broken-sensor")  # one invalid reading
    assert producer.flush(60) == 0


COORDINATOR_MOVING = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
}


def consumed_all(deployment: Deployment) -> bool:
    """Whether the feature agent's group committed every partition to its end."""
    settings = deployment.settings
    consumer = Consumer({**settings.kafka.client_config(),
                         "group.id": f"{settings.worker.app_id}-features"})  # fmt: skip
    try:
        topic = settings.kafka.topics.sensor_readings
        partitions = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
        try:
            committed = consumer.committed(partitions, timeout=10)
        except KafkaException as exc:  # the group coordinator moving or loading: not yet
            error = exc.args[0]
            if error.retriable() or error.code() in COORDINATOR_MOVING:
                return False
            raise
        for tp in committed:
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            if tp.offset < high:
                return False
        return True
    finally:
        consumer.close()


def reference_panes(deployment: Deployment) -> PaneAggregator:
    """Every reading of the topic, merged offline by the pure pane logic."""
    settings = deployment.settings
    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"ref-{time.time()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe([settings.kafka.topics.sensor_readings])
    events = []
    idle = time.monotonic() + 10
    while time.monotonic() < idle:
        batch = consumer.consume(2000, 0.5)
        if batch:
            idle = time.monotonic() + 3
        for m in batch:
            try:
                events.append((m.partition(), m.offset(), decode_sensor_reading(m.value())))
            except Exception:
                continue
    consumer.close()
    events.sort(key=lambda e: (e[0], e[1]))  # a partition's offsets in order
    aggregator = PaneAggregator(aggregate_groups(load_use_case("delivery_eta")))
    aggregator.load(aggregator.unknown_panes((p, r) for p, _, r in events), {})
    for p, o, r in events:
        aggregator.apply(p, o, r)
    # panes whose every reading came too late hold nothing and are never written
    aggregator.panes = {k: v for k, v in aggregator.panes.items() if v.aggregate.count}
    return aggregator


def stored_panes(deployment: Deployment, session: Any, keys: list[Any]) -> dict[Any, Any]:
    store = PaneStore(session, deployment.settings.cassandra.keyspace, "delivery_eta", 3600)
    return asyncio.run(store.load(keys))


def start(deployment: Deployment, log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    env = {**os.environ, **deployment.env, **FEATURES_ONLY, **SMALL_BATCHES}
    return subprocess.Popen([*CLI, "worker"], env=env, stdout=handle, stderr=subprocess.STDOUT)


def wait_until(condition: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False


def test_panes_equal_the_reference_after_a_kill_9_mid_run(
    deployment: Deployment, cassandra_session: Any, tmp_path: Path
) -> None:
    # (a run without the kill is the same check with less in it: not run separately)
    produce_readings(deployment, 25_000)
    log = tmp_path / "worker.log"
    worker = start(deployment, log)
    try:
        # kill as soon as the first panes are in Cassandra, long before the end
        probe = reference_panes(deployment)
        some = list(probe.panes)[:50]
        assert wait_until(lambda: bool(stored_panes(deployment, cassandra_session, some)), 120), (
            log.read_text()[-3000:]
        )
        assert not consumed_all(deployment)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker = start(deployment, log)
        assert wait_until(lambda: consumed_all(deployment), 180), log.read_text()[-3000:]
    finally:
        worker.terminate()
        worker.wait(timeout=60)

    expected = reference_panes(deployment)
    stored = stored_panes(deployment, cassandra_session, list(expected.panes))
    assert len(stored) == len(expected.panes) > 500
    for key, state in expected.panes.items():
        got = stored[key]
        assert got.aggregate.count == state.aggregate.count, key  # nothing lost, nothing twice
        assert got.aggregate.total == pytest.approx(state.aggregate.total, rel=1e-9)
        assert got.aggregate.maximum == state.aggregate.maximum
        assert got.max_offset == state.max_offset
    text = log.read_text()
    assert "Traceback" not in text


def test_predictions_use_the_live_features(
    deployment: Deployment, stream_app: Any, tmp_path: Path
) -> None:
    import orjson

    from tests.conftest import consume_all

    assert stream_app("bootstrap", "--days", "0.2", env=deployment.env).returncode == 0
    handle = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([*CLI, "worker"], env={**os.environ, **deployment.env},
                              stdout=handle, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        # both consumers assigned first: a worker that joins its groups late scores the
        # events that queued meanwhile while its feature agent still catches up
        topics = deployment.settings.kafka.topics
        wait_assigned(deployment.settings.worker.web_port,
                      {topics.client_events, topics.sensor_readings})  # fmt: skip
        # couriers ping several times a second here (4 readings per event)
        # (a modest rate: the test is about the path, not about keeping up on a busy machine)
        result = stream_app("simulate", "--rate", "100", "--duration", "10", "--no-wait-labels",
                            "--readings-per-event", "4", env=deployment.env)  # fmt: skip
        assert result.returncode == 0, result.stderr
        predictions = consume_all(
            deployment.settings, deployment.settings.kafka.topics.predictions, 1000
        )
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    payloads = sorted((orjson.loads(m.value()) for m in predictions), key=lambda p: p["scored_at"])
    late = payloads[len(payloads) // 2 :]  # once couriers have been pinging for a few seconds
    live = [p for p in late if "courier_speed_mean_10m" not in p["missing_features"]]
    assert len(live) > 0.9 * len(late), f"{len(live)} of {len(late)} with live features"
    ages = sorted(p["feature_age_ms"] for p in live)
    assert 0 < ages[len(ages) // 2] < 5_000  # features seconds old, measured on each prediction


def test_features_load_and_get_on_the_command_line(
    deployment: Deployment, stream_app: Any, tmp_path: Path
) -> None:
    path = tmp_path / "prep.csv"
    path.write_text("restaurant_id,restaurant_prep_minutes\nr1,10\nr2,oops\n")
    rejects = tmp_path / "rejects.jsonl"
    loaded = stream_app("features", "load", str(path), "--as-of", "2026-01-01T00:00:00Z",
                        "--rejects", str(rejects), env=deployment.env)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    summary = json.loads(loaded.stdout)
    assert (summary["loaded_rows"], summary["rejected_rows"]) == (1, 1)
    assert "invalid number" in rejects.read_text()
    before = stream_app("features", "get", "restaurant_id=r1", "--as-of", "2025-12-31T00:00:00Z",
                        env=deployment.env)  # fmt: skip
    after = stream_app("features", "get", "restaurant_id=r1", "--as-of", "2026-02-01T00:00:00Z",
                       env=deployment.env)  # fmt: skip
    assert json.loads(before.stdout)["entities"]["restaurant_id=r1"] == {}
    value = json.loads(after.stdout)["entities"]["restaurant_id=r1"]["restaurant_prep_minutes"]
    assert value["value"] == 10.0
    missing = stream_app("features", "load", str(tmp_path / "nope.csv"), env=deployment.env)
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr
