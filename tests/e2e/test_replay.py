"""Replay end to end, as an on-call engineer runs it: a live run (a worker scoring simulated
traffic that drifts), then `stream-app replay` over its range.

- the champion replayed reproduces production's predictions exactly (same value per event id,
  read back from the replay's own topic and from the production predictions topic);
- a version trained on the first part of the drift, compared with the champion on the rest,
  is named the better one, with its metrics;
- production consumer groups' offsets and production topics are unchanged by replays;
- the report opens in headless Chromium with its four charts drawn;
- events production never scored get point-in-time features;
- an interrupted replay leaves no topic, group or file behind; a dry run reads nothing;
- dead letters can be reprocessed from the command line (none validates yet: none re-injected).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from stream_app.cassandra_session import connected
from stream_app.replay.backtest import Backtest, ReplayRequest, output_topic
from stream_app.replay.plan import plan_replay
from stream_app.use_cases.spec import load_use_case
from tests.browser import dump_dom
from tests.conftest import Deployment, consume_all
from tests.e2e.conftest import CLI, Run, wait_for

RATE, SECONDS, DRIFT_AT = 300, 25, 8
QUIET = {
    "STREAM_APP_LIFECYCLE__ORCHESTRATOR": "false",  # no retraining or promotion by itself
    "STREAM_APP_LIFECYCLE__BOOTSTRAP_ROUNDS": "300",
    # nor its own clock's output: the worker publishes estimates every minute, and the test
    # asserts no production topic moves while the replay runs
    "STREAM_APP_MONITORING__ESTIMATE_PUBLISH_S": "3600",
}


def by_event(messages: list[Any]) -> dict[str, float]:
    values = {}
    for message in messages:
        payload = orjson.loads(message.value())
        values[payload["event_id"]] = payload["value"]
    return values


def production_state(deployment: Deployment, admin: AdminClient) -> dict[str, Any]:
    """Every production topic's end offsets and every worker group's committed offsets."""
    settings = deployment.settings
    from confluent_kafka import Consumer

    consumer = Consumer({**settings.kafka.client_config(), "group.id": "state-reader"})
    topics = {}
    for topic in settings.kafka.topics.all():
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        topics[topic] = [
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
            for p in sorted(metadata.partitions)
        ]
    consumer.close()
    groups = sorted(
        g.group_id for g in admin.list_consumer_groups().result(timeout=30).valid
        if g.group_id.startswith(settings.worker.app_id)
    )  # fmt: skip
    offsets = {}
    for group in groups:
        future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
        offsets[group] = sorted(
            (tp.topic, tp.partition, tp.offset) for tp in future.result(timeout=30).topic_partitions
        )
    return {"topics": topics, "groups": offsets}


def replay_groups(admin: AdminClient) -> list[str]:
    listed = admin.list_consumer_groups().result(timeout=30).valid
    return [g.group_id for g in listed if g.group_id.startswith("stream-app-replay")]


@pytest.fixture
def env(deployment: Deployment, stream_app: Run) -> dict[str, str]:
    env = {**deployment.env, **QUIET}
    boot = stream_app("bootstrap", "--days", "1.2", "--events-per-day", "6000", env=env)
    assert boot.returncode == 0, boot.stderr
    return env


@pytest.fixture
def worker(env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = (tmp_path / "worker.log").open("wb")
    process = subprocess.Popen([*CLI, "worker"], env={**os.environ, **env},
                               stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    yield process
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=60)


def test_replay_reproduces_production_compares_versions_and_touches_nothing(
    deployment: Deployment,
    env: dict[str, str],
    worker: subprocess.Popen[bytes],
    stream_app: Run,
    kafka_admin: AdminClient,
    tmp_path: Path,
) -> None:
    settings, topics = deployment.settings, deployment.settings.kafka.topics
    time.sleep(8)  # the worker joins its groups before traffic starts
    started = int(time.time() * 1000)
    run = stream_app("simulate", "--rate", str(RATE), "--duration", str(SECONDS),
                     "--drift-at", str(DRIFT_AT), "--label-delay-factor", "0.001",
                     "--invalid-rate", "0.01", "--run-id", "rp", env=env, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    simulated = json.loads(run.stdout)
    ended = int(time.time() * 1000) + 1
    invalid = sum(simulated["invalid"].values())
    valid = simulated["client_events"] - invalid
    production = by_event(consume_all(settings, topics.predictions, valid, 120))
    assert len(production) == valid
    events = consume_all(settings, topics.client_events, simulated["client_events"], 30)
    first_event = min(m.timestamp()[1] for m in events)
    drift_ms = first_event + DRIFT_AT * 1000
    # labels reach the ground-truth table through the worker before training
    wait_for(
        lambda: len(consume_all(settings, topics.accuracy_events, int(valid * 0.9), 5))
        >= int(valid * 0.9), 120, "accuracy events",
    )  # fmt: skip
    split = drift_ms + 11_000
    trained = stream_app("train", "--since", str(drift_ms + 2_000), "--until", str(split), env=env)
    assert trained.returncode == 0, trained.stderr
    retrained = json.loads(trained.stdout)["version"]
    champion = json.loads(stream_app("models", "--json", env=env).stdout)["roles"]["champion"]

    before = production_state(deployment, kafka_admin)
    topics_before = set(kafka_admin.list_topics(timeout=10).topics)
    out = tmp_path / "replays"
    window = ["--from", str(started), "--to", str(ended)]
    replayed = stream_app("replay", *window, "--model", "champion", "--out", str(out),
                          "--publish", "--json", env=env)  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    report = json.loads(replayed.stdout)
    assert report["events"]["messages"] == simulated["client_events"]
    assert report["events"]["scored"] == valid
    assert report["events"]["invalid"] == simulated["invalid"]
    assert report["features"] == {"served": valid, "point_in_time": 0}
    assert report["events"]["labelled"] >= int(valid * 0.9)
    (version,) = report["versions"]
    assert version["version"] == champion["version"]
    # the champion's own loss models estimate its MAE over every replayed event, no label used
    estimated = version["estimated"]
    assert estimated["method"] == "dle"
    assert estimated["error"]["mae"] == pytest.approx(
        abs(estimated["metrics"]["mae"] - version["metrics"]["mae"])
    )
    # identical within the compiled scorer's bound (production may have scored with LightGBM
    # before the worker's compile was ready)
    assert version["production"]["compared"] == version["production"]["identical"] == valid
    assert version["production"]["max_abs_difference"] <= 1e-9 * 100
    # the replay's own topic holds production's values, event by event (within the bound)
    own = output_topic(report["run_id"])
    assert by_event(consume_all(settings, own, valid, 30)) == pytest.approx(production, rel=1e-9)
    # nothing of production changed: topics, groups' offsets; no replay group exists
    assert production_state(deployment, kafka_admin) == before
    new_topics = set(kafka_admin.list_topics(timeout=10).topics) - topics_before
    # (tests running beside this one create topics of their own, named with their own tags)
    assert {t for t in new_topics if t.startswith("replay.") or deployment.tag in t} == {own}
    assert replay_groups(kafka_admin) == []

    # the report in a browser: every chart drawn
    page = out / report["run_id"] / "report.html"
    dom = dump_dom(page.as_uri())
    for chart in ("error-over-time", "error-distribution", "versus", "drift"):
        start = dom.index(f'id="{chart}"')
        points = int(dom[start:].split('data-points="', 1)[1].split('"', 1)[0])
        assert points > 0, f"the {chart} chart is empty"
    assert (
        json.loads((out / report["run_id"] / "report.json").read_text())["run_id"]
        == report["run_id"]
    )
    drift = report["series"]["drift"]["features"]["distance_km"]
    assert max(v for v in drift if v is not None) > report["series"]["drift"]["threshold"]

    # the drifted part after the new version's training window: the new version is better
    compared = stream_app("replay", "--from", str(split + 1_000), "--to", str(ended), "--model",
                          "champion", "--compare", retrained, "--out", str(out), "--json",
                          env=env)  # fmt: skip
    assert compared.returncode == 0, compared.stderr
    verdict = json.loads(compared.stdout)
    metrics = {v["version"]: v["metrics"] for v in verdict["versions"]}
    assert metrics[retrained]["mae"] < metrics[champion["version"]]["mae"]
    assert verdict["winner"]["version"] == retrained
    assert verdict["winner"]["p_value"] < 0.05
    assert production_state(deployment, kafka_admin) == before

    # a dry run prints the plan and reads nothing
    dry = stream_app("replay", "--from", str(started), "--to", str(ended), "--model",
                     "champion", "--dry-run", "--json", env=env)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["messages"] == simulated["client_events"]
    assert len(plan["partitions"]) == settings.kafka.partitions
    assert plan["estimate_s"] > 0

    # dead letters: none validates with today's decoders, so none is re-injected
    dead = stream_app("replay", "--topic", topics.dead_letter, "--reprocess", "--json", env=env)
    assert dead.returncode == 0, dead.stderr
    outcome = json.loads(dead.stdout)
    assert outcome["read"] == invalid
    assert outcome["reinjected_total"] == 0
    assert outcome["still_invalid"] == simulated["invalid"]

    # events production never scored (the worker is gone): point-in-time features
    worker.terminate()
    worker.wait(timeout=60)
    late_start = int(time.time() * 1000)
    late = stream_app("simulate", "--rate", "50", "--duration", "4", "--run-id", "late",
                      "--no-wait-labels", env=env)  # fmt: skip
    assert late.returncode == 0, late.stderr
    late_events = json.loads(late.stdout)["client_events"]
    unserved = stream_app("replay", "--from", str(late_start), "--model", "champion",
                          "--out", str(out), "--publish", "--json", env=env)  # fmt: skip
    assert unserved.returncode == 0, unserved.stderr
    late_report = json.loads(unserved.stdout)
    assert late_report["features"] == {"served": 0, "point_in_time": late_events}
    published = consume_all(settings, output_topic(late_report["run_id"]), late_events, 30)
    payloads = [orjson.loads(m.value()) for m in published]
    assert len(payloads) == late_events
    # the courier's streamed speed existed at those times (panes of the live run)
    with_speed = [p for p in payloads if "courier_speed_mean_10m" not in p["missing_features"]]
    assert len(with_speed) > late_events * 0.8


def test_an_interrupted_replay_leaves_nothing_behind(
    deployment: Deployment, env: dict[str, str], stream_app: Run, kafka_admin: AdminClient
) -> None:
    settings = deployment.settings
    started = int(time.time() * 1000)
    run = stream_app("simulate", "--rate", "200", "--duration", "3", "--no-wait-labels",
                     env=env)  # fmt: skip
    assert run.returncode == 0, run.stderr
    plan = plan_replay(settings.kafka, settings.kafka.topics.client_events, started,
                       int(time.time() * 1000) + 1)  # fmt: skip
    assert plan.count > 0
    topics_before = set(kafka_admin.list_topics(timeout=10).topics)
    use_case = load_use_case(settings.use_case)
    narrow = settings.model_copy(
        update={"replay": settings.replay.model_copy(update={"batch_size": 50})}
    )

    def interrupt(done: int) -> None:
        raise KeyboardInterrupt  # Ctrl-C after the first batch was scored and published

    with connected(settings.cassandra) as session:
        from stream_app.models.registry import ModelRegistry

        champion = ModelRegistry(session, settings.cassandra.keyspace, use_case.name).champion()
        request = ReplayRequest(plan, [champion.version], "interrupted", publish=True)
        with pytest.raises(KeyboardInterrupt):
            Backtest(narrow, session, use_case, request).run(interrupt)

    def replay_topics() -> set[str]:  # (tests beside this one make topics of their own)
        listed = kafka_admin.list_topics(timeout=10).topics
        return {t for t in listed if t.startswith("replay.") and t not in topics_before}

    wait_for(lambda: not replay_topics(), 30, "the replay's topic to be deleted")
    assert replay_groups(kafka_admin) == []
