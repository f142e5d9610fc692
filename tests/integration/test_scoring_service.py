"""The scoring service in-process against the real Kafka and Cassandra: missing-feature policy
and a Cassandra outage (a real one: the connection is cut by a proxy, then restored)."""

from __future__ import annotations

import asyncio
import time
import tomllib
from pathlib import Path
from typing import Any

import orjson

from stream_app.runtime.dependencies import build_dependencies
from stream_app.services.tcp_proxy import TcpProxy
from stream_app.settings import CassandraSettings
from tests.conftest import Deployment, consume_all
from tests.integration.scoring_helpers import client_messages, ready_world

SHIPPED = Path(__file__).resolve().parents[2] / "use_cases"


def test_an_outage_pauses_scoring_and_it_resumes_by_itself(
    deployment: Deployment, prometheus_registry: Any
) -> None:
    world = ready_world(deployment.settings)
    with TcpProxy(deployment.settings.cassandra.port) as proxy:
        settings = deployment.settings.model_copy(
            update={
                "cassandra": CassandraSettings(
                    **{**deployment.settings.cassandra.model_dump(), "port": proxy.port}
                )
            }
        )
        deps = build_dependencies(settings, prometheus_registry)
        try:

            async def scenario() -> tuple[bool, float]:
                service = deps.use_cases[0].scoring
                await service.process(client_messages(world, 50, "before", settings))
                proxy.cut()
                task = asyncio.ensure_future(
                    service.process(client_messages(world, 200, "during", settings))
                )
                await asyncio.sleep(4)
                paused = not task.done()
                proxy.restore()
                started = time.monotonic()
                await asyncio.wait_for(task, timeout=60)
                return paused, time.monotonic() - started

            paused, recovery_s = asyncio.run(scenario())
        finally:
            deps.close()
    assert paused, "scoring went on while Cassandra was unreachable"
    assert recovery_s < 30
    retries = prometheus_registry.get_sample_value(
        "stream_app_retries_total", {"operation": "feature_read", "use_case": "delivery_eta"}
    )
    assert retries
    assert retries >= 1
    predictions = consume_all(settings, settings.kafka.topics.predictions, 250)
    ids = {orjson.loads(m.value())["event_id"] for m in predictions}
    assert len(ids) == 250  # nothing lost, nothing twice
    assert {f"during-{i}" for i in range(200)} <= ids


def test_the_dead_letter_policy_refuses_events_with_missing_features(
    deployment: Deployment, prometheus_registry: Any, tmp_path: Path
) -> None:
    spec = tomllib.loads((SHIPPED / "delivery_eta.toml").read_text())
    text = (
        (SHIPPED / "delivery_eta.toml")
        .read_text()
        .replace('policy = "default"', 'policy = "dead_letter"')
    )
    assert spec["missing_features"]["policy"] == "default"
    path = tmp_path / "delivery_eta.toml"
    path.write_text(text)
    settings = deployment.settings.model_copy(update={"use_case": str(path)})
    world = ready_world(settings)
    deps = build_dependencies(settings, prometheus_registry)
    try:
        known = client_messages(world, 40, "known", settings)
        unknown = []
        for message in client_messages(world, 10, "unknown", settings):
            payload = orjson.loads(message.value or b"")
            payload["entities"]["courier_id"] = "courier-never-seen"
            unknown.append(message._replace(value=orjson.dumps(payload)))
        result = asyncio.run(deps.use_cases[0].scoring.process(known + unknown))
    finally:
        deps.close()
    assert result.predictions == 40
    assert result.dead_letters == {"missing_features": 10}
    dead = consume_all(settings, settings.kafka.topics.dead_letter, 10)
    record = orjson.loads(dead[0].value())
    assert record["error_code"] == "missing_features"
    assert "courier_speed_mean_10m" in record["error_message"]
