"""`stream-app status` text: the worker's recent model swaps and orchestrator decisions."""

from __future__ import annotations

from stream_app.commands.status import render
from stream_app.monitoring.state import Monitor
from stream_app.settings import MonitoringSettings
from stream_app.use_cases.spec import load_use_case

AT = 1_795_795_200_000


def test_status_shows_recent_swaps_and_decisions() -> None:
    monitor = Monitor(load_use_case("delivery_eta"), MonitoringSettings())
    monitor.switched({"at": AT, "roles_before": {"champion": "v1"},
                      "roles_after": {"champion": "v2"}, "traffic_fraction": 0.0,
                      "changed": ["champion"], "switch_s": 0.059, "load_s": 0.035})  # fmt: skip
    reasons = ["mae 19.3 -> 2.54", "paired bootstrap p = 0.000 < 0.05"]
    monitor.decided(
        {"decided_at": AT, "action": "promoted", "model_version": "v2", "reasons": reasons}
    )
    text = render(monitor.snapshot())
    assert "swapped 2026-11-27T16:00:00Z: champion in 59 ms (loading 35 ms)" in text
    assert "orchestrator 2026-11-27T16:00:00Z: promoted v2: mae 19.3 -> 2.54; paired" in text
    assert "swapped" not in render(Monitor(load_use_case("delivery_eta"),
                                           MonitoringSettings()).snapshot())  # fmt: skip


def test_status_shows_where_the_time_goes_stage_by_stage() -> None:
    monitor = Monitor(load_use_case("delivery_eta"), MonitoringSettings())
    assert "stages" not in render(monitor.snapshot())  # nothing scored yet
    monitor.stage("kafka_wait", [2.0] * 98 + [40.0] * 2)
    monitor.stage("features", [0.8])
    monitor.stage("publish", [12.0])
    text = render(monitor.snapshot())
    # in pipeline order, whatever order they were fed in
    assert "stages ms (p50/p99): kafka_wait 2.0/40, features 0.8/0.8, publish 12/12" in text
