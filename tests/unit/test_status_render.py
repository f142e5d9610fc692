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


def test_status_shows_traffic_shares_and_estimates_beside_realised_values() -> None:
    import time

    import numpy as np

    from stream_app.monitoring.estimates import Estimator

    use_case = load_use_case("machine_failure")
    monitor = Monitor(use_case, MonitoringSettings())
    monitor.set_model("champion", "v1", use_case.feature_names, {}, Estimator("cbpe"))
    monitor.set_model("challenger-2", "v3", use_case.feature_names, {})
    monitor.traffic = {"champion": 0.7, "challenger-2": 0.3}
    p = np.array([0.9, 0.8, 0.2, 0.1])
    monitor.scored("v1", "champion", np.zeros((4, len(use_case.feature_names))), p,
                   [1.0] * 4, int(time.time() * 1000))  # fmt: skip
    text = render(monitor.snapshot())
    assert "champion v1 (70% of traffic)" in text
    assert "challenger-2 v3 (30% of traffic)" in text
    assert "v1" in text.split("estimated without labels")[1]
    assert "cbpe: accuracy 0.85 (-; -)" in text
