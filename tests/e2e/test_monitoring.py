"""Monitoring end to end: accuracy events and rolling metrics equal to an offline join of the
topics, labels that wait for their prediction (or expire), drift after --drift-at, every
metric family on /metrics, the dashboard in headless Chromium, and `stream-app status`."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from stream_app.simulation.payloads import client_event_records
from stream_app.simulation.world import World
from stream_app.use_cases.spec import load_use_case
from tests.browser import dump_dom, find_chromium
from tests.conftest import Deployment, consume_all
from tests.e2e.conftest import CLI, Run, wait_for

SHIPPED = Path(__file__).resolve().parents[2] / "use_cases"
WIDE_WINDOWS = {
    "STREAM_APP_MONITORING__ACCURACY_WINDOW_S": "3600",
    "STREAM_APP_MONITORING__DRIFT_WINDOW_S": "3600",
}


def snapshot(deployment: Deployment) -> dict[str, Any]:
    url = f"http://127.0.0.1:{deployment.settings.worker.web_port}/dashboard/data"
    with urllib.request.urlopen(url, timeout=5) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


def metrics_text(deployment: Deployment) -> str:
    url = f"http://127.0.0.1:{deployment.settings.worker.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
        return body.decode()


@pytest.fixture
def worker_env(deployment: Deployment, stream_app: Run, tmp_path: Path) -> dict[str, str]:
    """A champion, and a spec whose labels wait at most 8 s (same use case name)."""
    spec = (
        (SHIPPED / "delivery_eta.toml").read_text().replace('max_delay = "3h"', 'max_delay = "8s"')
    )
    path = tmp_path / "delivery_eta.toml"
    path.write_text(spec)
    env = {**deployment.env, **WIDE_WINDOWS, "STREAM_APP_USE_CASE": str(path),
           "STREAM_APP_MONITORING__ESTIMATE_PUBLISH_S": "1"}  # fmt: skip
    # more than a day of history: every hour of the day is in the training data
    boot = stream_app("bootstrap", "--days", "1.2", "--events-per-day", "6000", env=env)
    assert boot.returncode == 0, boot.stderr
    return env


@pytest.fixture
def worker(deployment: Deployment, worker_env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen([*CLI, "worker"], env={**os.environ, **worker_env},
                               stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    wait_for(lambda: snapshot(deployment)["roles"], 60, "the worker's dashboard data")
    yield process
    process.terminate()
    process.wait(timeout=60)


def test_rolling_accuracy_equals_an_offline_join_and_every_view_shows_it(
    deployment: Deployment, worker_env: dict[str, str], worker: Any, stream_app: Run
) -> None:
    run = stream_app("simulate", "--rate", "300", "--duration", "4", "--seed", "5",
                     "--label-delay-factor", "0.001", "--invalid-rate", "0.01",
                     env=worker_env)  # fmt: skip
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    labelled = summary["ground_truth"]
    wait_for(lambda: any(r["labels"] >= labelled for r in snapshot(deployment)["accuracy"]),
             90, f"{labelled} labels joined")  # fmt: skip

    settings, topics = deployment.settings, deployment.settings.kafka.topics
    predictions = {
        m.key(): orjson.loads(m.value())
        for m in consume_all(
            settings,
            topics.predictions,
            summary["client_events"] - sum(summary["invalid"].values()),
        )
    }
    truths = {
        m.key(): orjson.loads(m.value())
        for m in consume_all(settings, topics.ground_truth, labelled)
    }
    errors = [predictions[k]["value"] - t["label"] for k, t in truths.items() if k in predictions]
    assert len(errors) == labelled
    offline_mae = float(np.mean(np.abs(errors)))
    offline_rmse = float(np.sqrt(np.mean(np.square(errors))))

    data = snapshot(deployment)
    (row,) = [r for r in data["accuracy"] if r["role"] == "champion"]
    assert row["mae"] == pytest.approx(offline_mae, rel=1e-9)
    assert row["rmse"] == pytest.approx(offline_rmse, rel=1e-9)
    # the champion estimates its own MAE from its predictions alone (DLE, trained with it)
    (estimate,) = [e for e in data["estimates"] if e["role"] == "champion"]
    assert estimate["method"] == "dle"
    assert estimate["predictions"] == row["predictions"]
    assert estimate["realised"]["mae"] == pytest.approx(offline_mae, rel=1e-9)
    assert 0 < estimate["estimated"]["mae"] < 5 * offline_mae
    published = [orjson.loads(m.value())
                 for m in consume_all(settings, topics.performance_estimates, 1)]  # fmt: skip
    assert published
    assert {(p["method"], p["kind"], p["role"]) for p in published} >= {
        ("dle", "rolling", "champion")
    }
    accuracy_events = consume_all(settings, topics.accuracy_events, labelled)
    assert len(accuracy_events) == labelled
    event = orjson.loads(accuracy_events[0].value())
    assert event["abs_error"] == pytest.approx(abs(event["predicted"] - event["actual"]))

    families = {f.name: f for f in text_string_to_metric_families(metrics_text(deployment))}
    for name in (
        "stream_app_events_in", "stream_app_events_out", "stream_app_dead_letters",
        "stream_app_scoring_duration_seconds", "stream_app_end_to_end_latency_seconds",
        "stream_app_batch_size", "stream_app_cassandra_read_duration_seconds",
        "stream_app_consumer_lag_messages", "stream_app_feature_age_seconds",
        "stream_app_model_metric", "stream_app_feature_drift_psi", "stream_app_model_info",
        "stream_app_label_coverage_ratio", "stream_app_late_readings",
        "stream_app_model_metric_estimated", "stream_app_model_skill",
    ):  # fmt: skip
        assert name in families, name
        assert families[name].samples, name
    mae = [s for s in families["stream_app_model_metric"].samples if s.labels["metric"] == "mae"]
    assert mae[0].value == pytest.approx(offline_mae, rel=1e-9)
    for family in families.values():
        for sample in family.samples:
            assert not any("event" in k or "entity" in k for k in sample.labels), sample
    codes = {s.labels["code"] for s in families["stream_app_dead_letters"].samples if s.value}
    assert codes == set(summary["invalid"])

    status = stream_app("status", env=worker_env)
    assert status.returncode == 0, status.stderr
    assert "rolling accuracy" in status.stdout
    assert "champion" in status.stdout
    assert f"mae {offline_mae:.4g}" in status.stdout


def test_the_dashboard_draws_live_charts_in_chromium(
    deployment: Deployment, worker_env: dict[str, str], worker: Any, stream_app: Run
) -> None:
    find_chromium()  # before the simulation: a missing browser fails at once
    simulate = subprocess.Popen(
        [*CLI, "simulate", "--rate", "200", "--duration", "30", "--label-delay-factor", "0.002",
         "--invalid-rate", "0.02"],
        env={**os.environ, **worker_env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: any(r["labels"] for r in snapshot(deployment)["accuracy"]), 60, "labels")
        url = f"http://127.0.0.1:{deployment.settings.worker.web_port}/dashboard"
        dom = dump_dom(url, budget_ms=9000)
    finally:
        simulate.terminate()
        simulate.wait(timeout=60)
    for chart in ("throughput", "latency", "accuracy", "estimates", "drift"):
        start = dom.index(f'id="{chart}"')
        points = int(dom[start:].split('data-points="', 1)[1].split('"', 1)[0])
        assert points > 0, f"the {chart} chart is empty"
    assert "champion" in dom
    assert "delivery_eta-" in dom
    dead_letters = dom[dom.index('id="dead-letters"') :]
    assert "<td>" in dead_letters  # recent dead-letter records are listed
    stages = dom[dom.index('id="stages"') : dom.index('id="accuracy"')]
    for stage in ("kafka_wait", "decode", "features", "score", "publish", "store", "commit"):
        assert f"<td>{stage}</td>" in stages, f"no {stage} row in the stage table"


def test_labels_wait_for_their_prediction_or_expire(
    deployment: Deployment, worker_env: dict[str, str], worker: Any
) -> None:
    settings, topics = deployment.settings, deployment.settings.kafka.topics
    world = World(load_use_case("delivery_eta"), 8)
    now = int(time.time() * 1000)
    events = world.client_events(np.full(20, now, dtype=np.int64))
    ids = [f"early-{i}" for i in range(20)]
    producer = Producer(settings.kafka.client_config())
    for event_id, label in zip(
        [*ids, "never-predicted"], [*events.labels.tolist(), 30.0], strict=True
    ):
        truth = {"schema_version": 1, "event_id": event_id, "label": label, "label_time": now}
        producer.produce(topics.ground_truth, orjson.dumps(truth), event_id.encode())
    producer.flush(30)
    time.sleep(2.5)  # the labels are stored and waiting
    for key, value in client_event_records(world, events, ids):
        producer.produce(topics.client_events, value, key)
    producer.flush(30)

    joined = consume_all(settings, topics.accuracy_events, 20, timeout_s=60)
    assert sorted(orjson.loads(m.value())["event_id"] for m in joined) == sorted(ids)
    wait_for(lambda: snapshot(deployment)["labels"]["unmatched"] == 1, 30,
             "the unmatched label to expire after max_delay (8 s)")  # fmt: skip
    families = {f.name: f for f in text_string_to_metric_families(metrics_text(deployment))}
    outcomes = {s.labels["outcome"]: s.value for s in families["stream_app_labels"].samples
                if s.name == "stream_app_labels_total"}  # fmt: skip
    assert outcomes["waiting"] == 21
    assert outcomes["expired"] == 1


def test_drift_raises_psi_for_the_drifted_feature_only(
    deployment: Deployment, worker_env: dict[str, str], worker: Any, stream_app: Run
) -> None:
    # the recent past's readings first, aggregated before any event is scored (as in a world
    # that was already running): a count over 10 minutes is not judged on a half-read past
    prime = stream_app("simulate", "--rate", "1", "--duration", "1", "--no-wait-labels",
                       env=worker_env)  # fmt: skip
    assert prime.returncode == 0, prime.stderr
    readings = deployment.settings.kafka.topics.sensor_readings
    wait_for(lambda: snapshot(deployment)["throughput"].get(readings, 1) == 0 and all(
        lag["messages"] == 0 for lag in snapshot(deployment)["consumer_lag"]
        if lag["topic"] == readings), 60, "the primed readings aggregated")  # fmt: skip
    run = stream_app("simulate", "--rate", "250", "--duration", "8", "--drift-at", "0",
                     "--no-wait-labels", "--no-prime", env=worker_env)  # fmt: skip
    assert run.returncode == 0, run.stderr
    predictions = deployment.settings.kafka.topics.predictions

    def scored() -> bool:
        idle = snapshot(deployment)["throughput"].get(predictions, 0) == 0
        return idle and _drift(deployment).get("distance_km", {}).get("values", 0) >= 1500

    wait_for(scored, 90, "the drifted events scored")
    drift = _drift(deployment)
    threshold = snapshot(deployment)["thresholds"]["psi"]
    assert drift["distance_km"]["psi"] > threshold
    assert drift["prediction"]["psi"] > threshold
    others = {n: s for n, s in drift.items() if n not in ("distance_km", "prediction")}
    judged = {n: s["psi"] for n, s in others.items() if s["psi"] is not None}
    assert len(judged) >= 4, drift
    assert all(psi < threshold for psi in judged.values()), json.dumps(drift, indent=1)
    # features of a dozen zones cannot show a distribution in one window: not compared
    unjudged = {n: s["independent"] for n, s in others.items() if s["psi"] is None}
    assert set(unjudged) == {"zone_speed_mean_15m", "zone_speed_std_15m"}, unjudged
    assert all(count <= 12 for count in unjudged.values())
    alarms = {a["feature"] for a in snapshot(deployment)["drift_alarms"]}
    assert "distance_km" in alarms
    assert not alarms & set(others)


def _drift(deployment: Deployment) -> dict[str, Any]:
    data = snapshot(deployment)
    return data["drift"].get(data["roles"]["champion"], {})
