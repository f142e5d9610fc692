"""The README's "Your own use case" walk, on real public data: NYC's 2013 flights.

Exactly the README's commands, on a short slice of the year (three weeks of history, three
days live): the spec with no [simulation], `spec check`, `init`, `features load`, `history
import` with the weather readings, the `train` it suggests, the worker, then the live days
produced with kcat (weather first, then departures and their labels), predictions and
accuracy. It checks that the live worker served each flight exactly the vector `history
import` computes for it from the same readings (no training/serving skew), and that the model
beats a majority-class and a last-label baseline on the same live labels.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from stream_app.storage.predictions import HISTORY_VERSION, PredictionStore
from stream_app.timeparse import parse_time_ms
from stream_app.use_cases.spec import load_use_case
from tests.conftest import Deployment, consume_all
from tests.e2e.conftest import CLI, Run, wait_for

ROOT = Path(__file__).resolve().parents[2]
SPEC = str(ROOT / "examples" / "flights" / "flight_delay.toml")
SINCE, SPLIT, UNTIL = "2013-01-01", "2013-01-21", "2013-01-24"


def kcat(settings: Any, topic: str, lines: bytes) -> None:
    kcat = shutil.which("kcat")
    assert kcat, "Debian's kcat is not installed: run `make kcat`"
    subprocess.run([kcat, "-P", "-b", settings.kafka.bootstrap_servers, "-t", topic, "-K\t"],
                   input=lines, check=True, timeout=120)  # fmt: skip


def encode(stream_app: Run, env: dict[str, str], path: Path, kind: str, *extra: str) -> bytes:
    done = subprocess.run(
        [*CLI, "events", "encode", str(path), "--use-case", SPEC, "--as", kind, *extra],
        env={**os.environ, **env}, capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    return done.stdout


def lag(port: int, topic: str) -> int | None:
    url = f"http://127.0.0.1:{port}/dashboard/data"
    with urllib.request.urlopen(url, timeout=5) as page:
        lags = json.loads(page.read())["consumer_lag"]
    found = [x["messages"] for x in lags if x["topic"] == topic]
    return found[0] if found else None


@pytest.fixture
def data(tmp_path: Path) -> Path:
    out = tmp_path / "flights"
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "flights" / "prepare.py"), "--out", str(out),
         "--since", SINCE, "--split", SPLIT, "--until", UNTIL],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return out


def test_the_flights_walk_from_spec_to_live_accuracy(
    deployment: Deployment, stream_app: Run, data: Path, cassandra_session: Any, tmp_path: Path
) -> None:
    env = {**deployment.env, "STREAM_APP_LIFECYCLE__ORCHESTRATOR": "false"}
    started_ms = int(time.time() * 1000)
    checked = stream_app("spec", "check", SPEC, "--json", env=env)
    assert checked.returncode == 0, checked.stderr
    topics = json.loads(checked.stdout)["topics"]
    assert topics["client_events"] == f"flight_delay.client-events-{deployment.tag}"
    assert stream_app("bootstrap", "--use-case", SPEC, env=env).returncode == 2  # no world

    assert stream_app("init", "--use-case", SPEC, env=env).returncode == 0
    loaded = stream_app("features", "load", str(data / "planes.csv"), "--use-case", SPEC,
                        "--as-of", SINCE, env=env)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    imported = stream_app("history", "import", str(data / "history.csv"), "--use-case", SPEC,
                          "--readings", str(data / "weather.csv"), env=env)  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    summary = json.loads(imported.stdout)
    assert summary["events"]["imported"] > 15_000
    assert summary["missing_feature_share"]["origin_visib_min_3h"] < 0.01
    train = summary["next"].split()
    assert train[:2] == ["stream-app", "train"]
    trained = stream_app(*train[1:], env=env)
    assert trained.returncode == 0, trained.stderr
    model = json.loads(trained.stdout)
    assert model["role"] == "champion"
    training_labels = [int(r["arrived_late"]) for r in csv.DictReader((data / "history.csv").open())
                       if r["arrived_late"]]  # fmt: skip
    majority = int(np.mean(training_labels) >= 0.5)

    settings = deployment.settings
    port = settings.worker.web_port
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen([*CLI, "worker", "--use-case", SPEC], env={**os.environ, **env},
                              stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    live = list(csv.DictReader((data / "live.csv").open()))
    labelled = [r for r in live if r["arrived_late"]]
    try:
        wait_for(lambda: lag(port, topics["sensor_readings"]) is not None, 90, "the worker")
        # the weather of the live days (and of the windows before them), then the flights
        before = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                               time.gmtime(parse_time_ms(SPLIT, 0) / 1000 - 4 * 3600))  # fmt: skip
        weather = encode(
            stream_app, env, data / "weather.csv", "sensor-readings", "--since", before
        )
        kcat(settings, topics["sensor_readings"], weather)
        wait_for(lambda: lag(port, topics["sensor_readings"]) == 0, 60, "the readings merged")
        time.sleep(3)  # the last batch's panes written
        kcat(
            settings,
            topics["client_events"],
            encode(stream_app, env, data / "live.csv", "client-events"),
        )
        kcat(
            settings,
            topics["ground_truth"],
            encode(stream_app, env, data / "live.csv", "ground-truth"),
        )
        predictions = consume_all(settings, topics["predictions"], len(live), 180)
        accuracy = consume_all(settings, topics["accuracy_events"], len(labelled), 180)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/dashboard/data") as page:
            dashboard = json.loads(page.read())
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    served = [orjson.loads(m.value()) for m in predictions]
    assert sorted(p["event_id"] for p in served) == sorted(r["event_id"] for r in live)
    assert dashboard["use_case"] == "flight_delay"
    assert any(a["role"] == "champion" and a["labels"] > 0 for a in dashboard["accuracy"])

    # the model against two baselines on the same live labels
    events = sorted(live, key=lambda r: r["event_time"])
    results = {orjson.loads(m.value())["event_id"]: orjson.loads(m.value()) for m in accuracy}
    assert len(results) == len(labelled)
    model_accuracy = float(np.mean([results[r["event_id"]]["correct"] for r in labelled]))
    truth = {r["event_id"]: int(r["arrived_late"]) for r in labelled}
    majority_accuracy = float(np.mean([truth[r["event_id"]] == majority for r in labelled]))
    known: list[tuple[int, int]] = sorted(
        (parse_time_ms(r["label_time"], 0), int(r["arrived_late"])) for r in labelled
    )  # labels as they arrive: the last one known when a flight leaves is the no-change guess
    last_hits, index, last = [], 0, majority
    for r in events:
        t = parse_time_ms(r["event_time"], 0)
        while index < len(known) and known[index][0] <= t:
            last = known[index][1]
            index += 1
        if r["event_id"] in truth:
            last_hits.append(truth[r["event_id"]] == last)
    last_label_accuracy = float(np.mean(last_hits))
    print(f"\nlive accuracy {model_accuracy:.4f}, majority class {majority_accuracy:.4f}, "
          f"last label {last_label_accuracy:.4f} on {len(labelled)} flights")  # fmt: skip
    assert model_accuracy > majority_accuracy + 0.03
    assert model_accuracy > last_label_accuracy + 0.03

    # no training/serving skew: the live days imported as history get the served vectors
    again = stream_app("history", "import", str(data / "live.csv"), "--use-case", SPEC,
                       "--readings", str(data / "weather.csv"), env=env)  # fmt: skip
    assert again.returncode == 0, again.stderr
    store = PredictionStore(cassandra_session, settings.cassandra.keyspace, "flight_delay")
    vectors: dict[str, dict[str, Any]] = {}
    # the imported rows are logged at their event time, the live ones when they were scored
    for start, end in ((parse_time_ms(SPLIT, 0), parse_time_ms(UNTIL, 0)),
                       (started_ms, int(time.time() * 1000) + 1)):  # fmt: skip
        for chunk in store.chunks(start, end):
            for i, event_id in enumerate(chunk.columns["event_ids"]):
                vectors.setdefault(event_id, {})[chunk.model_version] = chunk.matrix[i]
    champion = model["version"]
    compared = [e for e, v in vectors.items() if champion in v and HISTORY_VERSION in v]
    assert len(compared) == len(live)
    names = load_use_case(SPEC).feature_names
    differ = [(e, names[int(np.argmax(vectors[e][champion] != vectors[e][HISTORY_VERSION]))])
              for e in compared
              if not np.array_equal(vectors[e][champion], vectors[e][HISTORY_VERSION])]  # fmt: skip
    assert not differ, f"{len(differ)} of {len(compared)} vectors differ, e.g. {differ[:5]}"
