"""A team's own use case without a simulation, and several use cases on one platform.

- a spec from `spec new`, checked; `bootstrap` and `simulate` say what to do instead (exit 2);
- a LightGBM model trained elsewhere: one whose features differ is refused, naming them; a
  good one (JSON dump) is imported as the champion, and the worker's predictions are the
  model's own, to the last bit;
- two use cases served by one worker on one Kafka and one Cassandra: no event, feature,
  label, prediction or model crosses over, and each has its metrics and dashboard.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import orjson

from tests.conftest import Deployment, consume_all
from tests.e2e.conftest import CLI, Run, wait_for

SPEC = """\
name = "basket"
task = "regression"
metrics = ["mae", "rmse"]

[entities]
keys = ["store_id"]
split_key = "store_id"

[label]
name = "minutes"
max_delay = "1h"
tolerance = 2.0

[features.items]
source = "event"
default = 1.0

[features.distance_km]
source = "event"
default = 2.0

[features.express]
source = "event"
default = 0.0
"""


def trained_elsewhere(names: list[str], seed: int = 3) -> lgb.Booster:
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.integers(1, 20, 4000), rng.uniform(0, 15, 4000),
                         rng.integers(0, 2, 4000)]).astype(float)  # fmt: skip
    y = 5 + 1.5 * x[:, 0] + 2 * x[:, 1] - 4 * x[:, 2] + rng.normal(0, 1, 4000)
    params = {"objective": "regression", "verbose": -1, "num_threads": 1, "num_leaves": 15}
    return lgb.train(params, lgb.Dataset(x, y, feature_name=names), num_boost_round=60)


def test_a_model_trained_elsewhere_serves_its_own_predictions(
    deployment: Deployment, stream_app: Run, tmp_path: Path
) -> None:
    new = stream_app("spec", "new", "basket", "--task", "regression", "--out",
                     str(tmp_path / "template.toml"), env=deployment.env)  # fmt: skip
    assert new.returncode == 0, new.stderr
    assert stream_app("spec", "check", str(tmp_path / "template.toml")).returncode == 0
    spec = tmp_path / "basket.toml"
    spec.write_text(SPEC)
    env = {**deployment.env, "STREAM_APP_LIFECYCLE__ORCHESTRATOR": "false"}
    for command in (("bootstrap",), ("simulate", "--duration", "1")):
        refused = stream_app(*command, "--use-case", str(spec), env=env)
        assert refused.returncode == 2, refused.stderr
        assert "has no [simulation]" in refused.stderr
        assert "history import" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert stream_app("init", "--use-case", str(spec), env=env).returncode == 0

    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(trained_elsewhere(["items", "km", "express"]).dump_model()))
    refused = stream_app("models", "import", str(wrong), "--use-case", str(spec), env=env)
    assert refused.returncode == 1
    assert "the model lacks ['distance_km']; the spec has no ['km']" in refused.stderr

    booster = trained_elsewhere(["items", "distance_km", "express"])
    good = tmp_path / "model.json"
    good.write_text(json.dumps(booster.dump_model()))
    imported = stream_app("models", "import", str(good), "--use-case", str(spec), env=env)
    assert imported.returncode == 0, imported.stderr
    result = json.loads(imported.stdout)
    assert result["role"] == "champion"
    assert "no stored labelled rows" in result["metrics"]["validation_note"]

    rng = np.random.default_rng(8)
    rows = np.column_stack([rng.integers(1, 20, 300), rng.uniform(0, 15, 300),
                            rng.integers(0, 2, 300)]).astype(float)  # fmt: skip
    lines = b"".join(
        f"o-{i}\t".encode() + orjson.dumps({
            "schema_version": 1, "event_id": f"o-{i}", "event_time": 1_795_000_000_000 + i,
            "entities": {"store_id": f"s{i % 7}"},
            "fields": {"items": r[0], "distance_km": r[1], "express": bool(r[2])},
        }) + b"\n"
        for i, r in enumerate(rows.tolist())
    )  # fmt: skip
    settings = deployment.settings
    topic = f"basket.{settings.kafka.topics.client_events}"
    worker = subprocess.Popen([*CLI, "worker", "--use-case", str(spec)],
                              env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        kcat = shutil.which("kcat")
        assert kcat, "Debian's kcat is not installed: run `make kcat`"
        subprocess.run([kcat, "-P", "-b", settings.kafka.bootstrap_servers, "-t", topic, "-K\t"],
                       input=lines, check=True, timeout=60)  # fmt: skip
        predictions = consume_all(settings, f"basket.{settings.kafka.topics.predictions}", 300)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    served = {p["event_id"]: p["value"] for p in (orjson.loads(m.value()) for m in predictions)}
    expected = booster.predict(rows, num_threads=1)
    assert len(served) == 300
    assert all(served[f"o-{i}"] == expected[i] for i in range(300))  # the model's own values


def metrics_page(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as page:
        return page.read().decode()


def dashboard(port: int, use_case: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/dashboard/data?use_case={use_case}"
    with urllib.request.urlopen(url, timeout=5) as page:
        data: dict[str, Any] = json.loads(page.read())
        return data


def test_two_use_cases_side_by_side_never_cross(
    deployment: Deployment, stream_app: Run, cassandra_session: Any, tmp_path: Path
) -> None:
    env = {**deployment.env, "STREAM_APP_LIFECYCLE__ORCHESTRATOR": "false"}
    both = ("delivery_eta", "machine_failure")
    for name in both:
        assert stream_app("init", "--use-case", name, env=env).returncode == 0
        boot = stream_app("bootstrap", "--use-case", name, "--days", "0.3", env=env)
        assert boot.returncode == 0, boot.stderr
    settings, port = deployment.settings, deployment.settings.worker.web_port
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([*CLI, "worker", "--use-case", both[0], "--use-case", both[1]],
                              env={**os.environ, **env}, stdout=log,
                              stderr=subprocess.STDOUT)  # fmt: skip
    topics = {"delivery_eta": settings.kafka.topics,
              "machine_failure": settings.kafka.topics.model_copy(update={
                  k: f"machine_failure.{v}" for k, v in settings.kafka.topics.model_dump().items()
              })}  # fmt: skip
    try:
        wait_for(lambda: set(dashboard(port, both[1])["use_cases"]) == set(both), 90, "worker")
        sent = {}
        for name in both:
            run = stream_app("simulate", "--use-case", name, "--rate", "150", "--duration", "2",
                             "--label-delay-factor", "0", "--run-id", name, env=env)  # fmt: skip
            assert run.returncode == 0, run.stderr
            sent[name] = json.loads(run.stdout)
        found: dict[str, dict[str, list[Any]]] = {}
        for name in both:
            valid = sent[name]["client_events"] - sum(sent[name]["invalid"].values())
            found[name] = {
                kind: [orjson.loads(m.value()) for m in consume_all(
                    settings, getattr(topics[name], kind), count, 90)]
                for kind, count in (("predictions", valid),
                                    ("accuracy_events", sent[name]["ground_truth"]))
            }  # fmt: skip
        page = metrics_page(port)
        boards = {name: dashboard(port, name) for name in both}
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    for name, other in (both, both[::-1]):
        for kind, payloads in found[name].items():
            assert payloads, (name, kind)
            assert {p["use_case"] for p in payloads} == {name}, (name, kind)
            assert all(p["event_id"].startswith(f"{name}-") for p in payloads), (name, kind)
            assert not any(p["event_id"].startswith(f"{other}-") for p in payloads)
        assert Counter(p["event_id"] for p in found[name]["predictions"]).most_common(1)[0][1] == 1
        assert boards[name]["use_case"] == name
        assert f'use_case="{name}"' in page
        keyspace = settings.cassandra.keyspace
        rows = cassandra_session.execute(
            f"SELECT event_id FROM {keyspace}.ground_truth WHERE use_case = %s ALLOW FILTERING",
            (name,),
        )
        labels = [r.event_id for r in rows]
        assert any(e.startswith(f"{name}-") for e in labels)  # its live labels (and history)
        assert not any(e.startswith(f"{other}-") for e in labels)
        models = cassandra_session.execute(
            f"SELECT version FROM {keyspace}.model_versions WHERE use_case = %s", (name,)
        )
        assert all(r.version.startswith(f"{name}-") for r in models)
        panes = cassandra_session.execute(
            f"SELECT entity_key FROM {keyspace}.feature_panes WHERE use_case = %s ALLOW FILTERING",
            (name,),
        )
        entity_keys = {r.entity_key for r in panes}
        assert entity_keys
        wanted = {
            "delivery_eta": {"courier_id", "zone_id"},
            "machine_failure": {"machine_id", "line_id"},
        }
        assert entity_keys <= wanted[name]
