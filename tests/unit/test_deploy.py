"""deploy/: the Grafana dashboard and the Prometheus configuration match the worker's metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from stream_app.monitoring.prometheus import WorkerMetrics
from stream_app.monitoring.state import Monitor, MonitorCollector
from stream_app.settings import MonitoringSettings
from stream_app.use_cases.spec import load_use_case

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def exposed_families() -> set[str]:
    registry = CollectorRegistry()
    WorkerMetrics(registry)
    monitor = Monitor(load_use_case("delivery_eta"), MonitoringSettings())
    registry.register(MonitorCollector(monitor))
    names = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    # histograms expose _bucket, _sum and _count; counters _total
    for name in list(names):
        names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_total"})
    return names


def test_every_dashboard_query_names_an_exposed_metric() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "stream-app-dashboard.json").read_text())
    exposed = exposed_families()
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"stream_app_[a-z_]+", target["expr"])
    }
    assert used, "the dashboard queries nothing"
    assert used <= exposed, used - exposed


def test_prometheus_scrapes_the_worker_metrics_page() -> None:
    config = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    assert "metrics_path: /metrics" in config
    assert "worker:6066" in config


def test_no_metric_label_carries_an_id() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    monitor = Monitor(load_use_case("delivery_eta"), MonitoringSettings())
    monitor.set_model("champion", "v1", ["distance_km"], {})
    monitor.scored("v1", "champion", np.zeros((3, 1)), np.zeros(3), [1.0, 2.0, 3.0], 1)
    registry.register(MonitorCollector(monitor))
    metrics.dead_letters.labels("client-events", "invalid_json").inc()
    for family in registry.collect():
        for sample in family.samples:
            assert not {"event_id", "entity_id", "courier_id"} & set(sample.labels), sample
