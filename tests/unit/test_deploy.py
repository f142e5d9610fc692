"""deploy/: the Grafana dashboard and Prometheus match the worker's metrics; the compose file,
the Dockerfile and the lock are what `make image` and compose need (the image itself runs in
`make image-test`, the Kubernetes manifests are checked by `make deploy-check`)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import yaml
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


ROOT = DEPLOY.parent


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return loaded


def test_the_compose_file_is_valid_compose() -> None:
    schema = json.loads((DEPLOY / "schemas" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(compose())


def test_compose_makes_a_first_model_before_the_workers_and_restarts_them() -> None:
    services = compose()["services"]
    assert services["init"]["command"] == ["init"]
    assert services["bootstrap"]["command"] == ["bootstrap"]
    done = {"condition": "service_completed_successfully"}
    assert services["bootstrap"]["depends_on"] == {"init": done}
    worker = services["worker"]
    assert worker["depends_on"] == {"bootstrap": done}
    assert worker["restart"] == "unless-stopped"
    assert "ports" not in worker  # a fixed host port would stop `--scale worker=N`
    assert "/healthz" in " ".join(worker["healthcheck"]["test"])
    grace = int(worker["stop_grace_period"].rstrip("s"))
    assert grace > float(worker["environment"]["STREAM_APP_WORKER__SHUTDOWN_TIMEOUT_S"])
    # every stream-app container runs the image `make image` builds, with the same settings
    ours = [s for s in services.values() if "stream-app" in s.get("image", "")]
    assert len(ours) == 3
    assert all(s["environment"]["STREAM_APP_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"
               for s in ours)  # fmt: skip


def test_prometheus_finds_every_worker_replica() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (discovery,) = job["dns_sd_configs"]
    assert discovery["names"] == ["worker"]
    assert discovery["port"] == 6066


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_image_copies_only_what_the_build_context_sends() -> None:
    ignore = [line for line in (ROOT / ".dockerignore").read_text().splitlines()
              if line and not line.startswith("#")]  # fmt: skip
    assert ignore[0] == "*"  # nothing by default: no .venv, jars or data in the context
    allowed = {line.lstrip("!").rstrip("/") for line in ignore[1:]}
    sources = [
        args.split()[0]
        for name, args in dockerfile_instructions()
        if name == "COPY" and not args.startswith("--from")
    ]
    assert sources
    assert all(source in allowed for source in sources), (sources, allowed)


def test_the_image_runs_as_a_user_with_a_healthcheck_and_lightgbm_runtime() -> None:
    instructions = dockerfile_instructions()
    names = [name for name, _ in instructions]
    assert names.count("FROM") == 2  # build stage, runtime stage
    assert "libgomp1" in " ".join(args for name, args in instructions if name == "RUN")
    user = [args for name, args in instructions if name == "USER"]
    assert user
    assert user[-1] not in {"0", "root"}
    assert any(name == "HEALTHCHECK" and "/healthz" in args for name, args in instructions)
    assert "ARG" in names  # BASE: a registry's bookworm or a local one


def test_the_lock_pins_every_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {
        line.split("==")[0].strip().lower().replace("_", "-")
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line
    }
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pinned, f"{name} is not in requirements.lock: make lock"
