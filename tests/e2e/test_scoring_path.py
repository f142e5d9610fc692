"""The scoring path end to end: history -> train -> worker -> simulated events -> predictions.

Everything runs as a user runs it (the `stream-app` command in subprocesses) against the real
Kafka and Cassandra, in topics and a keyspace of the test's own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from stream_app.contracts import codes
from stream_app.storage.predictions import PredictionStore
from stream_app.use_cases.spec import load_use_case
from tests.conftest import Deployment, consume_all
from tests.e2e.conftest import CLI, Run, run_cli, wait_assigned, wait_for

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(
        [*CLI, "worker"], env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT
    )


def stop_worker(worker: subprocess.Popen[bytes]) -> int:
    worker.send_signal(signal.SIGTERM)
    try:
        return worker.wait(timeout=60)
    except subprocess.TimeoutExpired:
        worker.kill()
        return worker.wait()


@pytest.fixture(params=["batch", "faust"])
def consumer(request: pytest.FixtureRequest) -> dict[str, str]:
    """Both ways the scoring agent reads client-events."""
    return {"STREAM_APP_SCORING__CONSUMER": request.param}


@pytest.fixture
def worker(
    trained: Deployment, consumer: dict[str, str], tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    process = start_worker({**trained.env, **consumer}, tmp_path / "worker.log")
    yield process
    if process.poll() is None:
        stop_worker(process)


def test_the_worker_refuses_to_start_without_a_model(deployment: Deployment) -> None:
    result = run_cli("worker", env=deployment.env, timeout=120)
    assert result.returncode == 1
    assert "no champion model for use case delivery_eta" in result.stderr
    assert "stream-app train" in result.stderr


def test_one_prediction_per_valid_event_and_dead_letters_for_the_rest(
    trained: Deployment,
    worker: subprocess.Popen[bytes],
    stream_app: Run,
    cassandra_session: Any,
    tmp_path: Path,
) -> None:
    settings = trained.settings
    simulated = stream_app(
        "simulate", "--rate", "500", "--duration", "2", "--invalid-rate", "0.05",
        "--no-wait-labels", "--seed", "3", "--run-id", "e2e", env=trained.env,
    )  # fmt: skip
    assert simulated.returncode == 0, simulated.stderr
    summary = json.loads(simulated.stdout)
    assert summary["client_events"] == 1000
    invalid = sum(summary["invalid"].values())
    assert invalid >= 20
    valid = 1000 - invalid

    topics = settings.kafka.topics
    predictions = consume_all(settings, topics.predictions, valid, timeout_s=120)
    dead = consume_all(settings, topics.dead_letter, invalid, timeout_s=60)
    assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
    with urllib.request.urlopen(f"http://127.0.0.1:{settings.worker.web_port}/healthz") as page:
        health = orjson.loads(page.read())
    assert health["status"] == "ok"
    watched = {c["topic"] for c in health["consumers"]}
    assert {topics.sensor_readings, topics.ground_truth} <= watched  # the batch consumers
    assert all(not c["stalled"] for c in health["consumers"])

    schema = jsonschema.Draft202012Validator(
        orjson.loads((SCHEMAS / "prediction.schema.json").read_bytes())
    )
    payloads = [orjson.loads(m.value()) for m in predictions]
    for message, payload in zip(predictions, payloads, strict=True):
        schema.validate(payload)
        assert message.key().decode() == payload["event_id"]
    event_ids = [p["event_id"] for p in payloads]
    assert len(event_ids) == valid  # exactly one per valid event ...
    assert len(set(event_ids)) == valid  # ... and none twice
    assert all(e.startswith("e2e-") for e in event_ids)
    assert {p["role"] for p in payloads} == {"champion"}

    dead_codes: dict[str, int] = {}
    for message in dead:
        record = orjson.loads(message.value())
        assert record["source_topic"] == topics.client_events
        assert record["error_code"] in codes.ALL_CODES
        dead_codes[record["error_code"]] = dead_codes.get(record["error_code"], 0) + 1
    assert dead_codes == summary["invalid"]

    store = PredictionStore(cassandra_session, settings.cassandra.keyspace, "delivery_eta")
    names = load_use_case("delivery_eta").feature_names
    for payload in payloads[:: max(1, valid // 50)]:  # a sample of 50
        by_event = store.for_event(payload["event_id"])
        assert len(by_event) == 1
        assert by_event[0].prediction_id == payload["prediction_id"]
        served = store.served(payload["event_id"], payload["scored_at"])
        assert len(served) == 1
        row = served[0]
        assert row.prediction_id == payload["prediction_id"]
        assert row.value == pytest.approx(payload["value"])
        assert store.feature_names(row.feature_set) == names
        assert len(row.features) == len(names)
        assert sorted(row.missing_features or []) == sorted(payload["missing_features"])
    assert stop_worker(worker) == 0


def test_sigterm_under_load_drains_and_the_next_worker_loses_nothing_and_repeats_nothing(
    trained: Deployment, stream_app: Run, tmp_path: Path
) -> None:
    """The batch consumer (the default): SIGTERM while events stream in finishes the
    batches in flight, commits them and exits 0; the next worker takes over from there."""
    settings = trained.settings
    topics = settings.kafka.topics
    first = start_worker(trained.env, tmp_path / "first.log")
    load: subprocess.Popen[bytes] | None = None
    second: subprocess.Popen[bytes] | None = None
    try:
        body = wait_assigned(settings.worker.web_port, {topics.client_events})
        assert body["champions"]["delivery_eta"]
        assert body["dependencies"] == {"kafka": "ok", "cassandra": "ok"}
        load = subprocess.Popen(
            [*CLI, "simulate", "--rate", "300", "--duration", "8", "--no-wait-labels",
             "--run-id", "load"], env={**os.environ, **trained.env},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        wait_for(lambda: len(consume_all(settings, topics.predictions, 300, 5)) >= 300, 60,
                 "the first predictions")  # fmt: skip
        assert load.poll() is None  # still under load
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=90) == 0, (tmp_path / "first.log").read_text()[-3000:]
        assert "draining" in (tmp_path / "first.log").read_text()
        second = start_worker(trained.env, tmp_path / "second.log")
        _, err = load.communicate(timeout=120)
        assert load.returncode == 0, err
        messages = consume_all(settings, topics.predictions, 2400, timeout_s=180)
    finally:
        for process in (first, load, second):
            if process is not None and process.poll() is None:
                stop_worker(process)
    assert second is not None
    assert stop_worker(second) == 0
    ids = [orjson.loads(m.value())["event_id"] for m in messages]
    assert len(set(ids)) == 2400, f"{2400 - len(set(ids))} events never scored"
    assert len(ids) == 2400, f"{len(ids) - 2400} events scored twice"


def test_a_restart_of_the_faust_agent_scores_nothing_twice(
    trained: Deployment, stream_app: Run, tmp_path: Path
) -> None:
    settings = trained.settings
    env = {**trained.env, "STREAM_APP_SCORING__CONSUMER": "faust"}
    first = start_worker(env, tmp_path / "first.log")
    try:
        stream_app("simulate", "--rate", "300", "--duration", "1", "--no-wait-labels",
                   "--run-id", "a", env=trained.env)  # fmt: skip
        assert len(consume_all(settings, settings.kafka.topics.predictions, 300)) == 300
    finally:
        assert stop_worker(first) == 0
    time.sleep(1)
    second = start_worker(env, tmp_path / "second.log")
    try:
        stream_app("simulate", "--rate", "300", "--duration", "1", "--no-wait-labels",
                   "--run-id", "b", env=trained.env)  # fmt: skip
        messages = consume_all(settings, settings.kafka.topics.predictions, 600)
    finally:
        stop_worker(second)
    ids = [orjson.loads(m.value())["event_id"] for m in messages]
    assert len(ids) == 600
    assert len(set(ids)) == 600


def test_the_worker_refuses_to_start_without_its_topics(deployment: Deployment) -> None:
    env = {**deployment.env, "STREAM_APP_KAFKA__TOPICS__CLIENT_EVENTS": "no-such-topic"}
    result = run_cli("worker", env=env, timeout=120)
    assert result.returncode == 1
    assert "['no-such-topic'] do not exist: run `stream-app init` first" in result.stderr


def test_the_worker_refuses_a_keyspace_without_the_newest_schema(
    deployment: Deployment, cassandra_session: Any
) -> None:
    keyspace = deployment.settings.cassandra.keyspace
    cassandra_session.execute(f"DELETE FROM {keyspace}.schema_migrations WHERE version = 7")
    result = run_cli("worker", env=deployment.env, timeout=120)
    assert result.returncode == 1
    assert f"keyspace {keyspace} lacks schema versions V007 model_evaluations" in result.stderr
    assert "run `stream-app init` first" in result.stderr


def test_bootstrap_trains_a_champion_once_and_tail_shows_predictions(
    deployment: Deployment, stream_app: Run, tmp_path: Path
) -> None:
    first = stream_app("bootstrap", "--days", "0.3", env=deployment.env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["role"] == "champion"
    second = stream_app("bootstrap", env=deployment.env)
    assert second.returncode == 0
    assert "exists for delivery_eta; nothing to do" in second.stdout

    worker = start_worker(deployment.env, tmp_path / "worker.log")
    try:
        stream_app("simulate", "--rate", "100", "--duration", "1", "--no-wait-labels",
                   env=deployment.env)  # fmt: skip
        tail = stream_app("tail", "predictions", "--from-beginning", "--max", "5", "--keys",
                          env=deployment.env, timeout=120)  # fmt: skip
    finally:
        stop_worker(worker)
    assert tail.returncode == 0, tail.stderr
    lines = tail.stdout.splitlines()
    assert len(lines) == 5
    key, value = lines[0].split("\t", 1)
    assert orjson.loads(value)["event_id"] == key
