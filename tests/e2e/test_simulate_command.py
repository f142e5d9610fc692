"""`stream-app simulate` and `stream-app bench decode` as a user runs them."""

from __future__ import annotations

import json

from tests.conftest import Deployment, consume_all
from tests.e2e.conftest import Run


def test_simulate_rate_and_duration(stream_app: Run, deployment: Deployment) -> None:
    result = stream_app(
        "simulate", "--rate", "2000", "--duration", "2", "--label-delay-factor", "0",
        env=deployment.env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["client_events"] == 4000
    assert summary["ground_truth"] + summary["unlabelled"] == 4000
    topics = deployment.settings.kafka.topics
    assert len(consume_all(deployment.settings, topics.client_events, 4000)) == 4000
    assert "client events" in result.stderr  # progress output


def test_simulate_refuses_an_unknown_use_case(stream_app: Run, deployment: Deployment) -> None:
    result = stream_app("simulate", "--use-case", "weather", env=deployment.env)
    assert result.returncode == 1
    assert "no use case 'weather'" in result.stderr
    assert "delivery_eta" in result.stderr
